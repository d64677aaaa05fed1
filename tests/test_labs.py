"""One lab per visitor on a public Space (sslcore.labs): runs and uploads belong to whoever made them, no server path
is readable, the disk quota and the fair queue hold; locally nothing changes.

The first tests drive ``Labs`` directly; the last ones are two gradio_client visitors against an app started with
``SPACE_ID`` set, as strangers on a Space would be.
"""
import io
import os
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from sslcore.jobs import JobManager
from sslcore.labs import AccessError, LabSettings, Labs, visitor_id

TINY = {"epochs": 2, "batch_size": 64, "image_size": 32, "log_every_steps": 2, "encoder_width": 16}


def png_bytes(seed: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def labelled_zip(path, per_class: int = 40) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for label, name in enumerate(("cats", "dogs")):
            for index in range(per_class):
                archive.writestr(f"photos/{name}/{index}.png", png_bytes(100 * label + index))
        archive.writestr("photos/README.txt", "not an image")
    return str(path)


class QueueOnly(JobManager):
    """Queues runs and never starts one: these tests are about who may see and do what, not about training."""

    def _pump(self):
        pass


@pytest.fixture
def labs(tmp_path):
    manager = QueueOnly(tmp_path / "runs", max_jobs=1, start_thread=False)
    return Labs(manager, public=True, settings=LabSettings(quota_bytes=50 * 1024 ** 2), received_dir=tmp_path)


def test_uploads_are_filed_per_visitor_and_resolve_only_for_their_owner(labs, tmp_path):
    alice, bob = labs.lab(visitor_id("alice-key-0123456789")), labs.lab(visitor_id("bob-key-0123456789"))
    source, ingested = alice.ingest([labelled_zip(tmp_path / "photos.zip")])
    assert source == "upload:photos" and ingested.images == 80
    assert any("README.txt" in name for name, _ in ingested.skipped)
    assert alice.uploads() == ["upload:photos"] and bob.uploads() == []
    folder = alice.resolve_source(source)
    assert folder.startswith("folder:") and sorted(os.listdir(folder[len("folder:"):])) == ["cats", "dogs"]
    with pytest.raises(AccessError, match="No upload 'photos'"):
        bob.resolve_source(source)
    # Bob names Alice's folder, the server's root, a home folder, or climbs out of his own uploads: all refused.
    for path in (folder, "folder:/", "folder:/home", f"folder:{bob.uploads_dir}/../{alice.visitor}/photos", "/etc"):
        with pytest.raises(AccessError, match="folders on the server cannot be read"):
            bob.resolve_source(path) if path.startswith("folder:") else bob.resolve_folder(path)
    assert alice.resolve_folder(folder) == os.path.realpath(folder[len("folder:"):])
    # What a run on the upload records (the server folder) is shown by the upload's name; other folders unnamed.
    assert alice.source_name(folder) == "upload:photos" and alice.source_name("digits") == "digits"
    assert alice.source_name("folder:/srv/data") == "a folder on the server"


def test_only_files_the_server_received_are_filed_into_a_lab(labs, tmp_path):
    """An API caller can name any path as an "uploaded" file; on a Space only the web server's received files count,
    so a server image or archive (or another visitor's upload) never becomes the caller's to view."""
    mallory = labs.lab(visitor_id("mallory-key-0123456789"))
    outside = tmp_path.parent / f"{tmp_path.name}-server"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes(7))
    secret_zip = labelled_zip(outside / "backup.zip", per_class=2)
    for path in (str(outside / "secret.png"), secret_zip, str(outside / "missing.png"), str(tmp_path),
                 f"{tmp_path}/../{outside.name}/secret.png"):
        with pytest.raises(AccessError, match="was not uploaded to this Space"):
            mallory.ingest([path])
    assert mallory.uploads() == []
    with pytest.raises(AccessError, match="was not uploaded to this Space"):
        Labs(labs.manager, public=True).lab(mallory.visitor).ingest([labelled_zip(tmp_path / "photos.zip")])
    # Locally the one visitor files whatever they name.
    assert Labs(labs.manager, public=False).lab(None).ingest([secret_zip])[1].images == 4


def test_runs_belong_to_their_visitor_and_examples_are_read_only(labs, tmp_path):
    alice, bob = labs.lab(visitor_id("alice-key-0123456789")), labs.lab(visitor_id("bob-key-0123456789"))
    run_id = alice.start({**TINY, "data": "digits"}, "tensorflow")
    assert labs.manager.run_dir(run_id).owner() == alice.visitor
    assert [row["run_id"] for row in alice.runs()] == [run_id] and bob.runs() == []
    for action in (bob.status, bob.history, bob.stop, bob.resume, bob.existing_run, bob.signature):
        with pytest.raises(AccessError, match="No run"):
            action(run_id)
    assert alice.status(run_id)["state"] == "queued"
    # A run without an owner is the Space owner's example: everyone sees it, nobody stops or resumes it.
    example = labs.manager.run_dir("example-run")
    example.create({**TINY, "data": "digits", "method": "simclr", "encoder": "convnet"})
    example.write_status("stopped", "", pid=None)
    assert "example-run" in [row["run_id"] for row in bob.runs()]
    assert bob.status("example-run")["state"] == "stopped"
    with pytest.raises(AccessError, match="example run"):
        bob.resume("example-run")


def test_a_run_starts_only_from_a_hub_model_or_a_run_the_visitor_may_see(labs):
    alice, bob = labs.lab(visitor_id("alice-key-0123456789")), labs.lab(visitor_id("bob-key-0123456789"))
    run_id = alice.start({**TINY, "data": "digits"}, "tensorflow")
    # Bob names a server path, a path into Alice's run, or Alice's run id: all refused before anything is queued.
    for source in ("/etc", "/", str(labs.manager.run_dir(run_id).path), f"../{run_id}", run_id):
        with pytest.raises(AccessError, match="files on the server cannot be read"):
            bob.start({**TINY, "data": "digits", "init": source}, "tensorflow")
    assert bob.runs() == []
    assert bob.resolve_init("hf://alice/digits-simclr") == "hf://alice/digits-simclr"
    assert bob.resolve_init("  ") is None
    with pytest.raises(ValueError, match=f"Run {run_id} has no encoder yet") as refused:   # still queued
        alice.resolve_init(run_id)
    assert str(labs.root) not in str(refused.value), "no server path reaches a visitor"
    labs.manager.run_dir(run_id).encoder_path.write_bytes(b"")
    assert alice.resolve_init(run_id) == str(labs.manager.run_dir(run_id).path)


def test_one_visitor_cannot_queue_many_runs(labs):
    alice, bob = labs.lab(visitor_id("alice-key-0123456789")), labs.lab(visitor_id("bob-key-0123456789"))
    alice.start({**TINY, "data": "digits"}, "tensorflow")
    with pytest.raises(AccessError, match="allows 1 per visitor"):
        alice.start({**TINY, "data": "digits"}, "tensorflow")
    bob.start({**TINY, "data": "digits"}, "tensorflow")   # Bob still gets his turn in the queue


def test_a_run_on_a_space_is_bounded_in_time_and_in_checkpoints(labs):
    """One run must not hold the shared trainer for ever (epochs=10**9) nor fill the disk with every epoch's
    checkpoint: each start or resume trains at most run_minutes, then stops with its checkpoint and models saved."""
    alice = labs.lab(visitor_id("alice-key-0123456789"))
    for settings, message in (({"budget_minutes": 61}, "at most 60 minutes"),
                              ({"keep_checkpoints": 0}, "keep_checkpoints must be 1 to 3"),
                              ({"keep_checkpoints": 50}, "keep_checkpoints must be 1 to 3"),
                              ({"keep_checkpoints": "all"}, "keep_checkpoints must be 1 to 3"),
                              ({"budget_minutes": "600"}, "at most 60 minutes"),
                              ({"tfds_data_dir": "/srv/tfds"}, "tfds_data_dir cannot be set on this Space")):
        with pytest.raises(AccessError, match=message):
            alice.start({**TINY, "data": "digits", **settings}, "tensorflow")
    assert alice.runs() == []
    run_id = alice.start({**TINY, "data": "digits", "epochs": 10 ** 9, "budget_minutes": 60}, "tensorflow")
    job = labs.manager._queue[-1]
    assert job.run_id == run_id and job.arguments[-2:] == ["--max-seconds", "3600"], job.arguments
    labs.manager.stop(run_id)
    alice.resume(run_id)
    assert labs.manager._queue[-1].arguments[-2:] == ["--max-seconds", "3600"]
    # Locally nothing is bounded.
    local = Labs(labs.manager, public=False).lab(None)
    local.start({**TINY, "data": "digits", "keep_checkpoints": 0, "budget_minutes": 600}, "tensorflow")
    assert "--max-seconds" not in labs.manager._queue[-1].arguments


def test_the_whole_space_has_caps_since_a_stranger_can_be_a_new_visitor_on_every_request(tmp_path):
    """A raw /call request gets a fresh session, so a fresh lab: only Space-wide caps bound the queue and the disk."""
    manager = QueueOnly(tmp_path / "runs", max_jobs=1, start_thread=False)
    labs = Labs(manager, public=True, received_dir=tmp_path,
                settings=LabSettings(space_max_runs=2, space_quota_bytes=60_000))
    strangers = [labs.lab(visitor_id(f"stranger-{n}-0123456789")) for n in range(3)]
    for stranger in strangers[:2]:
        stranger.start({**TINY, "data": "digits"}, "tensorflow")
    with pytest.raises(AccessError, match="already has 2 runs queued or training"):
        strangers[2].start({**TINY, "data": "digits"}, "tensorflow")
    strangers[2].ingest([labelled_zip(tmp_path / "a.zip", per_class=10)])
    with pytest.raises(AccessError, match="disk for visitors' uploads and runs is full"):
        strangers[2].ingest([labelled_zip(tmp_path / "b.zip", per_class=40)])
    assert strangers[2].uploads() == ["upload:a"]


def test_what_pages_write_for_download_stays_in_the_lab_and_only_the_newest_are_kept(labs):
    """Audit CSVs, export zips and labels used to pile up in /tmp, outside any quota."""
    alice = labs.lab(visitor_id("alice-key-0123456789"))
    made = []
    for n in range(5):
        made.append(alice.output_folder("audit"))
        (made[-1] / "duplicates.csv").write_bytes(b"x" * 1000)
    export = alice.output_folder("projector")
    assert all(folder.parent.parent == alice.uploads_dir for folder in made + [export])
    assert [folder.exists() for folder in made] == [False, False, True, True, True] and export.exists()
    assert alice.usage_bytes() == 3000 and alice.uploads() == []     # counted, and not an upload


def test_a_run_asking_for_more_memory_than_a_space_shares_is_refused(labs):
    alice = labs.lab(visitor_id("alice-key-0123456789"))
    for settings, name in (({"image_size": 512}, "image_size"), ({"batch_size": "4096"}, "batch_size"),
                           ({"encoder_width": 8192}, "encoder_width"),
                           ({"method_params": {"hidden_dim": 65536}}, "method_params.hidden_dim"),
                           ({"method": "dino", "method_params": {"hidden_layers": 40}}, "method_params.hidden_layers")):
        with pytest.raises(AccessError, match=f"{name} must be at most"):
            alice.start({**TINY, "data": "digits", **settings}, "tensorflow")
    assert alice.runs() == []
    alice.start({**TINY, "data": "digits", "image_size": 224, "method_params": {"hidden_dim": 1024}}, "tensorflow")


def test_quota_refuses_an_upload_that_would_overfill_the_lab(tmp_path):
    manager = QueueOnly(tmp_path / "runs", max_jobs=1, start_thread=False)
    labs = Labs(manager, public=True, settings=LabSettings(quota_bytes=20_000), received_dir=tmp_path)
    lab = labs.lab(visitor_id("carol-key-0123456789"))
    with pytest.raises(AccessError, match="per visitor: delete an upload or an old run"):
        lab.ingest([labelled_zip(tmp_path / "photos.zip")])
    assert lab.uploads() == [] and not any(p.name != ".incoming" for p in lab.uploads_dir.glob("*") if p.is_dir())


def test_gone_visitors_lose_finished_runs_and_uploads_but_live_runs_stay(labs, tmp_path):
    gone, present = labs.lab(visitor_id("gone-key-0123456789")), labs.lab(visitor_id("here-key-0123456789"))
    gone.ingest([labelled_zip(tmp_path / "photos.zip", per_class=3)])
    finished = gone.start({**TINY, "data": "digits"}, "tensorflow")
    labs.manager.run_dir(finished).write_status("finished", "", pid=None)
    labs.manager._queue.clear()
    kept = present.start({**TINY, "data": "digits"}, "tensorflow")
    long_ago = time.time() - 2 * labs.settings.idle_seconds
    os.utime(labs.root / ".visitors" / gone.visitor, (long_ago, long_ago))
    removed = labs.collect_garbage()
    assert finished in removed and not labs.manager.run_dir(finished).path.exists()
    assert gone.uploads() == []
    assert labs.manager.run_dir(kept).path.exists()


def test_locally_everyone_is_one_visitor_and_paths_work(tmp_path):
    manager = QueueOnly(tmp_path / "runs", max_jobs=1, start_thread=False)
    labs = Labs(manager, public=False)
    lab = labs.lab(None)
    assert lab.resolve_folder("/anywhere/at/all") == "/anywhere/at/all"
    assert lab.source_name("folder:/anywhere/at/all") == "folder:/anywhere/at/all"
    run_id = lab.start({**TINY, "data": "digits"}, "tensorflow")
    assert manager.run_dir(run_id).owner() is None
    assert [row["run_id"] for row in labs.lab("someone-else").runs()] == [run_id]


def test_a_public_lab_needs_a_visitor(labs):
    with pytest.raises(AccessError, match="no visitor session"):
        labs.lab(None)


# ---------------------------------------------------------------------------------------------- two strangers on a Space


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The app as a Space serves it (SPACE_ID set), with real training processes on tiny settings."""
    import app
    from tests.helpers import free_port

    saved = {name: os.environ.get(name) for name in ("SPACE_ID", "SSLCORE_VISITOR_MAX_JOBS")}
    os.environ["SPACE_ID"] = "someone/ssl-lab"
    jobs = JobManager(tmp_path_factory.mktemp("space-runs"), max_jobs=1, poll_seconds=0.2)
    demo = app.build_app(jobs)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options())
    yield f"http://127.0.0.1:{port}/", jobs
    jobs.shutdown(stop_running=True)
    demo.close()
    for name, value in saved.items():
        os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


@pytest.mark.slow
def test_two_visitors_on_a_space_each_in_their_own_lab(space, tmp_path):
    from gradio_client import Client, handle_file

    url, jobs = space
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    upload = alice.predict([handle_file(labelled_zip(tmp_path / "photos.zip"))], api_name="/upload_data")
    assert upload["source"] == "upload:photos" and upload["images"] == 80
    assert [name for name, _ in upload["skipped"]] == ["photos.zip/photos/README.txt"]
    assert alice.predict(api_name="/list_uploads") == ["upload:photos"] and bob.predict(api_name="/list_uploads") == []

    # Alice previews and trains on her upload; Bob can name neither her upload nor any server folder.
    *grids, status = alice.predict(dataset="upload:photos", folder="", upload=None, images=2, draws=2, image_size=32,
                                   seed=0, api_name="/preview")
    assert "2 image(s) at 32 px" in status
    *grids, status = bob.predict(dataset="upload:photos", folder="", upload=None, api_name="/preview")
    assert "No upload &#x27;photos&#x27;" in status
    server_folder = str(jobs.root / ".uploads")
    for data in ("folder:/", f"folder:{server_folder}", "folder:/etc"):
        *grids, status = bob.predict(dataset=data, folder="", upload=None, api_name="/preview")
        assert "folders on the server cannot be read" in status, data
        with pytest.raises(Exception, match="folders on the server cannot be read"):
            bob.predict({**TINY, "data": data}, api_name="/start_training")

    run_id = alice.predict({**TINY, "data": "upload:photos"}, api_name="/start_training")
    with pytest.raises(Exception, match="allows 1 per visitor"):
        alice.predict({**TINY, "data": "digits"}, api_name="/start_training")
    deadline = time.time() + 300
    while (state := alice.predict(run_id, api_name="/training_status")["state"]) not in ("finished", "failed"):
        assert time.time() < deadline, state
        time.sleep(0.5)
    assert state == "finished"
    row = next(row for row in alice.predict(api_name="/list_runs") if row["run_id"] == run_id)
    assert row["data"] == "upload:photos", row     # not the server folder the run's config.json records
    figure, status = alice.predict(run_id, api_name="/embeddings")
    assert "test images of upload:photos embedded by" in status and ".uploads" not in status, status
    # Bob may not embed Alice's upload with any encoder (the run's own data is hers).
    figure, status = bob.predict(run_id, "upload:photos", "", api_name="/embeddings")
    assert "No run" in status or "No upload" in status, status
    pairs, outliers, files, status, *_ = alice.predict(run_id, "", 0.9, api_name="/audit")
    assert "80 images" in status

    # Bob: the run does not exist for him, whatever he asks of it.
    assert run_id not in [row["run_id"] for row in bob.predict(api_name="/list_runs")]
    for endpoint in ("/training_status", "/stop_training", "/resume_training"):
        with pytest.raises(Exception, match="No run"):
            bob.predict(run_id, api_name=endpoint)
    figure, status = bob.predict(run_id, api_name="/embeddings")
    assert "No run" in status
    _, _, _, status, *_ = bob.predict(run_id, "", 0.9, api_name="/audit")
    assert "No run" in status
    _, _, _, status, *_ = bob.predict(run_id, "upload:photos", 0.9, api_name="/audit")
    assert "No run" in status
    link, status = bob.predict(run_id, "bob/stolen", "hf_fake_token", False, api_name="/push")
    assert "No run" in status


@pytest.mark.slow
def test_a_hostile_upload_is_refused_with_its_entry_named_and_nothing_kept(space, tmp_path):
    from gradio_client import Client, handle_file

    url, jobs = space
    mallory = Client(url, verbose=False)
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("ok.png", png_bytes(1))
        archive.writestr("../../escaped.png", png_bytes(2))
    with pytest.raises(Exception, match=r"refused: entry '\.\./\.\./escaped\.png' points outside the archive"):
        mallory.predict([handle_file(str(tmp_path / "evil.zip"))], api_name="/upload_data")
    assert mallory.predict(api_name="/list_uploads") == []
    assert not list(jobs.root.parent.rglob("escaped.png"))
    # A server path named in place of an uploaded file, bare or as a file's dict (no Gradio upload check applies).
    server_png = tmp_path / "server.png"
    server_png.write_bytes(png_bytes(3))
    for value in (str(server_png), {"path": str(server_png)}, {"path": str(tmp_path / "evil.zip")}):
        with pytest.raises(Exception, match="was not uploaded to this Space"):
            mallory.predict([value], api_name="/upload_data")
    assert mallory.predict(api_name="/list_uploads") == []


# ---------------------------------------------------------------------------------------------- the page's helpers


def test_visitor_keys_are_bounded_and_the_sessions_in_use_are_forgotten_last(monkeypatch):
    """A key is what the app makes (URL-safe, 16-128 characters): a megabyte 'key' sent to the private
    remember_visitor endpoint is replaced, not kept; and a flood of new sessions evicts idle ones before busy ones."""
    import secrets

    from gradio.context import LocalContext
    from pages import common

    class Request:
        def __init__(self, session):
            self.session_hash = session

    monkeypatch.setattr(common, "_SESSIONS", type(common._SESSIONS)())
    monkeypatch.setattr(common, "_SESSIONS_KEPT", 3)
    made = secrets.token_urlsafe(24)
    assert common.is_visitor_key(made) and not common.is_visitor_key("A" * 1_000_000)
    assert not common.is_visitor_key("short") and not common.is_visitor_key("<script>alert(1)</script>xx")
    assert common.remember_visitor("A" * 1_000_000, Request("s0")) != "A" * 1_000_000
    assert common.remember_visitor(made, Request("busy")) == made
    for session in ("s1", "s2"):
        common.remember_visitor(secrets.token_urlsafe(24), Request(session))
    token = LocalContext.request.set(Request("busy"))
    try:
        assert common.current_visitor() == visitor_id(made)   # busy is used: it moves to the end
    finally:
        LocalContext.request.reset(token)
    common.remember_visitor(secrets.token_urlsafe(24), Request("s3"))
    assert "busy" in common._SESSIONS and "s0" not in common._SESSIONS and len(common._SESSIONS) == 3


def test_error_toasts_escape_what_visitors_named(monkeypatch):
    """Gradio renders a toast as HTML: a file name inside an upload must not become markup on the page."""
    from pages import common
    from sslcore.data import DataError

    shown = []
    monkeypatch.setattr(common.gr, "Warning", shown.append)

    @common.reports_errors(outputs=1)
    def event():
        raise DataError("No images in the upload. Skipped: <img src=https://evil.example>.txt")

    status = event()
    assert shown == ["No images in the upload. Skipped: &lt;img src=https://evil.example&gt;.txt"]
    assert "<img" not in status


def test_on_a_space_a_typed_model_is_told_from_a_run_by_its_form_alone(tmp_path, monkeypatch):
    """USER/NAME is a Hub model whatever the server's disk holds: checking the disk told strangers which paths exist
    (another visitor's run folder, files beside the app), and a bare "runs/ID" passed on would be read as a run folder
    by everything downstream that asks sslcore.hub.is_hub_model."""
    from sslcore import hub

    from pages.common import AppContext

    manager = QueueOnly(tmp_path / "runs", max_jobs=1, start_thread=False)
    (tmp_path / "runs" / "v0123" / "photos").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    public = AppContext(manager, None, labs=Labs(manager, public=True, received_dir=tmp_path))
    for typed in ("v0123/photos", "runs/v0123", "alice/model"):
        assert public.model_source(typed) == f"hf://{typed}" and hub.is_hub_model(public.model_source(typed))
    assert public.model_source("hf://alice/model") == "hf://alice/model"
    local = AppContext(manager, None, labs=Labs(manager, public=False))
    assert local.model_source("alice/model") == "alice/model"
    with pytest.raises(ValueError, match="not a run id"):
        local.model_source("v0123/photos")       # locally a folder in the runs root is not taken for a Hub id
