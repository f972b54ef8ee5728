"""Shape arithmetic of convolutions and pooling (sections 14.2-14.6, 14.13, 14.16).

Everything here is plain integer arithmetic that mirrors what PyTorch computes, so a reader can
predict a layer's output size or receptive field before running it (a table of the shapes a
model really produces is :func:`cnnbook.summary.layer_table`). ``tests/test_geometry.py``
checks the formulas against ``nn.Conv2d``/``nn.MaxPool2d``/``nn.ConvTranspose2d`` on thousands of
random configurations and against published receptive fields (AlexNet 195 px, VGG-16 212 px).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

Padding = int | str


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; use {name}=1 for the default.")


def effective_kernel_size(kernel: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: :math:`k_{eff} = k + (k - 1)(d - 1)`.

    Args:
        kernel: Kernel size ``k``.
        dilation: Dilation rate ``d`` (1 means no gaps).

    Returns:
        The number of input pixels the kernel spans along one axis.
    """
    _positive("kernel", kernel)
    _positive("dilation", dilation)
    return kernel + (kernel - 1) * (dilation - 1)


def same_padding(kernel: int, stride: int = 1, dilation: int = 1, size: int | None = None) -> tuple[int, int]:
    """Padding (before, after) that gives ``ceil(size / stride)`` outputs ("same" padding).

    With stride 1 this is PyTorch's ``padding="same"``: ``k_eff - 1`` zeros split evenly, the
    odd one at the end. With a larger stride the total depends on the input size (as in
    TensorFlow), so ``size`` is required.

    Args:
        kernel: Kernel size.
        stride: Stride.
        dilation: Dilation rate.
        size: Input size; needed when ``stride > 1``.

    Returns:
        ``(pad_before, pad_after)``.
    """
    k_eff = effective_kernel_size(kernel, dilation)
    _positive("stride", stride)
    if stride == 1:
        total = k_eff - 1
    else:
        if size is None:
            raise ValueError(
                "'same' padding with stride > 1 depends on the input size; pass size=<input size>."
            )
        _positive("size", size)
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1) -> int:
    """Output length of a convolution along one axis.

    .. math:: n_{out} = \\left\\lfloor \\frac{n + 2p - k_{eff}}{s} \\right\\rfloor + 1

    Args:
        size: Input length ``n``.
        kernel: Kernel size ``k``.
        stride: Stride ``s``.
        padding: Zero padding ``p`` on each side, ``"valid"`` (0) or ``"same"``
            (``ceil(n / s)`` outputs, see :func:`same_padding`).
        dilation: Dilation ``d``.

    Returns:
        The output length.

    Raises:
        ValueError: For non-positive sizes/strides/dilations, negative padding, or a kernel
            wider than the padded input (which would give no output at all).
    """
    _positive("size", size)
    _positive("stride", stride)
    k_eff = effective_kernel_size(kernel, dilation)
    if padding == "same":
        return math.ceil(size / stride)
    if padding == "valid":
        padding = 0
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, 'same' or 'valid', got {padding!r}.")
    padded = size + 2 * padding
    if k_eff > padded:
        raise ValueError(
            f"The kernel (effective size {k_eff} = {kernel} with dilation {dilation}) is larger "
            f"than the padded input ({size} + 2*{padding} = {padded}); use a smaller kernel or "
            f"dilation, or add at least {math.ceil((k_eff - size) / 2)} padding."
        )
    return (padded - k_eff) // stride + 1


def pool_output_size(
    size: int,
    kernel: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of ``nn.MaxPool2d``/``nn.AvgPool2d`` along one axis.

    Same formula as :func:`conv_output_size` (stride defaults to the kernel size), plus
    PyTorch's ``ceil_mode`` rule: round up, but drop a last window that would start inside the
    right-hand padding.

    Args:
        size: Input length.
        kernel: Window size.
        stride: Step; ``None`` means ``kernel`` (non-overlapping windows).
        padding: Implicit padding on each side (at most half the window).
        dilation: Dilation of the window (max pooling only).
        ceil_mode: Round up instead of down.

    Returns:
        The output length.
    """
    stride = kernel if stride is None else stride
    _positive("size", size)
    _positive("stride", stride)
    k_eff = effective_kernel_size(kernel, dilation)
    if padding < 0 or padding > kernel // 2:
        raise ValueError(f"pooling padding must be between 0 and kernel//2 = {kernel // 2}, got {padding}.")
    padded = size + 2 * padding
    # PyTorch's rule: floor (or ceil) division, then, in ceil mode, drop a last window that
    # would start inside the right-hand padding.
    out = (padded - k_eff + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ValueError(
            f"The pooling window ({k_eff}) is larger than the padded input "
            f"({padded}); use a smaller window or ceil_mode=True."
        )
    return out


def transposed_conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output length of ``nn.ConvTranspose2d`` along one axis.

    .. math:: n_{out} = (n - 1)s - 2p + d(k - 1) + p_{out} + 1

    Args:
        size: Input length.
        kernel: Kernel size.
        stride: Stride (the upsampling factor).
        padding: Padding removed from each side of the output.
        output_padding: Extra length added on one side (must be smaller than stride or
            dilation) to pick among the input sizes a strided conv maps to the same output.
        dilation: Dilation.

    Returns:
        The output length.
    """
    _positive("size", size)
    _positive("stride", stride)
    k_eff = effective_kernel_size(kernel, dilation)
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}.")
    if not 0 <= output_padding < max(stride, dilation):
        raise ValueError(
            f"output_padding must be in [0, max(stride, dilation)) = "
            f"[0, {max(stride, dilation)}), got {output_padding}."
        )
    out = (size - 1) * stride - 2 * padding + k_eff + output_padding
    if out < 1:
        raise ValueError(f"padding {padding} removes the whole output; use less padding.")
    return out


@dataclass(frozen=True)
class LayerSpec:
    """Geometry of one conv or pooling layer along one axis.

    Attributes:
        kernel: Kernel (window) size.
        stride: Stride.
        padding: Padding on each side.
        dilation: Dilation.
        name: Label for tables.
    """

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""


@dataclass(frozen=True)
class RFRow:
    """Receptive-field bookkeeping after one layer.

    Attributes:
        name: Layer label.
        rf: Receptive field size (input pixels seen by one output unit).
        jump: Distance in input pixels between neighbouring output units (product of strides).
        start: Input pixel index (0-based, may be fractional or negative when padding is used)
            at the centre of the first output unit's receptive field.
    """

    name: str
    rf: int
    jump: int
    start: float


def receptive_field(layers: Sequence[LayerSpec]) -> list[RFRow]:
    """Receptive field, jump and centre offset after each layer of a stack.

    Uses :math:`r_l = r_{l-1} + (k_{eff,l} - 1)\\,j_{l-1}` and :math:`j_l = j_{l-1} s_l`,
    starting from :math:`r_0 = 1, j_0 = 1`.

    Args:
        layers: The stack, input side first.

    Returns:
        One :class:`RFRow` per layer.
    """
    rf, jump, start = 1, 1, 0.0
    rows = []
    for i, layer in enumerate(layers):
        _positive("stride", layer.stride)
        k_eff = effective_kernel_size(layer.kernel, layer.dilation)
        rf += (k_eff - 1) * jump
        start += ((k_eff - 1) / 2 - layer.padding) * jump
        jump *= layer.stride
        rows.append(RFRow(layer.name or f"layer{i + 1}", rf, jump, start))
    return rows


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)


def _first(v: int | tuple[int, ...] | str) -> int:
    if isinstance(v, str):
        raise ValueError(f"padding={v!r} is not supported here; give explicit integers.")
    return v[0] if isinstance(v, tuple) else int(v)


def layer_specs(module: nn.Module, upto: str | None = None) -> list[LayerSpec]:
    """The conv/pool layers of a chain-shaped model, in registration order.

    Only the height axis is read (square kernels assumed). Models with branches (ResNet's
    shortcuts, Inception) are not chains: their receptive field needs the gradient method
    (:func:`receptive_field_by_gradient`).

    Args:
        module: The model, e.g. ``torchvision.models.vgg16().features``.
        upto: Stop after the submodule with this qualified name (as in ``named_modules``).

    Returns:
        The layers as :class:`LayerSpec`, named by their qualified module names.

    Raises:
        ValueError: If ``upto`` names no submodule.
    """
    specs = []
    names = []
    for name, m in module.named_modules():
        names.append(name)
        if isinstance(m, _CONV):
            specs.append(
                LayerSpec(
                    _first(m.kernel_size), _first(m.stride), _first(m.padding), _first(m.dilation), name
                )
            )
        elif isinstance(m, _POOL):
            stride = m.stride if m.stride is not None else m.kernel_size
            dil = getattr(m, "dilation", 1)
            specs.append(
                LayerSpec(_first(m.kernel_size), _first(stride), _first(m.padding), _first(dil), name)
            )
        if upto is not None and name == upto:
            return specs
    if upto is not None:
        raise ValueError(f"No submodule named {upto!r}; names look like {names[1:6]}.")
    return specs


def module_receptive_field(module: nn.Module, upto: str | None = None) -> list[RFRow]:
    """:func:`receptive_field` of the conv/pool layers found by :func:`layer_specs`."""
    return receptive_field(layer_specs(module, upto))


def receptive_field_by_gradient(model: nn.Module, input_size: int, channels: int = 3) -> int:
    """Measure the receptive field of the centre output unit by back-propagation.

    A copy of the model is made "gradient-transparent" (the model itself is not touched):

    * max pools become average pools (same window), so every pixel of a window gets gradient;
    * conv weights become positive and equal, biases zero, and batch norms the identity
      (eval mode with reset statistics), so no gradient cancels by accident;
    * element-wise activations become the identity: ``ReLU6``, ``Hardtanh``, ``Hardswish``,
      ``Hardsigmoid``, ``Sigmoid``, ``Tanh``, ``SiLU``, ``GELU`` and the rest saturate or
      vanish somewhere, and after a few residual additions (MobileNetV2) the activations pass
      6 and a ``ReLU6`` would stop every gradient;
    * a global (adaptive) pooling outputs a constant 1, with no gradient: a squeeze-and-
      excitation block (EfficientNet, MobileNetV3) rescales channels by statistics of the
      *whole* map, which would make every unit depend on every pixel. The probe measures the
      local, convolutional receptive field, which is what the layer recurrence
      (:func:`receptive_field`) describes.

    Activations applied as functions inside a custom ``forward`` (``F.relu6(x)``) cannot be
    replaced; they are harmless unless they saturate on the probe's positive activations.

    Args:
        model: A convolutional model producing ``(N, C, H, W)``.
        input_size: Side of the square test input; must exceed the receptive field so it is
            not clipped by the border.
        channels: Input channels.

    Returns:
        The receptive field side in input pixels.

    Raises:
        ValueError: If the model does not return feature maps, or the field reaches the border.
        RuntimeError: If no gradient reaches the input.
    """
    probe = copy.deepcopy(model).eval()
    _make_transparent(probe)
    x = torch.ones(1, channels, input_size, input_size, requires_grad=True)
    with torch.enable_grad():
        out = probe(x)
        if out.ndim != 4:
            raise ValueError(
                f"model must return (N, C, H, W) feature maps, got shape "
                f"{tuple(out.shape)}; pass its convolutional part (e.g. .features)."
            )
        h, w = out.shape[-2] // 2, out.shape[-1] // 2
        out[0, :, h, w].sum().backward()
    assert x.grad is not None
    if not torch.isfinite(x.grad).all():
        raise RuntimeError(
            "The probe's activations overflowed (inf/NaN gradient); the model is not supported by this probe."
        )
    rows = x.grad[0].abs().sum(0).sum(1).nonzero()
    if len(rows) == 0:
        raise RuntimeError(
            "The gradient vanished; the model is not supported by this probe "
            "(an activation applied as a function may saturate)."
        )
    extent = int(rows.max() - rows.min() + 1)
    if rows.min() == 0 or rows.max() == input_size - 1:
        raise ValueError(
            f"The receptive field reaches the border of a {input_size}px input; use a larger input_size."
        )
    return extent


# element-wise non-linearities the probe replaces by the identity
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
)
_GLOBAL_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


class _ConstantContext(nn.Module):
    """A global pool whose output is a constant 1: no gradient through it, no growth.

    In a squeeze-and-excitation block the pooled statistics scale the map they came from; with
    the probe's positive weights a pooled value ``v`` would square the activations at every
    block (and overflow); a constant 1 keeps the scale at 1.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(self.module(x))


def _make_transparent(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.MaxPool2d):
            setattr(
                module,
                name,
                nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode),
            )
        elif isinstance(child, nn.MaxPool1d):
            setattr(
                module,
                name,
                nn.AvgPool1d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode),
            )
        elif isinstance(child, _ACTIVATIONS):
            setattr(module, name, nn.Identity())
        elif isinstance(child, _GLOBAL_POOLS):
            setattr(module, name, _ConstantContext(child))
        else:
            _make_transparent(child)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, _CONV):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()  # identity in eval mode: mean 0, var 1, weight 1, bias 0
