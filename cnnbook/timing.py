"""Small, honest latency measurements for notebook benchmark cells (sections 14.8, 14.11).

Timings on a shared CPU are noisy, so :func:`time_forward` warms up first, repeats the call,
and reports the median and the spread between the 25th and 75th percentiles. Unit tests never
assert on timings; notebooks print them, and ``benchmarks/`` scripts collect them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Timing", "compare_forward", "time_call", "time_forward"]


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


def time_call(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> Timing:
    """Time ``fn()`` after ``warmup`` untimed calls.

    Args:
        fn: The call to time (no arguments).
        repeats: Timed calls (at least 1).
        warmup: Untimed calls first (caches, allocator, lazy initialisation).

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
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return _summary(times)


def time_forward(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    repeats: int = 20,
    warmup: int = 3,
) -> Timing:
    """Latency of ``model(x)`` under ``torch.inference_mode()``.

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

    return time_call(run, repeats, warmup)


def compare_forward(
    models: Mapping[str, nn.Module | Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    repeats: int = 20,
    warmup: int = 2,
) -> dict[str, Timing]:
    """Time several models on the same input, interleaving their runs.

    Round ``r`` runs every model once, in turn, so a burst of load from other programs hits
    all of them alike; comparisons are then fairer than timing one model after the other.

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
                start = time.perf_counter()
                model(x)
                if r >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: _summary(t) for name, t in times.items()}
