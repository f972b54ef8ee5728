"""Efficient building blocks of mobile CNNs (sections 14.8, 14.12).

* :class:`DepthwiseSeparableConv` - a per-channel ``k x k`` convolution followed by a ``1 x 1``
  convolution that mixes channels (MobileNet, section 14.8).
* :class:`InvertedResidual` (alias :data:`MBConv`) - expand with ``1 x 1``, filter with a
  depthwise ``k x k``, optionally re-weight channels, project back with a *linear* ``1 x 1``,
  and add the input when shapes allow (MobileNetV2, EfficientNet).
* :class:`SqueezeExcitation` - channel attention: pool each channel to one number, pass the
  vector through a small bottleneck, and scale the channels by a sigmoid gate.

All of them are made of :class:`cnnbook.models.layers.ConvBNAct`. Parameter-count formulas for
section 14.8 are here too (:func:`standard_conv_params`, :func:`separable_conv_params`,
:func:`separable_ratio`).
"""

from __future__ import annotations

import torch
from torch import nn

from cnnbook.models.layers import Activation, BNArgs, ConvBNAct, Padding, StochasticDepth

__all__ = [
    "DepthwiseSeparableConv",
    "InvertedResidual",
    "MBConv",
    "SqueezeExcitation",
    "separable_conv_params",
    "separable_ratio",
    "standard_conv_params",
]


def standard_conv_params(c_in: int, c_out: int, k: int, bias: bool = False) -> int:
    """Weights of a standard ``k x k`` convolution: ``C_in * C_out * k^2`` (+ ``C_out`` biases)."""
    return c_in * c_out * k * k + (c_out if bias else 0)


def separable_conv_params(c_in: int, c_out: int, k: int) -> int:
    """Weights of a depthwise (``C_in * k^2``) plus pointwise (``C_in * C_out``) pair, no biases."""
    return c_in * k * k + c_in * c_out


def separable_ratio(c_out: int, k: int) -> float:
    """Separable over standard parameter count, ``1 / C_out + 1 / k^2`` (independent of C_in)."""
    return 1.0 / c_out + 1.0 / (k * k)


class DepthwiseSeparableConv(nn.Module):
    """Depthwise ``k x k`` convolution then pointwise ``1 x 1`` convolution (MobileNet).

    Each stage is conv -> batch norm -> activation. The depthwise stage filters every channel
    on its own (``groups=in_channels``); the pointwise stage mixes channels.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride.
        activation: Activation factory used after both stages.
        linear_pointwise: Leave the pointwise stage without activation (as in MobileNetV2's
            projection).
        padding: See :class:`ConvBNAct`.
        bn_eps: Batch-norm epsilon.
        bn_momentum: Batch-norm momentum (PyTorch convention).

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: Activation = nn.ReLU,
        linear_pointwise: bool = False,
        padding: Padding = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        bn = BNArgs(bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.depthwise = ConvBNAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            activation=activation,
            padding=padding,
            **bn,
        )
        self.pointwise = ConvBNAct(
            in_channels, out_channels, 1, activation=None if linear_pointwise else activation, **bn
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the two stages.

        Args:
            x: ``(N, C_in, H, W)``.

        Returns:
            ``(N, C_out, H', W')``.
        """
        _check_input(x, self.depthwise.conv.in_channels, type(self).__name__)
        return self.pointwise(self.depthwise(x))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: re-weight channels by a gate computed from their averages.

    ``s = sigmoid(W_2 act(W_1 avgpool(x)))`` and the output is ``x * s`` channel by channel.
    Same computation as ``torchvision.ops.SqueezeExcitation`` (children named differently).

    Args:
        channels: ``C``, channels in and out.
        squeezed_channels: Bottleneck width (``C / 4`` in MobileNetV3, ``C_in * 0.25`` of the
            block input in EfficientNet).
        activation: Activation factory inside the bottleneck.
        gate: Factory for the gating non-linearity (``nn.Sigmoid`` or ``nn.Hardsigmoid``).

    Shape:
        ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        squeezed_channels: int,
        activation: Activation = nn.ReLU,
        gate: Activation = nn.Sigmoid,
    ) -> None:
        super().__init__()
        if squeezed_channels < 1:
            raise ValueError(f"squeezed_channels must be at least 1, got {squeezed_channels}.")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed_channels, 1)
        self.act = activation()
        self.expand = nn.Conv2d(squeezed_channels, channels, 1)
        self.gate = gate()

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel gate ``s`` in ``(0, 1)``, shape ``(N, C, 1, 1)``."""
        return self.gate(self.expand(self.act(self.reduce(self.pool(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` (``(N, C, H, W)``) by its gate."""
        _check_input(x, self.reduce.in_channels, type(self).__name__)
        return x * self.channel_weights(x)


class InvertedResidual(nn.Module):
    """Inverted residual block, also called MBConv (MobileNetV2, EfficientNet).

    ``1 x 1`` expansion to ``C_in * expand_ratio`` channels -> depthwise ``k x k`` ->
    optional squeeze-and-excitation -> linear ``1 x 1`` projection to ``C_out``; the input is
    added back when ``stride == 1`` and ``C_in == C_out``. "Inverted" because the skip joins
    the *narrow* ends, unlike ResNet's bottleneck. With ``expand_ratio == 1`` the expansion
    is skipped and the block is a :class:`DepthwiseSeparableConv` with a linear pointwise
    stage (plus SE, if asked for).

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        expand_ratio: Width multiplier of the hidden layer (6 in most stages).
        kernel_size: Depthwise kernel size (3 or 5).
        stride: Depthwise stride (1 or 2).
        se_ratio: Squeeze-excitation bottleneck as a fraction of ``C_in``
            (EfficientNet-B0: 0.25); ``None`` for no SE (MobileNetV2, EfficientNet-Lite).
        activation: Activation factory (``nn.ReLU6`` for MobileNetV2/Lite, ``nn.SiLU`` for B0).
        padding: See :class:`ConvBNAct`.
        bn_eps: Batch-norm epsilon.
        bn_momentum: Batch-norm momentum (PyTorch convention).
        drop_path: Probability of dropping the residual branch for a whole sample during
            training (stochastic depth); only used when the block has a skip connection.

    Shape:
        ``(N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int = 6,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float | None = None,
        activation: Activation = nn.ReLU6,
        padding: Padding = "symmetric",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if expand_ratio < 1:
            raise ValueError(f"expand_ratio must be at least 1, got {expand_ratio}.")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}.")
        bn = BNArgs(bn_eps=bn_eps, bn_momentum=bn_momentum)
        hidden = in_channels * expand_ratio
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.expand = (
            ConvBNAct(in_channels, hidden, 1, activation=activation, **bn)
            if expand_ratio != 1
            else nn.Identity()
        )
        self.depthwise = ConvBNAct(
            hidden, hidden, kernel_size, stride, groups=hidden, activation=activation, padding=padding, **bn
        )
        self.se = (
            SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)), activation)
            if se_ratio
            else nn.Identity()
        )
        self.project = ConvBNAct(hidden, out_channels, 1, activation=None, **bn)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = StochasticDepth(drop_path) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: ``(N, C_in, H, W)``.

        Returns:
            ``(N, C_out, H', W')``.
        """
        _check_input(x, self.in_channels, type(self).__name__)
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.use_residual:
            out = x + self.drop_path(out)
        return out


MBConv = InvertedResidual


def _check_input(x: torch.Tensor, channels: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} expects input of shape (N, {channels}, H, W), got {tuple(x.shape)}.")
