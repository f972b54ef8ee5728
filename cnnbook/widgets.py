"""Interactive explorers for convolution geometry (sections 14.2 and 14.3).

Two ipywidgets apps:

* :class:`ConvExplorer` - sliders for input size, kernel, **stride**, padding and **dilation**.
  It draws the padded input, the dilated kernel's taps at a chosen output position and the
  output grid, prints the output-size formula with the numbers filled in, and confirms the
  result with a real ``nn.Conv2d``.
* :class:`ReceptiveFieldExplorer` - a stack of up to four layers (kernel/stride/dilation each)
  showing which units of every lower layer feed one output unit.

Colours follow :mod:`cnnbook.plots` (Okabe-Ito, no red against green, opaque white figures):
the taps a kernel reads are orange, the window they span is outlined in blue, padding is grey.

The drawing and text logic are plain functions (:func:`conv_report`, :func:`draw_conv`,
:func:`rf_report`, :func:`rf_levels`, :func:`draw_receptive_field`), so tests can check them
without a browser, and can drive the widgets by setting slider values.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import ipywidgets as W
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from cnnbook.geometry import (
    LayerSpec,
    conv_output_size,
    effective_kernel_size,
    receptive_field,
    receptive_field_by_gradient,
)
from cnnbook.plots import BACKGROUND, PALETTE

HIGHLIGHT = PALETTE[1]  # orange: the taps read, the output unit chosen, the units used
OUTLINE = PALETTE[0]  # blue: the window the (dilated) kernel spans
WARNING = PALETTE[3]  # vermillion, always with words ("Impossible setting", "no output")
PADDING = "0.8"  # grey

# ----------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvReport:
    """What the convolution explorer shows for one setting.

    Attributes:
        ok: Whether the setting is possible (output size at least 1).
        out_size: Output side length (``None`` when impossible).
        torch_out_size: Output side reported by a real ``nn.Conv2d`` (``None`` when it failed).
        k_eff: Effective kernel size under dilation.
        text: The formula with the numbers substituted, or a friendly explanation.
    """

    ok: bool
    out_size: int | None
    torch_out_size: int | None
    k_eff: int
    text: str


def conv_report(size: int, kernel: int, stride: int, padding: int, dilation: int) -> ConvReport:
    """Compute the output size of a square convolution and explain it.

    Args:
        size: Input side ``n``.
        kernel: Kernel side ``k``.
        stride: Stride ``s``.
        padding: Zero padding ``p`` on each side.
        dilation: Dilation ``d``.

    Returns:
        A :class:`ConvReport`; impossible settings give ``ok=False`` and a message, not an error.
    """
    k_eff = effective_kernel_size(kernel, dilation)
    try:
        out = conv_output_size(size, kernel, stride, padding, dilation)
    except ValueError as exc:
        return ConvReport(
            False,
            None,
            _torch_out_size(size, kernel, stride, padding, dilation),
            k_eff,
            f"Impossible setting: {exc}",
        )
    num = size + 2 * padding - k_eff
    text = (
        f"k_eff = k + (k-1)(d-1) = {kernel} + {kernel - 1}*{dilation - 1} = {k_eff}\n"
        f"n_out = floor((n + 2p - k_eff) / s) + 1 = floor(({size} + 2*{padding} - {k_eff})"
        f" / {stride}) + 1 = floor({num}/{stride}) + 1 = {out}"
    )
    if num % stride:
        text += (
            f"\n({num % stride} column(s) at the right/bottom edge are never covered: "
            f"the stride does not divide {num})"
        )
    return ConvReport(True, out, _torch_out_size(size, kernel, stride, padding, dilation), k_eff, text)


def _torch_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int | None:
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)
    try:
        with torch.no_grad():
            return int(conv(torch.zeros(1, 1, size, size)).shape[-1])
    except RuntimeError:
        return None


def kernel_taps(row: int, col: int, kernel: int, stride: int, dilation: int) -> list[tuple[int, int]]:
    """Padded-input coordinates read by output ``(row, col)``.

    Returns:
        ``kernel**2`` ``(r, c)`` pairs: ``(row*s + a*d, col*s + b*d)`` for ``a, b < kernel``.
    """
    return [
        (row * stride + a * dilation, col * stride + b * dilation)
        for a in range(kernel)
        for b in range(kernel)
    ]


def draw_conv(
    size: int, kernel: int, stride: int, padding: int, dilation: int, out_row: int = 0, out_col: int = 0
) -> Figure:
    """Draw padded input, kernel footprint and output grid side by side.

    Args:
        size: Input side.
        kernel: Kernel side.
        stride: Stride.
        padding: Padding on each side (drawn as grey cells).
        dilation: Dilation (taps drawn with gaps).
        out_row: Output row whose footprint is highlighted (clipped to the grid).
        out_col: Output column whose footprint is highlighted.

    Returns:
        A matplotlib ``Figure`` (not attached to pyplot; nothing global is touched).
    """
    rep = conv_report(size, kernel, stride, padding, dilation)
    fig = Figure(figsize=(9, 4.2), dpi=80, facecolor=BACKGROUND)
    ax_in, ax_out = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    padded = size + 2 * padding
    for r in range(padded):
        for c in range(padded):
            inside = padding <= r < padding + size and padding <= c < padding + size
            ax_in.add_patch(
                Rectangle(
                    (c, padded - 1 - r),
                    1,
                    1,
                    edgecolor="0.6",
                    facecolor="white" if inside else PADDING,
                    lw=0.8,
                )
            )
    ax_in.set_title(f"input {size}x{size} + padding {padding} (grey)", fontsize=10)
    if rep.ok and rep.out_size:
        row, col = min(out_row, rep.out_size - 1), min(out_col, rep.out_size - 1)
        for r, c in kernel_taps(row, col, kernel, stride, dilation):
            ax_in.add_patch(Rectangle((c + 0.1, padded - 1 - r + 0.1), 0.8, 0.8, facecolor=HIGHLIGHT))
        r0, c0 = row * stride, col * stride
        ax_in.add_patch(
            Rectangle(
                (c0, padded - r0 - rep.k_eff), rep.k_eff, rep.k_eff, fill=False, edgecolor=OUTLINE, lw=2
            )
        )
        n = rep.out_size
        for r in range(n):
            for c in range(n):
                hit = (r, c) == (row, col)
                ax_out.add_patch(
                    Rectangle((c, n - 1 - r), 1, 1, edgecolor="0.4", facecolor=HIGHLIGHT if hit else "white")
                )
        ax_out.set_xlim(-0.5, max(n, 1) + 0.5)
        ax_out.set_ylim(-0.5, max(n, 1) + 0.5)
        ax_out.set_title(f"output {n}x{n}; orange = output ({row}, {col})", fontsize=10)
    else:
        ax_out.text(
            0.5,
            0.5,
            "no output:\nkernel wider than\npadded input",
            ha="center",
            va="center",
            fontsize=12,
            color=WARNING,
            transform=ax_out.transAxes,
        )
        ax_out.set_title("output", fontsize=10)
    ax_in.set_xlim(-0.5, padded + 0.5)
    ax_in.set_ylim(-0.5, padded + 0.5)
    for ax in (ax_in, ax_out):
        ax.set_aspect("equal")
        ax.axis("off")
    fig.tight_layout()
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a matplotlib figure to PNG bytes (for an ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class ConvExplorer:
    """Sliders for input size, kernel, stride, padding and dilation, with live drawing.

    Display it in a notebook by making it the last expression of a cell (or ``display(ex)``).
    Attributes ``size, kernel, stride, padding, dilation, out_row, out_col`` are the sliders;
    ``summary`` (HTML) shows the formula and the ``nn.Conv2d`` check; ``image`` shows the drawing.
    """

    def __init__(
        self, size: int = 7, kernel: int = 3, stride: int = 1, padding: int = 0, dilation: int = 1
    ) -> None:
        style = {"description_width": "80px"}
        self.size = W.IntSlider(size, 3, 16, description="input size", style=style)
        self.kernel = W.IntSlider(kernel, 1, 7, description="kernel", style=style)
        self.stride = W.IntSlider(stride, 1, 4, description="stride", style=style)
        self.padding = W.IntSlider(padding, 0, 4, description="padding", style=style)
        self.dilation = W.IntSlider(dilation, 1, 4, description="dilation", style=style)
        self.out_row = W.IntSlider(0, 0, 15, description="output row", style=style)
        self.out_col = W.IntSlider(0, 0, 15, description="output col", style=style)
        self.summary = W.HTML()
        self.image = W.Image(format="png")
        self.report: ConvReport | None = None
        for s in self.sliders:
            s.observe(self._on_change, names="value")
        # the slider column keeps its width whatever the length of the summary text
        controls = W.VBox(self.sliders, layout=W.Layout(flex="0 0 auto"))
        self.widget = W.VBox([W.HBox([controls, self.summary]), self.image])
        self.update()

    @property
    def sliders(self) -> list[W.IntSlider]:
        """All sliders, geometry first."""
        return [self.size, self.kernel, self.stride, self.padding, self.dilation, self.out_row, self.out_col]

    @property
    def output_size(self) -> int | None:
        """The output size currently displayed (``None`` for an impossible setting)."""
        return self.report.out_size if self.report else None

    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute text and drawing from the slider values."""
        args = (
            self.size.value,
            self.kernel.value,
            self.stride.value,
            self.padding.value,
            self.dilation.value,
        )
        rep = conv_report(*args)
        self.report = rep
        if rep.ok and rep.out_size:
            self.out_row.max = self.out_col.max = max(rep.out_size - 1, 0)
        agree = rep.torch_out_size == rep.out_size
        check = (
            f"nn.Conv2d gives <b>{rep.torch_out_size}</b> ({'agrees' if agree else 'DISAGREES'})"
            if rep.torch_out_size is not None
            else "nn.Conv2d refuses this setting too"
        )
        head = (
            f"<b>Output size: {rep.out_size} x {rep.out_size}</b>"
            if rep.ok
            else f"<b style='color:{WARNING}'>Impossible setting</b>"
        )
        body = rep.text.replace("\n", "<br>")
        self.summary.value = (
            f"<div class='cnnbook-conv-summary' style='font-family:monospace;"
            f"margin-left:1em'>{head}<br>{body}<br>{check}</div>"
        )
        self.image.value = figure_png(draw_conv(*args, self.out_row.value, self.out_col.value))

    def _repr_mimebundle_(self, **kwargs):  # delegate to the widget
        return self.widget._repr_mimebundle_(**kwargs)


# ------------------------------------------------------------------------- receptive field


def rf_levels(layers: Sequence[LayerSpec], unit: int = 0) -> list[list[int]]:
    """Which units of every level feed output ``unit`` of the last layer (no borders).

    Args:
        layers: The stack, input side first (padding ignored: positions are relative).
        unit: Index of the output unit of the last layer.

    Returns:
        ``levels[0]`` are input indices, ``levels[-1] == [unit]``; one list per level, sorted.
    """
    levels = [[unit]]
    for spec in reversed(layers):
        below = sorted({u * spec.stride + t * spec.dilation for u in levels[0] for t in range(spec.kernel)})
        levels.insert(0, below)
    return levels


def rf_report(layers: Sequence[LayerSpec], check: bool = True) -> tuple[list[int], str]:
    """Receptive field after each layer, as numbers and as explanatory text.

    Args:
        layers: The stack, input side first.
        check: Also measure the last receptive field by back-propagating through a real
            stack of ``nn.Conv2d`` layers.

    Returns:
        ``(rfs, text)``: the receptive field after each layer, and a multi-line explanation.
    """
    rows = receptive_field(layers)
    lines = []
    prev_rf, prev_jump = 1, 1
    for r, spec in zip(rows, layers, strict=True):
        k_eff = effective_kernel_size(spec.kernel, spec.dilation)
        lines.append(
            f"{r.name}: k={spec.kernel} s={spec.stride} d={spec.dilation} -> "
            f"r = {prev_rf} + ({k_eff}-1)*{prev_jump} = {r.rf}, jump = {r.jump}"
        )
        prev_rf, prev_jump = r.rf, r.jump
    rfs = [r.rf for r in rows]
    if check:
        net = nn.Sequential(*[nn.Conv2d(1, 1, s.kernel, s.stride, dilation=s.dilation) for s in layers])
        measured = receptive_field_by_gradient(net, rfs[-1] + 4 * rows[-1].jump + 4, channels=1)
        lines.append(
            f"gradient check on a real nn.Conv2d stack: {measured} px "
            f"({'agrees' if measured == rfs[-1] else 'DISAGREES'})"
        )
    return rfs, "\n".join(lines)


def draw_receptive_field(layers: Sequence[LayerSpec]) -> Figure:
    """Draw each level of a 1D stack and highlight the units feeding one output unit.

    Every unit is drawn above the centre of its own receptive field in input coordinates, so
    strides show up as wider spacing and dilation as gaps between the units used.
    """
    levels = rf_levels(layers)
    rows = receptive_field(layers)
    rfs = [1] + [r.rf for r in rows]
    jumps = [1] + [r.jump for r in rows]
    width = max(levels[0]) + 1
    fig = Figure(figsize=(9, 1.0 + 0.8 * len(levels)), dpi=80, facecolor=BACKGROUND)
    ax = fig.subplots()
    for y, used in enumerate(levels):
        n_units = (width - rfs[y]) // jumps[y] + 1
        for u in range(n_units):
            centre = u * jumps[y] + (rfs[y] - 1) / 2
            ax.add_patch(
                Rectangle(
                    (centre + 0.05, y),
                    0.9,
                    0.6,
                    facecolor=HIGHLIGHT if u in used else "white",
                    edgecolor="0.5",
                    lw=0.6,
                )
            )
        label = "input" if y == 0 else f"layer {y}"
        ax.text(
            -0.6,
            y + 0.3,
            f"{label}  ({len(used)} used, rf {rfs[y]}, jump {jumps[y]})",
            ha="right",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-0.3, len(levels))
    ax.axis("off")
    ax.set_title(
        f"receptive field of one top unit: {max(levels[0]) - min(levels[0]) + 1} input pixels", fontsize=10
    )
    fig.tight_layout()
    return fig


@dataclass
class _LayerControls:
    kernel: W.IntSlider
    stride: W.IntSlider
    dilation: W.IntSlider
    box: W.HBox = field(init=False)

    def __post_init__(self) -> None:
        self.box = W.HBox([self.kernel, self.stride, self.dilation])

    def spec(self, i: int) -> LayerSpec:
        return LayerSpec(self.kernel.value, self.stride.value, 0, self.dilation.value, f"layer {i + 1}")


class ReceptiveFieldExplorer:
    """Up to four conv layers with kernel/stride/dilation sliders each.

    ``depth`` chooses how many layers are active; ``summary`` shows the receptive field after each
    layer with the recurrence filled in, checked by gradient; ``image`` draws the 1D picture.
    """

    MAX_LAYERS = 4

    def __init__(self, depth: int = 3, kernel: int = 3, stride: int = 1, dilation: int = 1) -> None:
        layout = W.Layout(width="230px")
        self.depth = W.IntSlider(depth, 1, self.MAX_LAYERS, description="layers")
        self.layers = [
            _LayerControls(
                W.IntSlider(kernel, 1, 5, description=f"L{i + 1} kernel", layout=layout),
                W.IntSlider(stride, 1, 3, description=f"L{i + 1} stride", layout=layout),
                W.IntSlider(dilation, 1, 4, description=f"L{i + 1} dilation", layout=layout),
            )
            for i in range(self.MAX_LAYERS)
        ]
        self.summary = W.HTML()
        self.image = W.Image(format="png")
        self.rfs: list[int] = []
        for s in self.sliders:
            s.observe(lambda _c: self.update(), names="value")
        self.widget = W.VBox([self.depth, *[lc.box for lc in self.layers], self.summary, self.image])
        self.update()

    @property
    def sliders(self) -> list[W.IntSlider]:
        """The depth slider followed by every layer's sliders."""
        return [self.depth] + [s for lc in self.layers for s in (lc.kernel, lc.stride, lc.dilation)]

    @property
    def specs(self) -> list[LayerSpec]:
        """The active layers."""
        return [lc.spec(i) for i, lc in enumerate(self.layers[: self.depth.value])]

    @property
    def receptive_field(self) -> int:
        """Receptive field of the top layer currently displayed."""
        return self.rfs[-1]

    def update(self) -> None:
        """Recompute text and drawing."""
        for i, lc in enumerate(self.layers):
            lc.box.layout.display = "flex" if i < self.depth.value else "none"
        self.rfs, text = rf_report(self.specs)
        self.summary.value = (
            f"<div class='cnnbook-rf-summary' style='font-family:monospace'>"
            f"<b>Receptive field: {self.rfs[-1]} px</b><br>"
            f"{text.replace(chr(10), '<br>')}</div>"
        )
        self.image.value = figure_png(draw_receptive_field(self.specs))

    def _repr_mimebundle_(self, **kwargs):  # delegate to the widget
        return self.widget._repr_mimebundle_(**kwargs)
