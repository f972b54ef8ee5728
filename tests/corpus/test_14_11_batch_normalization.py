"""Wrong-answer corpus for the 14.11 exercises (batch normalisation)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import batchnorm as checks

# ---------------------------------------------------------------- Exercise 1: backward pass


def backward_reference(x, gamma, dy, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    x_hat = (x - mean) / torch.sqrt(var + eps)
    m = x.numel() // x.shape[1]
    g = gamma.view(1, -1, 1, 1) / torch.sqrt(var + eps)
    dx = (
        g / m * (m * dy - dy.sum((0, 2, 3), keepdim=True) - x_hat * (dy * x_hat).sum((0, 2, 3), keepdim=True))
    )
    return dx, (dy * x_hat).sum((0, 2, 3)), dy.sum((0, 2, 3))


def backward_step_by_step(x, gamma, dy, eps=1e-5):
    """The computational-graph route: through x_hat, var and mean one node at a time, float32."""
    x, gamma, dy = x.float(), gamma.float(), dy.float()
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mu = x.sum(dim=(0, 2, 3), keepdim=True) / n
    xc = x - mu
    var = (xc**2).sum(dim=(0, 2, 3), keepdim=True) / n
    inv = (var + eps) ** -0.5
    x_hat = xc * inv
    dx_hat = dy * gamma[None, :, None, None]
    dvar = (dx_hat * xc).sum(dim=(0, 2, 3), keepdim=True) * -0.5 * inv**3
    dmu = -(dx_hat * inv).sum(dim=(0, 2, 3), keepdim=True) - 2 * dvar * xc.mean(dim=(0, 2, 3), keepdim=True)
    dx = dx_hat * inv + dvar * 2 * xc / n + dmu / n
    return [dx, (dy * x_hat).sum(dim=(0, 2, 3)), dy.sum(dim=(0, 2, 3))]


def backward_statistics_as_constants(x, gamma, dy, eps=1e-5):
    _, dg, db = backward_reference(x, gamma, dy, eps)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return gamma.view(1, -1, 1, 1) * dy / torch.sqrt(var + eps), dg, db


def backward_without_variance_term(x, gamma, dy, eps=1e-5):
    _, dg, db = backward_reference(x, gamma, dy, eps)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    dx = gamma.view(1, -1, 1, 1) / torch.sqrt(var + eps) * (dy - dy.mean((0, 2, 3), keepdim=True))
    return dx, dg, db


def backward_without_mean_term(x, gamma, dy, eps=1e-5):
    _, dg, db = backward_reference(x, gamma, dy, eps)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    x_hat = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / torch.sqrt(var + eps)
    dx = (
        gamma.view(1, -1, 1, 1)
        / torch.sqrt(var + eps)
        * (dy - x_hat * (dy * x_hat).mean((0, 2, 3), keepdim=True))
    )
    return dx, dg, db


def backward_unbiased_variance(x, gamma, dy, eps=1e-5):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True)  # unbiased by default
    x_hat = (x - mean) / torch.sqrt(var + eps)
    g = gamma.view(1, -1, 1, 1) / torch.sqrt(var + eps)
    dx = g * (dy - dy.mean((0, 2, 3), keepdim=True) - x_hat * (dy * x_hat).mean((0, 2, 3), keepdim=True))
    return dx, (dy * x_hat).sum((0, 2, 3)), dy.sum((0, 2, 3))


def backward_square_maps_only(x, gamma, dy, eps=1e-5):
    m = x.shape[0] * x.shape[2] * x.shape[2]  # H * H: right only for square maps
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    x_hat = (x - mean) / torch.sqrt(var + eps)
    g = gamma.view(1, -1, 1, 1) / torch.sqrt(var + eps)
    dx = g * (
        dy - dy.sum((0, 2, 3), keepdim=True) / m - x_hat * (dy * x_hat).sum((0, 2, 3), keepdim=True) / m
    )
    return dx, (dy * x_hat).sum((0, 2, 3)), dy.sum((0, 2, 3))


def backward_dgamma_with_raw_x(x, gamma, dy, eps=1e-5):
    dx, _, db = backward_reference(x, gamma, dy, eps)
    return dx, (dy * x).sum((0, 2, 3)), db


def backward_dbeta_mean(x, gamma, dy, eps=1e-5):
    dx, dg, _ = backward_reference(x, gamma, dy, eps)
    return dx, dg, dy.mean((0, 2, 3))


def backward_by_autograd(x, gamma, dy, eps=1e-5):
    x = x.clone().requires_grad_(True)
    y = F.batch_norm(x, None, None, gamma, None, training=True, eps=eps)
    y.backward(dy)
    return x.grad, None, None


def backward_by_func_vjp(x, gamma, dy, eps=1e-5):
    """torch.func instead of .backward(): the same autodiff, another door."""

    def forward(x, g, b):
        mean = x.mean((0, 2, 3), keepdim=True)
        var = x.var((0, 2, 3), unbiased=False, keepdim=True)
        return g.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + eps) + b.view(1, -1, 1, 1)

    _, vjp = torch.func.vjp(forward, x, gamma, torch.zeros_like(gamma))
    return vjp(dy)


def backward_by_aten_operator(x, gamma, dy, eps=1e-5):
    """The operator underneath F.batch_norm's backward, called directly."""
    mean = x.mean((0, 2, 3))
    invstd = 1 / torch.sqrt(x.var((0, 2, 3), unbiased=False) + eps)
    dx, dg, db = torch.ops.aten.native_batch_norm_backward(
        dy, x, gamma, None, None, mean, invstd, True, eps, [True, True, True]
    )
    return dx, dg, db


def backward_imports_inside(x, gamma, dy, eps=1e-5):
    """A library imported inside the body, so the first call looks clean."""
    from torch.autograd import grad

    x = x.clone().requires_grad_(True)
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    y = gamma.view(1, -1, 1, 1) * (x - mean) / torch.sqrt(var + eps)
    (dx,) = grad(y, x, dy)
    return dx, (dy * (x - mean) / torch.sqrt(var + eps)).sum((0, 2, 3)).detach(), dy.sum((0, 2, 3))


def test_backward_right_answers_pass() -> None:
    accepted(checks.check_batch_norm_backward, backward_reference)
    accepted(checks.check_batch_norm_backward, backward_step_by_step)


def test_backward_mistakes_are_named() -> None:
    check = checks.check_batch_norm_backward
    rejected(check, backward_statistics_as_constants, hint="as constants")
    rejected(check, backward_without_variance_term, hint="term from the variance")
    rejected(check, backward_without_mean_term, hint="term from the mean")
    rejected(check, backward_unbiased_variance, hint="unbiased variance")
    rejected(check, backward_square_maps_only, hint="square maps")
    rejected(check, backward_dgamma_with_raw_x, hint="NORMALISED input")
    rejected(check, backward_dbeta_mean, hint="dbeta is a SUM")
    rejected(check, backward_by_autograd, hint="derive the gradient yourself")
    rejected(check, backward_by_func_vjp, hint="derives the gradient for you")
    rejected(check, backward_by_aten_operator, hint="native_batch_norm_backward.*normalises for you")
    rejected(check, backward_imports_inside, hint="derives the gradient for you")


# ---------------------------------------------------------------- Exercise 2: running statistics


def running_reference(running_mean, running_var, x, momentum=0.1):
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=True)
    return ((1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var)


def running_in_place_with_lerp(running_mean, running_var, x, momentum=0.1):
    """In place, with lerp and an explicit n / (n - 1) correction: also right."""
    n = x.numel() // x.shape[1]
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    running_mean.lerp_(flat.mean(1), momentum)
    running_var.lerp_(flat.var(1, correction=0) * n / (n - 1), momentum)
    return running_mean, running_var


def running_keras_momentum(running_mean, running_var, x, momentum=0.1):
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
    return momentum * running_mean + (1 - momentum) * mean, momentum * running_var + (1 - momentum) * var


def running_biased_variance(running_mean, running_var, x, momentum=0.1):
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    return (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


def running_replaced_by_batch(running_mean, running_var, x, momentum=0.1):
    return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))


def running_mean_of_image_variances(running_mean, running_var, x, momentum=0.1):
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(2, 3)).mean(0) if x.shape[2] * x.shape[3] > 1 else torch.full_like(mean, float("nan"))
    return (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


def test_running_right_answers_pass() -> None:
    accepted(checks.check_update_running, running_reference)
    accepted(checks.check_update_running, running_in_place_with_lerp)


def test_running_mistakes_are_named() -> None:
    check = checks.check_update_running
    rejected(check, running_keras_momentum, hint="Keras")
    rejected(check, running_biased_variance, hint="UNBIASED")
    rejected(check, running_replaced_by_batch, hint="replaced the running mean")
    rejected(check, running_mean_of_image_variances, hint="per-image variances")


# ---------------------------------------------------------------- Exercise 3: fold BN into the next conv


def fold_reference(bn, conv):
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        t = bn.bias - bn.running_mean * s
        fused = copy.deepcopy(conv)
        fused.weight.mul_(s.view(1, -1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias = nn.Parameter(b + conv.weight.sum((2, 3)) @ t)
    return fused


def fold_by_einsum_into_new_conv(bn, conv):
    """A fresh nn.Conv2d built from scratch, the bias via einsum: also right."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, bias=True)
    s = bn.weight.detach() * (bn.running_var + bn.eps).rsqrt()
    t = bn.bias.detach() - bn.running_mean * s
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else 0.0
    fused.weight.data = w * s[None, :, None, None]
    fused.bias.data = b + torch.einsum("oikl,i->o", w, t)
    return fused


def fold_scales_output_channels(bn, conv):
    """The recipe for BN AFTER the conv, applied to a BN before it."""
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = copy.deepcopy(conv)
        fused.weight.mul_(s.view(-1, 1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias = nn.Parameter((b - bn.running_mean) * s + bn.bias)
    return fused


def fold_bias_from_centre_tap(bn, conv):
    with torch.no_grad():
        fused = fold_reference(bn, conv)
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        t = bn.bias - bn.running_mean * s
        kh, kw = conv.kernel_size
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias.copy_(b + conv.weight[:, :, kh // 2, kw // 2] @ t)
    return fused


def fold_bias_mean_over_taps(bn, conv):
    with torch.no_grad():
        fused = fold_reference(bn, conv)
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        t = bn.bias - bn.running_mean * s
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias.copy_(b + conv.weight.mean((2, 3)) @ t)
    return fused


def fold_drops_conv_bias(bn, conv):
    with torch.no_grad():
        fused = fold_reference(bn, conv)
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.bias.copy_(conv.weight.sum((2, 3)) @ (bn.bias - bn.running_mean * s))
    return fused


def fold_forgets_running_mean(bn, conv):
    with torch.no_grad():
        fused = fold_reference(bn, conv)
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias.copy_(b + conv.weight.sum((2, 3)) @ bn.bias)
    return fused


def fold_without_eps(bn, conv):
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var)
        fused = copy.deepcopy(conv)
        fused.weight.mul_(s.view(1, -1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        fused.bias = nn.Parameter(b + conv.weight.sum((2, 3)) @ (bn.bias - bn.running_mean * s))
    return fused


def fold_in_place(bn, conv):
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = conv.bias.clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        b += conv.weight.sum((2, 3)) @ (bn.bias - bn.running_mean * s)
        conv.weight.mul_(s.view(1, -1, 1, 1))
        conv.bias = nn.Parameter(b)
    return conv


def test_fold_right_answers_pass() -> None:
    accepted(checks.check_fold_bn_before_conv, fold_reference)
    accepted(checks.check_fold_bn_before_conv, fold_by_einsum_into_new_conv)


def test_fold_mistakes_are_named() -> None:
    check = checks.check_fold_bn_before_conv
    rejected(check, fold_scales_output_channels, hint="OUTPUT channels")
    rejected(check, fold_bias_from_centre_tap, hint="not only the centre")
    rejected(check, fold_bias_mean_over_taps, hint="not their mean")
    rejected(check, fold_drops_conv_bias, hint="conv's own bias")
    rejected(check, fold_forgets_running_mean, hint="running mean")
    rejected(check, fold_without_eps, hint="left out eps")
    rejected(check, fold_in_place, hint="modified the original conv|gave a layer a bias")


def fold_probes_bn_in_train_mode(bn, conv):
    """Measures the shift by running bn on zeros, in train mode: the running statistics move."""
    bn.train()
    with torch.no_grad():
        bn(torch.zeros(2, bn.num_features, 1, 1))
    bn.eval()
    return fold_reference(bn, conv)


def fold_clears_gradients(bn, conv):
    """Tidies up with zero_grad(): the caller's accumulated gradients are gone."""
    conv.zero_grad()
    bn.zero_grad()
    return fold_reference(bn, conv)


def fold_extra_kwarg(bn, conv, *, dtype=None):
    return fold_reference(bn, conv)


def test_fold_leaves_the_caller_alone() -> None:
    check = checks.check_fold_bn_before_conv
    req = "left as they were"
    rejected(check, fold_probes_bn_in_train_mode, hint="batch norm's running_(mean|var)", requirement=req)
    rejected(check, fold_clears_gradients, hint="wiped the gradients", requirement=req)
    accepted(check, fold_extra_kwarg)


# ---------------------------------------------------------------- Exercise 4: which layers cancel a bias

RIGHT = {
    "ReLU": False,
    "batch norm, train mode": True,
    "batch norm, eval mode": False,
    "instance norm": True,
    "group norm, 2 groups of 2 channels": False,
    "layer norm over (C, H, W)": False,
}


def test_bias_predictions_right_answers_pass() -> None:
    accepted(checks.check_bias_predictions, dict(RIGHT))
    accepted(checks.check_bias_predictions, dict(reversed(list(RIGHT.items()))))


def test_bias_predictions_mistakes_are_named() -> None:
    check = checks.check_bias_predictions
    rejected(check, {**RIGHT, "batch norm, eval mode": True}, hint="FIXED running mean")
    rejected(check, {**RIGHT, "instance norm": False}, hint="one channel, one constant")
    rejected(check, {**RIGHT, "group norm, 2 groups of 2 channels": True}, hint="constants differ")
    rejected(check, {**RIGHT, "layer norm over (C, H, W)": True}, hint="average is removed")
    rejected(check, {**RIGHT, "batch norm, train mode": False}, hint="it cancels")
    rejected(check, {name: True for name in RIGHT}, hint="4 of 6 predictions")
    rejected(check, {**RIGHT, "ReLU": "no"}, hint="True or False")
    rejected(check, {k: v for k, v in RIGHT.items() if k != "ReLU"}, hint="missing \\['ReLU'\\]")
    rejected(check, None, hint="still None")
    rejected(check, [True] * 6, hint="should be a dict")
