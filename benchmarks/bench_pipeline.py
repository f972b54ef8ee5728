"""Training throughput of the input pipelines on real CIFAR-10, measured in one run.

Rows (all train SimpleCNN with SGD + momentum, forward + backward + step):

(a)  classic: the chapter's pipeline - per-image torchvision transforms (random crop with
     padding 4, flip, ToTensor, Normalize) in a Dataset behind a DataLoader, batch 32,
     4 workers, default memory layout;
(a2) the same per-image pipeline at (b)'s batch size and device settings (isolates the
     pipeline);
(b)  our fast path: the whole uint8 dataset as one tensor, batches cropped/flipped/normalised
     at once (cnnbook.loaders.GPUBatchLoader), batch 256, with the settings fit() uses for the
     14.15 plan: channels-last, and bfloat16 autocast where the CPU computes it natively
     (``--amp off`` for float32);
(c)  the model-only limit: the same model and settings as (b) on one pre-made batch.

glibc's malloc is told to keep freed memory (cnnbook.device.tune_cpu_allocator, which 14.15's
CPU plan opts into) for all rows, since the setting is process-wide. Each row is timed for
``--seconds`` after a warm-up, ``--repeats`` times, interleaved so that the machine's load
affects all rows alike; medians are reported with the ratios the README quotes: (b)/(c) and
(b)/(a).

Usage::

    CNNBOOK_DATA=../shared/data python benchmarks/bench_pipeline.py [--seconds 15]
        [--repeats 3] [--batch 256] [--workers 4] [--model simplecnn] [--amp auto|off]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from cnnbook import datasets, loaders
from cnnbook.device import load_average, machine_line, run_settings, tune_cpu_allocator


def make_model(name: str) -> nn.Module:
    from cnnbook import models

    if name == "simplecnn":
        return models.SimpleCNN()
    if name == "fastnet":
        return models.FastCIFARNet(widths=(32, 64, 128))
    raise ValueError(f"Unknown model {name!r}; use simplecnn or fastnet.")


class Trainer:
    """One model + optimiser; ``step`` does forward, backward and update."""

    def __init__(self, model_name: str, channels_last: bool, amp_dtype: torch.dtype | None = None) -> None:
        torch.manual_seed(0)
        self.amp_dtype = amp_dtype
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = make_model(model_name).to(memory_format=self.fmt).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.contiguous(memory_format=self.fmt)
        with torch.autocast("cpu", dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss = self.loss(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def timed(
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    trainer: Trainer,
    seconds: float,
    warmup: int = 3,
) -> float:
    """Images per second while training from ``batches()`` for about ``seconds``."""
    it = batches()
    for _ in range(warmup):
        trainer.step(*next(it))
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, y = next(it)
        trainer.step(x, y)
        images += y.shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--model", default="simplecnn")
    parser.add_argument("--amp", choices=("auto", "off"), default="auto")
    args = parser.parse_args()
    device = torch.device("cpu")
    fast = run_settings(device, amp=args.amp == "auto")
    # Opt-in and process-wide, so every row (and the loader workers) gets it, as 14.15's CPU
    # plan asks for it (Plan.tune_process).
    tuned = tune_cpu_allocator()
    print(
        f"(a2)/(b)/(c) settings: {fast.describe()}"
        + (" | malloc keeps freed memory (all rows)" if tuned else "")
    )
    print(machine_line(device))
    t = time.perf_counter()
    train = datasets.load_cifar10("train")
    print(f"load CIFAR-10 train (cached uint8 arrays): {time.perf_counter() - t:.2f} s")

    chapter_ds = loaders.cifar10_dataset("train")  # classic_transforms(train=True)
    classic_32 = loaders.classic_loader(chapter_ds, batch_size=32, num_workers=args.workers)
    classic_big = loaders.classic_loader(chapter_ds, batch_size=args.batch, num_workers=args.workers)
    loader = loaders.GPUBatchLoader(train, args.batch, device=device, channels_last=True)
    x0, y0 = next(iter(loader))

    def forever(loader) -> Callable[[], Iterator]:
        return lambda: itertools.chain.from_iterable(itertools.repeat(loader))

    rows = {
        "(a)  classic, batch 32, chapter settings": (forever(classic_32), False, None),
        f"(a2) classic, batch {args.batch}, (b)'s settings": (forever(classic_big), True, fast.amp_dtype),
        f"(b)  fast whole-tensor path, batch {args.batch}": (forever(loader), True, fast.amp_dtype),
        f"(c)  model only, batch {args.batch}": (lambda: itertools.repeat((x0, y0)), True, fast.amp_dtype),
    }
    results: dict[str, list[float]] = {k: [] for k in rows}
    for rep in range(args.repeats):
        for name, (batches, cl, dtype) in rows.items():
            rate = timed(batches, Trainer(args.model, cl, dtype), args.seconds)
            results[name].append(rate)
            print(f"  repeat {rep + 1}: {name}: {rate:8.0f} img/s", flush=True)
    print(
        f"\nmedians over {args.repeats} repeats of {args.seconds:.0f} s "
        f"({args.model}, {torch.get_num_threads()} threads, {args.workers} workers for "
        f"the classic loaders) | {load_average()}"
    )
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, rate in med.items():
        print(f"{name:48s} {rate:8.0f} img/s")
    a, b, c = (med[k] for k in list(rows)[:1] + list(rows)[2:])
    print(f"(b)/(c) = {b / c:.2f}   (target >= 0.85)")
    print(f"(b)/(a) = {b / a:.1f}x  (target >= 8)")


if __name__ == "__main__":
    main()
