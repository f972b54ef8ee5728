"""Wrong-answer corpus for the 14.4 exercises (pooling layers)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import pooling as c

# ---------------------------------------------------------------- exercise 1: max_pool2d


def pool_reference(x, kernel_size, stride=None, padding=0):
    stride = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    windows = xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)
    return windows.amax(dim=(-2, -1))


def pool_with_loops(x, kernel_size, stride=None, padding=0):
    s = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    h_out = (xp.shape[2] - kernel_size) // s + 1
    w_out = (xp.shape[3] - kernel_size) // s + 1
    out = x.new_empty(x.shape[0], x.shape[1], h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            out[:, :, i, j] = xp[:, :, i * s : i * s + kernel_size, j * s : j * s + kernel_size].amax(
                (-2, -1)
            )
    return out


def pool_zero_padding(x, kernel_size, stride=None, padding=0):
    return pool_reference(F.pad(x, (padding,) * 4), kernel_size, stride)


def pool_averages(x, kernel_size, stride=None, padding=0):
    stride = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("nan"))
    return xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride).nanmean(dim=(-2, -1))


def pool_default_stride_one(x, kernel_size, stride=None, padding=0):
    return pool_reference(x, kernel_size, 1 if stride is None else stride, padding)


def pool_keeps_partial_window(x, kernel_size, stride=None, padding=0):
    s = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    h_out = -(-(xp.shape[2] - kernel_size) // s) + 1  # ceil
    w_out = -(-(xp.shape[3] - kernel_size) // s) + 1
    out = x.new_empty(x.shape[0], x.shape[1], h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            out[:, :, i, j] = xp[:, :, i * s : i * s + kernel_size, j * s : j * s + kernel_size].amax(
                (-2, -1)
            )
    return out


def pool_pads_one_side(x, kernel_size, stride=None, padding=0):
    return pool_reference(F.pad(x, (0, padding, 0, padding), value=float("-inf")), kernel_size, stride)


def pool_first_image_only(x, kernel_size, stride=None, padding=0):
    return pool_reference(x[:1], kernel_size, stride, padding)


def pool_calls_max_pool2d(x, kernel_size, stride=None, padding=0):
    return F.max_pool2d(x, kernel_size, stride, padding)


def test_max_pool2d_accepts_correct_answers() -> None:
    accepted(c.check_max_pool2d, pool_reference)
    accepted(c.check_max_pool2d, pool_with_loops)


def test_max_pool2d_rejects_mistakes() -> None:
    rejected(c.check_max_pool2d, pool_zero_padding, hint="padded with zeros")
    rejected(c.check_max_pool2d, pool_averages, hint="averaged")
    rejected(c.check_max_pool2d, pool_default_stride_one, hint="defaults to the kernel size")
    rejected(c.check_max_pool2d, pool_keeps_partial_window, hint="partial window")
    rejected(c.check_max_pool2d, pool_pads_one_side, hint="only one side")
    rejected(c.check_max_pool2d, pool_first_image_only, hint="batch of one")
    rejected(c.check_max_pool2d, pool_calls_max_pool2d, hint="it pools for you")


# ---------------------------------------------------------------- exercise 2: head_params


def head_reference(c_, h, w, num_classes, gap):
    features = c_ if gap else c_ * h * w
    return features * num_classes + num_classes


def head_factored(c_, h, w, num_classes, gap):
    return (1 + c_ * (1 if gap else h * w)) * num_classes


def head_forgot_bias(c_, h, w, num_classes, gap):
    return (c_ if gap else c_ * h * w) * num_classes


def head_ignores_gap(c_, h, w, num_classes, gap):
    return c_ * h * w * num_classes + num_classes


def head_bias_per_feature(c_, h, w, num_classes, gap):
    features = c_ if gap else c_ * h * w
    return features * num_classes + features


def head_flatten_forgets_channels(c_, h, w, num_classes, gap):
    features = c_ if gap else h * w
    return features * num_classes + num_classes


def test_head_params_accepts_correct_answers() -> None:
    accepted(c.check_head_params, head_reference)
    accepted(c.check_head_params, head_factored)


def test_head_params_rejects_mistakes() -> None:
    rejected(c.check_head_params, head_forgot_bias, hint="forgot the bias")
    rejected(c.check_head_params, head_ignores_gap, hint="ONE number")
    rejected(c.check_head_params, head_flatten_forgets_channels, hint="forgot the channels")
    # (n + 1) * features vs features * n + features: the same number, so a different slip
    rejected(
        c.check_head_params,
        lambda c_, h, w, n, gap: head_bias_per_feature(c_, h, w, n, gap),
        hint="one bias per input feature",
    )


# ---------------------------------------------------------------- exercise 3: avgpool_as_conv


def avgconv_reference(channels, k):
    conv = nn.Conv2d(channels, channels, k, stride=k, groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (k * k))
    return conv


def avgconv_dense_identity_channels(channels, k):  # groups=1, zero weights across channels
    conv = nn.Conv2d(channels, channels, k, stride=k)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for ch in range(channels):
            conv.weight[ch, ch] = 1.0 / (k * k)
    return conv.double()


def avgconv_mixes_channels(channels, k):
    conv = nn.Conv2d(channels, channels, k, stride=k, bias=False)
    nn.init.constant_(conv.weight, 1.0 / (k * k))
    return conv


def avgconv_sums_window(channels, k):
    conv = nn.Conv2d(channels, channels, k, stride=k, groups=channels, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def avgconv_stride_one(channels, k):
    conv = nn.Conv2d(channels, channels, k, groups=channels, bias=False)
    nn.init.constant_(conv.weight, 1.0 / (k * k))
    return conv


def avgconv_default_bias(channels, k):
    conv = nn.Conv2d(channels, channels, k, stride=k, groups=channels)
    with torch.no_grad():
        conv.weight.fill_(1.0 / (k * k))
        conv.bias.fill_(0.1)
    return conv


def avgconv_weights_one_over_k(channels, k):
    conv = nn.Conv2d(channels, channels, k, stride=k, groups=channels, bias=False)
    nn.init.constant_(conv.weight, 1.0 / k)
    return conv


def avgconv_returns_pool(channels, k):
    return nn.AvgPool2d(k)


def test_avgpool_as_conv_accepts_correct_answers() -> None:
    accepted(c.check_avgpool_as_conv, avgconv_reference)
    accepted(c.check_avgpool_as_conv, avgconv_dense_identity_channels)


def test_avgpool_as_conv_rejects_mistakes() -> None:
    rejected(c.check_avgpool_as_conv, avgconv_mixes_channels, hint="groups=channels")
    rejected(c.check_avgpool_as_conv, avgconv_sums_window, hint="sums the window")
    rejected(c.check_avgpool_as_conv, avgconv_stride_one, hint="stride 1")
    rejected(c.check_avgpool_as_conv, avgconv_default_bias, hint="adds a bias")
    rejected(c.check_avgpool_as_conv, avgconv_weights_one_over_k, hint="1/k\\^2")
    rejected(c.check_avgpool_as_conv, avgconv_returns_pool, hint="nn.Conv2d")
