"""The Train page as on a ZeroGPU Space, in Chromium: a digits run trains as a series of emulated GPU calls, its
charts carry on across calls, a spent quota pauses it with a message, and Resume finishes it.

The app runs through tests/browser/zerogpu_app.py, which stands tests/zerogpu_emulator.py in for `spaces`.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.test_ui import CHROMIUM_ARGS, open_tab, screenshot
from tests.helpers import CHROMIUM, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def zerogpu_app(tmp_path_factory):
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("zerogpu-app")
    state, port = folder / "zerogpu.json", free_port()
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}   # the app must pick torch itself
    environment.update(SSLCORE_RUNS=str(folder / "runs"), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                       GRADIO_ANALYTICS_ENABLED="False", SSLCORE_EMULATED_ZEROGPU=str(state), SSLCORE_CHUNK_SECONDS="6")
    log = open(folder / "app.log", "wb")
    server = subprocess.Popen([sys.executable, "tests/browser/zerogpu_app.py"], cwd=ROOT, env=environment, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                raise RuntimeError(f"the emulated ZeroGPU app did not start: {(folder / 'app.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, state
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def step_axis(page) -> list[float]:
    """The steps the per-step loss curve has points at."""
    return page.evaluate("""() => {
        const plot = document.querySelector('#train-chart .js-plotly-plot');
        if (!plot || !plot.data) return [];
        const traces = plot.data.filter(t => (t.x || []).length && !(t.name || '').includes('epoch'));
        return traces.length ? Array.from(traces[0].x) : [];
    }""")


def calls_made(page) -> int:
    text = page.locator("#train-progress").inner_text()
    if "GPU time spent" not in text:
        return 0
    return int(text.split(" in ", 1)[1].split(" call", 1)[0])


def set_refusal(state_path: Path, refuse):
    state = json.loads(state_path.read_text())
    state["refuse"] = refuse
    state_path.write_text(json.dumps(state))


def test_a_run_trains_in_gpu_calls_pauses_on_quota_and_resumes(zerogpu_app):
    url, state_path = zerogpu_app
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#ssl-header", timeout=60_000)
        assert "torch" in page.locator("#ssl-header").inner_text() and "ZeroGPU" in page.locator("#ssl-header").inner_text()
        open_tab(page, "Train")
        note = page.locator("#train-zerogpu-note").inner_text()
        assert "quota" in note and "Resume" in note and "closing the tab pauses" in note   # said before Start

        page.get_by_label("Epochs").fill("10")
        page.get_by_label("Batch size").fill("64")
        page.locator("#train-start").click()

        # The charts carry on across calls: after each call the curve is longer and starts where it stood.
        seen = []
        for calls in (1, 2, 3):
            wait_until(lambda: calls_made(page) >= calls, timeout=120)
            page.wait_for_timeout(1500)
            seen.append(step_axis(page))
        assert all(len(later) > len(earlier) and later[:len(earlier)] == earlier for earlier, later in zip(seen, seen[1:]))
        steps = seen[-1]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        strides = {round(b - a) for a, b in zip(steps, steps[1:])}
        assert max(strides) <= 5, f"a gap in the steps drawn: {strides}"   # logged every 5 steps (the form's default)
        assert "one more epoch costs about" in page.locator("#train-progress").inner_text()

        set_refusal(state_path, "quota")   # the visitor's quota runs out
        wait_until(lambda: "quota is used up" in page.locator("#train-status").inner_text(), timeout=120)
        message = page.locator("#train-status").inner_text()
        assert "quota" in message and "Nothing was lost" in message and "Try again in" in message
        assert page.locator("#train-resume").is_enabled()
        screenshot(page, "train-zerogpu-paused")

        set_refusal(state_path, None)
        page.locator("#train-resume").click()
        wait_until(lambda: "finished" in page.locator("#train-status").inner_text(), timeout=300)
        page.wait_for_timeout(1500)
        final = step_axis(page)
        assert final[:len(steps)] == steps and len(final) > len(steps)
        screenshot(page, "train-zerogpu")
        browser.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def test_closing_the_tab_pauses_the_run_and_reopening_offers_resume(zerogpu_app):
    url, state_path = zerogpu_app
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("#ssl-header", timeout=60_000)
        open_tab(page, "Train")
        page.get_by_label("Epochs").fill("30")
        page.get_by_label("Batch size").fill("64")
        before = {path.name for path in _runs_folders(state_path)}
        page.locator("#train-start").click()
        # The run is the new folder (the page may still show the first test's finished run, with its own GPU calls).
        wait_until(lambda: {path.name for path in _runs_folders(state_path)} - before, timeout=60)
        run_id = ({path.name for path in _runs_folders(state_path)} - before).pop()
        ledger = state_path.parent / "runs" / run_id / "gpu_chunks.jsonl"
        wait_until(lambda: ledger.exists() and ledger.read_text().strip(), timeout=120)
        wait_until(lambda: run_id in page.locator("#train-status").inner_text(), timeout=30)
        page.close()   # the visitor leaves: no page asks for the next GPU call

        # Gradio notices the closed page when it next sends an update: the call under way, and at most one
        # more, finish; then no page asks for another and the run rests, resumable.
        wait_until(lambda: _state(ledger.parent) == "paused", timeout=90)
        calls = len(ledger.read_text().splitlines())
        time.sleep(20)   # longer than a call and its start-up
        assert len(ledger.read_text().splitlines()) == calls

        page = context.new_page()   # the same browser comes back: the page re-attaches to its run
        page.goto(url)
        page.wait_for_selector("#ssl-header", timeout=60_000)
        open_tab(page, "Train")
        wait_until(lambda: run_id in page.locator("#train-status").inner_text(), timeout=30)
        wait_until(lambda: page.locator("#train-resume").is_enabled(), timeout=30)
        page.locator("#train-resume").click()   # and it trains on from its checkpoint
        wait_until(lambda: len(ledger.read_text().splitlines()) > calls, timeout=120)
        page.locator("#train-stop").click()
        wait_until(lambda: _state(ledger.parent) == "stopped", timeout=120)
        browser.close()


def _runs_folders(state_path: Path) -> list[Path]:
    root = state_path.parent / "runs"
    return sorted(root.iterdir()) if root.exists() else []


def _state(run_folder: Path) -> str:
    return json.loads((run_folder / "status.json").read_text())["state"]
