"""Shared test set-up: make `import sslcore` work however pytest is started (plain `pytest`
puts only tests/ on sys.path, `python -m pytest` also adds the working directory), shared fixtures, and the
rule for browser tests: a missing Chromium fails them in CI (CI=true) and skips them loudly elsewhere."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests import helpers  # noqa: E402

UPLOAD_LIMITS = ("SSLCORE_MAX_UPLOAD_FILES", "SSLCORE_MAX_UPLOAD_BYTES", "SSLCORE_MAX_UPLOAD_FILE_BYTES")


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Decoded-folder and archive caches of the whole session (module and session fixtures included) go to a
    temporary folder, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSLCORE_CACHE", str(tmp_path_factory.mktemp("sslcore-cache")))
        for variable in UPLOAD_LIMITS:
            patch.delenv(variable, raising=False)
        yield


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty cache of this test's own (for tests that count what gets decoded or cached), default upload limits."""
    monkeypatch.setenv("SSLCORE_CACHE", str(tmp_path / "sslcore-cache"))
    for variable in UPLOAD_LIMITS:
        monkeypatch.delenv(variable, raising=False)


# ---------------------------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="session")
def tiny_trainer(tmp_path_factory):
    """One finished 1-epoch SimCLR run on digits (32 px, convnet of width 16, SimCLR's settings written out), shared
    by every test that only reads a finished run; the trainer that made it (its model still in memory)."""
    from sslcore.trainer import Trainer

    trainer = Trainer(helpers.tiny_config(**helpers.TINY_RUN), tmp_path_factory.mktemp("tiny-run") / "digits-simclr")
    trainer.fit()
    return trainer


@pytest.fixture(scope="session")
def tiny_run(tiny_trainer):
    """The shared finished run's folder. Tests must not write into it: copy it first (shutil.copytree)."""
    return tiny_trainer.run.path


@pytest.fixture(scope="session")
def audit_corpus(tmp_path_factory):
    """The audit corpus (tests/corpus.py) and a 3-epoch run trained on it: (folder, run folder, what was injected)."""
    from tests.corpus import build_corpus_and_run

    return build_corpus_and_run(tmp_path_factory.mktemp("audit-corpus"))


# ---------------------------------------------------------------------------------------------- browser tests

_BROWSER_SKIPPED: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") is None:
        return
    missing = helpers.browser_missing()
    if missing is None:
        return
    if _in_ci():
        pytest.fail(f"browser test cannot run: {missing} (CI=true: a missing browser is a failure; "
                    "scripts/test.sh installs Debian's chromium when run as root)", pytrace=False)
    _BROWSER_SKIPPED.append(item.nodeid)
    pytest.skip(f"{missing}: browser test skipped (a failure when CI=true)")


def pytest_terminal_summary(terminalreporter):
    if _BROWSER_SKIPPED:
        terminalreporter.write_sep(
            "!", f"{len(_BROWSER_SKIPPED)} BROWSER TESTS DID NOT RUN: {helpers.browser_missing()} "
                 "(install chromium and playwright; with CI=true this fails the run)", red=True, bold=True)
