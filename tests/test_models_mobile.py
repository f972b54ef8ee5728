"""cnnbook.models.mobile: blocks checked against torchvision's MobileNetV2 / SE and F.conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as TVInvertedResidual
from torchvision.ops import SqueezeExcitation as TVSqueezeExcitation

from cnnbook.models.mobile import (
    DepthwiseSeparableConv,
    InvertedResidual,
    MBConv,
    SqueezeExcitation,
    separable_conv_params,
    separable_ratio,
    standard_conv_params,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.randn(c, generator=gen)
            m.running_mean = torch.randn(c, generator=gen)
            m.running_var = torch.rand(c, generator=gen) + 0.5


@pytest.mark.parametrize(("c_in", "c_out", "k"), [(3, 16, 3), (64, 128, 3), (32, 256, 5), (1, 1, 1)])
def test_param_formulas_match_counted_layers(c_in: int, c_out: int, k: int) -> None:
    std = nn.Conv2d(c_in, c_out, k, bias=False)
    dw = nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False)
    pw = nn.Conv2d(c_in, c_out, 1, bias=False)
    assert standard_conv_params(c_in, c_out, k) == n_params(std)
    assert standard_conv_params(c_in, c_out, k, bias=True) == n_params(nn.Conv2d(c_in, c_out, k))
    assert separable_conv_params(c_in, c_out, k) == n_params(dw) + n_params(pw)
    assert separable_conv_params(c_in, c_out, k) / n_params(std) == pytest.approx(separable_ratio(c_out, k))


def test_chapter_example_ratio() -> None:
    assert separable_ratio(256, 3) == pytest.approx(0.115, abs=5e-4)


def test_separable_param_count_64_to_128() -> None:
    block = DepthwiseSeparableConv(64, 128)
    # 64*9 depthwise + 64*128 pointwise weights + 2*(64 + 128) batch-norm scales and shifts
    assert n_params(block) == 64 * 9 + 64 * 128 + 2 * (64 + 128) == 9152


def test_separable_equals_grouped_then_pointwise_conv() -> None:
    torch.manual_seed(0)
    block = DepthwiseSeparableConv(8, 12, kernel_size=3, stride=2, activation=nn.Identity).eval()
    x = torch.randn(2, 8, 9, 10)
    bn1, bn2 = block.depthwise.bn, block.pointwise.bn
    h = F.conv2d(x, block.depthwise.conv.weight, stride=2, padding=1, groups=8)
    h = F.batch_norm(h, bn1.running_mean, bn1.running_var, bn1.weight, bn1.bias, eps=bn1.eps)
    h = F.conv2d(h, block.pointwise.conv.weight)
    h = F.batch_norm(h, bn2.running_mean, bn2.running_var, bn2.weight, bn2.bias, eps=bn2.eps)
    assert block(x).shape == (2, 12, 5, 5)
    torch.testing.assert_close(block(x), h)


def test_squeeze_excitation_matches_torchvision() -> None:
    torch.manual_seed(0)
    ours = SqueezeExcitation(16, 4)
    ref = TVSqueezeExcitation(16, 4)
    ours.load_state_dict(
        {
            "reduce.weight": ref.fc1.weight,
            "reduce.bias": ref.fc1.bias,
            "expand.weight": ref.fc2.weight,
            "expand.bias": ref.fc2.bias,
        }
    )
    x = torch.randn(3, 16, 5, 7)
    torch.testing.assert_close(ours(x), ref(x))
    w = ours.channel_weights(x)
    assert w.shape == (3, 16, 1, 1)
    assert bool((w > 0).all() and (w < 1).all())


@pytest.mark.parametrize(
    ("c_in", "c_out", "stride", "expand"), [(16, 16, 1, 6), (16, 24, 2, 6), (32, 16, 1, 1)]
)
def test_inverted_residual_matches_torchvision_mobilenetv2(
    c_in: int, c_out: int, stride: int, expand: int
) -> None:
    gen = torch.Generator().manual_seed(1)
    ref = TVInvertedResidual(c_in, c_out, stride, expand)
    randomize_bn(ref, gen)
    ours = InvertedResidual(c_in, c_out, expand_ratio=expand, stride=stride)
    # Same layers in the same order: copy tensors position by position.
    mapped = dict(zip(ours.state_dict(), ref.state_dict().values(), strict=True))
    ours.load_state_dict(mapped)
    ref.eval(), ours.eval()
    x = torch.randn(2, c_in, 12, 12, generator=gen)
    torch.testing.assert_close(ours(x), ref(x))
    assert ours.use_residual == ref.use_res_connect
    assert n_params(ours) == n_params(ref)


def test_expand_one_without_se_is_a_linear_separable_conv() -> None:
    torch.manual_seed(0)
    block = MBConv(24, 40, expand_ratio=1, kernel_size=5, stride=2, activation=nn.ReLU6)
    sep = DepthwiseSeparableConv(24, 40, 5, 2, activation=nn.ReLU6, linear_pointwise=True)
    randomize_bn(block, torch.Generator().manual_seed(2))
    sep.load_state_dict({k.replace("project", "pointwise"): v for k, v in block.state_dict().items()})
    x = torch.randn(2, 24, 16, 16)
    torch.testing.assert_close(block.eval()(x), sep.eval()(x))


def test_inverted_residual_with_se_and_drop_path() -> None:
    torch.manual_seed(0)
    block = InvertedResidual(16, 16, expand_ratio=4, se_ratio=0.25, activation=nn.SiLU, drop_path=0.5)
    assert isinstance(block.se, SqueezeExcitation)
    assert block.se.reduce.out_channels == 4
    x = torch.randn(64, 16, 6, 6)
    block.train()
    out = block(x)
    same_as_input = (out - x).flatten(1).abs().amax(1) == 0
    assert 10 < int(same_as_input.sum()) < 54  # about half the samples skip the branch
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    assert not torch.equal(block(x), x)


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, 8, H, W\)"):
        DepthwiseSeparableConv(8, 4)(torch.randn(1, 3, 5, 5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        InvertedResidual(8, 8)([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(8, 8, stride=3)
