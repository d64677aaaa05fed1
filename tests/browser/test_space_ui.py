"""A public Space in Chromium (``SPACE_ID`` set): a visitor uploads a zip of their photos, trains on it and explores
the run, while a second visitor (another browser profile) sees none of it and is offered no server folder."""
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.browser.test_ui import CHROMIUM_ARGS, open_tab, plot_traces, serve_app
from tests.helpers import CHROMIUM, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def photos_zip(path) -> str:
    """Two classes of blobs at different places: enough to train and explore on, made here."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for label, name in enumerate(("left", "right")):
            for index in range(48):
                picture = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                column = 4 + 20 * label + rng.integers(0, 8)
                picture[10:30, column:column + 12] = rng.integers(150, 255, 3, dtype=np.uint8)
                with archive.open(f"photos/{name}/{index:03d}.png", "w") as entry:
                    Image.fromarray(picture).save(entry, format="PNG")
    return str(path)


@pytest.fixture(scope="module")
def space_url(tmp_path_factory):
    with serve_app(tmp_path_factory.mktemp("space-runs"), SPACE_ID="someone/ssl-lab") as url:
        yield url


def test_a_visitor_uploads_trains_and_explores_while_another_sees_nothing(space_url, tmp_path):
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        alice, bob = (browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2))
        for page in (alice, bob):
            page.goto(space_url)
            page.wait_for_selector("#augment-status .ssl-ok", timeout=60_000)

        open_tab(alice, "Train")
        alice.locator("input[type=file]:has(+ #train-upload-files)").set_input_files(photos_zip(tmp_path / "photos.zip"))
        wait_until(lambda: "upload:photos: 96 image(s)" in alice.locator("#train-upload-report").inner_text(), 60)
        assert alice.locator("#train-data input").input_value() == "upload:photos"
        alice.get_by_role("spinbutton", name="Image size (px)", exact=True).fill("32")
        alice.get_by_label("Epochs").fill("2")
        alice.get_by_label("Batch size").fill("32")
        alice.locator("#train-start").click()
        wait_until(lambda: "finished" in alice.locator("#train-status").inner_text(), timeout=240)
        run_id = alice.locator("#train-status").inner_text().split(":")[0].strip()
        assert "photos" in run_id

        open_tab(alice, "Explore")
        alice.locator("#explore-run input").fill(run_id)
        alice.locator("#explore-run input").press("Enter")
        alice.locator("#explore-show").click()
        try:
            wait_until(lambda: len(plot_traces(alice, "#tsne-plot")) == 2, timeout=120)
        except TimeoutError:
            raise AssertionError(alice.locator("#explore-status").inner_text() + " | " + alice.locator("#explore-run input").input_value())
        alice.screenshot(path=str(tmp_path / "space-explore.png"), full_page=True)
        assert "of upload:photos embedded by" in alice.locator("#explore-status").inner_text()
        # The same encoder on other data: the built-in digits, picked under 'Data to embed'.
        alice.locator("#explore-data-box").get_by_text("Data to embed:").click()
        alice.locator("#explore-data input").fill("digits")
        alice.locator("#explore-data input").press("Enter")
        alice.locator("#explore-show").click()
        wait_until(lambda: "of digits embedded by" in alice.locator("#explore-status").inner_text(), timeout=120)
        wait_until(lambda: len(plot_traces(alice, "#tsne-plot")) == 10, timeout=60)   # digits' ten classes

        # Bob: no server folder to pick, no upload of Alice's, no run of hers anywhere.
        open_tab(bob, "Train")
        bob.locator("#train-data input").click()
        offered = bob.locator("ul[role=listbox]").inner_text()
        assert "folder" not in offered and "upload:photos" not in offered and "digits" in offered
        bob.keyboard.press("Escape")
        assert run_id not in bob.locator("#train-runs").inner_text()
        assert run_id not in bob.locator("#train-status").inner_text()
        browser.close()
