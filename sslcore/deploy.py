"""Run this app as your own Hugging Face Space, in one command: ``python -m sslcore deploy --space USER/NAME``.

A Gradio Space is a repository holding an app, a ``requirements.txt`` and a README whose YAML front matter is the
Space's configuration (``sdk: gradio``, ``sdk_version``, ``python_version``, ``app_file``). ``deploy`` creates the
Space (``HfApi.create_repo(repo_type="space", space_sdk="gradio", space_hardware=..., exist_ok=True)``) and uploads,
in one commit, what the app needs and nothing else (no tests, runs, docs or caches):

    app.py, README.md       the app, and the Space's configuration in the README's front matter
    pages/, sslcore/        the app's pages and the library: every file, so package data comes along too
    requirements.txt        space/requirements.txt: Keras on PyTorch for ZeroGPU, without TensorFlow or JAX

The default hardware is ZeroGPU (``zero-a10g``): it is the only hardware a free account may host a Gradio Space on;
for any other, CPU included, the Hub answers 402 Payment Required. Deploying again updates the files,
removes those of ``pages/`` and ``sslcore/`` that are gone here, and requests the hardware asked for if the Space
runs on another. The token (--token, else HF_TOKEN, else ``hf auth login``), the retries and the error messages are
sslcore.hub's: the token is only ever sent in the Authorization header.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

DEFAULT_HARDWARE = "zero-a10g"      # ZeroGPU: free accounts may host up to 2 such Spaces
ROOT = Path(__file__).resolve().parent.parent
APP_FILES = ("app.py", "README.md")
APP_PACKAGES = ("pages", "sslcore")
SPACE_REQUIREMENTS = "space/requirements.txt"   # uploaded as the Space's requirements.txt
# Failures to fix before trying again (the command, the token, the plan): the CLI exits with 2 for them, not 1.
FIX_FIRST_KINDS = ("no_token", "bad_repo", "bad_token", "forbidden", "bad_hardware", "paid_hardware", "no_app")


def check_hardware(hardware: str | None) -> str:
    """``hardware``, or ZeroGPU when none is given; a name the Hub does not offer is refused before any request."""
    from huggingface_hub import SpaceHardware

    from sslcore.hub import HubError

    hardware = (hardware or DEFAULT_HARDWARE).strip()
    flavors = [flavor.value for flavor in SpaceHardware]
    if hardware not in flavors:
        raise HubError(f"Unknown Space hardware {hardware!r}: choose one of {', '.join(flavors)}. A free account "
                       f"can use {DEFAULT_HARDWARE} (ZeroGPU).", kind="bad_hardware")
    return hardware


def app_files(root: str | os.PathLike = ROOT) -> dict[str, Path]:
    """What the Space gets: {path in the Space: file here}. Read from the folders, so a new module is never left out."""
    from sslcore.hub import HubError

    root = Path(root)
    files = {name: root / name for name in APP_FILES}
    for package in APP_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not _left_out(relative):
                files[relative.as_posix()] = path
    files["requirements.txt"] = root / SPACE_REQUIREMENTS
    missing = [name for name in (*APP_FILES, SPACE_REQUIREMENTS) if not (root / name).is_file()]
    if missing or not (root / "sslcore" / "__init__.py").is_file():
        raise HubError(f"{root} is not an sslcore checkout to deploy: it lacks "
                       f"{', '.join(missing) or 'sslcore/__init__.py'}", kind="no_app")
    return files


def _left_out(relative: Path) -> bool:
    """Bytecode caches and hidden files (editor swap files, .DS_Store): nothing the app reads."""
    return relative.suffix in (".pyc", ".pyo") or any(part == "__pycache__" or part.startswith(".")
                                                      for part in relative.parts)


def space_url(endpoint: str, repo_id: str) -> str:
    return f"{endpoint}/spaces/{repo_id}"


def deploy(space: str, *, hardware: str | None = None, private: bool = False, token: str | None = None,
           endpoint: str | None = None, dry_run: bool = False, root: str | os.PathLike = ROOT,
           progress: Callable[[str], None] | None = None, **retry: Any) -> dict[str, Any]:
    """Create or update the Space ``space`` (``USER/NAME``, or ``NAME`` in the token owner's namespace) with this app.

    ``dry_run`` only lists the files and the hardware: no token, no request. ``retry`` (attempts, backoff_seconds) is
    passed to ``hub.connect``. Raises HubError with a message that says what to do (402: the hardware needs a paid
    plan; 401: the token; 403: the namespace), never containing the token.
    """
    from sslcore import hub

    say = progress or (lambda message: None)
    hardware = check_hardware(hardware)
    files = app_files(root)
    endpoint = hub.resolve_endpoint(endpoint)
    if dry_run:
        repo_id = hub.check_repo_id(space)
        return _summary(repo_id, endpoint, hardware, private, files, dry_run=True)
    session = hub.connect(space, token=token, endpoint=endpoint, progress=say, **retry)
    api, repo_id = session.api, session.repo_id
    existing = session.call(f"look up the Space {repo_id}", lambda: _space_info(api, repo_id))
    if existing is None:
        say(f"creating the Space {repo_id} on {hardware}")
        session.call(f"create the Space {repo_id}", _paid_plan_explained(session, hardware, lambda: api.create_repo(
            repo_id, repo_type="space", space_sdk="gradio", space_hardware=hardware, private=private, exist_ok=True)))
    elif _hardware(existing) != hardware:
        # create_repo would leave an existing Space's hardware as it is (and swallow the Hub's 402 for it).
        say(f"requesting {hardware} for {repo_id} (it ran on {_hardware(existing) or 'unknown hardware'})")
        session.call(f"request {hardware} for {repo_id}", _paid_plan_explained(
            session, hardware, lambda: api.request_space_hardware(repo_id, hardware)))
    removed = _removed_files(existing, files)
    say(f"uploading {len(files)} files" + (f", removing {len(removed)}" if removed else ""))
    commit = session.call(f"upload the app to {repo_id}", lambda: api.create_commit(
        repo_id, repo_type="space", operations=_operations(files, removed), commit_message="Deploy sslcore lab"))
    summary = _summary(repo_id, endpoint, hardware, bool(existing.private) if existing else private, files,
                       dry_run=False)
    return {**summary, "created": existing is None, "removed": removed, "commit_url": str(commit.commit_url)}


def _summary(repo_id: str, endpoint: str, hardware: str, private: bool, files: dict[str, Path], *,
             dry_run: bool) -> dict[str, Any]:
    # With NAME alone the owner is only known from the token, which a dry run does not read.
    url = space_url(endpoint, repo_id) if "/" in repo_id else None
    return {"space": repo_id, "url": url, "hardware": hardware, "private": private, "files": list(files),
            "dry_run": dry_run}


def _space_info(api, repo_id: str):
    """The Space's info (hardware, files), or None when it does not exist yet."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.space_info(repo_id)
    except RepositoryNotFoundError:
        return None


def _hardware(info) -> str | None:
    runtime = getattr(info, "runtime", None)
    return runtime and (runtime.requested_hardware or runtime.hardware)


def _removed_files(existing, files: dict[str, Path]) -> list[str]:
    """The Space's files under pages/ and sslcore/ that are gone here (a renamed module); the rest is left alone."""
    if existing is None:
        return []
    ours = tuple(f"{package}/" for package in APP_PACKAGES)
    return sorted(sibling.rfilename for sibling in existing.siblings or []
                  if sibling.rfilename.startswith(ours) and sibling.rfilename not in files)


def _operations(files: dict[str, Path], removed: list[str]) -> list:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    return ([CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
            + [CommitOperationDelete(path_in_repo=name) for name in removed])


def _paid_plan_explained(session, hardware: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with the Hub's 402 Payment Required turned into what a free account can do instead."""
    def call():
        from huggingface_hub.errors import HfHubHTTPError

        from sslcore.hub import HubError, scrub

        try:
            return fn()
        except HfHubHTTPError as error:
            if getattr(error.response, "status_code", None) != 402:
                raise
            said = " ".join(scrub(getattr(error, "server_message", None) or "", session.context.token).split())
            raise HubError(paid_plan_message(hardware, said), kind="paid_hardware") from None
    return call


def paid_plan_message(hardware: str, hub_said: str = "") -> str:
    if hardware == DEFAULT_HARDWARE:   # free, but limited: this account is probably at its limit
        advice = ("A free account may host up to 2 ZeroGPU Spaces: delete or pause one in its settings, or upgrade "
                  "to PRO.")
    else:
        advice = (f"It needs a paid plan (PRO, or an organisation with billing). A free account can use --hardware "
                  f"{DEFAULT_HARDWARE} (ZeroGPU, up to 2 Spaces per free account); free CPU Spaces are no longer "
                  "available.")
    said = f" The Hub said: {hub_said[:300]}" if hub_said else ""
    return f"The Hub refused the hardware {hardware!r} for this Space (402 Payment Required). {advice}{said}"
