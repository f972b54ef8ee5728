"""Train 14.15's CIFAR-10 recipe data-parallel: one process per GPU (or CPU worker).

    torchrun --standalone --nproc_per_node=2 scripts/train_cifar.py --device cpu --fast
    torchrun --standalone --nproc_per_node=8 scripts/train_cifar.py          # 8 GPUs
    python scripts/train_cifar.py                                            # one process

Every process builds the same model and loaders; :func:`cnnbook.train.fit_distributed`
gives each its shard of the training data and keeps the replicas equal. ``--synthetic N``
trains on N generated colour-coded images instead of CIFAR-10 (no download; used by the tests).
On a CPU the recipe asks glibc's malloc to keep freed memory (process-wide; ``--no-tune-malloc``
to leave malloc alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import cnnbook  # noqa: F401  (installed by make env / scripts/setup_env.py)
except ImportError:  # run with a Python where cnnbook is not installed: use this checkout's
    sys.path.insert(0, str(ROOT))

from cnnbook import arrays, distributed, loaders, recipes  # noqa: E402
from cnnbook.train import fit_distributed  # noqa: E402


def synthetic_cifar(n: int, seed: int = 0, classes: int = 10) -> arrays.ImageArrays:
    """``n`` 32x32 images whose class sets a brighter channel pattern (learnable, no download)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 100, (n, 3, 32, 32), generator=g)
    rows = torch.arange(32).view(1, 32, 1)
    band = (rows // 8 == (labels // 3).view(n, 1, 1)).expand(n, 32, 32)  # class k: band k // 3
    images[torch.arange(n), labels % 3] += 120 * band
    return arrays.ImageArrays(
        images.to(torch.uint8),
        labels,
        [f"class{k}" for k in range(classes)],
        (0.3, 0.3, 0.3),
        (0.25, 0.25, 0.25),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best found)")
    p.add_argument("--fast", action="store_true", help="the small fast-mode subsets")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--widths", type=int, nargs=3, default=None, help="FastCIFARNet widths")
    p.add_argument(
        "--loader",
        choices=("fast", "classic"),
        default="fast",
        help="whole-tensor GPUBatchLoader, or the per-image DataLoader",
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="N",
        help="train on N generated images instead of CIFAR-10",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, default=None, help="best weights (rank 0 writes)")
    p.add_argument(
        "--out", type=Path, default=None, help="folder for each rank's final weights and losses (rank<N>.pt)"
    )
    p.add_argument("--no-tune-malloc", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank, world, device = distributed.setup(args.device)
    plan = recipes.cifar10_plan(
        device,
        fast=args.fast,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        widths=tuple(args.widths) if args.widths else None,
    )
    if args.no_tune_malloc:
        plan = dataclasses.replace(plan, tune_malloc=False)
    plan.tune_process()
    if args.synthetic is not None:
        train, test = synthetic_cifar(args.synthetic, args.seed), synthetic_cifar(100, 1)
    else:
        train, test = recipes.load_plan_data(plan, seed=args.seed)
    if rank == 0:
        print(
            f"{plan.describe()} | {world} process(es) | data: {len(train.labels):,} training "
            f"images{' (synthetic)' if args.synthetic is not None else ''}"
        )
    model = recipes.prepare_model(plan, train, seed=args.seed)  # the same on every rank
    fast_train, test_loader = recipes.make_loaders(plan, train, test, seed=args.seed)
    if args.loader == "fast":
        train_loader = fast_train
    else:
        ds = loaders.ImageArrayDataset(train, loaders.classic_transforms(True, train.mean, train.std))
        train_loader = loaders.classic_loader(
            ds, plan.batch_size, num_workers=0, device=device, seed=args.seed
        )
    history = fit_distributed(
        model,
        train_loader,
        test_loader,
        **plan.fit_kwargs(),
        seed=args.seed,
        checkpoint=args.checkpoint,
        progress=False,
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "train_loss": history["train_loss"],
                "world_size": world,
                "steps_per_epoch": len(history.step_lr) // len(history),
            },
            args.out / f"rank{rank}.pt",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
