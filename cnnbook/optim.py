"""Optimiser and learning-rate schedule for :func:`cnnbook.train.fit` (sections 14.15 and 14.16).

:func:`make_optimizer` builds SGD with Nesterov momentum or AdamW, without weight decay on
biases and normalisation weights; :func:`make_scheduler` builds a one-cycle or cosine schedule
stepped once per batch.
"""

from __future__ import annotations

import torch
from torch import nn

SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(
    model: nn.Module, name: str = "sgd", lr: float = 0.05, weight_decay: float = 5e-4, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW, over the trainable parameters.

    Biases and normalisation weights (1-D parameters) get no weight decay.

    Args:
        model: The network.
        name: "sgd" or "adamw".
        lr: (Peak) learning rate.
        weight_decay: L2 penalty for weight matrices and kernels.
        momentum: SGD momentum (ignored by AdamW).

    Returns:
        The optimiser.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters; unfreeze some (e.g. the head).")
    groups = [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup: float = 0.2
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A learning-rate schedule stepped once per batch.

    Args:
        optimizer: Its ``lr`` is the peak rate.
        name: "onecycle" (linear warm-up for ``warmup`` of the steps, then cosine decay to
            ~0), "cosine" (cosine decay from the peak) or "constant" (no schedule: ``None``).
        total_steps: Optimisation steps in the whole run.
        warmup: Fraction of steps spent warming up (one-cycle only; at least 2 steps, and
            runs of under 3 steps use "cosine").

    Returns:
        The scheduler, or ``None`` for "constant".
    """
    if name == "constant":
        return None
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive; got {total_steps}.")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup is a fraction of the steps in [0, 1); got {warmup}.")
    if name == "onecycle" and total_steps < 3:
        name = "cosine"  # too short for a warm-up and a decay phase
    if name == "onecycle":
        peaks = [g["lr"] for g in optimizer.param_groups]
        # OneCycleLR divides by each phase's length: keep >= 2 warm-up steps and >= 1 decay step.
        pct = min(max(warmup, 2 / total_steps), 1 - 1 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=peaks,
            total_steps=total_steps,
            pct_start=pct,
            anneal_strategy="cos",
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"Unknown schedule {name!r}; choose one of {SCHEDULES}.")
