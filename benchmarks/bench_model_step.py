"""How fast can SimpleCNN train on this machine with no input pipeline at all?

The ceiling for issue 4's "(b) >= 8 x (a)" target: row (c) of bench_pipeline.py under other
settings (batch size, memory layout, bf16 autocast vs bf16 weights, torch.compile). One
pre-made random batch; forward + backward + SGD step; medians of interleaved repeats.

Usage::

    python benchmarks/bench_model_step.py [--seconds 4] [--repeats 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from cnnbook import models
from cnnbook.device import load_average, machine_line, tune_cpu_allocator

# name: (batch, channels_last, bf16 autocast, torch.compile, bf16 weights)
CONFIGS: dict[str, tuple[int, bool, bool, bool, bool]] = {
    "batch 32, float32, NCHW": (32, False, False, False, False),
    "batch 256, bf16 autocast, channels-last": (256, True, True, False, False),
    "batch 512, bf16 autocast, channels-last": (512, True, True, False, False),
    "batch 1024, bf16 autocast, channels-last": (1024, True, True, False, False),
    "batch 256, bf16 autocast, NCHW": (256, False, True, False, False),
    "batch 256, bf16 weights, channels-last": (256, True, False, False, True),
    "batch 256, bf16 autocast, channels-last, compiled": (256, True, True, True, False),
}


def make_step(
    batch: int, channels_last: bool, autocast: bool, compiled: bool, bf16_weights: bool
) -> Callable[[], None]:
    """One training step of SimpleCNN on a fixed ``(batch, 3, 32, 32)`` input."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dtype = torch.bfloat16 if bf16_weights else torch.float32
    model = models.SimpleCNN().to(dtype=dtype, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, 32, 32, dtype=dtype).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def images_per_second(step: Callable[[], None], batch: int, seconds: float) -> float:
    for _ in range(3):  # warm-up (and compilation)
        step()
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        images += batch
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    args = parser.parse_args()
    tune_cpu_allocator()  # opt-in, process-wide: as 14.15's CPU plan asks (Plan.tune_process)
    configs = {k: v for k, v in CONFIGS.items() if not (args.no_compile and v[3])}
    steps = {name: make_step(*cfg) for name, cfg in configs.items()}
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, step in steps.items():
            rates[name].append(images_per_second(step, configs[name][0], args.seconds))
    print(machine_line())
    print(f"medians over {args.repeats} repeats of {args.seconds:g} s | {load_average()}")
    for name, values in rates.items():
        print(f"{name:<52}{statistics.median(values):>8,.0f} img/s")


if __name__ == "__main__":
    main()
