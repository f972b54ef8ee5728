"""Layers every network of the package is built from (sections 14.8, 14.11, 14.12, 14.13).

* :class:`ConvBNAct` - convolution (no bias) -> batch norm -> activation, the triple that
  MobileNet, EfficientNet-Lite, the U-Net, ASPP and the small detector are made of.
* :func:`tf_same_padding` and :class:`SamePad2d` - TensorFlow's "SAME" padding, which puts the
  odd pixel after the input; needed to reproduce networks trained in TensorFlow (the
  EfficientNet-Lite0 weights in :mod:`cnnbook.models.efficientnet`).
* :class:`StochasticDepth` - drop a residual branch for whole samples while training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

Activation = Callable[[], nn.Module]
Padding = Literal["symmetric", "tf_same"]

__all__ = [
    "Activation",
    "BNArgs",
    "ConvBNAct",
    "Padding",
    "SamePad2d",
    "StochasticDepth",
    "tf_same_padding",
]


class BNArgs(TypedDict):
    """Batch-norm settings passed on to every :class:`ConvBNAct` of a block."""

    bn_eps: float
    bn_momentum: float


def tf_same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Padding (before, after) that TensorFlow's ``padding="SAME"`` adds along one axis.

    TensorFlow makes the output ``ceil(size / stride)`` long and puts the odd pixel of padding
    *after* the input. PyTorch's ``padding=k // 2`` pads both sides equally, which is the same
    thing for stride 1 but shifts the sampling grid by one pixel for stride 2 on even sizes.

    Args:
        size: Input length along the axis (H or W).
        kernel_size: Kernel length along the axis.
        stride: Stride along the axis.
        dilation: Dilation along the axis.

    Returns:
        ``(pad_before, pad_after)``.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SamePad2d(nn.Module):
    """Zero-pad ``(N, C, H, W)`` inputs the way TensorFlow's "SAME" padding does.

    The amount depends on the input size, so it is worked out on every call.

    Args:
        kernel_size: Square kernel size of the convolution that follows.
        stride: Its stride.
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel_size, self.stride)
        left, right = tf_same_padding(x.shape[-1], self.kernel_size, self.stride)
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class StochasticDepth(nn.Module):
    """Drop a residual branch for whole samples at random while training ("drop path").

    In training mode each sample's branch output is zeroed with probability ``p`` and the kept
    ones are scaled by ``1 / (1 - p)`` so the expectation is unchanged; in eval mode (or with
    ``p = 0``) it is the identity. Same computation as ``torchvision.ops.StochasticDepth`` in
    ``"row"`` mode, without importing torchvision.

    Args:
        p: Drop probability in ``[0, 1]``.

    Shape:
        ``(N, ...) -> (N, ...)``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability must be in [0, 1], got {p}.")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep) if keep > 0 else x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvBNAct(nn.Sequential):
    """Convolution (no bias) -> ``BatchNorm2d`` -> activation, as named children.

    Children are ``pad`` (only for TF-same padding on strided layers), ``conv``, ``bn`` and
    ``act`` (absent when ``activation`` is ``None``, e.g. the linear projection of an inverted
    residual). The convolution has no bias because batch norm's shift replaces it.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: Square, odd kernel size.
        stride: Stride.
        groups: ``1`` for a standard convolution, ``in_channels`` for a depthwise one.
        activation: Factory for the activation module (``nn.ReLU``, ``nn.ReLU6``, ``nn.SiLU``)
            or ``None`` for none.
        padding: ``"symmetric"`` pads ``k // 2`` on each side (PyTorch habit); ``"tf_same"``
            pads like TensorFlow (extra pixel at the bottom/right) when the stride is above 1.
        bn_eps: Batch-norm epsilon (TensorFlow-trained models use ``1e-3``).
        bn_momentum: Batch-norm momentum in PyTorch's convention.
        dilation: Dilation rate; symmetric padding ``dilation * (kernel_size - 1) // 2``.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: Activation | None = nn.ReLU,
        padding: Padding = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size={kernel_size} must be odd to keep the size unchanged "
                "(stride 1) or exactly divided (stride s)."
            )
        if padding not in ("symmetric", "tf_same"):
            raise ValueError(f"padding must be 'symmetric' or 'tf_same', got {padding!r}.")
        # For stride 1 and an odd kernel, TF "SAME" is exactly k // 2 on each side.
        explicit = padding == "tf_same" and stride > 1
        if explicit and dilation != 1:
            raise ValueError("tf_same padding of a strided layer supports dilation=1 only.")
        if explicit:
            self.pad = SamePad2d(kernel_size, stride)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0 if explicit else dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        if activation is not None:
            self.act = activation()
