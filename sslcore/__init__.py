"""sslcore: self-supervised image representation learning on Keras 3 (TensorFlow, JAX, PyTorch).

data → augment → encoder → method (loss) → trainer → evaluation → export. Importing the package picks the
Keras backend for this device (see ``sslcore.backend``) unless ``KERAS_BACKEND`` is already set.
"""
from sslcore import backend as _backend

BACKEND, BACKEND_REASON = _backend.configure()

__version__ = "0.1.0"
