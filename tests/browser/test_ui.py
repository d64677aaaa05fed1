"""Click through every page of `python app.py` in Chromium, train a short digits run, and save screenshots.

The screenshots go to a temporary folder; to refresh the README's pictures in docs/screenshots/, run
    SSLCORE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/browser/test_ui.py
The tests share one browser page and run in order: Train's run is what Explore and Classify look at. A missing
Chromium fails them in CI and skips them loudly elsewhere (tests/conftest.py).
"""
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import CHROMIUM, ROOT, free_port, wait_until  # noqa: F401 (CHROMIUM: for the other browser tests)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser
_SCREENSHOTS: list[Path] = []


def screenshots_folder() -> Path:
    """$SSLCORE_SCREENSHOTS (docs/screenshots refreshes the README's), else a temporary folder of this session."""
    if not _SCREENSHOTS:
        chosen = os.environ.get("SSLCORE_SCREENSHOTS")
        _SCREENSHOTS.append(Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="sslcore-screenshots-")))
    _SCREENSHOTS[0].mkdir(parents=True, exist_ok=True)
    return _SCREENSHOTS[0]


@contextlib.contextmanager
def serve_app(runs: Path, **extra_env):
    """``python app.py`` as a user starts it, on a free port, with its runs in ``runs``; yields its URL."""
    port = free_port()
    # Without KERAS_BACKEND (this test process set it on importing sslcore) the app picks its backend itself.
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environment.update(SSLCORE_RUNS=str(runs), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                       GRADIO_ANALYTICS_ENABLED="False", **extra_env)
    log = open(runs / "app.log", "wb")
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"app.py exited: {(runs / 'app.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        _end_training_processes(runs)
        log.close()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with serve_app(tmp_path_factory.mktemp("browser-runs")) as url:
        yield url


def _end_training_processes(runs: Path) -> None:
    """Training runs in processes of their own session: end any still going so the test leaves nothing behind."""
    import json

    for status in runs.glob("*/status.json"):
        state = json.loads(status.read_text())
        if state.get("state") == "running" and state.get("pid"):
            try:
                os.kill(state["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def page(app_url):
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(app_url)
        tab.wait_for_selector("#augment-status .ssl-ok", timeout=60_000)
        yield tab
        browser.close()
        assert not errors, f"JavaScript errors in the page: {errors}"


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def screenshot(page, name, hover=None):
    """Save <name>.png (see screenshots_folder) without toasts in the way, with the mouse on ``hover`` (x, y) if given."""
    for close in page.locator(".toast-close").all():
        close.click()
    page.mouse.move(*(hover or (0, 0)))
    page.wait_for_timeout(400)
    page.screenshot(path=str(screenshots_folder() / f"{name}.png"), full_page=True)


def plot_traces(page, selector) -> list[dict]:
    """Name and point count of each trace plotly has drawn in the element."""
    return page.evaluate("""selector => {
        const plot = document.querySelector(selector + ' .js-plotly-plot');
        return plot && plot.data ? plot.data.map(t => ({name: t.name || '', points: (t.x || []).length})) : [];
    }""", selector)


def test_augment_page_shows_originals_and_views(page):
    for name in ("custom", "weak", "strong", "simclr"):
        assert page.locator(f"#augment-{name} img").count() == 1, name
    before = page.locator("#augment-custom img").get_attribute("src")
    page.locator("#augment-redraw").click()
    wait_until(lambda: page.locator("#augment-custom img").get_attribute("src") != before, timeout=30)
    assert "seed 1" in page.locator("#augment-status").inner_text()
    # Moving a setting's slider redraws the slider-driven grid (same seed, new setting: a different picture).
    before = page.locator("#augment-custom img").get_attribute("src")
    page.get_by_role("spinbutton", name="crop scale min").fill("0.9")
    page.get_by_role("spinbutton", name="crop scale min").press("Enter")
    wait_until(lambda: page.locator("#augment-custom img").get_attribute("src") != before, timeout=30,
               what="the preview redrawn after the slider moved")
    screenshot(page, "augment")


def test_train_page_runs_a_short_job_with_live_charts(page):
    open_tab(page, "Train")
    page.get_by_label("Epochs").fill("0")
    page.locator("#train-start").click()
    wait_until(lambda: "epochs must be at least 1" in page.locator("#train-status").inner_text(), timeout=20)
    page.get_by_label("Epochs").fill("3")
    page.get_by_label("Batch size").fill("128")
    page.locator("#train-start").click()
    wait_until(lambda: any(trace["points"] > 0 for trace in plot_traces(page, "#train-chart")), timeout=120)
    assert "running" in page.locator("#train-status").inner_text() or "finished" in page.locator("#train-status").inner_text()
    wait_until(lambda: "finished" in page.locator("#train-status").inner_text(), timeout=150)
    page.wait_for_timeout(1500)   # the last tick redraws the final epoch
    assert any("per epoch" in trace["name"] for trace in plot_traces(page, "#train-chart"))
    assert "finished" in page.locator("#train-runs").inner_text()
    screenshot(page, "train")

    # A reload re-attaches to the run this browser follows, with its whole history.
    run_id = page.locator("#train-status").inner_text().split(":")[0].strip()
    page.reload()
    page.wait_for_selector("#augment-status .ssl-ok", timeout=60_000)
    open_tab(page, "Train")
    wait_until(lambda: run_id in page.locator("#train-status").inner_text(), timeout=30)
    wait_until(lambda: sum(trace["points"] for trace in plot_traces(page, "#train-chart")) > 30, timeout=30)


def test_explore_page_shows_tsne_neighbours_and_confusion(page):
    open_tab(page, "Explore")
    page.locator("#explore-show").click()
    wait_until(lambda: len(plot_traces(page, "#tsne-plot")) == 10, timeout=90)
    wait_until(lambda: "kNN accuracy" in page.locator("#explore-knn").inner_text(), timeout=60)
    point = page.evaluate("""() => {
        const plot = document.querySelector('#tsne-plot .js-plotly-plot');
        const x = plot._fullLayout.xaxis, y = plot._fullLayout.yaxis, trace = plot._fullData[3];
        const box = plot.getBoundingClientRect();
        return [box.left + x._offset + x.l2p(trace.x[0]), box.top + y._offset + y.l2p(trace.y[0]), trace.customdata[0][0]];
    }""")
    page.mouse.move(point[0], point[1])
    wait_until(lambda: page.locator("#ssl-tsne-tip").is_visible(), timeout=10)
    assert page.locator("#ssl-tsne-tip img").get_attribute("src").startswith("data:image/png;base64,")
    page.mouse.click(point[0], point[1])
    wait_until(lambda: page.locator("#neighbor-gallery img").count() == 8, timeout=60)
    assert page.locator("#neighbor-index input").input_value() == str(point[2])
    screenshot(page, "explore", hover=point[:2])


def digit_files(folder: Path) -> list[str]:
    """Handwritten digits saved as a large colour PNG, a grayscale PNG and a transparent RGBA PNG."""
    from sklearn.datasets import load_digits

    digits = (load_digits().images * (255 / 16)).astype(np.uint8)
    gray = Image.fromarray(digits[0]).resize((96, 96), Image.Resampling.BICUBIC)
    opaque_centre = np.zeros((8, 8), np.uint8)
    opaque_centre[1:-1, 1:-1] = 255
    seven = Image.fromarray(digits[7])
    pictures = {"zero-large-colour.png": gray.convert("RGB").resize((300, 300)), "three-gray.png": Image.fromarray(digits[3]),
                "seven-rgba.png": Image.merge("RGBA", [seven, seven, seven, Image.fromarray(opaque_centre)])}
    for name, picture in pictures.items():
        picture.save(folder / name)
    return [str(folder / name) for name in pictures]


def test_classify_page_ranks_images_and_names_a_bad_file(page, tmp_path):
    files = digit_files(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    files.append(str(tmp_path / "notes.txt"))
    open_tab(page, "Classify")
    page.locator("#classify-files input[type=file]").set_input_files(files)
    page.wait_for_timeout(1000)
    page.locator("#classify-button").click()
    wait_until(lambda: page.locator("#classify-gallery img").count() == 3, timeout=60)
    status = page.locator("#classify-status").inner_text()
    assert "classified 3 of 4" in status and "notes.txt" in status and "not an image" in status
    screenshot(page, "classify")


def gallery_layout(page, selector) -> dict:
    """Where a gallery's first thumbnail sits in the gallery's scrolling box, and whether an item is open enlarged."""
    return page.evaluate("""selector => {
        const gallery = document.querySelector(selector);
        const wrap = gallery.querySelector('.grid-wrap'), image = gallery.querySelector('.grid-wrap img');
        const box = wrap ? wrap.getBoundingClientRect() : null, cell = image ? image.getBoundingClientRect() : null;
        return {preview: !!gallery.querySelector('.preview'), box_top: box && box.top, box_bottom: box && box.bottom,
                box_width: box && box.width, top: cell && cell.top, bottom: cell && cell.bottom, width: cell && cell.width,
                captions: [...gallery.querySelectorAll('.caption-label')].map(c => c.innerText)};
    }""", selector)


def assert_thumbnail_grid(page, selector, columns):
    """The items are a grid of thumbnails with captions: however few, the first is one cell of ``columns`` per row,
    wholly inside the gallery's box (a single item used to fill the width and be cut off at the bottom)."""
    layout = gallery_layout(page, selector)
    assert not layout["preview"], f"{selector} opened an item enlarged: {layout}"
    assert layout["width"] and layout["width"] <= layout["box_width"] / columns + 1, layout
    assert layout["box_top"] <= layout["top"] and layout["bottom"] <= layout["box_bottom"] + 1, layout
    assert layout["captions"] and all(layout["captions"]), layout
    return layout


def test_audit_page_finds_an_injected_copy(page, tmp_path):
    """A user's folder of digits with one mirrored copy: the audit shows pairs, outliers and the reports; a few
    examples per class then label the folder."""
    from sklearn.datasets import load_digits

    folder = tmp_path / "photos"
    folder.mkdir()
    dataset = load_digits()
    digits = (dataset.images * (255 / 16)).astype(np.uint8)
    for index, digit in enumerate(digits[:60]):
        Image.fromarray(digit).resize((32, 32), Image.Resampling.BICUBIC).save(folder / f"digit{index:02d}.png")
    Image.open(folder / "digit05.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "digit05-mirrored.png")
    open_tab(page, "Audit")
    page.locator("#audit-folder input").fill(str(folder))
    page.locator("#audit-folder input").press("Enter")   # a typed path is the dropdown's custom value
    page.locator("#audit-button").click()
    wait_until(lambda: "audit" in page.locator("#audit-status").inner_text().lower()
               or page.locator("#audit-pairs img").count() > 0, timeout=120)
    status = page.locator("#audit-status").inner_text()
    assert "61" in status, status  # every image of the folder was audited
    assert page.locator("#audit-pairs img").count() >= 1, "the mirrored copy and its original, side by side in one picture"
    page.wait_for_timeout(500)
    pairs = assert_thumbnail_grid(page, "#audit-pairs", columns=4)
    assert all(" ↔ " in caption and caption.count(".png") == 2 for caption in pairs["captions"]), pairs["captions"]
    screenshot(page, "audit")

    open_tab(page, "Outliers")
    wait_until(lambda: page.locator("#audit-outliers img").count() == 48, timeout=10)  # the 48 most outlying of 61
    outliers = assert_thumbnail_grid(page, "#audit-outliers", columns=6)
    first = outliers["captions"][0]
    assert first.startswith("#1 · ") and first.endswith(".png"), outliers["captions"]
    page.screenshot(path=str(tmp_path / "audit-outliers.png"), full_page=True)

    examples = tmp_path / "examples"
    for index in range(60, 100):   # four examples of each digit, none of them in the audited folder
        (examples / str(dataset.target[index])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits[index]).resize((32, 32), Image.Resampling.BICUBIC).save(
            examples / str(dataset.target[index]) / f"example{index}.png")
    open_tab(page, "Few labels")
    page.locator("#audit-examples input").fill(str(examples))
    page.locator("#audit-examples input").press("Enter")
    page.locator("#audit-label").click()
    wait_until(lambda: "labelled" in page.locator("#audit-status").inner_text(), timeout=120)
    assert "labelled 61 images from 40 examples" in page.locator("#audit-status").inner_text()
    wait_until(lambda: page.locator("#audit-labelled img").count() == 60, timeout=10)   # the gallery shows 60
    page.wait_for_timeout(500)
    labelled = assert_thumbnail_grid(page, "#audit-labelled", columns=6)
    assert all(caption.endswith(".png") and "%" in caption for caption in labelled["captions"]), labelled["captions"]
    page.screenshot(path=str(tmp_path / "audit-labels.png"), full_page=True)


def test_hub_page_opens_without_pushing(page):
    """The Hub page needs the internet to push; here it is only opened, offline, and pictured."""
    assert page.get_by_role("tab", name="Hub").count() == 1, "the app has a Hub page"
    open_tab(page, "Hub")
    wait_until(lambda: page.locator("#hub-push").is_visible(), timeout=10)
    assert page.locator("#hub-token input").get_attribute("type") == "password", "the token is never shown"
    assert page.locator("#hub-run").is_visible() and page.locator("#hub-repo textarea").is_visible()
    assert page.locator("#hub-link").inner_text().strip() == "", "opening the page pushed nothing"
    screenshot(page, "hub")
