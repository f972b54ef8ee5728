"""Device choice and how to use it for training cells (sections 14.5, 14.6, 14.9, 14.13-14.16).

Order of preference: CUDA, then Apple MPS, then CPU; ``CNNBOOK_DEVICE=cpu|cuda|mps`` (or
``pick_device("cpu")`` in a notebook's first cell) forces one. :func:`tier` is the one rule
notebooks size their runs by: ``"gpu"`` for CUDA *and* MPS, ``"cpu"`` otherwise.
:func:`run_settings` then picks mixed precision by what the card computes (bf16 autocast on
CUDA compute capability 8.0 and newer, fp16 with a gradient scaler below that), the
channels-last memory layout and non-blocking copies; :class:`RunSettings` is the one place that
moves a model to its device (:meth:`RunSettings.place`) and opens autocast
(:meth:`RunSettings.autocast`).
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

DEVICE_ENV = "CNNBOOK_DEVICE"
DEVICE_TYPES = ("cuda", "mps", "cpu")


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the training device: the forced one, else CUDA, then MPS, then CPU.

    Args:
        prefer: Force a device ("cuda", "cuda:1", "mps" or "cpu"); ``None`` reads the
            ``CNNBOOK_DEVICE`` environment variable, and without it picks automatically.

    Returns:
        The chosen ``torch.device``.

    Raises:
        ValueError: If the forced device is unknown or not available here.
    """
    source = "pick_device(prefer=...)"
    if prefer is None and os.environ.get(DEVICE_ENV, "").strip():
        prefer, source = os.environ[DEVICE_ENV].strip(), f"{DEVICE_ENV}={os.environ[DEVICE_ENV]!r}"
    if prefer is not None:
        kind = prefer.split(":")[0].lower()
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
        if kind not in available:
            raise ValueError(f"Unknown device {prefer!r} (from {source}); use 'cuda', 'mps' or 'cpu'.")
        if not available[kind]:
            found = ", ".join(k for k in DEVICE_TYPES if available[k])
            raise ValueError(
                f"Device {prefer!r} (from {source}) is not available on this machine (found: "
                f"{found}). Remove the setting to choose automatically, or force one of those."
            )
        return torch.device(prefer.lower())
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def tier(device: torch.device | str) -> Literal["cpu", "gpu"]:
    """The size class of ``device``: ``"gpu"`` for CUDA and Apple MPS, ``"cpu"`` otherwise.

    The one rule notebooks choose data sizes, widths and epochs by: an Apple GPU is sized like
    an NVIDIA one (both run a CIFAR-sized step many times faster than a laptop CPU).

    Args:
        device: A device or its name.

    Returns:
        ``"gpu"`` or ``"cpu"``.
    """
    return "gpu" if torch.device(device).type in ("cuda", "mps") else "cpu"


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s first parameter (else buffer) lives; the CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-D weight is stored channels-last (NHWC)."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


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


BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA GPUs with bfloat16 tensor cores


def precision_choice(device: torch.device, cpu_bf16: bool = False) -> tuple[torch.dtype | None, str]:
    """The mixed-precision dtype to train with on ``device`` and the reason, in words.

    CUDA: bfloat16 on compute capability 8.0 and newer (Ampere, Ada, Hopper, Blackwell), else
    float16, which then needs a gradient scaler (:func:`needs_grad_scaler`). The capability
    decides, not ``torch.cuda.is_bf16_supported()``: that also says yes when bfloat16 is only
    emulated (T4 7.5, V100 7.0, RTX 20xx), where it is slow. CPU: bfloat16 only when asked
    (``cpu_bf16``) and computed natively (:func:`cpu_has_native_bf16`; there it trained
    FastCIFARNet 2-3x faster on a 2-core machine), else float32. MPS: float32.

    Args:
        device: The training device.
        cpu_bf16: Allow bfloat16 autocast on a CPU with native support.

    Returns:
        ``(torch.bfloat16 | torch.float16 | None, reason)``; ``None`` means float32.
    """
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= BF16_MIN_CAPABILITY:
            return torch.bfloat16, f"compute capability {major}.{minor} has bfloat16 tensor cores"
        return torch.float16, (
            f"compute capability {major}.{minor} is below 8.0 (no native bfloat16): float16 with a "
            "gradient scaler"
        )
    if device.type == "cpu":
        if not cpu_bf16:
            return None, "float32 on a CPU unless bfloat16 is asked for (amp=True)"
        if cpu_has_native_bf16():
            return torch.bfloat16, "this CPU computes bfloat16 natively (AVX512-BF16/AMX)"
        return None, "this CPU has no native bfloat16: float32"
    return None, f"float32 on {device.type} (no mixed precision there)"


def autocast_dtype(device: torch.device, cpu_bf16: bool = False) -> torch.dtype | None:
    """The mixed-precision dtype of :func:`precision_choice` (``None``: float32)."""
    return precision_choice(device, cpu_bf16)[0]


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
    """How a run uses its device: the one place that moves models and opens autocast.

    Attributes:
        device: Where the model and batches live.
        amp_dtype: Autocast dtype, or ``None`` for float32.
        grad_scaler: Use a ``torch.amp.GradScaler`` (float16 autocast).
        channels_last: Keep the model and batches in channels-last (NHWC) memory layout.
        non_blocking: Copy batches to the device asynchronously (CUDA).
        reason: Why this precision was chosen, in words.
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    grad_scaler: bool
    channels_last: bool
    non_blocking: bool
    reason: str = ""

    @property
    def memory_format(self) -> torch.memory_format:
        """``torch.channels_last`` or ``torch.contiguous_format``, for 4-D batches."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def place(self, module: nn.Module) -> nn.Module:
        """Move ``module`` to the device (and to channels-last if set), in place; returns it."""
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`amp_dtype` on the device; a no-op context for float32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def batches(self, loader: Iterable) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches of ``loader`` moved to the device, images in the memory layout."""
        for x, y in loader:
            x = x.to(self.device, non_blocking=self.non_blocking)
            if x.dim() == 4:
                x = x.contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=self.non_blocking)

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
        return " | ".join(parts)


def run_settings(
    device: torch.device | str | None = None, amp: bool | None = None, channels_last: bool | None = None
) -> RunSettings:
    """Choose precision, memory layout and transfer options for ``device``.

    Args:
        device: The device (``None``: :func:`pick_device`).
        amp: Mixed precision. ``None``: on CUDA only; ``True``: also bfloat16 on a CPU that
            computes it natively; ``False``: never (see :func:`precision_choice`).
        channels_last: NHWC layout; ``None`` turns it on for CPU and CUDA (on a 2-core CPU it
            made SimpleCNN training about 1.8x faster; GPUs' tensor cores prefer it too).

    Returns:
        The :class:`RunSettings`.
    """
    dev = pick_device() if device is None else torch.device(device)
    if amp is False:
        dtype, reason = None, "float32: mixed precision turned off (amp=False)"
    else:
        dtype, reason = precision_choice(dev, cpu_bf16=amp is True)
    cl = dev.type in ("cpu", "cuda") if channels_last is None else channels_last
    return RunSettings(dev, dtype, needs_grad_scaler(dtype), cl, dev.type == "cuda", reason)


def settings_for(model: nn.Module, amp: bool | None = None) -> RunSettings:
    """Run settings that match where ``model`` is and how its weights are laid out."""
    return run_settings(model_device(model), amp=amp, channels_last=is_channels_last(model))


def load_average() -> str:
    """The host's 1/5/15-minute load averages as text (timings on a busy machine are noisy)."""
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except (OSError, AttributeError):  # no getloadavg on Windows
        return "load average unknown"


def machine_line(device: torch.device | None = None) -> str:
    """Host, device, torch version and load average, for benchmark output on shared machines."""
    dev = describe_device(device if device is not None else pick_device())
    return f"machine: {platform.node()} | {dev} | torch {torch.__version__} | {load_average()}"
