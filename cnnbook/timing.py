"""Small, honest latency measurements for notebook timing cells (sections 14.8, 14.11, 14.14, 14.15).

Timings on a shared CPU are noisy, so :func:`time_forward` warms up first, repeats the call,
and reports the median and the spread between the 25th and 75th percentiles. On a GPU (CUDA or
Apple MPS) a call only *queues* its work and returns at once, so every timer here waits for
the device to finish (:func:`synchronize`) before reading the clock; :func:`time_call` takes
the device to wait for, :func:`time_forward` and :func:`compare_forward` use the input's. Unit
tests never assert on timings; notebooks print them, and ``benchmarks/`` scripts collect them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Timing", "compare_forward", "synchronize", "time_call", "time_forward"]


@dataclass(frozen=True)
class Timing:
    """Latency of one call, in milliseconds.

    Attributes:
        median_ms: Median over the repeats.
        q25_ms: 25th percentile.
        q75_ms: 75th percentile.
        repeats: How many timed calls.
    """

    median_ms: float
    q25_ms: float
    q75_ms: float
    repeats: int

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (IQR {self.q25_ms:.2f}-{self.q75_ms:.2f}, n={self.repeats})"


def _summary(times: list[float]) -> Timing:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Timing(statistics.median(times), q[0], q[2], len(times))


def synchronize(device: torch.device | str | None) -> None:
    """Wait until ``device`` has finished the work queued on it (CUDA, MPS; no-op on a CPU).

    Call it before reading a clock around GPU work: without it a timer measures how long
    queueing the kernels took, not running them.

    Args:
        device: The device (``None``: nothing to wait for).
    """
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def time_call(
    fn: Callable[[], object],
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | str | None = None,
) -> Timing:
    """Time ``fn()`` after ``warmup`` untimed calls, waiting for ``device`` around each call.

    Args:
        fn: The call to time (no arguments).
        repeats: Timed calls (at least 1).
        warmup: Untimed calls first (caches, allocator, lazy initialisation).
        device: The device ``fn`` runs on (``None`` or a CPU: nothing to wait for); its
            queued work is finished before the clock starts and before it stops.

    Returns:
        The :class:`Timing`.

    Raises:
        ValueError: If ``repeats`` is below 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return _summary(times)


def time_forward(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    repeats: int = 20,
    warmup: int = 3,
) -> Timing:
    """Latency of ``model(x)`` under ``torch.inference_mode()``, synchronised on ``x.device``.

    The model's train/eval mode is left as it is (put it in eval mode first for inference
    figures).

    Args:
        model: A module or any callable on tensors.
        x: The input batch.
        repeats: Timed calls.
        warmup: Untimed calls first.

    Returns:
        The :class:`Timing`.
    """

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return time_call(run, repeats, warmup, device=x.device)


def compare_forward(
    models: Mapping[str, nn.Module | Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    repeats: int = 20,
    warmup: int = 2,
) -> dict[str, Timing]:
    """Time several models on the same input, interleaving their runs.

    Round ``r`` runs every model once, in turn, so a burst of load from other programs hits
    all of them alike; comparisons are then fairer than timing one model after the other.
    Each call is synchronised on ``x.device`` (see :func:`synchronize`).

    Args:
        models: Name -> module or callable.
        x: The input batch.
        repeats: Timed rounds.
        warmup: Untimed rounds first.

    Returns:
        Name -> :class:`Timing`, in the order given.

    Raises:
        ValueError: If ``repeats`` is below 1 or ``models`` is empty.
    """
    if repeats < 1 or not models:
        raise ValueError("compare_forward needs at least one model and repeats >= 1.")
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for r in range(warmup + repeats):
            for name, model in models.items():
                synchronize(x.device)
                start = time.perf_counter()
                model(x)
                synchronize(x.device)
                if r >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: _summary(t) for name, t in times.items()}
