"""sslcore.run: one way to open a finished run. Everything that reads a run back (Explore, fine-tune, push, eval,
classify) gets exactly the data and split its trainer used, including a run trained with ``skip_bad_images``, whose
folder still holds the bad file (before Run, Explore and ``eval`` reloaded the folder without the flag and failed)."""
import json

import numpy as np
import pytest
from PIL import Image

from sslcore import explore
from sslcore.cli import main as cli_main
from sslcore.run import Run, RunNotFinished
from sslcore.runs import RunDir
from sslcore.trainer import Trainer
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow   # trains a tiny run


@pytest.fixture(scope="module")
def run_with_a_bad_file(tmp_path_factory):
    """Two classes of blobs and one file that is not an image, trained with skip_bad_images."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("left", "right")):
        (root / name).mkdir()
        for index in range(40):
            picture = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
            picture[6:18, 2 + 12 * label: 10 + 12 * label] = 220
            Image.fromarray(picture).save(root / name / f"{index:02d}.png")
    (root / "left" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path_factory.mktemp("runs") / "run"
    config = tiny_config(data=f"folder:{root}", image_size=32, encoder_width=16, epochs=1, batch_size=32,
                         skip_bad_images=True, knn_k=5)
    trainer = Trainer(config, out)
    trainer.fit()
    return out, trainer.dataset


def test_every_reader_gets_the_trainers_data_and_split(run_with_a_bad_file, monkeypatch, tmp_path):
    path, trained_on = run_with_a_bad_file
    run = Run(path)
    data = run.dataset()
    assert data.skipped and data.skipped[0][0].endswith("broken.png")
    assert data.test_paths == trained_on.test_paths and data.train_paths == trained_on.train_paths
    embeddings = explore.load_run(path)
    assert len(embeddings.query_images) == len(trained_on.test_images)
    np.testing.assert_array_equal(embeddings.query_images, trained_on.test_images)
    figures = run.evaluate()
    assert figures["test_images"] == len(trained_on.test_images) and figures["knn_k"] == 5
    assert 0.0 <= figures["knn_accuracy"] <= 1.0 and 0.0 <= figures["linear_accuracy"] <= 1.0

    printed = []
    monkeypatch.setattr("builtins.print", lambda text, **_: printed.append(text))
    assert cli_main(["eval", "--run", str(path)]) == 0
    result = json.loads(printed[-1])
    assert result["test_images"] == len(trained_on.test_images)
    assert result["knn_accuracy"] == pytest.approx(figures["knn_accuracy"])


def test_a_run_that_has_not_finished_says_so_everywhere(tmp_path):
    run = RunDir(tmp_path / "half")
    run.create(tiny_config().to_dict())
    with pytest.raises(RunNotFinished, match="has not finished"):
        Run(run.path)
    with pytest.raises(ValueError, match="not a run folder"):
        Run(tmp_path / "nothing")
    assert cli_main(["eval", "--run", str(run.path)]) == 2


def test_a_stopped_run_opens_and_says_where_it_stopped_everywhere(tmp_path):
    """A run stopped by --max-steps is listed, explored and carded as "stopped at step N of M"."""
    from sslcore.jobs import JobManager
    from sslcore.model_card import build_model_card

    config = tiny_config(epochs=1, encoder_width=16)   # 11 steps
    Trainer(config, tmp_path / "runs" / "half").fit(max_steps=4)
    run = Run(tmp_path / "runs" / "half")
    assert run.state_text == "stopped at step 4 of 11"
    row = JobManager(tmp_path / "runs", start_thread=False).runs()[0]
    assert row["state"] == "stopped" and row["has_encoder"] and row["stopped_at"] == "stopped at step 4 of 11"
    assert explore.load_run(run.path).stopped == "stopped at step 4 of 11"
    card = str(build_model_card(repo_id="someone/half", config=run.config, class_names=run.config["class_names"],
                                evaluation=None, files=["encoder.keras", "classifier.keras"], stopped=run.stopped))
    assert "**Stopped early:** training was stopped at step 4 of 11, 0 of 1 epochs complete" in card
    finished = str(build_model_card(repo_id="someone/half", config=run.config, class_names=[], evaluation=None,
                                    files=["encoder.keras"]))
    assert "Stopped early" not in finished
