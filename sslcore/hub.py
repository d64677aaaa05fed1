"""Share a finished run on the Hugging Face Hub, and get it back as a working encoder + classifier.

This module is the transport: tokens, retries, the Hub's errors explained, ``push`` and ``load``. What a pushed
repository holds, and the accuracy its card quotes, are ``sslcore.hub_files``'s; the card is ``sslcore.model_card``'s.

``push`` checks the token and the namespace before anything slow, stages the files, uploads the models and files
in one commit (``HfApi.create_repo(exist_ok=True)`` + ``upload_folder``), then the card in a second one, so the
card never describes weights that are not there yet. ``load`` takes ``hf://user/name``, ``user/name`` or a local
run folder.

The token comes from the caller (the Hub page's field or ``--token``), else ``HF_TOKEN``, else the login saved by
``hf auth login`` (``huggingface_hub.get_token()``). It is only ever sent in the Authorization header: it is not
written to the run folder, the repository or the card, and it is scrubbed from every error message. Network
failures are retried a few times with backoff before the error says what to check.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sslcore import credentials, download_limit
from sslcore.run import LoadedModel, Run, RunNotFinished

RETRY_ATTEMPTS = 3            # tries of each Hub call that fails on the network or with a 5xx / 429
RETRY_BACKOFF_SECONDS = 1.0   # wait before the 2nd try; doubles each time
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubError(RuntimeError):
    """A push or load that failed for a reason the user can act on. The message never contains the token.

    ``kind`` is one of no_token, bad_token, forbidden, not_found, network, server, no_model, not_sslcore (a repo
    that holds no sslcore model, e.g. a timm checkpoint where a pushed run is needed), no_data, bad_repo,
    too_large (over a public server's download limit), failed (and, from sslcore.deploy, bad_hardware, paid_hardware,
    no_app).
    """

    INPUT_KINDS = ("no_token", "no_model", "not_sslcore", "no_data", "bad_repo", "too_large")

    def __init__(self, message: str, kind: str = "failed"):
        super().__init__(message)
        self.kind = kind

    @property
    def exit_code(self) -> int:
        """The CLI's exit status: 2 for something to fix in the command, 1 for a failure on the way."""
        return 2 if self.kind in self.INPUT_KINDS else 1


@dataclass
class PushResult:
    repo_id: str
    url: str
    commit_url: str
    private: bool
    files: list[str]
    evaluation: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        evaluation = self.evaluation or {}
        return {"repo_id": self.repo_id, "url": self.url, "commit_url": self.commit_url, "private": self.private,
                "files": self.files, "knn_accuracy": evaluation.get("knn_accuracy"),
                "linear_accuracy": evaluation.get("linear_accuracy"), "notes": self.notes}


# ---------------------------------------------------------------------------------------------- token


def resolve_token(token: str | None = None) -> tuple[str, str]:
    """(token, where it came from): the given one, else HF_TOKEN, else the saved ``hf auth login`` token."""
    if token and token.strip():
        return token.strip(), "the token you gave"
    from_env = os.environ.get("HF_TOKEN", "").strip()
    if from_env:
        return from_env, "the HF_TOKEN environment variable"
    from huggingface_hub import get_token

    saved = get_token()
    if saved:
        return saved, "the token saved by `hf auth login`"
    raise HubError("No Hugging Face token: paste one in the token field, pass --token, set HF_TOKEN, or run "
                   f"`hf auth login` once. Create a token with write access at {TOKENS_PAGE}.", kind="no_token")


def scrub(text: str, token: str | None) -> str:
    """``text`` with every occurrence of the token replaced (error messages may quote request details)."""
    if token:
        text = text.replace(token, "hf_***")
    return text


# ---------------------------------------------------------------------------------------------- errors and retries


def _http_error(error: BaseException):
    from huggingface_hub.errors import HfHubHTTPError

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, HfHubHTTPError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _network_error(error: BaseException):
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen, found = set(), None
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, httpx2.TransportError):
            return error  # the root cause (ConnectError, ReadTimeout...) says more than its wrappers
        if found is None and isinstance(error, (ConnectionError, TimeoutError, LocalEntryNotFoundError)):
            found = error
        error = error.__cause__ or error.__context__
    return found


def _status(error) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _server_message(error) -> str:
    """The Hub's own words for an HTTP error (its JSON ``error``), else the client's message."""
    server = getattr(error, "server_message", None)
    text = server or str(error)
    return " ".join(text.split())[:400]


@dataclass
class _Context:
    """What an error message needs to say something useful."""
    endpoint: str
    repo_id: str
    token: str | None = None
    token_source: str = ""
    user: str | None = None
    action: str = "reach the Hub"
    attempts: int = RETRY_ATTEMPTS


def _explain(error: BaseException, context: _Context) -> HubError:
    token, where = context.token, context.endpoint
    http = _http_error(error)
    if http is not None:
        status = _status(http)
        from huggingface_hub.errors import RepositoryNotFoundError

        if isinstance(http, RepositoryNotFoundError):
            return HubError(f"The model repo {context.repo_id} was not found on {where}, or it is private and "
                            + (f"{context.token_source} cannot read it." if token else
                               "no token was given (pass --token, set HF_TOKEN or run `hf auth login`)."),
                            kind="not_found")
        if status == 401:
            return HubError(f"The Hub rejected {context.token_source or 'the token'} (401 Unauthorized): it is wrong, "
                            f"expired or revoked. Create a token with write access at {TOKENS_PAGE} and pass it "
                            "with --token, HF_TOKEN or `hf auth login`.", kind="bad_token")
        if status == 403:
            return _forbidden(context)
        if status is not None and (status >= 500 or status == 429):
            return HubError(f"The Hub at {where} kept failing ({status}) to {context.action} after "
                            f"{context.attempts} attempts: {scrub(_server_message(http), token)}. Try again in a few "
                            "minutes; https://status.huggingface.co shows outages.", kind="server")
        return HubError(f"The Hub refused to {context.action} ({status}): {scrub(_server_message(http), token)}",
                        kind="failed")
    network = _network_error(error)
    if network is not None:
        return HubError(f"Could not reach the Hub at {where} to {context.action} (tried {context.attempts} times: "
                        f"{type(network).__name__}: {scrub(' '.join(str(network).split())[:200], token)}). Check your "
                        "internet connection, any proxy (HTTPS_PROXY), and HF_ENDPOINT if you set it; then try again.",
                        kind="network")
    return HubError(f"Could not {context.action}: {type(error).__name__}: {scrub(str(error), token)}", kind="failed")


def _forbidden(context: _Context) -> HubError:
    namespace = context.repo_id.split("/")[0]
    who = f"user {context.user}" if context.user else "this token"
    instead = (f" Push to {context.user}/{context.repo_id.split('/')[-1]} instead, or use" if context.user and
               context.user != namespace else " Use")
    return HubError(f"Not allowed to write to {context.repo_id} (403 Forbidden): {who} cannot write to the "
                    f"'{namespace}' namespace: it belongs to another user or to an organisation you are not a writer "
                    f"of, or the token is read-only.{instead} a token with write access to '{namespace}' "
                    f"({TOKENS_PAGE}).", kind="forbidden")


def _retryable(error: BaseException) -> bool:
    http = _http_error(error)
    if http is not None:
        status = _status(http)
        return status is not None and (status >= 500 or status == 429)
    return _network_error(error) is not None


def _call(context: _Context, action: str, fn: Callable[[], Any], *, attempts: int, backoff_seconds: float,
          progress: Callable[[str], None] | None = None) -> Any:
    """``fn()`` with retries on network failures and 5xx / 429; any failure becomes a HubError without the token."""
    context.action, context.attempts = action, attempts
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except HubError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is explained (and scrubbed) below
            if attempt < attempts and _retryable(error):
                wait = backoff_seconds * 2 ** (attempt - 1)
                if progress:
                    progress(f"{action}: {type(error).__name__}; retrying in {wait:.1f} s ({attempt}/{attempts})")
                time.sleep(wait)
                continue
            explained = _explain(error, context)
            raise explained from None


# ---------------------------------------------------------------------------------------------- push


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if repo_id.startswith("hf://"):
        repo_id = repo_id[5:]
    if not repo_id:
        raise HubError("Give the repository as USER/NAME (or just NAME to use your own namespace)", kind="bad_repo")
    if not (_REPO_ID.match(repo_id) or _REPO_NAME.match(repo_id)) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise HubError(f"{repo_id!r} is not a valid repository name: use USER/NAME with letters, digits, '-', '_' "
                       "or '.' (e.g. alice/simclr-digits)", kind="bad_repo")
    return repo_id


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub's base URL: the given one, else HF_ENDPOINT (read by huggingface_hub), else https://huggingface.co."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


@dataclass
class HubSession:
    """A checked token's client for one repository; ``call`` retries and explains failures without the token."""
    api: Any
    context: _Context
    retry: dict

    @property
    def repo_id(self) -> str:
        return self.context.repo_id

    def call(self, action: str, fn: Callable[[], Any]) -> Any:
        return _call(self.context, action, fn, **self.retry)


def connect(repo_id: str, *, token: str | None = None, endpoint: str | None = None, attempts: int = RETRY_ATTEMPTS,
            backoff_seconds: float = RETRY_BACKOFF_SECONDS,
            progress: Callable[[str], None] | None = None) -> HubSession:
    """A session for writing to ``repo_id`` once the name and the token are checked (``whoami``).

    ``NAME`` becomes ``USER/NAME``. A namespace the token cannot write to is refused here, before any slow work,
    rather than by the Hub's 403 once everything is ready to upload.
    """
    from huggingface_hub import HfApi

    say = progress or (lambda message: None)
    repo_id = check_repo_id(repo_id)
    token, token_source = resolve_token(token)
    endpoint = resolve_endpoint(endpoint)
    context = _Context(endpoint=endpoint, repo_id=repo_id, token=token, token_source=token_source)
    api = HfApi(endpoint=endpoint, token=token, library_name="sslcore", library_version=_version())
    session = HubSession(api, context, dict(attempts=attempts, backoff_seconds=backoff_seconds, progress=say))

    say("checking the token")
    who = session.call("check the token", lambda: api.whoami())
    context.user = who.get("name")
    if "/" not in repo_id:
        context.repo_id = f"{context.user}/{repo_id}"
    namespace = context.repo_id.split("/")[0]
    writable = {context.user, *(org.get("name") for org in who.get("orgs", []) if isinstance(org, dict))}
    if namespace not in writable:
        raise _forbidden(context)
    return session


def finished_run(run_dir: str | os.PathLike) -> Run:
    """The run to push, or a HubError (kind no_model) that the CLI turns into exit code 2."""
    try:
        return Run(run_dir)
    except RunNotFinished:
        raise HubError(f"Run {Path(run_dir).name} has no trained model (no encoder.keras): it has not finished. Resume "
                       "it (python -m sslcore train --resume --out RUN) and push once it has.", kind="no_model") from None
    except ValueError:
        raise HubError(f"{run_dir} is not a run folder (no config.json)", kind="no_model") from None


def push(run_dir: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = False,
         endpoint: str | None = None, evaluate: bool = True, license: str | None = None,
         commit_message: str | None = None, attempts: int = RETRY_ATTEMPTS,
         backoff_seconds: float = RETRY_BACKOFF_SECONDS, progress: Callable[[str], None] | None = None) -> PushResult:
    """Push a finished run to ``repo_id`` (``USER/NAME``, or ``NAME`` for the token owner's namespace).

    ``evaluate`` measures kNN and linear accuracy on the run's held-out split for the card (it needs the run's data);
    without it the card reports the last epoch's kNN figure from training. Raises HubError with a message that
    says what to do, never containing the token.
    """
    say = progress or (lambda message: None)
    run = finished_run(run_dir)
    session = connect(repo_id, token=token, endpoint=endpoint, attempts=attempts, backoff_seconds=backoff_seconds,
                      progress=say)  # before measuring anything
    api, repo_id, endpoint = session.api, session.repo_id, session.context.endpoint

    from sslcore import hub_files
    from sslcore.model_card import build_model_card

    with tempfile.TemporaryDirectory(prefix="sslcore-push-") as staging:
        stage = Path(staging)
        staged = hub_files.stage(run, stage, evaluate=evaluate, version=_version(), progress=say)
        files = staged.files
        say(f"creating {repo_id}")
        repo_url = session.call(f"create {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        say(f"uploading {', '.join(files)}")
        commit = session.call(f"upload the model files to {repo_id}", lambda: api.upload_folder(
            repo_id=repo_id, folder_path=stage, commit_message=commit_message or f"Upload sslcore run {run.name}"))
        card = build_model_card(repo_id=repo_id, config=run.config, class_names=staged.class_names,
                                evaluation=staged.evaluation, files=files, notes=staged.notes,
                                sslcore_version=_version(), license=license, stopped=run.stopped)
        card_path = stage / "README.md"
        card_path.write_text(str(card), encoding="utf-8")
        say("uploading the model card")
        commit = session.call(f"upload the model card to {repo_id}", lambda: api.upload_file(
            path_or_fileobj=str(card_path), path_in_repo="README.md", repo_id=repo_id,
            commit_message="Model card (sslcore)"))
    url = str(repo_url).rstrip("/") if repo_url else f"{endpoint}/{repo_id}"
    return PushResult(repo_id=repo_id, url=url, commit_url=str(getattr(commit, "commit_url", commit)), private=private,
                      files=[*files, "README.md"], evaluation=staged.evaluation, notes=staged.notes)


def _version() -> str:
    try:
        import sslcore

        return getattr(sslcore, "__version__", "")
    except Exception:  # noqa: BLE001 - a version string is never worth failing a push
        return ""


# ---------------------------------------------------------------------------------------------- load


def is_hub_id(source: str | os.PathLike) -> bool:
    """``hf://USER/NAME`` or ``USER/NAME`` by its form alone, whatever the local disk holds."""
    source = os.fspath(source)
    return source.startswith("hf://") or bool(_REPO_ID.match(source))


def is_hub_model(source: str | os.PathLike) -> bool:
    """``hf://USER/NAME``, or ``USER/NAME`` that is not a local folder."""
    source = os.fspath(source)
    return source.startswith("hf://") or (not os.path.exists(source) and is_hub_id(source))


def load(model: str | os.PathLike, *, token: str | None = None, endpoint: str | None = None,
         revision: str | None = None, cache_dir: str | os.PathLike | None = None,
         attempts: int = RETRY_ATTEMPTS, backoff_seconds: float = RETRY_BACKOFF_SECONDS) -> LoadedModel:
    """A pushed model (``hf://user/name`` or ``user/name``) or a local run folder, ready to embed and classify.

    From the Hub only ``config.json`` and the ``.keras`` files are downloaded (into the Hugging Face cache, so a
    second load works offline). A private repo needs a token: ``token``, else HF_TOKEN, else ``hf auth login``;
    ``token=False`` reads public repos only, without this machine's credentials, and so does an empty token on a
    Space, whose credentials are its owner's (``sslcore.credentials``).
    """
    source = os.fspath(model)
    if is_hub_model(source):
        folder = _download(check_repo_id(source), token=token, endpoint=endpoint, revision=revision,
                           cache_dir=cache_dir, attempts=attempts, backoff_seconds=backoff_seconds)
        label = source if source.startswith("hf://") else f"hf://{source}"
    elif os.path.isdir(source):
        folder, label = Path(source), source
    else:
        raise FileNotFoundError(f"{source} is neither a run folder nor a Hub model (hf://USER/NAME)")
    return Run(folder).model(label)


# A timm checkpoint's weights (sslcore.timm_weights), fetched beside config.json when a start may be one.
TIMM_WEIGHTS = "model.safetensors"


def download(repo_id: str, *, token: str | None = None, endpoint: str | None = None, revision: str | None = None,
             cache_dir: str | os.PathLike | None = None, attempts: int = RETRY_ATTEMPTS,
             backoff_seconds: float = RETRY_BACKOFF_SECONDS, timm: bool = False) -> Path:
    """The folder of a pushed model's ``config.json`` and ``.keras`` files in the Hugging Face cache, as ``load`` gets
    it; the folder's name is the commit it holds (``snapshots/<commit>``), so its revision is known exactly.
    ``timm``: a timm checkpoint (config.json + model.safetensors) is accepted too."""
    return _download(check_repo_id(repo_id), token=token, endpoint=endpoint, revision=revision, cache_dir=cache_dir,
                     attempts=attempts, backoff_seconds=backoff_seconds, timm=timm)


def _download(repo_id: str, *, token, endpoint, revision, cache_dir, attempts, backoff_seconds,
              timm: bool = False) -> Path:
    from huggingface_hub import snapshot_download

    endpoint = resolve_endpoint(endpoint)
    # False: public repos only, never this machine's HF_TOKEN or login (asked for, or on a Space: they are its owner's).
    token = credentials.read_token(token)
    given = token if isinstance(token, str) else None
    anonymous = token is False
    server_token = None if anonymous else os.environ.get("HF_TOKEN") or _saved_token()
    context = _Context(endpoint=endpoint, repo_id=repo_id, token=given or server_token,
                       token_source="the token you gave" if given else "your HF_TOKEN / `hf auth login` token")
    if context.token is None:
        context.token_source = ""
    patterns = ["config.json", "*.keras"] + ([TIMM_WEIGHTS] if timm else [])
    if download_limit.limit_bytes() is not None:   # a public server: size the files before fetching them
        revision = _commit_within_limit(context, repo_id, revision, patterns, token=False if anonymous else given,
                                        attempts=attempts, backoff_seconds=backoff_seconds)
    folder = _call(context, f"download {repo_id}", lambda: snapshot_download(
        repo_id, revision=revision, endpoint=endpoint, token=False if anonymous else given, cache_dir=cache_dir,
        allow_patterns=patterns, library_name="sslcore", library_version=_version()),
        attempts=attempts, backoff_seconds=backoff_seconds)
    if (Path(folder) / "encoder.keras").exists() or (timm and (Path(folder) / TIMM_WEIGHTS).exists()):
        return Path(folder)
    also = f" nor timm's {TIMM_WEIGHTS}" if timm else ""
    raise HubError(f"{repo_id} is not an sslcore model: it has no encoder.keras{also}", kind="not_sslcore")


def _commit_within_limit(context: _Context, repo_id: str, revision: str | None, patterns: list[str], *, token,
                         attempts: int, backoff_seconds: float) -> str:
    """The commit ``revision`` names, once the files ``patterns`` match there fit ``download_limit``; the download then
    asks for that commit, so the files sized are the files fetched."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    info = _call(context, f"read {repo_id}", lambda: HfApi(endpoint=context.endpoint, token=token).model_info(
        repo_id, revision=revision, files_metadata=True), attempts=attempts, backoff_seconds=backoff_seconds)
    sizes = [sibling.size for sibling in info.siblings or []
             if any(fnmatch(sibling.rfilename, pattern) for pattern in patterns)]
    problem = download_limit.over_limit(repo_id, sizes)
    if problem:
        raise HubError(problem, kind="too_large")
    return info.sha


def _saved_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001
        return None
