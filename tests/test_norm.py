"""cnnbook.norm: hand-written batch norm vs nn.BatchNorm2d; folding vs torch's fuser."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cnnbook.models.efficientnet import EfficientNetLite
from cnnbook.norm import BatchNorm2d, batch_stats, fold_batchnorm, fold_bn_into_conv


def test_batch_stats_over_n_h_w() -> None:
    x = torch.randn(4, 3, 5, 6)
    mean, var = batch_stats(x)
    per_channel = x.permute(1, 0, 2, 3).reshape(3, -1)
    torch.testing.assert_close(mean, per_channel.mean(1))
    torch.testing.assert_close(var, per_channel.var(1, unbiased=False))


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_matches_torch_in_train_and_eval_mode(momentum: float | None) -> None:
    torch.manual_seed(0)
    ours, ref = BatchNorm2d(5, momentum=momentum), nn.BatchNorm2d(5, momentum=momentum)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())  # same keys, including the buffers
    for _ in range(4):  # several train steps: running statistics must track identically
        x = torch.randn(8, 5, 6, 7) * 3 + 2
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb)
        g = torch.randn_like(ya)
        ya.backward(g), yb.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 4
    ours.eval(), ref.eval()
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(ours(x), ref(x))


def test_train_mode_output_is_standardised() -> None:
    y = BatchNorm2d(3)(torch.randn(16, 3, 8, 8) * 5 + 7)
    mean, var = batch_stats(y)
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(var, torch.ones(3), atol=1e-3, rtol=0)


def test_single_value_per_channel_raises() -> None:
    with pytest.raises(ValueError, match="eval"):
        BatchNorm2d(3)(torch.randn(1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        BatchNorm2d(3)(torch.randn(2, 4, 3, 3))


def _trained_bn(c: int, seed: int) -> nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    bn.weight.data = torch.rand(c, generator=gen) + 0.5
    bn.bias.data = torch.randn(c, generator=gen)
    bn.running_mean = torch.randn(c, generator=gen)
    bn.running_var = torch.rand(c, generator=gen) + 0.1
    return bn.eval()


@pytest.mark.parametrize(("bias", "groups", "stride"), [(False, 1, 1), (True, 1, 2), (False, 8, 1)])
def test_fold_matches_torch_fuser_and_unfused(bias: bool, groups: int, stride: int) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride=stride, padding=1, groups=groups, bias=bias).eval()
    bn = _trained_bn(16, 1)
    folded = fold_bn_into_conv(conv, bn)
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
        ref = fuse_conv_bn_eval(conv, bn)
        torch.testing.assert_close(folded.weight, ref.weight)
        torch.testing.assert_close(folded.bias, ref.bias)
    assert (conv.bias is None) == (not bias)  # inputs untouched


def test_fold_accepts_our_batchnorm_and_checks_args() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False).eval()
    ref = _trained_bn(4, 2)
    ours = BatchNorm2d(4)
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fold_bn_into_conv(conv, ours)(x), ref(conv(x)))
    with pytest.raises(ValueError, match="output channels"):
        fold_bn_into_conv(conv, nn.BatchNorm2d(5))
    with pytest.raises(TypeError, match="Conv2d"):
        fold_bn_into_conv(nn.Linear(3, 4), ref)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="running statistics"):
        fold_bn_into_conv(conv, nn.BatchNorm2d(4, track_running_stats=False))


def test_fold_whole_network() -> None:
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=10, width_mult=0.5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    folded = fold_batchnorm(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == 1 + 2 + 15 * 3 + 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
