"""Time-to-accuracy of notebook 14.15's default configuration on real CIFAR-10.

Trains the plan :func:`cnnbook.recipes.cifar10_plan` picks for this device in full mode as
notebook 14.15 does: 5,000 training images held out for validation, the best epoch chosen on
them, the chosen model scored on the test set once. Reports the test accuracy, the wall time of
training plus validation next to the estimate :func:`cnnbook.recipes.estimate_seconds` made
beforehand, and when the validation accuracy first reached the target. The machine, profile
and load average are printed with the figures, since a shared machine's timings depend on
what else runs.

``--profile laptop`` restarts the script under the laptop profile (float32, AVX2 kernels, 2
threads; :mod:`cnnbook.profiles`), ``--profile native`` under this CPU's best kernels.

Usage::

    CNNBOOK_DATA=../shared/data python benchmarks/time_to_accuracy.py [--target 0.80]
        [--runs 1] [--epochs N] [--device cpu] [--profile laptop]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import cnnbook  # noqa: F401  (installed by make env / scripts/setup_env.py)
except ImportError:  # run with a Python where cnnbook is not installed: use this checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnnbook import profiles


def _early_profile(argv: list[str]) -> None:
    """Re-exec under ``--profile NAME`` before torch is imported (it reads the variables once)."""
    for i, arg in enumerate(argv):
        name = arg.split("=", 1)[1] if arg.startswith("--profile=") else None
        if arg == "--profile" and i + 1 < len(argv):
            name = argv[i + 1]
        if name:
            profiles.reexec_under(name)


if __name__ == "__main__":
    _early_profile(sys.argv[1:])


from cnnbook import arrays, checkpoint, loaders, recipes, train  # noqa: E402
from cnnbook.device import load_average, machine_line  # noqa: E402


def one_run(plan: recipes.Plan, seed: int, target: float) -> dict:
    """Train as notebook 14.15 does (5,000 validation images held out, the best epoch chosen on
    them) and score the chosen model on the test set once.

    Returns:
        Test accuracy of the chosen epoch, seconds of training plus validation, seconds until
        the validation accuracy first reached ``target``, the time estimate printed before
        training, data-loading seconds and median training images/s.
    """
    data_start = time.perf_counter()
    pool, test_arrays = recipes.load_plan_data(plan)
    train_arrays, val_arrays = arrays.train_val_split(pool, val_size=min(5000, len(pool) // 10), seed=0)
    data_seconds = time.perf_counter() - data_start
    start = time.perf_counter()
    model = recipes.prepare_model(plan, train_arrays, seed)
    tr, va = recipes.make_loaders(plan, train_arrays, val_arrays, seed)
    estimate = recipes.estimate_seconds(model, tr, plan.epochs, va, plan.settings())
    setup_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        hist = train.fit(
            model, tr, va, **plan.fit_kwargs(), checkpoint=Path(tmp) / "best.pt", seed=seed, progress=False
        )
        chosen = plan.build_model()
        checkpoint.load_checkpoint(Path(tmp) / "best.pt", chosen)
    test_loader = loaders.GPUBatchLoader(test_arrays, 1000, train=False, device=plan.device)
    test = train.evaluate(chosen, test_loader, settings=plan.settings())  # placed as trained
    elapsed, reached = setup_seconds, None
    for row in hist.rows:
        elapsed += row["seconds"] + row["eval_seconds"]
        if reached is None and row["val_acc"] >= target:
            reached = elapsed
    return {
        "acc": test.accuracy,
        "val_acc": hist.best_metric,
        "seconds": elapsed,
        "estimate": estimate,
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
    parser.add_argument("--profile", choices=sorted(profiles.PROFILES), default=None)
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
    plan = recipes.cifar10_plan(args.device, fast=False, epochs=args.epochs, widths=widths, lr=args.lr)
    print(machine_line(plan.device))
    profile = profiles.get(args.profile).description if args.profile else "environment as found"
    print(f"profile: {profile}; {profiles.current()}")
    print(f"plan: {plan.describe()}")
    if plan.tune_process():  # opt-in, process-wide: as the plan asks (CPU)
        print("glibc malloc keeps freed memory for this process (Plan.tune_process)")
    results = []
    for run in range(args.runs):
        res = one_run(plan, seed=run, target=args.target)
        results.append(res)
        to_target = f"{res['to_target'] / 60:.1f} min" if res["to_target"] is not None else "not reached"
        print(
            f"run {run + 1}: test accuracy {res['acc']:.2%} (chosen on validation: "
            f"{res['val_acc']:.2%}) after {res['seconds'] / 60:.1f} min of training+validation "
            f"(estimated beforehand: {res['estimate'] / 60:.1f} min, ratio actual/estimate "
            f"{res['seconds'] / res['estimate']:.2f}); validation {args.target:.0%} reached "
            f"after {to_target}; "
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
