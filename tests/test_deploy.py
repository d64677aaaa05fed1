"""``python -m sslcore deploy``: this app as the user's own Space, against the fake Hub (tests/fake_hub.py).

The real huggingface_hub client does every request; only the server is fake. Like the Hub since 2026, the fake answers
402 Payment Required for a Gradio Space on any hardware but ZeroGPU unless the owner pays (bob does, alice does not).
The token settings, the tokens and the CLI runner are test_hub's.
"""
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sslcore import cli
from sslcore import deploy as space_deploy
from sslcore.hub import HubError
from tests.fake_hub import FakeHub
from tests.helpers import free_port
# isolated_hub_settings is autouse: imported, it keeps this machine's token and cache out of these tests too.
from tests.test_hub import ALICE, BOB, WRONG, assert_token_absent, hub_cli, isolated_hub_settings  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SPACE_REQUIREMENTS = (ROOT / "space" / "requirements.txt").read_text()


@pytest.fixture(scope="module")
def space_hub():
    server = FakeHub({ALICE: "alice", BOB: "bob"}, readonly_orgs={"alice": ["readers"]}, paid_users={"bob"},
                     echo_token_in_errors=True)
    server.start()
    yield server
    server.stop()


def deploy_cli(capsys, hub, *args):
    """``python -m sslcore deploy`` in this process: (exit status, stdout, stderr)."""
    status = cli.main(["deploy", *args, "--endpoint", hub.url])
    out, err = capsys.readouterr()
    return status, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def front_matter(text: str) -> dict:
    return yaml.safe_load(text.split("---", 2)[1])


def pins(text: str) -> dict[str, str]:
    """{package: requirement} of a requirements file, comments left out."""
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return {re.split(r"[=<>\[ ]", line, 1)[0].lower().replace("_", "-"): line for line in lines if line}


# ---------------------------------------------------------------------------------------------- what gets uploaded


def test_the_file_list_is_the_app_and_its_packages_without_caches_tests_or_runs(tmp_path):
    for name in ("app.py", "README.md", "space/requirements.txt", "sslcore/__init__.py", "sslcore/methods/simclr.py",
                 "sslcore/data/labels.json", "pages/train.py", "sslcore/__pycache__/hub.cpython-311.pyc",
                 "pages/.train.py.swp", "tests/test_x.py", "runs/r/config.json", "docs/screenshots/a.png",
                 ".venv/lib/x.py", "requirements.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    files = space_deploy.app_files(tmp_path)
    assert list(files) == ["app.py", "README.md", "pages/train.py", "sslcore/__init__.py", "sslcore/data/labels.json",
                           "sslcore/methods/simclr.py", "requirements.txt"]
    assert files["requirements.txt"] == tmp_path / "space" / "requirements.txt"   # the Space's, not the repo's


def expected_upload() -> list[str]:
    """What a Space needs, worked out here from the checkout: app.py, the README, every file of the two packages
    but caches and editor files, and the Space's requirements."""
    listed = [path.relative_to(ROOT).as_posix() for package in ("pages", "sslcore") for path in (ROOT / package).rglob("*")
              if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
              and not path.name.endswith(".pyc")]
    return ["app.py", "README.md", *sorted(listed), "requirements.txt"]


def test_the_checkout_uploads_every_tracked_file_of_the_app():
    files = space_deploy.app_files()
    assert list(files) == expected_upload()
    try:
        tracked = subprocess.run(["git", "ls-files", "sslcore", "pages"], cwd=ROOT, capture_output=True, text=True)
    except FileNotFoundError:
        tracked = None   # no git here: the walk above has already checked every file
    if tracked is not None and tracked.returncode == 0:
        assert set(tracked.stdout.split()) <= set(files), "a tracked file of the app would not be uploaded"
    assert {"app.py", "README.md", "requirements.txt", "sslcore/deploy.py", "pages/train.py"} <= set(files)
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc") or name.startswith("tests/")]


def test_a_folder_that_is_not_a_checkout_is_refused(tmp_path):
    with pytest.raises(HubError, match="app.py") as caught:
        space_deploy.app_files(tmp_path)
    assert caught.value.kind == "no_app"


def test_the_space_requirements_follow_the_repo_pins_without_tensorflow_jax_or_gradio():
    space, repo = pins(SPACE_REQUIREMENTS), pins((ROOT / "requirements.txt").read_text())
    for package in ("keras", "scikit-learn", "plotly", "huggingface-hub", "numpy", "pillow", "tqdm"):
        assert space[package] == repo[package], package
    assert {"torch", "spaces"} <= set(space)
    assert not {"tensorflow", "jax", "jaxlib", "tensorflow-datasets", "gradio"} & set(space)


def test_the_readme_front_matter_configures_a_zero_gpu_gradio_space():
    config = front_matter((ROOT / "README.md").read_text())
    gradio_pin = pins((ROOT / "requirements.txt").read_text())["gradio"]
    assert config["sdk"] == "gradio" and config["app_file"] == "app.py"
    assert str(config["python_version"]) == "3.12"                     # ZeroGPU runs Python 3.10 or 3.12
    assert gradio_pin == f"gradio=={config['sdk_version']}"


def test_unknown_hardware_is_refused_before_any_request(space_hub, capsys):
    before = len(space_hub.requests)
    status, _, err = deploy_cli(capsys, space_hub, "--space", "alice/lab", "--hardware", "gpu-please", "--dry-run")
    assert status == 2 and "gpu-please" in err and "zero-a10g" in err
    assert len(space_hub.requests) == before


def test_dry_run_lists_files_and_hardware_without_a_token_or_a_request(space_hub, capsys):
    before = len(space_hub.requests)
    status, out, err = deploy_cli(capsys, space_hub, "--space", "alice/lab", "--dry-run")
    result = last_json(out)
    assert status == 0 and result["dry_run"] and result["hardware"] == "zero-a10g"
    assert result["url"] == f"{space_hub.url}/spaces/alice/lab"
    assert result["files"] == expected_upload()
    assert len(space_hub.requests) == before and "alice/lab" not in space_hub.spaces


# ---------------------------------------------------------------------------------------------- deploying


def test_the_cli_creates_a_zero_gpu_space_with_the_app(space_hub, tmp_path):
    deployed = hub_cli("deploy", "--space", "alice/ssl-lab", "--token", ALICE, endpoint=space_hub.url, home=tmp_path)
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    result = last_json(deployed.stdout)
    assert result["url"] == f"{space_hub.url}/spaces/alice/ssl-lab" and result["created"]
    assert f"deployed to {space_hub.url}/spaces/alice/ssl-lab" in deployed.stderr
    space = space_hub.spaces["alice/ssl-lab"]
    assert (space.sdk, space.hardware, space.private) == ("gradio", "zero-a10g", False)
    files = space.files
    assert files["app.py"].content == (ROOT / "app.py").read_bytes()
    assert files["README.md"].content == (ROOT / "README.md").read_bytes()
    assert front_matter(files["README.md"].content.decode())["sdk"] == "gradio"
    assert files["requirements.txt"].content.decode() == SPACE_REQUIREMENTS
    assert {"sslcore/__init__.py", "sslcore/methods/simclr.py", "pages/train.py"} <= set(files)
    assert not [name for name in files if name.startswith(("tests/", "runs/", "docs/", "space/")) or
                "__pycache__" in name or name.endswith(".pyc")]
    assert_token_absent(ALICE, deployed.stdout, deployed.stderr, space_hub.sent_text(), tmp_path)
    assert not [name for name, stored in files.items() if ALICE.encode() in stored.content]


def test_deploying_again_updates_the_app_and_removes_only_its_stale_files(space_hub, capsys):
    space_hub.add_repo("alice/again", {"app.py": b"print('old')", "sslcore/renamed_away.py": b"", "notes.md": b"mine"},
                       repo_type="spaces", sdk="gradio", hardware="zero-a10g")
    for attempt in range(2):
        status, out, err = deploy_cli(capsys, space_hub, "--space", "again", "--token", ALICE)
        assert status == 0, err
        result = last_json(out)
        assert result["space"] == "alice/again" and not result["created"]
        assert result["removed"] == (["sslcore/renamed_away.py"] if attempt == 0 else [])
    space = space_hub.spaces["alice/again"]
    assert len(space.commits) == 3 and space.files["app.py"].content == (ROOT / "app.py").read_bytes()
    assert "sslcore/renamed_away.py" not in space.files and space.files["notes.md"].content == b"mine"
    assert not [path for _, path, _ in space_hub.routes_called() if path.endswith("/alice/again/hardware")]


def test_a_paid_account_gets_the_gpu_it_asks_for_and_an_existing_space_switches(space_hub, capsys):
    status, out, err = deploy_cli(capsys, space_hub, "--space", "bob/t4-lab", "--hardware", "t4-small", "--token", BOB,
                                  "--private")
    assert status == 0, err
    assert (space_hub.spaces["bob/t4-lab"].hardware, space_hub.spaces["bob/t4-lab"].private) == ("t4-small", True)
    status, out, err = deploy_cli(capsys, space_hub, "--space", "bob/t4-lab", "--hardware", "a10g-small",
                                  "--token", BOB)
    assert status == 0, err
    assert space_hub.spaces["bob/t4-lab"].hardware == "a10g-small" and last_json(out)["private"]
    assert ("POST", "/api/spaces/bob/t4-lab/hardware", 200) in space_hub.routes_called()


# ---------------------------------------------------------------------------------------------- errors


def test_paid_hardware_on_a_free_account_is_a_402_that_names_it_and_suggests_zero_gpu(space_hub, capsys):
    status, out, err = deploy_cli(capsys, space_hub, "--space", "alice/cpu-lab", "--hardware", "cpu-basic",
                                  "--token", ALICE)
    assert status == 2 and out == "" and "Traceback" not in err
    assert "402" in err and "'cpu-basic'" in err and "paid plan" in err
    assert "--hardware zero-a10g" in err and "2 Spaces per free account" in err
    assert "alice/cpu-lab" not in space_hub.spaces and ALICE not in err


def test_a_402_for_zero_gpu_itself_says_the_free_limit_is_reached(space_hub, capsys, monkeypatch):
    monkeypatch.setattr(space_hub, "free_hardware", set())    # as when the account already has its 2 ZeroGPU Spaces
    status, _, err = deploy_cli(capsys, space_hub, "--space", "alice/third", "--token", ALICE)
    assert status == 2 and "'zero-a10g'" in err and "up to 2 ZeroGPU Spaces" in err and "--hardware" not in err


def test_an_existing_space_asked_onto_paid_hardware_is_a_402_too(space_hub, capsys):
    space_hub.add_repo("alice/zero", repo_type="spaces", sdk="gradio", hardware="zero-a10g")
    status, _, err = deploy_cli(capsys, space_hub, "--space", "alice/zero", "--hardware", "t4-small", "--token", ALICE)
    assert status == 2 and "'t4-small'" in err and "--hardware zero-a10g" in err
    assert space_hub.spaces["alice/zero"].hardware == "zero-a10g"
    assert ("POST", "/api/spaces/alice/zero/hardware", 402) in space_hub.routes_called()


def test_a_bad_token_is_a_401_that_says_how_to_get_one_without_showing_it(space_hub, capsys):
    status, out, err = deploy_cli(capsys, space_hub, "--space", "alice/lab", "--token", WRONG)
    assert status == 2 and "401" in err and "settings/tokens" in err and "HF_TOKEN" in err
    assert WRONG not in out + err and "Traceback" not in err


def test_no_token_says_where_to_put_one(space_hub, capsys):
    status, _, err = deploy_cli(capsys, space_hub, "--space", "alice/lab")
    assert status == 2 and "No Hugging Face token" in err and "HF_TOKEN" in err


def test_someone_elses_namespace_is_a_403(space_hub, capsys):
    status, out, err = deploy_cli(capsys, space_hub, "--space", "bob/lab", "--token", ALICE)
    assert status == 2 and "403" in err and "alice/lab" in err and ALICE not in out + err
    status, out, err = deploy_cli(capsys, space_hub, "--space", "readers/lab", "--token", ALICE)  # the Hub's own 403
    assert status == 2 and "403" in err and ALICE not in out + err
    assert "bob/lab" not in space_hub.spaces and "readers/lab" not in space_hub.spaces


def test_an_unreachable_hub_is_a_failure_to_retry_not_a_usage_error():
    endpoint = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    with pytest.raises(HubError, match="Could not reach the Hub") as caught:
        space_deploy.deploy("alice/lab", token=ALICE, endpoint=endpoint, attempts=2, backoff_seconds=0.01)
    assert caught.value.kind not in space_deploy.FIX_FIRST_KINDS and ALICE not in str(caught.value)
