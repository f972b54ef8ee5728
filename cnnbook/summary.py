"""Model summaries: layers, output shapes, parameters and compute (sections 14.5-14.8, 14.12).

Two well-kept tools do the counting; this module only joins and labels their results:

* ``torchinfo.summary`` walks the model with forward hooks and records each layer's output
  shape and parameter count.
* ``torch.utils.flop_counter.FlopCounterMode`` counts the arithmetic of the matrix products
  and convolutions that actually run (PyTorch's own operator-level formulas).

**Units.** One multiply-accumulate (MAC) is one multiplication plus one addition, so
``FLOPs = 2 x MACs``. ``FlopCounterMode`` reports FLOPs; :func:`count_macs` halves them.
A convolution costs ``C_out * H_out * W_out * (C_in / groups) * k_h * k_w`` MACs and a linear
layer ``in_features * out_features`` MACs per sample; biases, activations, pooling, batch norm
and additions are not counted (they are a small fraction). torchvision's model tables print a
column headed "GFLOPS" whose values are in fact GMACs by this definition (ResNet-18: 1.814).
Every function and column here names its unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchinfo
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnbook.modules import count_parameters  # noqa: F401 - its home is cnnbook.modules

InputSpec = torch.Tensor | Sequence[int]


@dataclass(frozen=True)
class LayerRow:
    """One line of a layer table.

    Attributes:
        name: Dotted module path, e.g. ``"layer1.0.conv1"`` (empty for the whole model).
        kind: Class name of the module, e.g. ``"Conv2d"``.
        depth: Nesting depth (0 for the model itself).
        output_shape: Shape of the module's output, batch dimension included.
        params: Parameters of the module and its children.
        macs: Multiply-accumulates of the module and its children in one forward pass of the
            whole batch (conv and linear layers only, see the module docstring).
    """

    name: str
    kind: str
    depth: int
    output_shape: tuple[int, ...]
    params: int
    macs: int


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _make_input(model: nn.Module, inputs: InputSpec) -> torch.Tensor:
    device = _device_of(model)
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    shape = tuple(inputs)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"inputs must be a tensor or a shape of positive ints such as (1, 3, 224, 224), got {inputs!r}."
        )
    return torch.zeros(shape, device=device)


def _flop_counts(model: nn.Module, inputs: InputSpec) -> dict[str, int]:
    """FLOPs per module, keyed by dotted path ('' for the whole model)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected an nn.Module, got {type(model).__name__}.")
    x = _make_input(model, inputs)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    root = type(model).__name__
    result: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key.removeprefix(root + ".")
        result[name] = int(sum(ops.values()))
    result.setdefault("", int(counter.get_total_flops()))
    return result


def count_flops(model: nn.Module, inputs: InputSpec) -> int:
    """FLOPs (2 per multiply-accumulate) of one forward pass, as ``FlopCounterMode`` counts them.

    Args:
        model: The network; it runs once in eval mode under ``torch.no_grad()`` and its
            train/eval mode is restored afterwards.
        inputs: An input batch ``(N, C, H, W)`` or just its shape (zeros are used).

    Returns:
        FLOPs for the whole batch.
    """
    return _flop_counts(model, inputs)[""]


def count_macs(model: nn.Module, inputs: InputSpec) -> int:
    """Multiply-accumulates (MACs) of one forward pass: :func:`count_flops` divided by 2.

    Args:
        model: The network (run once in eval mode, mode restored afterwards).
        inputs: An input batch ``(N, C, H, W)`` or just its shape.

    Returns:
        MACs for the whole batch (conv and linear layers).
    """
    return count_flops(model, inputs) // 2


def macs_by_module(model: nn.Module, inputs: InputSpec) -> dict[str, int]:
    """MACs of every module that does conv/linear work, by dotted path.

    Args:
        model: The network (run once in eval mode, mode restored afterwards).
        inputs: An input batch ``(N, C, H, W)`` or just its shape.

    Returns:
        ``{"": total, "layer1": ..., "layer1.0.conv1": ...}``; containers include their
        children. A module called twice has both calls summed.
    """
    return {name: flops // 2 for name, flops in _flop_counts(model, inputs).items()}


def _dotted_name(info: torchinfo.layer_info.LayerInfo) -> str:
    parts: list[str] = []
    node: torchinfo.layer_info.LayerInfo | None = info
    while node is not None and node.parent_info is not None:
        parts.append(node.var_name)
        node = node.parent_info
    return ".".join(reversed(parts))


def layer_table(model: nn.Module, inputs: InputSpec, depth: int = 1) -> list[LayerRow]:
    """Layer-by-layer output shapes, parameters (torchinfo) and MACs (FlopCounterMode).

    Args:
        model: The network (run in eval mode, mode restored afterwards).
        inputs: An input batch ``(N, C, H, W)`` or just its shape.
        depth: How deep to list nested modules (0: only the model itself).

    Returns:
        One :class:`LayerRow` per module call, in execution order, starting with the model.
    """
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}.")
    x = _make_input(model, inputs)
    was_training = model.training
    try:
        stats = torchinfo.summary(model, input_data=x, depth=depth, verbose=0, device=x.device, mode="eval")
    finally:
        model.train(was_training)
    macs = macs_by_module(model, x)
    rows = []
    for info in stats.summary_list:
        if info.depth > depth:
            continue
        name = _dotted_name(info)
        shape = info.output_size
        rows.append(
            LayerRow(
                name=name,
                kind=info.class_name,
                depth=info.depth,
                output_shape=tuple(shape) if isinstance(shape, (list, tuple)) else (),
                params=int(info.num_params),
                macs=macs.get(name, 0),
            )
        )
    return rows


def format_count(value: int, unit: str) -> str:
    """Write a count with a metric prefix and its unit, e.g. ``1.81 GMACs``.

    Args:
        value: The count.
        unit: Its unit, e.g. ``"MACs"``, ``"FLOPs"`` or ``"params"``.

    Returns:
        The formatted string.
    """
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value} {unit}"


def format_layer_table(rows: Sequence[LayerRow]) -> str:
    """Render rows from :func:`layer_table` as fixed-width text.

    Columns: layer (indented by depth), output shape, parameters, MACs.

    Args:
        rows: The table rows.

    Returns:
        The table as one string (print it).
    """
    header = f"{'layer':<34} {'output shape':<22} {'params':>12} {'MACs':>15}"
    lines = [header, "-" * len(header)]
    for row in rows:
        label = ("  " * row.depth) + (f"{row.name} ({row.kind})" if row.name else row.kind)
        shape = "x".join(str(s) for s in row.output_shape)
        lines.append(f"{label:<34} {shape:<22} {row.params:>12,} {row.macs:>15,}")
    return "\n".join(lines)
