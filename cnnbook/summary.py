"""Model summaries: layers, output shapes, parameters and compute (sections 14.3, 14.5-14.8,
14.12, 14.13, 14.16).

The one home of the layer table:

* :func:`layer_table` runs one dummy batch through the model with forward hooks and records,
  for every module call, its output shape and parameter count; when the forward pass fails (the
  classic shape mismatch) it names the last layer that ran and the shape it produced.
* ``torch.utils.flop_counter.FlopCounterMode`` counts the arithmetic of the matrix products
  and convolutions that actually run (PyTorch's own operator-level formulas); the table adds
  its MACs per module.

**Units.** One multiply-accumulate (MAC) is one multiplication plus one addition, so
``FLOPs = 2 x MACs``. ``FlopCounterMode`` reports FLOPs; :func:`count_macs` halves them.
A convolution costs ``C_out * H_out * W_out * (C_in / groups) * k_h * k_w`` MACs and a linear
layer ``in_features * out_features`` MACs per sample; biases, activations, pooling, batch norm
and additions are not counted (they are a small fraction). torchvision's model tables print a
column headed "GFLOPS" whose values are in fact GMACs by this definition (ResNet-18: 1.814).
Every function and column here names its unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

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


@contextmanager
def _recording(model: nn.Module, rows: list[LayerRow], finished: list[int]) -> Iterator[None]:
    """Hooks that append a row per module call (in call order) and fill in its output shape."""
    handles = []
    open_calls: list[int] = []  # rows of the calls still running (a stack)

    def before(name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(mod: nn.Module, args: tuple) -> None:
            params = sum(p.numel() for p in mod.parameters())
            depth = 0 if not name else name.count(".") + 1
            rows.append(LayerRow(name, type(mod).__name__, depth, (), params, 0))
            open_calls.append(len(rows) - 1)

        return hook

    def after(mod: nn.Module, args: tuple, out: object) -> None:
        index = open_calls.pop()
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        rows[index] = replace(rows[index], output_shape=shape)
        finished.append(index)

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(before(name)))
            handles.append(module.register_forward_hook(after))
        yield
    finally:
        for handle in handles:
            handle.remove()


def layer_table(model: nn.Module, inputs: InputSpec, depth: int = 1) -> list[LayerRow]:
    """Layer-by-layer output shapes, parameters and MACs of one forward pass.

    Args:
        model: The network (run once in eval mode under ``torch.no_grad()``, mode restored
            afterwards; a model on the ``meta`` device works and computes nothing).
        inputs: An input batch ``(N, C, H, W)`` or just its shape (zeros are used).
        depth: How deep to list nested modules (0: only the model itself, 1: its children).

    Returns:
        One :class:`LayerRow` per module call, in call order, starting with the model itself
        (name ``""``).

    Raises:
        ValueError: When the forward pass fails; the message names the last layer that ran
            and the shape it produced, then the table up to there.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, got {depth!r}.")
    x = _make_input(model, inputs)
    rows: list[LayerRow] = []
    finished: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with _recording(model, rows, finished), torch.no_grad():
            model(x)
    except RuntimeError as exc:
        done = [rows[i] for i in finished]
        where = (
            f"after layer {done[-1].name!r} ({done[-1].kind}) produced {done[-1].output_shape}"
            if done
            else f"at the first layer, with input {tuple(x.shape)}"
        )
        reason = str(exc).split("\n")[0]
        table = format_layer_table([r for r in done if 0 < r.depth <= max(depth, 1)], macs=False)
        raise ValueError(f"Shape mismatch {where}: {reason}\nLayers that ran:\n{table}") from None
    finally:
        model.train(was_training)
    macs = macs_by_module(model, x)
    return [replace(r, macs=macs.get(r.name, 0)) for r in rows if r.depth <= depth]


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


def format_layer_table(rows: Sequence[LayerRow], macs: bool = True) -> str:
    """Render rows from :func:`layer_table` as fixed-width text.

    Columns: layer (indented by depth), output shape, parameters and (optionally) MACs.

    Args:
        rows: The table rows.
        macs: Include the MACs column.

    Returns:
        The table as one string (print it).
    """
    header = f"{'layer':<34} {'output shape':<22} {'params':>12}" + (f" {'MACs':>15}" if macs else "")
    lines = [header, "-" * len(header)]
    for row in rows:
        label = ("  " * row.depth) + (f"{row.name} ({row.kind})" if row.name else row.kind)
        shape = "x".join(str(s) for s in row.output_shape)
        line = f"{label:<34} {shape:<22} {row.params:>12,}"
        lines.append(line + (f" {row.macs:>15,}" if macs else ""))
    return "\n".join(lines)
