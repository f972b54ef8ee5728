"""Device choice for training cells (sections 14.5, 14.6, 14.9, 14.14, 14.15).

Order of preference: CUDA, then Apple MPS, then CPU.
"""

from __future__ import annotations

import platform

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
