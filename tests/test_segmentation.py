"""cnnbook.segmentation: U-Net shapes, ASPP receptive fields, IoU against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score
from torch import nn

from cnnbook.geometry import (
    LayerSpec,
    receptive_field,
    receptive_field_by_gradient,
    transposed_conv_output_size,
)
from cnnbook.segmentation import (
    ASPP,
    UNet,
    confusion_matrix,
    conv_bn_relu,
    double_conv,
    iou_per_class,
    mean_iou,
    predict_masks,
)
from cnnbook.synthetic import segmentation_scenes


@pytest.mark.parametrize(("widths", "size"), [((8, 16), 16), ((8, 16, 32), 32), ((4, 8, 16, 32), 24)])
def test_unet_keeps_resolution(widths: tuple[int, ...], size: int) -> None:
    net = UNet(in_channels=3, num_classes=5, widths=widths)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 5, size, size)


def test_unet_decoder_upsamples_with_transposed_convs() -> None:
    net = UNet(widths=(8, 16, 32))
    assert len(net.up) == 2
    assert all(isinstance(u, nn.ConvTranspose2d) for u in net.up)
    for up in net.up:
        k, s = up.kernel_size[0], up.stride[0]
        assert transposed_conv_output_size(8, k, s) == 16
        assert up(torch.randn(1, up.in_channels, 8, 8)).shape[-1] == 16


def test_skip_connections_feed_the_decoder() -> None:
    with_skip, without = UNet(widths=(8, 16)), UNet(widths=(8, 16), skip_connections=False)
    # decoder's first conv sees 2x channels (upsampled + skip) only with skips
    assert with_skip.decoder[0][0][0].in_channels == 16
    assert without.decoder[0][0][0].in_channels == 8
    assert without(torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)


def test_unet_rejects_sizes_it_cannot_halve() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(widths=(8, 16, 32))(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        UNet()(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="at least two levels"):
        UNet(widths=(8,))


def test_unet_learns_a_few_scenes() -> None:
    torch.manual_seed(0)
    data = segmentation_scenes(16, size=16, seed=0)
    net = UNet(widths=(8, 16))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(net(data.images), data.masks)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = predict_masks(net, data.images)
    assert loss.item() < 0.5 * first
    assert mean_iou(pred, data.masks, 4) > mean_iou(torch.zeros_like(pred), data.masks, 4) + 0.1


def test_confusion_and_iou_match_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 10, 10), generator=g)
    pred = torch.where(
        torch.rand(3, 10, 10, generator=g) < 0.6, target, torch.randint(0, 4, (3, 10, 10), generator=g)
    )
    t, p = target.flatten().numpy(), pred.flatten().numpy()
    np.testing.assert_array_equal(
        confusion_matrix(pred, target, 4).numpy(), sk_confusion_matrix(t, p, labels=range(4))
    )
    np.testing.assert_allclose(
        iou_per_class(pred, target, 4).numpy(), jaccard_score(t, p, average=None, labels=range(4))
    )
    assert mean_iou(pred, target, 4) == pytest.approx(jaccard_score(t, p, average="macro"))


def test_iou_absent_class_is_nan_and_skipped() -> None:
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    ious = iou_per_class(pred, target, 3)
    assert ious[0] == pytest.approx(1 / 2)
    assert ious[1] == pytest.approx(2 / 3)
    assert torch.isnan(ious[2])
    assert mean_iou(pred, target, 3) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mean_iou(pred, target, 3, ignore_background=True) == pytest.approx(2 / 3)


def test_iou_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="argmax"):
        iou_per_class(torch.zeros(2, 4, 4), torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="outside"):
        iou_per_class(torch.full((4,), 5), torch.zeros(4, dtype=torch.long), 4)


def test_aspp_keeps_size_and_each_branch_is_a_dilated_conv() -> None:
    aspp = ASPP(6, 8, rates=(1, 2, 3)).eval()
    x = torch.randn(2, 6, 13, 11)
    assert aspp(x).shape == (2, 8, 13, 11)
    for rate, branch in zip((1, 2, 3), list(aspp.branches)[1:], strict=True):
        conv = branch[0]
        assert conv.dilation == (rate, rate)
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, padding=rate, dilation=rate))


@pytest.mark.parametrize("rate", [1, 2, 4, 6])
def test_aspp_branch_receptive_field(rate: int) -> None:
    aspp = ASPP(3, 4, rates=(rate,))
    branch = aspp.branches[1]
    measured = receptive_field_by_gradient(branch, input_size=4 * rate + 9)
    assert measured == 2 * rate + 1
    assert receptive_field([LayerSpec(3, 1, rate, rate)])[-1].rf == measured


def _reaches_corner(aspp: ASPP, size: int = 33) -> bool:
    x = torch.randn(1, 3, size, size, requires_grad=True)
    aspp.eval()(x)[0, :, size // 2, size // 2].sum().backward()
    assert x.grad is not None
    return bool(x.grad[0, :, 0, 0].abs().sum() > 0)


def test_image_pooling_branch_gives_global_context() -> None:
    torch.manual_seed(0)
    assert _reaches_corner(ASPP(3, 4, rates=(1, 2, 4), image_pooling=True))
    assert not _reaches_corner(ASPP(3, 4, rates=(1, 2, 4), image_pooling=False))


def test_aspp_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="rates"):
        ASPP(3, 4, rates=(0, 2))


@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 1), (3, 2), (5, 3)])
def test_conv_bn_relu_layers_and_size(k: int, d: int) -> None:
    block = conv_bn_relu(3, 8, kernel_size=k, dilation=d)
    conv, bn, relu = block
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert conv.bias is None  # BN's shift replaces the bias
    assert bn.num_features == 8
    assert conv.kernel_size == (k, k)
    assert conv.dilation == (d, d)
    assert conv.padding == (d * (k - 1) // 2,) * 2
    assert sum(p.numel() for p in block.parameters()) == k * k * 3 * 8 + 2 * 8
    assert block(torch.randn(2, 3, 11, 9)).shape == (2, 8, 11, 9)


def test_conv_bn_relu_computes_relu_of_normalised_conv() -> None:
    torch.manual_seed(0)
    block = conv_bn_relu(2, 4, kernel_size=3, dilation=2).eval()
    conv, bn, _ = block
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(3, 2, 10, 10)
    z = F.conv2d(x, conv.weight, padding=2, dilation=2)
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(1, -1, 1, 1)
    ref = ((z - bn.running_mean.view(1, -1, 1, 1)) * scale + bn.bias.view(1, -1, 1, 1)).clamp(min=0)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref)


def test_conv_bn_relu_rejects_even_kernels() -> None:
    with pytest.raises(ValueError, match="kernel_size=4 must be odd"):
        conv_bn_relu(3, 8, kernel_size=4)


def test_double_conv_structure_params_and_shape() -> None:
    block = double_conv(3, 16)
    assert len(block) == 2
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 16, (3, 3), (1, 1)),
        (16, 16, (3, 3), (1, 1)),
    ]
    assert [type(m) for m in block.modules() if not isinstance(m, nn.Sequential)] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
    ] * 2
    first, second = 9 * 3 * 16 + 2 * 16, 9 * 16 * 16 + 2 * 16  # kernels + BN weight and bias
    assert sum(p.numel() for p in block.parameters()) == first + second
    out = block(torch.randn(2, 3, 12, 7))
    assert out.shape == (2, 16, 12, 7)
    assert out.min() >= 0  # ends with a ReLU
