"""Many visitors at once: identical previews served from one immutable file, the default preview computed once.

The server test starts its own in-process app (no training): eight gradio_client visitors ask for the same preview
at the same moment, as every new visitor's first page load does.
"""
import os
import threading
import time

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

import app
from pages import augment, images
from sslcore.jobs import JobManager
from tests.helpers import free_port

VISITORS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    jobs = JobManager(tmp_path_factory.mktemp("load-runs"), max_jobs=1, poll_seconds=0.2)
    demo = app.build_app(jobs)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield f"http://127.0.0.1:{port}/"
    jobs.shutdown(stop_running=True)
    demo.close()


@pytest.mark.slow
def test_identical_previews_from_many_visitors_all_succeed_and_match(server):
    clients = [Client(server, verbose=False) for _ in range(VISITORS)]
    misses_before = augment.PREVIEW_CACHE.misses
    for round_ in range(2):   # each round is one burst of identical previews
        results, errors = [None] * VISITORS, []
        go = threading.Barrier(VISITORS)

        def visit(i):
            try:
                go.wait()
                results[i] = clients[i].predict(upload=None, images=4, draws=4, image_size=64, seed=round_,
                                                api_name="/preview")
            except Exception as error:   # noqa: BLE001 - reported below with the others
                errors.append(repr(error))

        threads = [threading.Thread(target=visit, args=(i,)) for i in range(VISITORS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        *_, status = results[0]
        grids = [[np.asarray(Image.open(path)) for path in result[:-1]] for result in results]
        for other in grids[1:]:
            assert all(np.array_equal(a, b) for a, b in zip(grids[0], other))
        assert all("4 image(s) at 64 px, seed" in result[-1] for result in results), status
    assert augment.PREVIEW_CACHE.misses - misses_before == 2   # one computation per distinct preview


@pytest.mark.slow
def test_a_preview_file_once_handed_out_is_never_rewritten(server):
    """The root of the broken downloads: Gradio rewrote <cache>/<hash>/image.png for every identical numpy output
    while another response was still streaming it. A file the app hands out must stay as it was."""
    raw = Client(server, verbose=False, download_files=False)
    ask = lambda: raw.predict(upload=None, images=2, draws=2, image_size=32, seed=11, api_name="/preview")
    first = ask()
    paths = [item["path"] for item in first[:4]]
    stamps = [(os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in paths]
    time.sleep(0.05)
    second = ask()
    assert [item["path"] for item in second[:4]] == paths
    assert [(os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in paths] == stamps


def test_the_default_preview_is_computed_once_for_many_callers(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "IMAGE_ROOT", tmp_path / "images")
    cache = images.ResultCache(4)
    monkeypatch.setattr(augment, "PREVIEW_CACHE", cache)
    calls = []
    real = augment.preview.preview_augmentations
    monkeypatch.setattr(augment.preview, "preview_augmentations",
                        lambda *args, **kwargs: calls.append(args[1]) or real(*args, **kwargs))
    settings = augment.preview.control_values("contrastive")
    ask = lambda source="digits", seed=0: augment.preview_grids(source, None, 4, 4, 64, seed, settings)
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(ask())) for _ in range(VISITORS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 5 and cache.misses == 1 and cache.hits == VISITORS - 1   # the custom grid + 4 presets
    assert len({answer for answer in answers}) == 1
    paths = answers[0][:5]
    assert all(path.endswith(".png") and images.IMAGE_ROOT in images.Path(path).parents for path in paths)
    # Another seed, or the same name resolved to another visitor's folder, is another preview.
    ask(seed=1)
    assert len(calls) == 10
    assert cache.misses == 2


def test_cache_is_bounded_and_png_files_are_written_once(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "IMAGE_ROOT", tmp_path / "images")
    cache = images.ResultCache(2)
    for key in range(5):
        cache.get(key, lambda: key)
    assert len(cache) == 2 and cache.get(4, lambda: "recomputed") == 4 and cache.get(0, lambda: "again") == "again"
    picture = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    first = images.png_file(picture)
    written = images.Path(first).stat().st_ino
    assert images.png_file(picture.copy()) == first and images.Path(first).stat().st_ino == written
    assert np.array_equal(np.asarray(Image.open(first)), picture)
    assert images.png_file(picture[::-1]) != first
    assert not [p for p in images.Path(first).parent.iterdir() if p.name.startswith(".")]   # no staging file left
    # Unused for a day: pruned; a cached result naming it is computed again.
    os.utime(first, (0, 0))
    cache.get("picture", lambda: (first, "caption"))
    assert images.prune() == 1 and cache.get("picture", lambda: "again") == "again"


@pytest.mark.slow
def test_the_warmed_default_preview_is_what_a_new_visitors_page_gets(server):
    augment.warm_default_preview()
    misses = augment.PREVIEW_CACHE.misses
    Client(server, verbose=False).predict(upload=None, api_name="/preview")   # every other input at the page's default
    assert augment.PREVIEW_CACHE.misses == misses


@pytest.mark.slow
def test_the_queue_does_not_rebuild_its_analytics_table_on_every_call(server, monkeypatch):
    """Gradio's default summarises its last 10,000 events in a pandas table after every event; under a crowd that
    cost as much as the call itself. The app summarises once per 1,000 events."""
    from gradio.queueing import Queue

    tables = []
    real = Queue._get_df
    monkeypatch.setattr(Queue, "_get_df", staticmethod(lambda records: tables.append(len(records)) or real(records)))
    client = Client(server, verbose=False)
    for _ in range(30):
        client.predict(api_name="/list_runs")
    assert len(tables) <= 1, f"analytics rebuilt {len(tables)} times for 30 calls"
