"""The explorers' logic without a browser: plain functions, and widgets driven by slider values."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cnnbook import widgets as wd
from cnnbook.geometry import LayerSpec


def _conv2d_size(n: int, k: int, s: int, p: int, d: int) -> int | None:
    try:
        return nn.Conv2d(1, 1, k, s, p, d)(torch.zeros(1, 1, n, n)).shape[-1]
    except RuntimeError:
        return None


def test_conv_report_matches_conv2d_over_slider_grid() -> None:
    seen_impossible = 0
    for n, k, s, p, d in itertools.product(
        range(3, 17, 3), range(1, 8, 2), range(1, 5), range(0, 5, 2), range(1, 5)
    ):
        rep = wd.conv_report(n, k, s, p, d)
        assert rep.out_size == _conv2d_size(n, k, s, p, d) == rep.torch_out_size
        if rep.ok:
            assert f"= {rep.out_size}" in rep.text
        else:
            seen_impossible += 1
            assert "Impossible" in rep.text
            assert "padding" in rep.text
    assert seen_impossible > 0


def test_kernel_taps_follow_stride_and_dilation() -> None:
    taps = wd.kernel_taps(1, 2, kernel=3, stride=2, dilation=2)
    assert taps[0] == (2, 4)
    assert taps[-1] == (6, 8)
    assert len(taps) == 9


def test_draw_conv_returns_figures_for_possible_and_impossible() -> None:
    assert wd.figure_png(wd.draw_conv(7, 3, 2, 1, 2, 1, 1)).startswith(b"\x89PNG")
    fig = wd.draw_conv(3, 7, 1, 0, 1)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no output" in t for t in texts)


def test_conv_explorer_follows_sliders() -> None:
    ex = wd.ConvExplorer(size=9, kernel=3)
    assert ex.output_size == 7
    assert "Output size: 7 x 7" in ex.summary.value
    png_before = ex.image.value
    ex.stride.value = 2
    assert ex.output_size == _conv2d_size(9, 3, 2, 0, 1) == 4
    assert "Output size: 4 x 4" in ex.summary.value
    assert "agrees" in ex.summary.value
    assert ex.image.value != png_before
    ex.dilation.value = 3
    assert ex.output_size == _conv2d_size(9, 3, 2, 0, 3) == 2
    assert ex.out_row.max == 1  # the output-position sliders follow the output size
    ex.dilation.value = 4  # k_eff = 9 > 9? no: 9 fits exactly
    assert ex.output_size == 1
    ex.kernel.value = 5  # k_eff = 17 > 9: impossible, shown as a message
    assert ex.output_size is None
    assert "Impossible setting" in ex.summary.value


def test_rf_levels_and_report() -> None:
    layers = [LayerSpec(3, 1, 0, 1, "a"), LayerSpec(3, 2, 0, 1, "b"), LayerSpec(3, 1, 0, 2, "c")]
    levels = wd.rf_levels(layers)
    rfs, text = wd.rf_report(layers)
    assert levels[-1] == [0]
    assert max(levels[0]) - min(levels[0]) + 1 == rfs[-1] == 1 + 2 * 1 + 2 * 1 + (5 - 1) * 2
    assert "agrees" in text
    assert "jump = 2" in text


@pytest.mark.parametrize(("k", "s", "d"), [(3, 1, 1), (3, 2, 1), (2, 2, 2), (5, 1, 3)])
def test_rf_report_agrees_with_gradient(k: int, s: int, d: int) -> None:
    rfs, text = wd.rf_report([LayerSpec(k, s, 0, d)] * 3)
    assert "DISAGREES" not in text
    assert "agrees" in text


def test_receptive_field_explorer_follows_sliders() -> None:
    ex = wd.ReceptiveFieldExplorer(depth=3)
    assert ex.receptive_field == 7
    assert "Receptive field: 7 px" in ex.summary.value
    ex.layers[0].stride.value = 2
    assert ex.receptive_field == 3 + 2 * 2 + 2 * 2
    ex.layers[2].dilation.value = 3
    assert ex.receptive_field == 3 + 2 * 2 + 6 * 2
    ex.depth.value = 1
    assert ex.receptive_field == 3
    assert ex.layers[1].box.layout.display == "none"
    assert bytes(ex.image.value).startswith(b"\x89PNG")


def _boxes_by_level(fig) -> dict[int, list[bool]]:
    """For each drawn level (its y), whether each unit box, left to right, is highlighted."""
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    (ax,) = fig.axes
    levels: dict[int, list[tuple[float, bool]]] = {}
    for p in ax.patches:
        assert isinstance(p, Rectangle)
        used = p.get_facecolor() == to_rgba(wd.HIGHLIGHT)
        assert used or p.get_facecolor() == to_rgba("white")
        levels.setdefault(round(p.get_y()), []).append((p.get_x(), used))
    return {y: [u for _, u in sorted(row)] for y, row in sorted(levels.items())}


@pytest.mark.parametrize(
    ("layers", "rf"),
    [
        ([LayerSpec(3, 1, 0, 1)] * 3, 7),
        ([LayerSpec(3, 2, 0, 1), LayerSpec(3, 1, 0, 1)], 7),
        ([LayerSpec(2, 1, 0, 2)], 3),
        ([LayerSpec(3, 2, 0, 1, "a"), LayerSpec(3, 1, 0, 2, "b")], 11),
    ],
)
def test_draw_receptive_field_highlights_the_used_units(layers: list[LayerSpec], rf: int) -> None:
    from matplotlib.figure import Figure

    fig = wd.draw_receptive_field(layers)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title() == f"receptive field of one top unit: {rf} input pixels"
    assert rf == wd.rf_report(layers, check=False)[0][-1]
    boxes = _boxes_by_level(fig)
    levels = wd.rf_levels(layers)
    assert list(boxes) == list(range(len(levels)))
    assert len(boxes[0]) == rf  # one box per input pixel under the receptive field
    for y, used in enumerate(levels):
        assert [i for i, on in enumerate(boxes[y]) if on] == used
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels[0].startswith(f"input  ({len(levels[0])} used, rf 1, jump 1)")
    assert labels[-1].startswith(f"layer {len(layers)}  (1 used, rf {rf}, jump ")
    assert wd.figure_png(fig).startswith(b"\x89PNG")


def test_draw_receptive_field_shows_dilation_gaps() -> None:
    """A dilated kernel skips inputs: those boxes stay white."""
    boxes = _boxes_by_level(wd.draw_receptive_field([LayerSpec(3, 1, 0, 2)]))
    assert boxes == {0: [True, False, True, False, True], 1: [True]}
