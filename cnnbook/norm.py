"""Batch normalisation from scratch, and folding it into convolutions (section 14.11).

:class:`BatchNorm2d` is a readable re-implementation of ``torch.nn.BatchNorm2d``: the same
parameters, buffers and state-dict keys, the same train-mode statistics (biased variance to
normalise, unbiased variance for the running estimate) and the same eval-mode behaviour, so
the two can be swapped and compared.

:func:`fold_bn_into_conv` and :func:`fold_batchnorm` remove batch norm at inference time by
rewriting the preceding convolution, ``W' = W * gamma / sqrt(var + eps)`` and
``b' = (b - mean) * gamma / sqrt(var + eps) + beta``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["BatchNorm2d", "batch_stats", "fold_batchnorm", "fold_bn_into_conv"]


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance over the ``(N, H, W)`` axes.

    Args:
        x: ``(N, C, H, W)``.

    Returns:
        ``(mean, var)``, each of shape ``(C,)``.
    """
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    return mean, var


class BatchNorm2d(nn.Module):
    """Batch normalisation over ``(N, H, W)`` for each channel, written out by hand.

    Train mode normalises with the batch's own mean and (biased) variance and updates the
    running estimates, ``running = (1 - momentum) * running + momentum * batch`` (with the
    unbiased variance, as PyTorch does). Eval mode normalises with the running estimates.

    Args:
        num_features: ``C``.
        eps: Added to the variance before the square root.
        momentum: Weight of the new batch in the running estimates; ``None`` keeps a plain
            cumulative average instead.
        affine: Learn a scale ``gamma`` (``weight``) and shift ``beta`` (``bias``).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.
    """

    # buffers registered in __init__ (declared here for the type checker)
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(N, C, H, W)``.

        Raises:
            ValueError: On a wrong shape, or in train mode with one value per channel (the
                variance of a single number is undefined).
        """
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d expects (N, {self.num_features}, H, W), got {tuple(x.shape)}.")
        if self.training:
            count = x.numel() // x.shape[1]
            if count < 2:
                raise ValueError(
                    "Batch norm in train mode needs more than one value per "
                    "channel; use a larger batch or call model.eval()."
                )
            mean, var = batch_stats(x)
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * count / (count - 1)
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        if self.weight is not None:
            x_hat = x_hat * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return x_hat

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"
        )


_BN_TYPES = (nn.BatchNorm2d, BatchNorm2d)


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d | BatchNorm2d) -> nn.Conv2d:
    """Return one convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    Batch norm at inference is a fixed per-channel affine map, so it can be merged into the
    convolution's weights and bias: ``W'[o] = W[o] * s[o]`` and
    ``b'[o] = (b[o] - mean[o]) * s[o] + beta[o]`` with ``s = gamma / sqrt(var + eps)``.

    Args:
        conv: The convolution (any stride, padding, groups; bias optional).
        bn: The batch norm that follows it; its *running* statistics are used.

    Returns:
        A new ``nn.Conv2d`` (with bias); the inputs are not modified.

    Raises:
        TypeError: If the arguments are not a Conv2d and a BatchNorm2d.
        ValueError: If the channel counts differ or ``bn`` has no running statistics.
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, _BN_TYPES):
        raise TypeError(
            f"fold_bn_into_conv expects (nn.Conv2d, BatchNorm2d), got "
            f"({type(conv).__name__}, {type(bn).__name__})."
        )
    if conv.out_channels != bn.num_features:
        raise ValueError(
            f"conv has {conv.out_channels} output channels but batch norm has "
            f"{bn.num_features} features; they must follow each other directly."
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            "batch norm has no running statistics (track_running_stats=False); "
            "there is nothing fixed to fold."
        )
    with torch.no_grad():
        scale = (
            bn.weight / torch.sqrt(bn.running_var + bn.eps)
            if bn.weight is not None
            else (1.0 / torch.sqrt(bn.running_var + bn.eps))
        )
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        fused = copy.deepcopy(conv)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        old_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias = nn.Parameter((old_bias - bn.running_mean) * scale + shift)
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Copy ``model`` in eval mode with every conv -> batch-norm pair merged.

    Pairs are found inside ``nn.Sequential`` containers (including :class:`~cnnbook.models.
    layers.ConvBNAct`): a ``Conv2d`` child directly followed by a batch-norm child. The conv is
    replaced by the folded one and the batch norm by ``nn.Identity``. Batch norms that do not
    directly follow a convolution inside a Sequential are left as they are.

    Args:
        model: Any module; it is not modified.

    Returns:
        The folded copy, in eval mode.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BN_TYPES):
                module._modules[first] = fold_bn_into_conv(conv, bn)
                module._modules[second] = nn.Identity()
    return folded
