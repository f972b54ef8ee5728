"""Classic kernels behave as advertised; photos load offline as float tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnbook import kernels
from cnnbook.images import PHOTOS, load_photo


def test_identity_and_blurs_preserve_mean() -> None:
    img = load_photo("camera", size=64)
    k = kernels.classic_kernels()
    torch.testing.assert_close(kernels.apply_kernel(img, k["identity"]), img)
    for name in ("box blur", "gaussian"):
        assert k[name].sum().item() == pytest.approx(1.0)
        out = kernels.apply_kernel(img, k[name])
        assert out.mean().item() == pytest.approx(img.mean().item(), abs=2e-3)
        assert out.std() < img.std()  # blurring removes contrast


def test_sobel_responds_to_the_right_edges() -> None:
    step = torch.zeros(16, 16)
    step[:, 8:] = 1.0  # a vertical edge: brightness changes left -> right
    k = kernels.classic_kernels()
    gx = kernels.apply_kernel(step, k["sobel x"], "replicate")
    gy = kernels.apply_kernel(step, k["sobel y"], "replicate")
    assert gx.abs().max() == 4.0
    assert gy.abs().max() == 0.0
    assert gx[:, 7:9].abs().min() == 4.0


def test_laplacian_and_sharpen_zero_sum_and_unit_sum() -> None:
    k = kernels.classic_kernels()
    assert k["laplacian"].sum() == 0
    assert k["sharpen"].sum() == 1
    assert k["sobel y"].shape == (3, 3)
    assert torch.equal(k["sobel y"], k["sobel x"].T)


def test_apply_kernel_matches_depthwise_conv_and_shapes() -> None:
    img = torch.rand(3, 20, 30)
    g = kernels.gaussian_kernel(5, 1.5)
    out = kernels.apply_kernel(img, g, "zeros")
    ref = F.conv2d(img[:, None], g[None, None], padding=2)[:, 0]
    torch.testing.assert_close(out, ref)
    assert kernels.gradient_magnitude(img).shape == (20, 30)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (dict(kernel=torch.ones(2, 2)), "odd"),
        (dict(padding_mode="mirror"), "padding_mode"),
    ],
)
def test_apply_kernel_errors(bad: dict, match: str) -> None:
    args = dict(image=torch.rand(1, 8, 8), kernel=torch.ones(3, 3)) | bad
    with pytest.raises(ValueError, match=match):
        kernels.apply_kernel(**args)


def test_gaussian_errors() -> None:
    with pytest.raises(ValueError, match="odd"):
        kernels.gaussian_kernel(4)
    with pytest.raises(ValueError, match="sigma"):
        kernels.gaussian_kernel(5, 0)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_photos_load_offline(name: str) -> None:
    img = load_photo(name)
    assert img.dtype == torch.float32
    assert img.ndim == 3
    assert img.shape[0] in (1, 3)
    assert img.min() >= 0.0
    assert img.max() <= 1.0
    assert img.std() > 0.05


def test_photo_resize_gray_and_unknown() -> None:
    assert load_photo("chelsea", size=(40, 60), gray=True).shape == (1, 40, 60)
    with pytest.raises(ValueError, match="choose one of"):
        load_photo("dog")


def test_as_rgb_batch() -> None:
    from cnnbook.images import as_rgb_batch

    assert as_rgb_batch(torch.rand(3, 5, 6)).shape == (1, 3, 5, 6)
    with pytest.raises(ValueError, match="float"):
        as_rgb_batch(torch.zeros(3, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        as_rgb_batch(torch.rand(1, 5, 5))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_box_kernel_values_and_sum(size: int) -> None:
    k = kernels.box_kernel(size)
    assert k.shape == (size, size)
    assert k.dtype == torch.float32
    assert torch.all(k == 1.0 / size**2)
    assert k.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("size", [3, 5])
def test_box_kernel_filters_like_avg_pool(size: int) -> None:
    """Box blurring is the stride-1 mean of each window: ``F.avg_pool2d`` is the reference."""
    img = torch.rand(2, 12, 15)
    out = kernels.apply_kernel(img, kernels.box_kernel(size), "zeros")
    ref = F.avg_pool2d(img[None], size, stride=1, padding=size // 2, count_include_pad=True)[0]
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("size", [0, -3])
def test_box_kernel_rejects_non_positive_size(size: int) -> None:
    with pytest.raises(ValueError, match=f"size must be positive, got {size}"):
        kernels.box_kernel(size)
