"""A small Hugging Face Hub look-alike for the tests: the routes huggingface_hub 2.4 calls to push and pull a model,
and to create a Space and upload an app to it.

Nothing here reaches the real Hub. The client is pointed at this server with ``endpoint=`` (or ``HF_ENDPOINT`` for a
subprocess) and talks to it exactly as it talks to huggingface.co:

    GET  /api/whoami-v2                                  who the token belongs to (401 for an unknown token)
    POST /api/validate-yaml                              checks a README's YAML front matter (before a commit)
    POST /api/repos/create                               create_repo (403 outside your namespace, 409 if it exists,
                                                         402 for a Space on hardware its owner's plan does not cover)
    GET  /api/{type}/{ns}/{name}[/revision/{rev}]        repo / model / space info (snapshot_download starts here)
    GET  /api/{type}/{ns}/{name}/tree/{rev}[/{path}]     list_repo_tree (snapshot_download's file list)
    POST /api/{type}/{ns}/{name}/preupload/{rev}         upload mode per file: "regular" (text) or "lfs" (binary)
    POST [/spaces]/{ns}/{name}.git/info/lfs/objects/batch   LFS batch API: where to PUT each object ("basic" transfer)
    PUT  /__lfs/upload/{upload_id}                       the "presigned" upload URL the batch handed out (no auth)
    POST /__lfs/verify/{type}/{ns}/{name}                LFS verify action
    POST /api/{type}/{ns}/{name}/commit/{rev}            the commit: NDJSON with header / file (base64) / lfsFile lines
    HEAD|GET [/spaces]/{ns}/{name}/resolve/{rev}/{path}  downloads, with X-Repo-Commit / ETag / X-Linked-Etag headers
    GET  /api/{type}/{ns}/{name}/xet-*-token/{rev}       refused (501): the tests run with HF_HUB_DISABLE_XET=1
    POST /api/spaces/{ns}/{name}/hardware                request_space_hardware (402 like create, for a paid flavour)

``{type}`` is ``models``, ``spaces`` or ``datasets``. Model repos live in ``hub.repos``, Spaces in ``hub.spaces`` and
dataset repos in ``hub.datasets`` (all keyed by ``USER/NAME``, as on the Hub a model and a Space may share a name); a Space
also records its ``sdk`` and ``hardware``. Datasets are only read here (``add_repo(..., repo_type="datasets")`` and
``add_commit`` put them in place): info, tree and resolve, at main, an older commit or another branch such as
``refs/convert/parquet`` (which the client sends as one %2F-escaped path segment). A ``gated`` repo answers its file
downloads like the Hub: 401 without a token, 403 for a user not in ``granted``, both with ``X-Error-Code: GatedRepo``.

Xet: huggingface_hub 2.x uploads every LFS file through Xet storage when ``hf_xet`` is installed, which needs a CAS
server this fake does not have; ``HF_HUB_DISABLE_XET=1`` (or ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``)
sends it down the classic LFS path implemented here. Downloads never use Xet here because no response carries an
``X-Xet-Hash`` header.

Auth: ``tokens`` maps each known token to a user name; ``orgs`` maps a user to the organisations it may write to;
``readonly_orgs`` to organisations it belongs to (whoami lists them) with only the "read" role, so a write answers 403.
``fail(method, path_prefix, status, message, times)`` makes the next matching requests fail, e.g. a 503 to test
retries; ``{token}`` in the message is replaced by the request's token, like a careless server quoting it.
Plans: as on the Hub since 2026, a free account may host a Gradio or Docker Space only on ZeroGPU; every other
hardware (CPU included) answers 402 unless the owner is in ``paid_users`` (``free_hardware`` says which are free).
Every request is recorded (method, path, query, headers, body, status) in ``hub.requests`` so a test can check
what the client sent, e.g. that the token appears only in the Authorization header.

``python tests/fake_hub.py --port 8123 --token hf_secret=alice`` serves it on its own, for trying the CLI by hand.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"   # what the real Hub says, in X-Error-Message
LFS_THRESHOLD_BYTES = 10 * 1024 * 1024                                  # the Hub also puts big text files in LFS
REPO_TYPES = {"model": "models", "space": "spaces", "dataset": "datasets"}  # create_repo's type → the URL segment
FREE_SPACE_HARDWARE = ("zero-a10g",)
DEFAULT_SPACE_HARDWARE = "cpu-basic"                                    # what the Hub gives a Space created without one


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def git_oid(self) -> str:
        """The git blob id: what the Hub reports as ``oid`` / ETag for a regular file."""
        return hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    commits: list[tuple[str, dict[str, StoredFile]]] = field(default_factory=list)  # (sha, files), oldest first
    repo_type: str = "models"
    sdk: str | None = None          # Spaces only, like hardware
    hardware: str | None = None
    gated: bool = False             # files need a token whose user is in ``granted`` (the repo page and listing do not)
    granted: set[str] = field(default_factory=set)
    branches: dict[str, tuple[str, dict[str, StoredFile]]] = field(default_factory=dict)  # other than main

    @property
    def head(self) -> str:
        return self.commits[-1][0]

    @property
    def files(self) -> dict[str, StoredFile]:
        return self.commits[-1][1]

    def snapshot(self, revision: str) -> tuple[str, dict[str, StoredFile]] | None:
        if revision in ("main", "HEAD"):
            return self.commits[-1]
        if revision in self.branches:
            return self.branches[revision]
        every = self.commits + list(self.branches.values())
        return next((commit for commit in every if commit[0] == revision), None)

    @property
    def web_path(self) -> str:
        """Where the Hub's pages put it: USER/NAME for a model, spaces/USER/NAME or datasets/USER/NAME otherwise."""
        return self.repo_id if self.repo_type == "models" else f"{self.repo_type}/{self.repo_id}"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    status: int | None = None

    def text_outside_authorization(self) -> str:
        """Everything the client sent except the Authorization header, as text (for leak checks)."""
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers.items() if k.lower() != "authorization")
        return "\n".join([self.method, self.path, self.query, headers, self.body.decode("latin-1")])


def _error(status: int, message: str, *, code: str | None = None, header_message: str | None = None,
           commit: str | None = None) -> JSONResponse:
    headers = {}
    if code:
        headers["X-Error-Code"] = code
    if header_message:
        headers["X-Error-Message"] = header_message
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class FakeHub:
    """The server's state and its FastAPI app; ``start()`` serves it on 127.0.0.1 in a background thread.

    ``echo_token_in_errors`` makes the 401/403 messages quote the token, as a careless server or proxy might, so a
    test can check that the caller scrubs it from what it shows.
    """

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None, *,
                 readonly_orgs: dict[str, list[str]] | None = None, echo_token_in_errors: bool = False,
                 paid_users: set[str] | None = None, free_hardware: tuple[str, ...] = FREE_SPACE_HARDWARE):
        self.tokens = dict(tokens or {})
        self.paid_users = set(paid_users or ())
        self.free_hardware = set(free_hardware)
        self.orgs = {user: list(names) for user, names in (orgs or {}).items()}
        self.readonly_orgs = {user: list(names) for user, names in (readonly_orgs or {}).items()}
        self.failures: list[dict] = []
        self.echo_token_in_errors = echo_token_in_errors
        self.repos: dict[str, Repo] = {}
        self.spaces: dict[str, Repo] = {}
        self.datasets: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.lfs_objects: dict[str, bytes] = {}
        self._uploads: dict[str, tuple[str, int]] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None

    # ------------------------------------------------------------------------------------------ serving
    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(_RecordingMiddleware(self.app, self), log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="fake-hub")
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake hub did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self) -> "FakeHub":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ helpers for tests
    def add_repo(self, repo_id: str, files: dict[str, bytes] | None = None, *, private: bool = False,
                 repo_type: str = "models", sdk: str | None = None, hardware: str | None = None,
                 gated: bool = False, granted: tuple[str, ...] = ()) -> Repo:
        """A repo that already exists (e.g. someone else's), optionally with files; a Space with repo_type="spaces",
        a dataset with repo_type="datasets". A ``gated`` repo serves its files only to the ``granted`` users."""
        repo = Repo(repo_id, repo_id.split("/")[0], private, repo_type=repo_type, sdk=sdk, hardware=hardware,
                    gated=gated, granted=set(granted))
        repo.commits.append((self._new_sha(repo_id), {".gitattributes": StoredFile(b"*.keras filter=lfs\n", False),
                                                      **_stored(files)}))
        self._store(repo_type)[repo_id] = repo
        return repo

    def add_commit(self, repo_id: str, files: dict[str, bytes], *, repo_type: str = "models",
                   branch: str = "main", replace: bool = False) -> str:
        """A new commit on ``branch`` (main by default, or e.g. ``refs/convert/parquet``) adding ``files``
        (or holding only them with ``replace``); returns its sha, so a test can ask for an older revision."""
        repo = self._store(repo_type)[repo_id]
        sha = self._new_sha(repo_id)
        base = {} if replace else dict((repo.snapshot(branch) or (None, {}))[1])
        commit = (sha, {**base, **_stored(files)})
        if branch == "main":
            repo.commits.append(commit)
        else:
            repo.branches[branch] = commit
        return sha

    def _store(self, repo_type: str) -> dict[str, Repo]:
        """The repos of a URL's type segment (``models`` / ``spaces`` / ``datasets``); empty for a type the fake lacks."""
        return {"models": self.repos, "spaces": self.spaces, "datasets": self.datasets}.get(repo_type, {})

    def _needs_paid_plan(self, user: str, hardware: str) -> bool:
        return hardware not in self.free_hardware and user not in self.paid_users

    def fail(self, method: str, path_prefix: str, status: int, message: str = "injected failure", times: int = 1) -> None:
        """Answer the next ``times`` requests whose method and path match with ``status`` and ``message``."""
        self.failures.append({"method": method.upper(), "prefix": path_prefix, "status": status, "message": message,
                              "left": times})

    def _injected(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
        for failure in self.failures:
            if failure["left"] > 0 and failure["method"] == method and path.startswith(failure["prefix"]):
                failure["left"] -= 1
                token = headers.get("authorization", "").split(" ", 1)[-1]
                return failure["status"], json.dumps({"error": failure["message"].replace("{token}", token)}).encode()
        return None

    def sent_text(self) -> str:
        """Everything any client sent, less the Authorization headers."""
        return "\n".join(record.text_outside_authorization() for record in self.requests)

    def routes_called(self) -> list[tuple[str, str, int | None]]:
        return [(record.method, record.path, record.status) for record in self.requests]

    # ------------------------------------------------------------------------------------------ auth
    def _user(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        """(user, None) for a known token, (None, None) for no token, (None, 401 response) for an unknown one."""
        header = request.headers.get("authorization", "")
        if not header:
            return None, None
        token = header.split(" ", 1)[1].strip() if " " in header else header
        user = self.tokens.get(token)
        if user is None:
            detail = f" (token {token!r} is not valid)" if self.echo_token_in_errors else ""
            return None, _error(401, f"Invalid username or password.{detail}", header_message=INVALID_CREDENTIALS)
        return user, None

    def _gated(self, request: Request, repo: Repo) -> JSONResponse | None:
        """What the Hub answers for a gated repo's file: 401 without a token, 403 for a user not granted access;
        X-Error-Code GatedRepo is what huggingface_hub turns into GatedRepoError."""
        user, _ = self._user(request)
        kind = repo.repo_type.rstrip("s")
        if user is None:
            return _error(401, f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and be "
                               "authenticated to access it. Please log in.", code="GatedRepo",
                          header_message=f"Access to {kind} {repo.repo_id} is restricted.")
        if user not in repo.granted and not self._can_write(user, repo.owner):
            return _error(403, f"Access to {kind} {repo.repo_id} is restricted and you are not in the authorized "
                               f"list. Visit https://huggingface.co/{repo.web_path} to ask for access.",
                          code="GatedRepo", header_message=f"Access to {kind} {repo.repo_id} is restricted.")
        return None

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.orgs.get(user, []))

    def _readable(self, request: Request, repo_id: str,
                  repo_type: str = "models") -> tuple[Repo | None, JSONResponse | None]:
        user, failure = self._user(request)
        if failure:
            return None, failure
        repo = self._store(repo_type).get(repo_id)
        if repo is None or (repo.private and not self._can_write(user, repo.owner)):
            # The real Hub answers 401 + RepoNotFound for both, so a private repo's existence does not leak.
            return None, _error(401, "Repository not found", code="RepoNotFound")
        return repo, None

    def _writable(self, request: Request, repo_id: str,
                  repo_type: str = "models") -> tuple[str | None, Repo | None, JSONResponse | None]:
        user, failure = self._user(request)
        if failure:
            return None, None, failure
        if user is None:
            return None, None, _error(401, "You must be authenticated to write to a repo", header_message=INVALID_CREDENTIALS)
        repo = self._store(repo_type).get(repo_id)
        if repo is None:
            return user, None, _error(404, "Repository not found", code="RepoNotFound")
        if not self._can_write(user, repo.owner):
            return user, None, self._forbidden(request, user, repo.owner)
        return user, repo, None

    def _forbidden(self, request: Request, user: str, namespace: str) -> JSONResponse:
        detail = ""
        if self.echo_token_in_errors:
            detail = f" (token {request.headers.get('authorization', '').split(' ', 1)[-1]!r})"
        return _error(403, f"You don't have the rights to write to the namespace \"{namespace}\" as {user}{detail}")

    @staticmethod
    def _payment_required(hardware: str) -> JSONResponse:
        # The real Hub's words (2026) for a Gradio Space on a free account's cpu-basic, with the hardware filled in.
        return _error(402, "Static Spaces are free for everyone, but hosting Gradio and Docker Spaces on free "
                           f"{hardware} requires a PRO subscription.")

    def _new_sha(self, salt: str) -> str:
        return hashlib.sha1(f"{salt}-{next(self._counter)}-{time.time_ns()}".encode()).hexdigest()

    # ------------------------------------------------------------------------------------------ the routes
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake Hugging Face Hub", openapi_url=None, docs_url=None, redoc_url=None)
        hub = self

        @app.get("/api/whoami-v2")
        async def whoami(request: Request):
            user, failure = hub._user(request)
            if failure:
                return failure
            if user is None:
                return _error(401, "Invalid username or password.", header_message=INVALID_CREDENTIALS)
            return {"type": "user", "id": f"id-{user}", "name": user, "fullname": user.title(), "email": None,
                    "orgs": [{"type": "org", "name": org, "roleInOrg": "write"} for org in hub.orgs.get(user, [])]
                    + [{"type": "org", "name": org, "roleInOrg": "read"} for org in hub.readonly_orgs.get(user, [])],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}}}

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request):
            payload = json.loads(await request.body() or b"{}")
            content = payload.get("content", "")
            if content.startswith("---"):
                try:
                    metadata = yaml.safe_load(content.split("---", 2)[1])
                except (yaml.YAMLError, IndexError) as error:
                    return JSONResponse({"errors": [{"message": f"invalid YAML: {error}"}], "warnings": []}, 400)
                if metadata is not None and not isinstance(metadata, dict):
                    return JSONResponse({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400)
            return {"errors": [], "warnings": []}

        @app.post("/api/repos/create")
        async def create_repo(request: Request):
            user, failure = hub._user(request)
            if failure:
                return failure
            if user is None:
                return _error(401, "You must be authenticated to create a repo", header_message=INVALID_CREDENTIALS)
            payload = json.loads(await request.body())
            repo_type = REPO_TYPES.get(payload.get("type") or "model")
            if repo_type is None:
                return _error(400, f"the fake hub only hosts {' and '.join(REPO_TYPES.values())}")
            namespace = payload.get("organization") or user
            repo_id = f"{namespace}/{payload['name']}"
            if not hub._can_write(user, namespace):
                return hub._forbidden(request, user, namespace)
            sdk = hardware = None
            if repo_type == "spaces":
                sdk, hardware = payload.get("sdk"), payload.get("hardware") or DEFAULT_SPACE_HARDWARE
                if sdk not in ("gradio", "docker", "static", "streamlit"):
                    return _error(400, f"Invalid sdk: {sdk!r}")
                if sdk != "static" and hub._needs_paid_plan(namespace, hardware):
                    return hub._payment_required(hardware)   # the real Hub checks the plan before "already exists"
            base = str(request.base_url).rstrip("/")
            with hub._lock:
                existing = hub._store(repo_type).get(repo_id)
                if existing is not None:
                    return JSONResponse({"error": "You already created this repo",
                                         "url": f"{base}/{existing.web_path}"}, status_code=409)
                private = payload.get("visibility") == "private" or bool(payload.get("private"))
                repo = hub.add_repo(repo_id, private=private, repo_type=repo_type, sdk=sdk, hardware=hardware)
            return {"url": f"{base}/{repo.web_path}", "name": repo_id, "id": f"repo-{repo_id}"}

        def info(repo: Repo, revision: str, request: Request):
            found = repo.snapshot(revision)
            if found is None:
                return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            sha, files = found
            siblings = [{"rfilename": path} for path in sorted(files)]
            if request.query_params.get("blobs", "").lower() in ("1", "true"):   # files_metadata=True
                siblings = [{**sibling, "size": len(stored.content), "blobId": stored.git_oid,
                             **({"lfs": {"sha256": stored.sha256, "size": len(stored.content), "pointerSize": 134}}
                                if stored.lfs else {})}
                            for sibling, stored in zip(siblings, (files[path] for path in sorted(files)))]
            described = {"_id": f"repo-{repo.repo_id}", "id": repo.repo_id, "author": repo.owner, "sha": sha,
                         "private": repo.private, "disabled": False, "gated": "manual" if repo.gated else False,
                         "downloads": 0, "likes": 0,
                         "tags": [], "lastModified": "2026-11-01T00:00:00.000Z",
                         "createdAt": "2026-11-01T00:00:00.000Z",
                         "siblings": siblings}
            if repo.repo_type == "spaces":
                return {**described, "sdk": repo.sdk, "runtime": runtime(repo)}
            return {**described, "modelId": repo.repo_id}

        def runtime(space: Repo) -> dict:
            return {"stage": "BUILDING", "hardware": {"current": None, "requested": space.hardware}}

        @app.get("/api/{repo_type}/{namespace}/{name}")
        async def repo_info(repo_type: str, namespace: str, name: str, request: Request):
            repo, failure = hub._readable(request, f"{namespace}/{name}", repo_type)
            return failure or info(repo, "main", request)

        @app.get("/api/{repo_type}/{namespace}/{name}/revision/{revision}")
        async def repo_info_at(repo_type: str, namespace: str, name: str, revision: str, request: Request):
            repo, failure = hub._readable(request, f"{namespace}/{name}", repo_type)
            return failure or info(repo, unquote(revision), request)

        @app.post("/api/spaces/{namespace}/{name}/hardware")
        async def space_hardware(namespace: str, name: str, request: Request):
            _, space, failure = hub._writable(request, f"{namespace}/{name}", "spaces")
            if failure:
                return failure
            flavor = json.loads(await request.body()).get("flavor")
            if hub._needs_paid_plan(space.owner, flavor):
                return hub._payment_required(flavor)
            space.hardware = flavor
            return runtime(space)

        @app.get("/api/{repo_type}/{namespace}/{name}/tree/{revision}")
        @app.get("/api/{repo_type}/{namespace}/{name}/tree/{revision}/{path:path}")
        async def tree(repo_type: str, namespace: str, name: str, revision: str, request: Request, path: str = ""):
            repo, failure = hub._readable(request, f"{namespace}/{name}", repo_type)
            if failure:
                return failure
            found = repo.snapshot(unquote(revision))
            if found is None:
                return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
            prefix = unquote(path).strip("/")
            entries, folders = [], set()
            for file_path, stored in sorted(found[1].items()):
                if prefix and not file_path.startswith(prefix + "/"):
                    continue
                relative = file_path[len(prefix) + 1:] if prefix else file_path
                parts = relative.split("/")
                if len(parts) > 1:
                    for depth in range(1, len(parts) if recursive else 2):
                        folders.add("/".join(([prefix] if prefix else []) + parts[:depth]))
                    if not recursive:
                        continue
                entry = {"type": "file", "path": file_path, "size": len(stored.content), "oid": stored.git_oid}
                if stored.lfs:
                    entry["lfs"] = {"oid": stored.sha256, "size": len(stored.content), "pointerSize": 134}
                entries.append(entry)
            entries += [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
                        for folder in sorted(folders)]
            return entries

        @app.post("/api/{repo_type}/{namespace}/{name}/preupload/{revision}")
        async def preupload(repo_type: str, namespace: str, name: str, revision: str, request: Request):
            _, repo, failure = hub._writable(request, f"{namespace}/{name}", repo_type)
            if failure:
                return failure
            payload = json.loads(await request.body())
            files = []
            for item in payload.get("files", []):
                sample = base64.b64decode(item.get("sample", ""))
                files.append({"path": item["path"], "shouldIgnore": False, "oid": None,
                              "uploadMode": "lfs" if _is_lfs(item["path"], sample, item.get("size", 0)) else "regular"})
            return {"files": files, "commitOid": repo.head}

        # Git routes name a model as /{ns}/{name} and a Space as /spaces/{ns}/{name}.
        @app.post("/{namespace}/{name}.git/info/lfs/objects/batch")
        @app.post("/{repo_type}/{namespace}/{name}.git/info/lfs/objects/batch")
        async def lfs_batch(namespace: str, name: str, request: Request, repo_type: str = "models"):
            _, repo, failure = hub._writable(request, f"{namespace}/{name}", repo_type)
            if failure:
                return failure
            payload = json.loads(await request.body())
            if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
                return _error(400, "the fake hub only takes LFS uploads with the 'basic' transfer")
            base = str(request.base_url).rstrip("/")
            objects = []
            for item in payload.get("objects", []):
                oid, size = item["oid"], int(item["size"])
                if oid in hub.lfs_objects:
                    objects.append({"oid": oid, "size": size})       # already stored: no actions, nothing to upload
                    continue
                upload_id = hub._new_sha(oid)
                hub._uploads[upload_id] = (oid, size)
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": f"{base}/__lfs/upload/{upload_id}", "header": {}},
                    "verify": {"href": f"{base}/__lfs/verify/{repo_type}/{repo.repo_id}", "header": {}}}})
            return JSONResponse({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                                media_type="application/vnd.git-lfs+json")

        @app.put("/__lfs/upload/{upload_id}")
        async def lfs_upload(upload_id: str, request: Request):
            expected = hub._uploads.pop(upload_id, None)
            if expected is None:
                return _error(403, "unknown or used upload URL")
            content = await request.body()
            oid, size = expected
            if hashlib.sha256(content).hexdigest() != oid or len(content) != size:
                return _error(400, "uploaded content does not match its oid/size")
            hub.lfs_objects[oid] = content
            return Response(status_code=200)

        @app.post("/__lfs/verify/{repo_type}/{namespace}/{name}")
        async def lfs_verify(repo_type: str, namespace: str, name: str, request: Request):
            _, _, failure = hub._writable(request, f"{namespace}/{name}", repo_type)
            if failure:
                return failure
            payload = json.loads(await request.body())
            if payload.get("oid") not in hub.lfs_objects:
                return _error(404, "object not uploaded")
            return {"success": True}

        @app.post("/api/{repo_type}/{namespace}/{name}/commit/{revision}")
        async def commit(repo_type: str, namespace: str, name: str, revision: str, request: Request):
            _, repo, failure = hub._writable(request, f"{namespace}/{name}", repo_type)
            if failure:
                return failure
            if unquote(revision) != "main":
                return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header" or not lines[0]["value"].get("summary"):
                return _error(400, "a commit starts with a header line holding a summary")
            with hub._lock:
                files = dict(repo.files)
                for line in lines[1:]:
                    key, value = line["key"], line["value"]
                    if key == "file":
                        if value.get("encoding") != "base64":
                            return _error(400, "file content must be base64")
                        content = base64.b64decode(value["content"])
                        files[value["path"]] = StoredFile(content, False)
                    elif key == "lfsFile":
                        content = hub.lfs_objects.get(value["oid"])
                        if content is None:
                            return _error(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                        files[value["path"]] = StoredFile(content, True)
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key == "deletedFolder":
                        folder = value["path"].rstrip("/") + "/"
                        files = {path: f for path, f in files.items() if not path.startswith(folder)}
                    else:
                        return _error(400, f"unknown commit line {key!r}")
                sha = hub._new_sha(repo.repo_id)
                repo.commits.append((sha, files))
            base = str(request.base_url).rstrip("/")
            return {"success": True, "commitOid": sha, "commitUrl": f"{base}/{repo.web_path}/commit/{sha}",
                    "commitMessage": lines[0]["value"]["summary"], "pullRequestUrl": None}

        @app.get("/api/{repo_type}/{namespace}/{name}/xet-write-token/{revision}")
        @app.get("/api/{repo_type}/{namespace}/{name}/xet-read-token/{revision}")
        async def xet_token(repo_type: str, namespace: str, name: str, revision: str):
            return _error(501, "the fake hub has no Xet storage: run the client with HF_HUB_DISABLE_XET=1")

        @app.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
        @app.api_route("/{repo_type}/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
        async def resolve(namespace: str, name: str, revision: str, path: str, request: Request,
                          repo_type: str = "models"):
            repo, failure = hub._readable(request, f"{namespace}/{name}", repo_type)
            if failure:
                return failure
            if repo.gated:
                refused = hub._gated(request, repo)
                if refused:
                    return refused
            found = repo.snapshot(unquote(revision))
            if found is None:
                return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            sha, files = found
            stored = files.get(unquote(path))
            if stored is None:
                return _error(404, "Entry not found", code="EntryNotFound", commit=sha)
            headers = {"X-Repo-Commit": sha, "ETag": f'"{stored.git_oid}"', "Accept-Ranges": "bytes",
                       "Content-Length": str(len(stored.content))}
            if stored.lfs:
                headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(len(stored.content))})
            if request.method == "HEAD":
                return Response(status_code=200, headers=headers)
            return Response(stored.content, status_code=200, headers=headers, media_type="application/octet-stream")

        @app.api_route("/{anything:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
        async def not_implemented(anything: str, request: Request):
            return _error(404, f"fake hub: no route for {request.method} /{anything}")

        return app


def _stored(files: dict[str, bytes] | None) -> dict[str, StoredFile]:
    return {path: StoredFile(content, _is_lfs(path, content)) for path, content in (files or {}).items()}


def _is_lfs(path: str, sample: bytes, size: int | None = None) -> bool:
    """The Hub's rule of thumb: binary content (a NUL byte, or not UTF-8) or a big file goes to LFS."""
    if size is not None and size > LFS_THRESHOLD_BYTES:
        return True
    if b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as error:
        # The sample is the file's first 512 bytes: a multi-byte character cut at its very end is still text.
        return error.start < len(sample) - 3
    return False


class _RecordingMiddleware:
    """ASGI middleware: read the whole body first (so it is recorded even when a handler refuses early), then replay it."""

    def __init__(self, app, hub: FakeHub):
        self.app, self.hub = app, hub

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        raw_path = scope.get("raw_path")
        if raw_path and b"%2f" in raw_path.lower():
            # A revision such as refs/convert/parquet arrives as refs%2Fconvert%2Fparquet: keep it one path segment
            # (the handlers unquote it) instead of letting the decoded '/' split it.
            kept = raw_path.decode("latin-1").replace("%2F", "%252F").replace("%2f", "%252F")
            scope = dict(scope, path=unquote(kept))
        record = RecordedRequest(scope["method"], scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
                                 scope.get("query_string", b"").decode("latin-1"), headers, body)
        self.hub.requests.append(record)
        injected = self.hub._injected(record.method, scope["path"], headers)
        if injected is not None:
            record.status = injected[0]
            await send({"type": "http.response.start", "status": injected[0],
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(injected[1])).encode())]})
            await send({"type": "http.response.body", "body": injected[1]})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def capture(message):
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        await self.app(scope, replay, capture)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Hub on 127.0.0.1 (set HF_ENDPOINT and HF_HUB_DISABLE_XET=1)")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN=USER")
    args = parser.parse_args()
    hub = FakeHub(dict(pair.split("=", 1) for pair in args.token))
    print(f"fake hub on http://127.0.0.1:{args.port}  (HF_ENDPOINT=http://127.0.0.1:{args.port} HF_HUB_DISABLE_XET=1)")
    uvicorn.run(_RecordingMiddleware(hub.app, hub), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
