"""The app through its API, as a script would drive it: gradio_client against a live server on 127.0.0.1.

One server for the module, with its own runs folder; real training subprocesses on digits, kept tiny.
"""
import json
import threading
import time

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import app
from sslcore.jobs import JobManager
from tests.helpers import free_port

pytestmark = pytest.mark.slow   # a live server and real training processes

TINY = {"epochs": 2, "batch_size": 128, "image_size": 32, "log_every_steps": 2}
PUBLIC_ENDPOINTS = {"/preview", "/start_training", "/stop_training", "/resume_training", "/training_status",
                    "/embeddings", "/evaluation", "/neighbors", "/classify", "/baseline_vs_finetune", "/list_runs",
                    "/push", "/audit", "/label", "/export", "/classify_few_labels", "/upload_data", "/list_uploads"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    jobs = JobManager(tmp_path_factory.mktemp("app-runs"), max_jobs=1, poll_seconds=0.2)
    demo = app.build_app(jobs)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield f"http://127.0.0.1:{port}/"
    jobs.shutdown(stop_running=True)
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def wait_for_state(client, run_id, states, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(run_id, api_name="/training_status")
        if status["state"] in states:
            return status
        time.sleep(0.5)
    raise TimeoutError(f"{run_id} did not reach {states}: {status['state']} ({status['message']})")


@pytest.fixture(scope="module")
def finished_run(client):
    run_id = client.predict(TINY, api_name="/start_training")
    status = wait_for_state(client, run_id, ("finished", "failed", "interrupted"))
    assert status["state"] == "finished", status["message"]
    return run_id


def image_file(tmp_path, name, array, fmt="PNG"):
    path = tmp_path / name
    Image.fromarray(array).save(path, format=fmt)
    return str(path)


# ---------------------------------------------------------------------------------------------- endpoints


def test_every_named_endpoint_is_public(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert PUBLIC_ENDPOINTS <= named
    assert "/poll_training" not in named, "the timer's poll is internal"


def test_preview_returns_the_custom_grid_and_one_per_preset(client):
    *grids, status = client.predict(upload=None, images=2, draws=3, image_size=32, seed=4, api_name="/preview")
    assert len(grids) == 5 and "2 image(s) at 32 px" in status   # the sliders' grid, weak, strong, simclr, contrastive
    sizes = {Image.open(grid).size for grid in grids}
    assert sizes == {(4 * (96 + 4) + 4, 2 * (96 + 4) + 4)}


def test_preview_of_a_missing_folder_says_so(client):
    *grids, status = client.predict(dataset="folder (path below)", folder="/no/such/folder", upload=None,
                                    api_name="/preview")
    assert "does not exist" in status and "ssl-error" in status


def test_bad_settings_are_refused_with_the_reason(client):
    with pytest.raises(Exception, match="epochs must be at least 1"):
        client.predict({**TINY, "epochs": 0}, api_name="/start_training")
    with pytest.raises(Exception, match="No run"):
        client.predict("no-such-run", api_name="/training_status")


def test_a_run_goes_from_start_to_finished_with_its_points(client, finished_run):
    status = client.predict(finished_run, api_name="/training_status")
    assert status["state"] == "finished" and status["total_steps"] == 22
    assert [row["step"] for row in status["step_rows"]] == list(range(1, 23))
    newer = client.predict(finished_run, 20, api_name="/training_status")   # a poller that has the rows up to 20
    assert [row["step"] for row in newer["step_rows"]] == [21, 22] and newer["epoch_rows"] == status["epoch_rows"]
    assert [row["epoch"] for row in status["epoch_rows"]] == [1, 2]
    assert {"loss", "contrastive_accuracy", "train_probe_accuracy"} <= set(status["step_rows"][0])
    assert {"knn_accuracy", "probe_accuracy"} <= set(status["epoch_rows"][-1])
    assert finished_run in [row["run_id"] for row in client.predict(api_name="/list_runs")]


def test_embeddings_evaluation_and_neighbours_of_a_finished_run(client, finished_run):
    figure, status = client.predict(finished_run, api_name="/embeddings")
    plot = json.loads(figure["plot"])
    assert len(plot["data"]) == 10 and plot["data"][0]["customdata"][0][1].startswith("data:image/png;base64,")
    assert "359 test images" in status
    knn, confusion, _ = client.predict(finished_run, api_name="/evaluation")
    assert "kNN accuracy" in knn and json.loads(confusion["plot"])["data"][0]["type"] == "heatmap"
    query, gallery, status = client.predict(finished_run, 7, None, 5, api_name="/neighbors")
    assert len(gallery) == 5 and " · 0." in gallery[0]["caption"] and "test image #7" in status


def test_neighbours_of_an_uploaded_image_and_of_a_bad_upload(client, finished_run, tmp_path):
    from sklearn.datasets import load_digits

    digit = (load_digits().images[10] * (255 / 16)).astype(np.uint8)
    picture = image_file(tmp_path, "my-digit.png", digit)
    query, gallery, status = client.predict(finished_run, 0, handle_file(picture), 4, api_name="/neighbors")
    assert len(gallery) == 4 and "uploaded image" in status
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    _, _, status = client.predict(finished_run, 0, handle_file(str(tmp_path / "broken.png")), 4, api_name="/neighbors")
    assert "broken.png" in status and "ssl-error" in status


def test_classify_png_grayscale_rgba_and_refuse_a_non_image(client, finished_run, tmp_path):
    rng = np.random.default_rng(0)
    files = [image_file(tmp_path, "colour.png", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)),
             image_file(tmp_path, "gray.png", rng.integers(0, 255, (30, 30), dtype=np.uint8)),
             image_file(tmp_path, "alpha.png", rng.integers(0, 255, (20, 40, 4), dtype=np.uint8))]
    (tmp_path / "notes.txt").write_text("this is not an image")
    files.append(str(tmp_path / "notes.txt"))
    gallery, ranking, results, status = client.predict(finished_run, [handle_file(f) for f in files], 3,
                                                       api_name="/classify")
    by_name = {r["file"]: r for r in results}
    for name in ("colour.png", "gray.png", "alpha.png"):
        assert len(by_name[name]["predictions"]) == 3 and by_name[name]["error"] is None
    assert "notes.txt" in by_name["notes.txt"]["error"] and "not an image" in by_name["notes.txt"]["error"]
    assert len(gallery) == 3 and "notes.txt" in status and "not an image" in status
    assert [row[0] for row in ranking["data"]] == ["colour.png", "gray.png", "alpha.png", "notes.txt"]


def test_classify_few_label_mode_names_uploads_from_a_few_examples(client, finished_run, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    picture = lambda i: np.asarray(Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32))
                                   .convert("RGB"))
    zeros, ones = np.flatnonzero(digits.target == 0)[-10:], np.flatnonzero(digits.target == 1)[-10:]
    examples = [image_file(tmp_path, f"{name}_{i}.png", picture(i)) for name, chosen in (("zero", zeros[:4]), ("one", ones[:4]))
                for i in chosen]
    queries = [image_file(tmp_path, f"query_{i}.png", picture(i)) for i in [*zeros[4:], *ones[4:]]]
    _, _, status = client.predict(finished_run, "", [], [handle_file(q) for q in queries], "knn",
                                  api_name="/classify_few_labels")
    assert "ssl-error" in status and "Give examples" in status   # nothing to learn the classes from
    gallery, labels_csv, status = client.predict(finished_run, "", [handle_file(e) for e in examples],
                                                 [handle_file(q) for q in queries], "knn", api_name="/classify_few_labels")
    assert "labelled 12 images from 8 examples" in status and len(gallery) == 12
    rows = [line.split(",") for line in open(labels_csv).read().splitlines()[1:]]
    truth = {f"query_{i}.png": "zero" for i in zeros[4:]} | {f"query_{i}.png": "one" for i in ones[4:]}
    correct = sum(label == truth[path.rsplit("/", 1)[-1]] for path, label, _ in rows)
    assert correct >= 10, rows   # 0 and 1 are easy even for a 2-epoch encoder; chance is 6 of 12


def test_baseline_vs_finetune_plots_both_curves(client, finished_run):
    figure, status = client.predict(finished_run, 1, api_name="/baseline_vs_finetune")
    names = [trace["name"] for trace in json.loads(figure["plot"])["data"]]
    assert any("baseline" in n for n in names) and any("fine-tuned" in n for n in names)
    assert "baseline" in status


def test_stop_and_resume_while_another_client_keeps_working(server, client, finished_run, tmp_path):
    run_id = client.predict({**TINY, "epochs": 8}, api_name="/start_training")
    other = Client(server, verbose=False)
    photo = image_file(tmp_path, "photo.png", np.random.default_rng(1).integers(0, 255, (50, 50, 3), dtype=np.uint8))
    timings, errors = [], []

    def keep_busy():
        try:
            for _ in range(3):
                started = time.time()
                other.predict(upload=None, images=2, draws=2, api_name="/preview")
                other.predict(finished_run, [handle_file(photo)], 2, api_name="/classify")
                timings.append(time.time() - started)
        except Exception as error:  # surfaced below, in the test's own thread
            errors.append(error)

    busy = threading.Thread(target=keep_busy)
    busy.start()
    seen_steps = []
    deadline = time.time() + 120
    while time.time() < deadline:
        status = client.predict(run_id, api_name="/training_status")
        seen_steps.append(len(status["step_rows"]))
        if status["state"] == "running" and status["step_rows"]:
            break
        time.sleep(0.3)
    busy.join(timeout=120)
    assert not errors, errors
    assert len(timings) == 3 and max(timings) < 45, f"preview + classify took {timings} while training"

    assert client.predict(run_id, api_name="/stop_training")["state"] in ("stopping", "stopped")
    stopped = wait_for_state(client, run_id, ("stopped", "finished", "failed"), timeout=60)
    assert stopped["state"] == "stopped" and stopped["resumable"]
    assert stopped["step"] < stopped["total_steps"]

    assert client.predict(run_id, api_name="/resume_training")["state"] in ("queued", "starting", "running")
    done = wait_for_state(client, run_id, ("finished", "failed", "interrupted"))
    assert done["state"] == "finished", done["message"]
    assert [row["step"] for row in done["step_rows"]] == list(range(1, done["total_steps"] + 1))


def test_the_start_from_hint_on_a_public_space_names_run_ids_not_server_paths():
    from pages.train import SETTINGS, setting_control

    assert "a run folder" in setting_control(SETTINGS["init"]).info
    on_a_space = setting_control(SETTINGS["init"], public=True).info
    assert "one of your runs (its id" in on_a_space and "folder" not in on_a_space and "file" not in on_a_space
    assert "at most 60 minutes per start" in setting_control(SETTINGS["budget_minutes"], True, 60).info
    assert "per start" not in setting_control(SETTINGS["budget_minutes"], False, 60).info


def test_a_public_space_clears_gradios_cache_of_old_files(tmp_path, monkeypatch):
    """Every upload and download leaves a file in Gradio's cache; on a Space strangers make many."""
    jobs = JobManager(tmp_path / "runs", max_jobs=1, start_thread=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("SSLCORE_PUBLIC", raising=False)
    assert app.build_app(jobs).delete_cache is None
    monkeypatch.setenv("SPACE_ID", "someone/lab")
    assert app.build_app(jobs).delete_cache == (1800, 7200)
