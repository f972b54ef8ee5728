"""Colours every reader can tell apart: cnnbook.plots and cnnbook.widgets under simulated CVD.

Each helper is rendered and the colours it uses to tell things apart (line series, highlighted
cells against plain ones, text on coloured cells) are passed through Machado, Oliveira and
Fernandes's (2009) simulation of protanopia, deuteranopia and tritanopia (severity 1). Two
colours count as distinguishable when their CIE L*a*b* distance (CIE76 delta E) is at least
:data:`MIN_DELTA_E` for normal vision and under every simulation. The classic red/green pair
(matplotlib's ``tab:red`` and ``tab:green``) is about 7 apart for a deuteranope, the closest pair
of the Okabe-Ito palette about 16. Colour maps must stay ordered (L* monotonic) for every reader,
which viridis and cividis do and "jet" does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnbook import plots
from cnnbook import widgets as wd

# Machado et al. (2009), Table 1, severity 1.0; they act on linear RGB.
MACHADO_2009 = {
    "protanopia": np.array(
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]
    ),
    "deuteranopia": np.array(
        [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]
    ),
    "tritanopia": np.array(
        [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]
    ),
}
VISIONS = ("normal", *MACHADO_2009)
MIN_DELTA_E = 12.0
MIN_TEXT_CONTRAST = 4.5  # WCAG AA for normal-size text


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


# ------------------------------------------------------------------------------ colour science


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=float)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def simulate(colour: object, vision: str) -> np.ndarray:
    """Linear RGB of ``colour`` as seen with ``vision`` (``"normal"`` or a MACHADO_2009 key)."""
    lin = srgb_to_linear(np.array(to_rgb(colour)))
    if vision == "normal":
        return lin
    return np.clip(MACHADO_2009[vision] @ lin, 0.0, 1.0)


def linear_to_lab(lin: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65 white) of a linear sRGB colour."""
    xyz = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    ) @ np.asarray(lin)
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(t > eps, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: object, b: object, vision: str) -> float:
    return float(np.linalg.norm(linear_to_lab(simulate(a, vision)) - linear_to_lab(simulate(b, vision))))


def closest_pair(colours: Sequence[object]) -> tuple[float, str, object, object]:
    """``(delta E, vision, a, b)`` of the least distinguishable pair over all visions."""
    distinct = list({to_rgb(c): c for c in colours}.values())
    assert len(distinct) >= 2, f"need two different colours, got {colours}"
    return min((delta_e(a, b, v), v, a, b) for a, b in itertools.combinations(distinct, 2) for v in VISIONS)


def assert_distinguishable(colours: Sequence[object], what: str) -> None:
    d, vision, a, b = closest_pair(colours)
    assert d >= MIN_DELTA_E, (
        f"{what}: {a} and {b} are only delta E {d:.1f} apart with {vision} "
        f"(need {MIN_DELTA_E}); use cnnbook.plots.PALETTE"
    )


def contrast_ratio(a: object, b: object) -> float:
    la, lb = (float(np.array([0.2126, 0.7152, 0.0722]) @ srgb_to_linear(np.array(to_rgb(c)))) for c in (a, b))
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def colormap_stays_ordered(name: str) -> tuple[bool, str]:
    """Whether L* of ``name`` is monotonic (and spans 40+) for every vision."""
    samples = colormaps[name](np.linspace(0, 1, 64))[:, :3]
    for vision in VISIONS:
        lightness = np.array([linear_to_lab(simulate(c, vision))[0] for c in samples])
        steps = np.diff(lightness)
        if not (np.all(steps > -0.5) or np.all(steps < 0.5)):
            return False, f"L* goes up and down with {vision}"
        if abs(lightness[-1] - lightness[0]) < 40:
            return False, f"L* spans only {abs(lightness[-1] - lightness[0]):.0f} with {vision}"
    return True, ""


def assert_opaque_white(fig: Figure) -> None:
    face = fig.get_facecolor()
    assert tuple(face) == (1.0, 1.0, 1.0, 1.0), (
        f"figure background {face} is not opaque white (unreadable under a dark theme)"
    )
    assert fig.patch.get_alpha() in (None, 1.0), f"figure background alpha {fig.patch.get_alpha()}"


# ------------------------------------------------------------- the checks can fail (unit cases)


def test_simulation_matches_known_confusions() -> None:
    # Deuteranopes confuse red with green; nobody confuses blue with orange.
    assert delta_e("tab:red", "tab:green", "normal") > 100
    assert delta_e("tab:red", "tab:green", "deuteranopia") < MIN_DELTA_E
    with pytest.raises(AssertionError, match="deuteranopia"):
        assert_distinguishable(["tab:red", "tab:green"], "a red/green pair")
    assert_distinguishable(["#0072B2", "#E69F00"], "blue/orange")
    # Greys are unchanged by every simulation.
    for vision in VISIONS:
        np.testing.assert_allclose(simulate("0.5", vision), simulate("0.5", "normal"), atol=1e-3)
    assert not colormap_stays_ordered("jet")[0]
    assert not colormap_stays_ordered("RdYlGn")[0]
    assert colormap_stays_ordered("viridis")[0]
    assert contrast_ratio("black", "white") == pytest.approx(21.0)


def test_palette_is_distinguishable_for_every_reader() -> None:
    assert len(plots.PALETTE) == 8
    assert_distinguishable(plots.PALETTE, "cnnbook.plots.PALETTE")


@pytest.mark.parametrize("name", [plots.SEQUENTIAL_CMAP, plots.CONFUSION_CMAP])
def test_colour_maps_stay_ordered(name: str) -> None:
    ok, why = colormap_stays_ordered(name)
    assert ok, f"{name}: {why}"


def test_course_style_sets_palette_and_background() -> None:
    with matplotlib.rc_context():
        plots.use_course_style()
        fig, ax = plt.subplots()
        lines = [ax.plot([0, 1], [i, i])[0] for i in range(4)]
        assert [line.get_color() for line in lines] == list(plots.PALETTE[:4])
        assert_opaque_white(fig)


# ----------------------------------------------------------------------------- the helpers


class _History(list):
    """A minimal stand-in with the interface plot_history reads."""

    step_lr = [0.1, 0.05, 0.01]

    def __getitem__(self, key):  # type: ignore[override]
        return {
            "epoch": [1, 2],
            "train_loss": [1.0, 0.5],
            "val_loss": [1.1, 0.7],
            "train_acc": [0.5, 0.7],
            "val_acc": [0.45, 0.6],
        }[key]


def test_plot_history_series() -> None:
    fig = plots.plot_history(_History([0, 1]))
    assert_opaque_white(fig)
    for ax in fig.axes[:2]:
        colours = [line.get_color() for line in ax.get_lines()]
        assert len(colours) == 2
        assert_distinguishable(colours, f"plot_history {ax.get_ylabel()}: train vs validation")
        assert len({line.get_marker() for line in ax.get_lines()}) == 2  # also told apart by shape


def test_confusion_matrix_colours_and_text() -> None:
    cm = torch.tensor([[50, 3, 0], [10, 30, 8], [0, 1, 60]])
    fig = plots.plot_confusion_matrix(cm, ["cat", "dog", "frog"])
    assert_opaque_white(fig)
    ax = fig.axes[0]
    image = ax.images[0]
    ok, why = colormap_stays_ordered(image.get_cmap().name)
    assert ok, f"confusion matrix colour map {image.get_cmap().name}: {why}"
    for text in ax.texts:
        x, y = text.get_position()
        cell = image.cmap(image.norm(image.get_array()[int(y), int(x)]))
        ratio = contrast_ratio(text.get_color(), cell)
        assert ratio >= MIN_TEXT_CONTRAST, f"number {text.get_text()} has contrast {ratio:.1f} on its cell"


def test_image_helpers_are_opaque_and_use_safe_maps() -> None:
    fmap = plots.plot_feature_maps(torch.randn(4, 5, 5))
    assert_opaque_white(fmap)
    assert all(colormap_stays_ordered(ax.images[0].get_cmap().name)[0] for ax in fmap.axes if ax.images)
    assert_opaque_white(plots.image_grid(torch.rand(2, 3, 4, 4)))
    assert_opaque_white(plots.plot_filters(torch.randn(4, 3, 3, 3)))
    heat = plots.plot_heatmaps(torch.rand(3, 8, 8), [torch.rand(8, 8)], ["cat"])
    assert_opaque_white(heat)
    # the overlay's default colour map is one that stays ordered for every reader
    image, hot = torch.zeros(3, 1, 2), torch.tensor([[0.0, 1.0]])
    blend = plots.overlay_heatmap(image, hot, alpha=1.0)
    expected = colormaps[plots.SEQUENTIAL_CMAP](np.array([0.0, 1.0]))[:, :3]
    np.testing.assert_allclose(blend[0], expected, atol=1e-6)


def test_readable_text_colour() -> None:
    for background in (
        "white",
        "black",
        "#0072B2",
        "#F0E442",
        *[colormaps["cividis"](v) for v in (0, 0.5, 1)],
    ):
        text = plots.readable_text_colour(background)
        other = "white" if text == "black" else "black"
        assert contrast_ratio(text, background) >= contrast_ratio(other, background)


# ----------------------------------------------------------------------------- the widgets


def _fills(fig: Figure) -> list[tuple[float, float, float]]:
    return [
        to_rgb(p.get_facecolor())
        for ax in fig.axes
        for p in ax.patches
        if isinstance(p, Rectangle) and p.get_fill()
    ]


def test_conv_explorer_drawing_colours() -> None:
    fig = wd.draw_conv(5, 3, 1, 1, 1, out_row=1, out_col=1)
    assert_opaque_white(fig)
    fills = set(_fills(fig))
    # plain input cells, padding, highlighted taps / output: three things to tell apart
    assert len(fills) == 3, fills
    assert_distinguishable(sorted(fills), "draw_conv cells (input, padding, highlighted)")
    outlines = [
        p.get_edgecolor()
        for ax in fig.axes
        for p in ax.patches
        if isinstance(p, Rectangle) and not p.get_fill()
    ]
    assert len(outlines) == 1
    assert_distinguishable([outlines[0], wd.HIGHLIGHT, "0.8", "white"], "kernel window outline vs cells")


def test_receptive_field_drawing_colours() -> None:
    from cnnbook.geometry import LayerSpec

    fig = wd.draw_receptive_field([LayerSpec(3, 2, 0, 1, "a"), LayerSpec(3, 1, 0, 2, "b")])
    assert_opaque_white(fig)
    fills = sorted(set(_fills(fig)))
    assert len(fills) == 2, fills
    assert_distinguishable(fills, "draw_receptive_field (used vs unused units)")
