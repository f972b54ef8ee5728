"""Time-to-accuracy of notebook 14.15's default configuration on real CIFAR-10.

Trains the plan :func:`cnnbook.recipes.cifar10_plan` picks for this device in full mode (on a
CPU: FastCIFARNet for a few epochs) and reports, per epoch, the test accuracy and the
cumulative wall time of training plus evaluation, then when the target accuracy was first
reached. The machine and its load average are printed with the figures, since a shared
machine's timings depend on what else runs.

Usage::

    CNNBOOK_DATA=../shared/data python benchmarks/time_to_accuracy.py [--target 0.80]
        [--runs 1] [--epochs N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cnnbook import recipes, train
from cnnbook.device import load_average, machine_line


def one_run(plan: recipes.Plan, seed: int, target: float) -> dict:
    """Train once; return final accuracy, total seconds and seconds to ``target``."""
    data_start = time.perf_counter()
    train_arrays, test_arrays = recipes.load_plan_data(plan)
    data_seconds = time.perf_counter() - data_start
    start = time.perf_counter()
    model = recipes.prepare_model(plan, train_arrays, seed)
    tr, te = recipes.make_loaders(plan, train_arrays, test_arrays, seed)
    setup_seconds = time.perf_counter() - start
    hist = train.fit(
        model,
        tr,
        te,
        epochs=plan.epochs,
        lr=plan.lr,
        weight_decay=plan.weight_decay,
        loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=plan.label_smoothing),
        amp=plan.amp,
        device=plan.device,
        seed=seed,
        progress=False,
    )
    elapsed, reached = setup_seconds, None
    for row in hist.rows:
        elapsed += row["seconds"] + row["eval_seconds"]
        if reached is None and row["val_acc"] >= target:
            reached = elapsed
    return {
        "acc": hist.last["val_acc"],
        "seconds": elapsed,
        "to_target": reached,
        "data_seconds": data_seconds,
        "images_per_s": statistics.median(hist["images_per_s"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.80)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--widths", default=None, help="FastCIFARNet widths, e.g. 64,128,256")
    parser.add_argument("--lr", type=float, default=None)
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
    plan = recipes.cifar10_plan(args.device, fast=False, epochs=args.epochs, widths=widths, lr=args.lr)
    print(machine_line(plan.device))
    print(f"plan: {plan.describe()}")
    if plan.tune_process():  # opt-in, process-wide: as the plan asks (CPU)
        print("glibc malloc keeps freed memory for this process (Plan.tune_process)")
    results = []
    for run in range(args.runs):
        res = one_run(plan, seed=run, target=args.target)
        results.append(res)
        to_target = f"{res['to_target'] / 60:.1f} min" if res["to_target"] is not None else "not reached"
        print(
            f"run {run + 1}: test accuracy {res['acc']:.2%} after {res['seconds'] / 60:.1f} "
            f"min of training+evaluation; {args.target:.0%} reached after {to_target}; "
            f"{res['images_per_s']:,.0f} training img/s; data load {res['data_seconds']:.1f} "
            f"s | {load_average()}"
        )
    accs = [r["acc"] for r in results]
    secs = [r["seconds"] for r in results]
    print(
        f"median of {len(results)} run(s): test accuracy {statistics.median(accs):.2%}, "
        f"{statistics.median(secs) / 60:.1f} min; target {args.target:.0%} reached in "
        f"{sum(r['to_target'] is not None for r in results)}/{len(results)} runs"
    )


if __name__ == "__main__":
    main()
