"""Device choice and how to use it for training cells (sections 14.5, 14.6, 14.9, 14.14, 14.15).

Order of preference: CUDA, then Apple MPS, then CPU. :func:`run_settings` then picks mixed
precision (bf16 autocast on CUDA where supported, fp16 with a gradient scaler otherwise),
channels-last memory layout, and pinned memory / non-blocking copies for GPUs.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then MPS, then CPU.

    Args:
        prefer: Force a device type ("cuda", "mps" or "cpu"); ``None`` picks automatically.

    Returns:
        The chosen ``torch.device``.

    Raises:
        ValueError: If ``prefer`` names a device that is not available here.
    """
    if prefer is not None:
        kind = prefer.split(":")[0].lower()
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
        if kind not in available:
            raise ValueError(f"Unknown device {prefer!r}; use 'cuda', 'mps' or 'cpu'.")
        if not available[kind]:
            raise ValueError(
                f"Device {prefer!r} is not available on this machine; "
                "use pick_device() to choose automatically."
            )
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_device(device: torch.device) -> str:
    """One line naming the device, e.g. ``cuda: NVIDIA H100 (79.1 GiB)``.

    Args:
        device: The device to describe.

    Returns:
        A human-readable one-line description.
    """
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        return f"cuda: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return f"mps: Apple GPU ({platform.machine()})"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _cpu_flags() -> str:
    """The CPU flags line(s) of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """Whether this process computes bfloat16 natively (AVX512-BF16 or AMX), read on Linux.

    ``False`` also when the kernels are capped below AVX-512 (``ATEN_CPU_CAPABILITY=avx2`` or
    ``DNNL_MAX_CPU_ISA`` without BF16/AMX, as the laptop profile of :mod:`cnnbook.profiles`
    sets): bfloat16 would then be emulated, slower than float32.
    """
    flags = _cpu_flags()
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    isa = os.environ.get("DNNL_MAX_CPU_ISA", "ALL").upper()
    return isa == "ALL" or "BF16" in isa or "AMX" in isa


def autocast_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """The mixed-precision dtype to train with on ``device``, or ``None`` for full float32.

    CUDA: bfloat16 where the GPU supports it (Ampere and newer), else float16 (which then
    needs a gradient scaler, see :func:`needs_grad_scaler`). CPU: bfloat16 only when asked
    (``cpu_bf16``) and the CPU computes it natively (:func:`cpu_has_native_bf16`; there it
    trained FastCIFARNet 2-3x faster on a 2-core machine), else float32. MPS: float32.

    Args:
        device: The training device.
        cpu_bf16: Allow bfloat16 autocast on a CPU with native support.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None``.
    """
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else None
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters


def tune_cpu_allocator() -> bool:
    """Make glibc's ``malloc`` keep and reuse freed memory instead of returning it to the OS.

    By default glibc serves blocks above 128 KiB with fresh ``mmap`` calls and gives them back
    on ``free``, so every training step pays page faults to re-zero its activation and batch
    buffers. Raising the mmap and trim thresholds (as the environment variables
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` would) made CPU training steps
    about 1.5-2x faster on a 2-core machine, and the fed batches cost no more than reused ones.
    The setting is process-wide, lasts until the process ends and only affects later
    allocations, so nothing in cnnbook calls it for you: a notebook or script that wants the
    speed calls it once, visibly (the benchmarks and the CPU recipe of 14.15 do).

    Returns:
        ``True`` if applied (Linux with glibc), ``False`` otherwise (nothing changed).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
        and mallopt(_M_TRIM_THRESHOLD, 2**30)
        and mallopt(_M_TOP_PAD, 64 * 2**20)
    )


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """Whether training in ``dtype`` needs loss scaling (float16 only: its range is small)."""
    return dtype == torch.float16


@dataclass(frozen=True)
class RunSettings:
    """How a training run uses its device.

    Attributes:
        device: Where the model and batches live.
        amp_dtype: Autocast dtype, or ``None`` for float32.
        grad_scaler: Use a ``torch.amp.GradScaler`` (float16 autocast).
        channels_last: Keep the model and batches in channels-last (NHWC) memory layout.
        pin_memory: Let DataLoaders pin host memory (fast, asynchronous copies to a GPU).
        non_blocking: Copy batches to the device asynchronously.
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    grad_scaler: bool
    channels_last: bool
    pin_memory: bool
    non_blocking: bool

    def describe(self) -> str:
        """One line, e.g. ``cpu: AMD EPYC, 2 threads | float32 | channels_last``."""
        precision = {
            None: "float32",
            torch.bfloat16: "bf16 autocast",
            torch.float16: "fp16 autocast + grad scaler",
        }[self.amp_dtype]
        parts = [describe_device(self.device), precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.pin_memory:
            parts.append("pinned memory")
        return " | ".join(parts)


def run_settings(
    device: torch.device | str | None = None, amp: bool | None = None, channels_last: bool | None = None
) -> RunSettings:
    """Choose precision, memory layout and transfer options for ``device``.

    Args:
        device: The device (``None``: :func:`pick_device`).
        amp: Mixed precision. ``None``: on CUDA only; ``True``: also bfloat16 on a CPU that
            computes it natively; ``False``: never (see :func:`autocast_dtype`).
        channels_last: NHWC layout; ``None`` turns it on for CPU and CUDA (on a 2-core CPU it
            made SimpleCNN training about 1.8x faster; GPUs' tensor cores prefer it too).

    Returns:
        The :class:`RunSettings`.
    """
    dev = pick_device() if device is None else torch.device(device)
    dtype = autocast_dtype(dev, cpu_bf16=amp is True) if amp is not False else None
    cl = dev.type in ("cpu", "cuda") if channels_last is None else channels_last
    on_gpu = dev.type == "cuda"
    return RunSettings(dev, dtype, needs_grad_scaler(dtype), cl, on_gpu, on_gpu)


def load_average() -> str:
    """The host's 1/5/15-minute load averages as text (timings on a busy machine are noisy)."""
    import os

    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def machine_line(device: torch.device | None = None) -> str:
    """Host, device, torch version and load average, for benchmark output on shared machines."""
    dev = describe_device(device if device is not None else pick_device())
    return f"machine: {platform.node()} | {dev} | torch {torch.__version__} | {load_average()}"
