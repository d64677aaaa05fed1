"""Choose the Keras backend before Keras is imported.

Keras reads ``KERAS_BACKEND`` once, at import, so the choice has to be made here, first thing.
The default is the backend measured fastest on the device at hand (``../shared/BENCHMARKS.md``):

* a CUDA GPU → ``jax`` (one XLA-compiled train step, data and augmentation on the GPU);
* a ZeroGPU Hugging Face Space → ``torch`` (the only framework ZeroGPU can attach a GPU to);
* CPU only → ``tensorflow`` (the seeds' SimCLR step ran at ~1,085 img/s on 2 cores against ~264 on
  JAX and ~246 on PyTorch through Keras).

``KERAS_BACKEND`` in the environment, or ``--backend`` on the command line, always wins.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

BACKENDS = ("tensorflow", "jax", "torch")


def has_cuda_gpu() -> bool:
    """True when an NVIDIA GPU is visible; checked without importing any framework (fast, no side effects)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None and os.path.exists("/proc/driver/nvidia")


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def zero_gpu_space() -> bool:
    """True on a Hugging Face ZeroGPU Space (the variable is set there)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def default_backend() -> tuple[str, str]:
    """The backend this device should use, and the reason (shown in the app and the CLI)."""
    if zero_gpu_space():
        return "torch", "ZeroGPU Space: PyTorch is the only framework ZeroGPU attaches a GPU to"
    installed = installed_backends()
    if has_cuda_gpu() and "jax" in installed:
        return "jax", "CUDA GPU found: JAX compiles the whole train step with XLA"
    if has_cuda_gpu() and "torch" in installed:   # e.g. a GPU Space, which installs space/requirements.txt
        return "torch", "CUDA GPU found, JAX not installed: PyTorch runs on the GPU"
    if "tensorflow" in installed:
        return "tensorflow", "CPU only: TensorFlow measured fastest on CPU (BENCHMARKS.md: ~4x JAX and PyTorch)"
    if installed:
        return installed[0], f"CPU only: {installed[0]} is the installed Keras backend"
    raise RuntimeError("No Keras backend is installed: pip install -r requirements.txt")


def cpu_has_amx_bf16() -> bool:
    """True when the CPU multiplies bfloat16 matrices in hardware (Intel AMX), read from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return "amx_bf16" in flags.split()


def default_precision(backend: str) -> tuple[str, str]:
    """The precision ``--precision auto`` trains in on this device, and the reason.

    Measured (docs/benchmarks.md): on a 2-core CPU with AMX, TensorFlow's mixed-bfloat16 SimCLR step ran 1.6× the
    images a second of fp32 at 32 px and 2.3× at 96 px. Elsewhere (no AMX, JAX or PyTorch on CPU, any GPU) bf16 was
    not measured faster here, so fp32 stays."""
    if backend == "tensorflow" and not has_cuda_gpu() and cpu_has_amx_bf16():
        return "bf16", "CPU with AMX: mixed bfloat16 measured 1.6-2.3x faster than fp32 on TensorFlow"
    return "fp32", "fp32: mixed precision was not measured faster on this device and backend"


def configure(backend: str | None = None) -> tuple[str, str]:
    """Set KERAS_BACKEND unless Keras is already imported; returns (backend, reason)."""
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU-feature notes) is noise for a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if backend:
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        os.environ["KERAS_BACKEND"] = backend
        return backend, "chosen with --backend"
    if zero_gpu_space():
        # ZeroGPU's package must patch torch before anything imports it (and it fails if CUDA is initialised).
        import spaces  # noqa: F401
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "set by KERAS_BACKEND"
    chosen, reason = default_backend()
    os.environ["KERAS_BACKEND"] = chosen
    return chosen, reason
