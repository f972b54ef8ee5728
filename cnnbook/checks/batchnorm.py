"""Checks for the section 14.11 exercises (batch normalisation from scratch, folding)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_module,
    expect_tensor,
    fail,
    forbid,
)

_WHOLE = "it normalises for you; compute the statistics yourself."
_OURS = "that is cnnbook's own answer; write yours."
BN_LIBRARY = {
    "torch.nn.functional.batch_norm": _WHOLE, "torch.batch_norm": _WHOLE,
    "torch.nn.BatchNorm2d": _WHOLE, "torch.nn.functional.instance_norm": _WHOLE,
    "torch.nn.functional.group_norm": _WHOLE, "torch.nn.functional.layer_norm": _WHOLE,
    "cnnbook.norm.BatchNorm2d": _OURS, "cnnbook.norm.batch_stats": _OURS,
}
FOLD_LIBRARY = {
    "cnnbook.norm.fold_bn_into_conv": _OURS, "cnnbook.norm.fold_batchnorm": _OURS,
    "torch.nn.utils.fusion.fuse_conv_bn_eval": "it folds for you; derive the new weights yourself.",
    "torch.nn.utils.fusion.fuse_conv_bn_weights": "it folds for you; derive the new weights yourself.",
    "torch.nn.utils.fuse_conv_bn_eval": "it folds for you; derive the new weights yourself.",
}


def _bn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
        dims: tuple[int, ...] = (0, 2, 3), unbiased: bool = False, eps_outside: bool = False
        ) -> torch.Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    denom = var.sqrt() + eps if eps_outside else (var + eps).sqrt()
    g, b = gamma.view(1, -1, 1, 1), beta.view(1, -1, 1, 1)
    return (x - mean) / denom * g + b


@checker("batch norm (train mode)")
def check_batch_norm_train(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), gamma (C,), beta (C,), eps)`` against ``F.batch_norm``."""
    for _ in range(5):
        n, c, h, w = ctx.randint(2, 4), ctx.randint(2, 5), ctx.randint(1, 3), ctx.randint(2, 3)
        x = ctx.randn(n, c, h, w) * 3 + ctx.randn(1, c, 1, 1) * 2
        gamma, beta = ctx.rand(c) + 0.5, ctx.randn(c)
        eps = float(ctx.choice([0.1, 0.5, 1.0]))
        what = f"batch_norm_train(x {tuple(x.shape)}, gamma, beta, eps={eps})"
        with forbid(fn, BN_LIBRARY):
            got = call(fn, x.clone(), gamma.clone(), beta.clone(), eps, describe=what)
        ref = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
        expect_tensor(got, ref, what, wrong={
            "You normalised each SAMPLE over (C, H, W) (that is layer norm). Batch norm "
            "computes one mean and variance per CHANNEL over (N, H, W).": _bn(x, gamma, beta, eps, (1, 2, 3)),
            "You averaged over the batch axis only, giving statistics per channel AND position; "
            "a conv's batch norm shares them over (N, H, W).": _bn(x, gamma, beta, eps, (0,)),
            "You normalised each (sample, channel) map on its own (instance norm); pool the "
            "statistics over the batch too: dims (0, 2, 3).": _bn(x, gamma, beta, eps, (2, 3)),
            "You used the unbiased variance (divide by n - 1); normalisation uses the biased "
            "one (divide by n = N*H*W): x.var(..., unbiased=False).":
                _bn(x, gamma, beta, eps, unbiased=True),
            "eps goes INSIDE the square root: sqrt(var + eps).":
                _bn(x, gamma, beta, eps, eps_outside=True),
            "You forgot eps.": _bn(x, gamma, beta, 0.0),
            "You forgot the learnable scale and shift: y = gamma * x_hat + beta.":
                _bn(x, torch.ones(c, dtype=x.dtype), torch.zeros(c, dtype=x.dtype), eps),
        }, shape_hint="Batch norm keeps the shape (N, C, H, W).")
    return "your batch norm matches F.batch_norm in training mode."


@checker("running statistics")
def check_update_running(ctx: Context, fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    """Check ``fn(running_mean, running_var, x, momentum)`` -> new (mean, var) as PyTorch."""
    for _ in range(4):
        n, c = ctx.randint(2, 4), ctx.randint(2, 5)
        x = ctx.randn(n, c, 2, ctx.randint(1, 3)) * 2 + 1
        rm, rv = ctx.randn(c), ctx.rand(c) + 0.5
        momentum = float(ctx.choice([0.1, 0.3]))
        what = f"update_running(running_mean, running_var, x {tuple(x.shape)}, momentum={momentum})"
        with forbid(fn, BN_LIBRARY):
            got = call(fn, rm.clone(), rv.clone(), x.clone(), momentum, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (new_mean, new_var), got {type(got).__name__}.")
        ref_m, ref_v = rm.clone(), rv.clone()
        F.batch_norm(x, ref_m, ref_v, training=True, momentum=momentum)
        mean = x.mean(dim=(0, 2, 3))
        var_b, var_u = x.var(dim=(0, 2, 3), unbiased=False), x.var(dim=(0, 2, 3), unbiased=True)
        expect_tensor(got[0], ref_m, f"{what}[0] (new running mean)", wrong={
            "The momentum is the weight of the NEW batch: (1 - m) * running + m * batch.":
                momentum * rm + (1 - momentum) * mean,
            "You replaced the running mean by the batch mean; blend them with the momentum.": mean,
        }, shape_hint="One running mean per channel: shape (C,).")
        expect_tensor(got[1], ref_v, f"{what}[1] (new running variance)", wrong={
            "PyTorch's running variance uses the UNBIASED batch variance (divide by n - 1), "
            "unlike the normalisation itself.": (1 - momentum) * rv + momentum * var_b,
            "The momentum is the weight of the NEW batch: (1 - m) * running + m * batch.":
                momentum * rv + (1 - momentum) * var_u,
        }, shape_hint="One running variance per channel: shape (C,).")
    return "your running estimates match nn.BatchNorm2d's update (unbiased variance, momentum)."


@checker("fold batch norm into the conv")
def check_fold_bn(ctx: Context, fn: Callable[..., nn.Conv2d]) -> str:
    """Check ``fn(conv, bn)`` returns one conv equal to ``bn(conv(x))`` in eval mode."""
    for bias in (False, True, True):
        c_in, c_out, k = ctx.randint(1, 4), ctx.randint(2, 5), ctx.choice([1, 3])
        stride = ctx.choice([1, 2])
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=bias)
        bn = nn.BatchNorm2d(c_out, eps=float(ctx.choice([1e-3, 0.1])))
        with torch.no_grad():
            bn.weight.copy_(ctx.rand(c_out, dtype=torch.float32) + 0.5)
            bn.bias.copy_(ctx.randn(c_out, dtype=torch.float32))
            bn.running_mean.copy_(ctx.randn(c_out, dtype=torch.float32))
            bn.running_var.copy_(ctx.rand(c_out, dtype=torch.float32) + 0.2)
        bn.eval()
        conv_before, bn_before = copy.deepcopy(conv.state_dict()), copy.deepcopy(bn.state_dict())
        what = f"fold_bn(Conv2d({c_in}, {c_out}, {k}, stride={stride}, bias={bias}), bn)"
        with forbid(fn, FOLD_LIBRARY):
            fused = expect_module(call(fn, conv, bn, describe=what), what)
        if not isinstance(fused, nn.Conv2d):
            fail(f"{what} should return an nn.Conv2d, got {type(fused).__name__}.")
        x = ctx.randn(2, c_in, 7, 7, dtype=torch.float32)
        with torch.no_grad():
            for key, value in conv.state_dict().items():
                if not torch.equal(value, conv_before[key]):
                    fail(f"{what} modified the original conv's {key}; build a new conv (or a copy).")
            for key, value in bn.state_dict().items():
                if not torch.equal(value, bn_before[key]):
                    fail(f"{what} modified the batch norm's {key}.")
            got = call(fused, x, describe=f"x {tuple(x.shape)}")
            ref = bn(conv(x))
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            b = conv.bias if conv.bias is not None else torch.zeros(c_out)
            w_fold = conv.weight * s.view(-1, 1, 1, 1)
            conv_only = F.conv2d(x, w_fold, None, stride, k // 2)
            wrong = {
                "Your bias ignores the conv's own bias: b' = (b - mean) * s + beta.":
                    conv_only + ((0 - bn.running_mean) * s + bn.bias).view(1, -1, 1, 1),
                "The bias is missing the shift beta: b' = (b - mean) * s + beta.":
                    conv_only + ((b - bn.running_mean) * s).view(1, -1, 1, 1),
                "Scale the mean too: b' = (b - mean) * s + beta, not b - mean * ... .":
                    conv_only + (b - bn.running_mean + bn.bias).view(1, -1, 1, 1),
                "Use s = gamma / sqrt(running_var + eps), with eps inside the square root.":
                    F.conv2d(x, conv.weight * (bn.weight / bn.running_var.sqrt()).view(-1, 1, 1, 1),
                             ((b - bn.running_mean) * bn.weight / bn.running_var.sqrt() + bn.bias),
                             stride, k // 2),
            }
        expect_tensor(got, ref, f"{what}(x)", wrong=wrong, atol=1e-4, rtol=1e-4,
                      shape_hint="Keep the conv's stride and padding.")
    return "your folded conv equals conv followed by batch norm (eval mode), with and without bias."


@checker("effect of a per-channel bias")
def check_bias_change(ctx: Context, fn: Callable[..., float]) -> str:
    """Check ``fn(norm, x, bias)`` = max |norm(x + bias per channel) - norm(x)|."""
    norms: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
        ("identity", lambda t: t),
        ("doubling", lambda t: 2 * t),
        ("per-sample normalisation", lambda t: (t - t.mean((1, 2, 3), keepdim=True))),
        ("train-mode batch norm", lambda t: F.batch_norm(t, None, None, training=True)),
    ]
    for name, norm in norms:
        n, c = ctx.randint(2, 6), ctx.randint(2, 5)
        x = ctx.randn(n, c, 4, 4, dtype=torch.float32)
        bias = ctx.randn(c, dtype=torch.float32) * 10
        what = f"bias_change({name}, x {tuple(x.shape)}, bias {tuple(bias.shape)})"
        got = call(fn, norm, x.clone(), bias.clone(), describe=what)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)):
            fail(f"{what} should return a float, got {type(got).__name__}.")
        ref = float((norm(x + bias.view(1, -1, 1, 1)) - norm(x)).abs().max())
        wrong_axis = float((norm(x + bias.view(1, 1, 1, -1)) - norm(x)).abs().max()) if x.shape[-1] == c \
            else None
        if abs(got - ref) > 1e-4 * max(1.0, abs(ref)):
            hint = ("bias has one value per CHANNEL (axis 1): add bias.view(1, -1, 1, 1)."
                    if wrong_axis is not None and abs(got - wrong_axis) < 1e-4 else
                    "return the LARGEST ABSOLUTE difference, (a - b).abs().max()." if got < 0 else
                    "compare norm(x + bias.view(1, -1, 1, 1)) with norm(x).")
            fail(f"{what}: expected {ref:.4g}, got {got:.4g}; {hint}")
    return "right; and for train-mode batch norm the change is ~1e-6: the bias cancels."
