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


@pytest.mark.parametrize("name, cuda, amx, expected", [
    ("tensorflow", False, True, "bf16"),    # measured 1.6x faster at 32 px on 2 AMX cores
    ("tensorflow", False, False, "fp32"),   # without AMX bf16 is emulated, and slower
    ("tensorflow", True, True, "fp32"),     # GPUs: not measured here
    ("jax", False, True, "fp32"),
    ("torch", False, True, "fp32"),
])
def test_auto_precision_is_bf16_only_where_it_was_measured_faster(monkeypatch, name, cuda, amx, expected):
    monkeypatch.setattr(backend, "has_cuda_gpu", lambda: cuda)
    monkeypatch.setattr(backend, "cpu_has_amx_bf16", lambda: amx)
    assert backend.default_precision(name)[0] == expected


def test_amx_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *args, **kwargs: real_open(
        cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert backend.cpu_has_amx_bf16()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert not backend.cpu_has_amx_bf16()
    cpuinfo.unlink()
    assert not backend.cpu_has_amx_bf16()
