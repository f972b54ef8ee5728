"""cnnbook.plots: array conversions, overlays and grid layouts."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib import colormaps

from cnnbook import plots


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def test_to_hwc_layouts() -> None:
    img = torch.arange(2 * 3 * 4, dtype=torch.float32).view(3, 2, 4)
    out = plots.to_hwc(img)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[..., 1], img[1].numpy())
    assert plots.to_hwc(img[:1]).shape == (2, 4)
    assert plots.to_hwc(np.zeros((5, 6))).shape == (5, 6)
    with pytest.raises(ValueError, match="Index one image"):
        plots.to_hwc(torch.zeros(2, 3, 4, 4))


def test_rescale01_global_and_per_item() -> None:
    x = torch.tensor([[0.0, 2.0], [10.0, 14.0]])
    torch.testing.assert_close(plots.rescale01(x), x / 14.0)
    torch.testing.assert_close(plots.rescale01(x, per_item=True), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert torch.equal(plots.rescale01(torch.full((3,), 7.0)), torch.zeros(3))


def test_overlay_is_alpha_blend_of_colormap() -> None:
    image = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(0))
    heat = torch.linspace(0, 1, 30).view(6, 5)
    out = plots.overlay_heatmap(image, heat, alpha=0.3, cmap="viridis")
    expected = 0.7 * image.permute(1, 2, 0).numpy() + 0.3 * colormaps["viridis"](heat.numpy())[..., :3]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    small = plots.overlay_heatmap(image, torch.ones(3, 2), alpha=1.0, cmap="gray")
    np.testing.assert_allclose(small, 1.0, atol=1e-6)  # resized up; all-hot in grey is white
    with pytest.raises(ValueError, match="alpha"):
        plots.overlay_heatmap(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        plots.overlay_heatmap(image[0], heat)


def test_grids_have_one_axis_per_item() -> None:
    fig = plots.image_grid(torch.rand(5, 3, 8, 8), titles=list("abcde"), ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6
    assert len(shown) == 5
    assert [ax.get_title() for ax in shown] == list("abcde")
    with pytest.raises(ValueError, match="titles"):
        plots.image_grid(torch.rand(2, 8, 8), titles=["x"])
    with pytest.raises(ValueError, match="at least one"):
        plots.image_grid([])

    weight = torch.randn(64, 3, 7, 7)
    fig = plots.plot_filters(weight, n=16)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 16
    drawn = shown[0].images[0].get_array()
    assert drawn.shape == (7, 7, 3)
    lo, hi = weight[:16].min(), weight[:16].max()
    np.testing.assert_allclose(drawn, ((weight[0] - lo) / (hi - lo)).permute(1, 2, 0).numpy(), atol=1e-6)
    assert len([ax for ax in plots.plot_filters(torch.randn(8, 16, 3, 3), n=None).axes if ax.images]) == 8

    fig = plots.plot_feature_maps(torch.randn(1, 32, 5, 5), n=10)
    assert len([ax for ax in fig.axes if ax.images]) == 10
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        plots.plot_feature_maps(torch.randn(2, 32, 5, 5))

    fig = plots.plot_heatmaps(torch.rand(3, 8, 8), [torch.rand(8, 8)] * 2, ["cat", "dog"])
    assert [ax.get_title() for ax in fig.axes] == ["input", "cat", "dog"]
