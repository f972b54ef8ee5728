"""Generic helpers for ``nn.Module`` trees, used across the package (14.9, 14.10, 14.15, 14.16).

* :func:`get_layer` / :func:`set_layer` - read or replace a sub-module by its dotted name.
* :func:`unwrap` - the plain model inside ``torch.compile`` / ``DistributedDataParallel``.
* :func:`count_parameters` - scalar parameters, shared ones once.
* :func:`freeze_batchnorm` and :class:`FrozenBatchNorm` - the package's one way of freezing
  batch norm. A *frozen* batch-norm layer normalises with its stored running statistics, never
  updates them, and its scale and shift do not train, also after ``model.train()``.

Nothing here imports another ``cnnbook`` module, so any module can use it.
"""

from __future__ import annotations

import difflib
from typing import cast

from torch import nn

__all__ = [
    "FrozenBatchNorm",
    "batchnorm_layers",
    "count_parameters",
    "freeze_batchnorm",
    "get_layer",
    "set_layer",
    "unwrap",
]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module called ``name`` in ``model.named_modules()``.

    Args:
        model: Any model.
        name: Dotted module name, e.g. ``"layer3.1.conv2"``.

    Returns:
        The module.

    Raises:
        ValueError: If no module has that name (the message suggests close names).
    """
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(
            f"{type(model).__name__} has no layer named {name!r}.{hint} "
            "List the names with [n for n, _ in model.named_modules()]."
        )
    return modules[name]


def set_layer(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module called ``name`` (dotted) by ``new``, in place.

    Args:
        model: Any model.
        name: Dotted name of an existing module, e.g. ``"fc"`` or ``"layer4.1.bn2"``.
        new: The replacement.

    Raises:
        ValueError: If ``name`` is not a module of ``model``.
        TypeError: If ``new`` is not an ``nn.Module``.
    """
    if not isinstance(new, nn.Module):
        raise TypeError(f"set_layer needs an nn.Module to put at {name!r}, got {type(new).__name__}.")
    get_layer(model, name)  # a clear error for a wrong name
    parent_name, _, child = name.rpartition(".")
    parent = get_layer(model, parent_name) if parent_name else model
    setattr(parent, child, new)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = cast(nn.Module, model._orig_mod)
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model``.

    Args:
        model: Any module.
        trainable_only: Count only parameters with ``requires_grad=True``.

    Returns:
        The count (shared parameters are counted once).

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects an nn.Module, got {type(model).__name__}.")
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer of ``model`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _is_frozen(module: nn.Module) -> bool:
    params = list(module.parameters(recurse=False))
    if params:
        return not any(p.requires_grad for p in params)
    return getattr(module, "_cnnbook_frozen", False)  # affine=False: marked by freeze_batchnorm


class FrozenBatchNorm:
    """Keeps frozen batch-norm layers in eval mode while the rest of the model trains.

    ``model.train()`` puts every ``BatchNorm`` layer in training mode: it normalises with the
    current batch's statistics and overwrites its running averages, even when its weights
    are frozen. A frozen pretrained layer then no longer computes what it computed during
    pretraining. While this object is active, a forward pre-hook switches each frozen
    batch-norm layer (all its affine parameters have ``requires_grad=False``, or
    :func:`freeze_batchnorm` froze it) to eval mode just before it runs; layers that are (or
    later become) trainable behave normally. Remove it with :meth:`remove`.

    Args:
        model: Any model.
    """

    def __init__(self, model: nn.Module) -> None:
        self.handles = [m.register_forward_pre_hook(self._hook) for m in batchnorm_layers(model)]

    @staticmethod
    def _hook(module: nn.Module, _args: tuple) -> None:
        if module.training and _is_frozen(module):
            module.train(False)

    def remove(self) -> None:
        """Detach the hooks (frozen layers follow ``model.train()`` again from the next call)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def freeze_batchnorm(model: nn.Module) -> FrozenBatchNorm:
    """Freeze every batch-norm layer of ``model`` in place; the other layers are unchanged.

    Each layer's scale and shift get ``requires_grad=False``, it is put in eval mode now, and a
    :class:`FrozenBatchNorm` guard keeps it there after later ``model.train()`` calls, so it
    normalises with its running statistics and never updates them.

    Args:
        model: Any model.

    Returns:
        The guard (``.remove()`` it to let the layers follow ``model.train()`` again; their
        parameters stay frozen until you unfreeze them).
    """
    for bn in batchnorm_layers(model):
        bn.requires_grad_(False)
        bn._cnnbook_frozen = True  # type: ignore[assignment]  # a plain flag (Module stubs want tensors)
        bn.eval()
    return FrozenBatchNorm(model)
