"""A run saved on one Keras backend loads and computes the same features on the others."""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from sslcore.backend import installed_backends
from sslcore.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]
LOAD_ELSEWHERE = """
import json, sys
import numpy as np, keras
run, images = sys.argv[1], np.load(sys.argv[2])
encoder = keras.saving.load_model(run + "/encoder.keras")
classifier = keras.saving.load_model(run + "/classifier.keras")
np.save(sys.argv[3], np.asarray(encoder.predict(images, verbose=0)))
np.save(sys.argv[4], np.asarray(classifier.predict(images, verbose=0)))
print(json.dumps({"backend": keras.backend.backend()}))
"""


@pytest.mark.core
@pytest.mark.slow
def test_encoder_and_classifier_saved_here_load_on_every_other_backend(tmp_path, tiny_run):
    here = keras.backend.backend()
    others = [name for name in installed_backends() if name != here]
    if not others:
        pytest.skip("only one Keras backend is installed")
    run = RunDir(tiny_run)
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    features = keras.saving.load_model(run.encoder_path).predict(images, verbose=0)
    probabilities = keras.saving.load_model(run.classifier_path).predict(images, verbose=0)
    for other in others:
        environment = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, str(run.path), str(tmp_path / "images.npy"),
                               str(tmp_path / f"{other}-features.npy"), str(tmp_path / f"{other}-probabilities.npy")],
                              env=environment, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1])["backend"] == other
        np.testing.assert_allclose(np.load(tmp_path / f"{other}-features.npy"), features, rtol=1e-3, atol=1e-4,
                                   err_msg=f"features of a {here} encoder on {other}")
        np.testing.assert_allclose(np.load(tmp_path / f"{other}-probabilities.npy"), probabilities, atol=1e-4,
                                   err_msg=f"probabilities of a {here} classifier on {other}")
