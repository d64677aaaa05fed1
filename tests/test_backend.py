"""The default Keras backend per device, and why (sslcore.backend)."""
import pytest

from sslcore import backend


@pytest.mark.parametrize("zero_gpu, cuda, installed, expected", [
    (True, False, ["torch"], "torch"),                            # ZeroGPU: PyTorch only, whatever else is there
    (True, True, ["tensorflow", "jax", "torch"], "torch"),
    (False, True, ["tensorflow", "jax", "torch"], "jax"),         # a CUDA GPU with JAX: the XLA path
    (False, True, ["torch"], "torch"),                            # a GPU Space installing space/requirements.txt
    (False, False, ["tensorflow", "jax", "torch"], "tensorflow"), # CPU: measured fastest
    (False, False, ["jax", "torch"], "jax"),
])
def test_default_backend_per_device(monkeypatch, zero_gpu, cuda, installed, expected):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true" if zero_gpu else "")
    monkeypatch.setattr(backend, "has_cuda_gpu", lambda: cuda)
    monkeypatch.setattr(backend, "installed_backends", lambda: installed)
    chosen, reason = backend.default_backend()
    assert chosen == expected
    assert ("CPU" in reason) == (not cuda and not zero_gpu)


def test_no_backend_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setattr(backend, "installed_backends", lambda: [])
    with pytest.raises(RuntimeError, match="pip install"):
        backend.default_backend()
