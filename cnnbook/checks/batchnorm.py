"""Checks for the section 14.11 exercises (batch norm's backward pass, running statistics,
folding a batch norm into the convolution after it, and a prediction: which normalisation layers
cancel a convolution's bias).

Every check runs fixed edge cases first (a batch of one image, non-square maps and kernels,
one channel, several channels, ``1 x 1`` maps, strides that do not divide the input), then a
few random cases, so a given answer gets the same verdict on every seed. A hint is printed only
when the answer equals a known mistake recomputed on the same inputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    FAMILY_AUTODIFF,
    FAMILY_NORM,
    CheckFailed,
    Context,
    Family,
    call,
    checker,
    expect_module,
    expect_tensor,
    fail,
    forbidden,
    preserved_state,
)

FOLDING = Family(
    name="batch-norm folding",
    does="folds the batch norm for you",
    task="derive the folded weights yourself",
    scope="every fusion helper of torch (torch.nn.utils.fusion, torch.ao.quantization.fuse_modules) "
    "and of cnnbook (fold_bn_into_conv, fold_batchnorm)",
    python=(
        (r"torch\.nn\.utils\.fusion", r"^fuse_"),
        (r"torch\.ao\.quantization(\.[\w.]+)?", r"^fuse_"),
        (r"cnnbook\.norm", r"^fold_"),
    ),
)


def _attempt(fn: Callable[..., Any], *args: Any, describe: str) -> Any:
    """Run the student's code now, keeping its failure for when the comparison reaches that case.

    All cases run inside one :func:`forbid` block (one source scan instead of one per case); a
    case that raised is reported in its place in the order of cases, like any other mismatch.
    """
    try:
        return call(fn, *args, describe=describe)
    except CheckFailed as exc:
        return exc


def _reached(got: Any) -> Any:
    if isinstance(got, CheckFailed):
        raise got
    return got


def _pair(got: Any, n: int, what: str, names: str) -> Sequence[Any]:
    if not isinstance(got, (tuple, list)) or len(got) != n:
        kind = type(got).__name__ if not isinstance(got, (tuple, list)) else f"{len(got)} values"
        fail(f"{what} should return a tuple {names}, got {kind}.")
    return got


# ------------------------------------------------------------------ exercise 1: backward pass


def _bn_backward(
    x: torch.Tensor,
    gamma: torch.Tensor,
    dy: torch.Tensor,
    eps: float,
    *,
    dims: tuple[int, ...] = (0, 2, 3),
    unbiased: bool = False,
    mean_path: bool = True,
    var_path: bool = True,
    count: int | None = None,
) -> torch.Tensor:
    """dL/dx of training-mode batch norm, with switches that reproduce known mistakes."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    inv = 1.0 / torch.sqrt(var + eps)
    x_hat = (x - mean) * inv
    m = count if count is not None else math.prod(x.shape[d] for d in dims)
    g = gamma.view(1, -1, 1, 1)
    out = dy.clone()
    if mean_path:
        out = out - dy.sum(dim=dims, keepdim=True) / m
    if var_path:
        out = out - x_hat * (dy * x_hat).sum(dim=dims, keepdim=True) / m
    return g * inv * out


def _reference_backward(
    x: torch.Tensor, gamma: torch.Tensor, dy: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xr = x.detach().clone().requires_grad_(True)
    gr = gamma.detach().clone().requires_grad_(True)
    br = torch.zeros_like(gr, requires_grad=True)
    with torch.enable_grad():
        y = F.batch_norm(xr, None, None, gr, br, training=True, eps=eps)
        dx, dg, db = torch.autograd.grad(y, (xr, gr, br), dy)
    return dx, dg, db


def _compare_backward(got: Any, x: torch.Tensor, gamma: torch.Tensor, dy: torch.Tensor, eps: float) -> None:
    n, c, h, w = x.shape
    what = f"batch_norm_backward(x {(n, c, h, w)}, gamma, dy, eps={eps})"
    got = _pair(_reached(got), 3, what, "(dx, dgamma, dbeta)")
    dx, dg, db = _reference_backward(x, gamma, dy, eps)
    x_hat = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        x.var((0, 2, 3), unbiased=False, keepdim=True) + eps
    )
    expect_tensor(
        got[0],
        dx,
        f"{what}[0] (dx)",
        wrong={
            "You treated the batch mean and variance as constants (dx = gamma * dy / sigma); "
            "both depend on x, and each adds a term to the gradient.": lambda: _bn_backward(
                x, gamma, dy, eps, mean_path=False, var_path=False
            ),
            "The term from the variance is missing: subtract x_hat * mean(dy * x_hat) too.": lambda: (
                _bn_backward(x, gamma, dy, eps, var_path=False)
            ),
            "The term from the mean is missing: subtract mean(dy) over (N, H, W) too.": lambda: _bn_backward(
                x, gamma, dy, eps, mean_path=False
            ),
            "Your forward statistics use the unbiased variance (divide by n - 1); batch norm "
            "normalises with the biased one (divide by n = N*H*W).": lambda: _bn_backward(
                x, gamma, dy, eps, unbiased=True
            ),
            "Your element count assumes square maps (N * H * H); each channel has N * H * W "
            "values.": lambda: _bn_backward(x, gamma, dy, eps, count=n * h * h),
            "You took the statistics per image over (C, H, W) (layer norm); batch norm takes "
            "them per channel over (N, H, W).": lambda: _bn_backward(x, gamma, dy, eps, dims=(1, 2, 3)),
        },
        shape_hint="dx has the shape of x.",
    )
    expect_tensor(
        got[1],
        dg,
        f"{what}[1] (dgamma)",
        wrong={
            "dgamma sums dy * x_hat (the NORMALISED input), not dy * x.": (dy * x).sum((0, 2, 3)),
            "dgamma is a SUM over (N, H, W), not a mean.": (dy * x_hat).mean((0, 2, 3)),
        },
        shape_hint="One value per channel: shape (C,).",
    )
    expect_tensor(
        got[2],
        db,
        f"{what}[2] (dbeta)",
        wrong={
            "dbeta is a SUM of dy over (N, H, W), not a mean.": dy.mean((0, 2, 3)),
        },
        shape_hint="One value per channel: shape (C,).",
    )


# (N, C, H, W, eps): a batch of one non-square map, one channel, 1x1 maps, several channels.
_BACKWARD_CASES = [(2, 3, 3, 5, 0.5), (1, 2, 4, 3, 0.1), (3, 1, 2, 5, 1e-3), (4, 3, 1, 1, 0.2)]


@checker(
    "batch norm backward pass",
    requirement="dx, dgamma and dbeta of training-mode batch norm, derived by hand (no autograd, no "
    "ready-made norm): dx goes through mu and sigma^2 too",
)
def check_batch_norm_backward(ctx: Context, fn: Callable[..., tuple[torch.Tensor, ...]]) -> str:
    """Check ``fn(x (N, C, H, W), gamma (C,), dy (N, C, H, W), eps)`` -> ``(dx, dgamma, dbeta)``.

    The reference is autograd through ``F.batch_norm`` in training mode.
    """
    cases = list(_BACKWARD_CASES)
    for _ in range(2):
        cases.append(
            (
                ctx.randint(1, 4),
                ctx.randint(1, 4),
                ctx.randint(2, 5),
                ctx.randint(1, 5),
                float(ctx.choice([1e-3, 0.1, 0.5])),
            )
        )
    inputs = []
    for n, c, h, w, eps in cases:
        x = ctx.randn(n, c, h, w) * 2 + ctx.randn(1, c, 1, 1)
        inputs.append((x, ctx.rand(c) + 0.5, ctx.randn(n, c, h, w), eps))
    answers = []
    with (
        preserved_state(what="batch_norm_backward"),
        forbidden(FAMILY_AUTODIFF, FAMILY_NORM, why="derive the gradient yourself"),
    ):
        for x, gamma, dy, eps in inputs:
            what = f"batch_norm_backward(x {tuple(x.shape)}, gamma, dy, eps={eps})"
            answers.append(_attempt(fn, x.clone(), gamma.clone(), dy.clone(), eps, describe=what))
    for (x, gamma, dy, eps), got in zip(inputs, answers, strict=True):
        _compare_backward(got, x, gamma, dy, eps)
    return "your gradients equal autograd's through F.batch_norm, batch of one and 1x1 maps included."


# ------------------------------------------------------------------ exercise 2: running statistics


def _mean_of_image_variances(rv: torch.Tensor, x: torch.Tensor, m: float) -> torch.Tensor:
    """The update with the per-image variances averaged (NaN where a map has one value)."""
    if x.shape[2] * x.shape[3] < 2:
        return torch.full_like(rv, float("nan"))
    return (1 - m) * rv + m * x.var(dim=(2, 3), unbiased=True).mean(0)


# (N, C, H, W, momentum): a batch of one non-square map, 1x1 maps, one channel, TF-style 0.01.
_RUNNING_CASES = [(3, 2, 2, 5, 0.1), (1, 3, 4, 3, 0.3), (5, 4, 1, 1, 0.1), (2, 1, 3, 2, 0.01)]


@checker(
    "running statistics",
    requirement="new running mean and variance with PyTorch's momentum convention, using the unbiased "
    "batch variance over (N, H, W)",
)
def check_update_running(ctx: Context, fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    """Check ``fn(running_mean, running_var, x, momentum)`` -> new (mean, var) as PyTorch."""
    cases = list(_RUNNING_CASES)
    for _ in range(2):
        cases.append(
            (
                ctx.randint(1, 4),
                ctx.randint(1, 4),
                ctx.randint(2, 4),
                ctx.randint(1, 4),
                float(ctx.choice([0.1, 0.3, 0.05])),
            )
        )
    inputs = [
        (
            ctx.randn(n, c, h, w) * 2 + ctx.randn(1, c, 1, 1) + ctx.randn(n, c, 1, 1),
            ctx.randn(c),
            ctx.rand(c) + 0.5,
            momentum,
        )
        for n, c, h, w, momentum in cases
    ]
    answers = []
    with (
        preserved_state(what="update_running"),
        forbidden(FAMILY_NORM, why="compute the statistics yourself"),
    ):
        for x, rm, rv, momentum in inputs:
            what = f"update_running(running_mean, running_var, x {tuple(x.shape)}, momentum={momentum})"
            answers.append(_attempt(fn, rm.clone(), rv.clone(), x.clone(), momentum, describe=what))
    for (x, rm, rv, momentum), got in zip(inputs, answers, strict=True):
        n, c, h, w = x.shape
        what = f"update_running(running_mean, running_var, x {(n, c, h, w)}, momentum={momentum})"
        got = _pair(_reached(got), 2, what, "(new_mean, new_var)")
        ref_m, ref_v = rm.clone(), rv.clone()
        F.batch_norm(x, ref_m, ref_v, training=True, momentum=momentum)
        mean = x.mean(dim=(0, 2, 3))
        var_b, var_u = x.var(dim=(0, 2, 3), unbiased=False), x.var(dim=(0, 2, 3), unbiased=True)
        m = momentum
        keras = (
            "Your momentum weighs the OLD estimate (Keras/TensorFlow's convention, where "
            "0.99 means keep 99%); in PyTorch it is the weight of the NEW batch: "
            "(1 - m) * running + m * batch."
        )
        expect_tensor(
            got[0],
            ref_m,
            f"{what}[0] (new running mean)",
            wrong={
                keras: m * rm + (1 - m) * mean,
                "You replaced the running mean by the batch mean; blend them with the momentum.": mean,
            },
            shape_hint="One running mean per channel: shape (C,).",
        )
        expect_tensor(
            got[1],
            ref_v,
            f"{what}[1] (new running variance)",
            wrong={
                "PyTorch's running variance uses the UNBIASED batch variance (divide by n - 1, "
                "n = N*H*W), unlike the normalisation itself.": (1 - m) * rv + m * var_b,
                keras: m * rv + (1 - m) * var_u,
                "You averaged the per-image variances; the batch variance is taken over (N, H, W) "
                "together, so it also counts how the images' means differ.": _mean_of_image_variances(
                    rv, x, m
                ),
                "You replaced the running variance by the batch variance; blend them with the "
                "momentum.": var_u,
            },
            shape_hint="One running variance per channel: shape (C,).",
        )
    return "your running estimates match nn.BatchNorm2d's update (unbiased variance, momentum)."


# ------------------------------------------------------------------ exercise 3: fold BN into the next conv


def _bn_eval(c: int, ctx: Context, eps: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, eps=eps)
    assert bn.weight is not None  # affine, with running statistics (the defaults)
    assert bn.bias is not None
    assert bn.running_mean is not None
    assert bn.running_var is not None
    with torch.no_grad():
        bn.weight.copy_(ctx.rand(c, dtype=torch.float32) + 0.5)
        bn.bias.copy_(ctx.randn(c, dtype=torch.float32))
        bn.running_mean.copy_(ctx.randn(c, dtype=torch.float32))
        bn.running_var.copy_(ctx.rand(c, dtype=torch.float32) * 2 + 0.1)
    return bn.eval()


def _folded_before(
    bn: nn.BatchNorm2d,
    conv: nn.Conv2d,
    *,
    eps: bool = True,
    mean: bool = True,
    own_bias: bool = True,
    taps: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of one conv equal to ``conv(bn(x))``, with switches for known mistakes."""
    assert bn.running_var is not None  # built by _bn_eval: affine, with running statistics
    assert bn.running_mean is not None
    assert bn.weight is not None
    assert bn.bias is not None
    s = bn.weight / torch.sqrt(bn.running_var + (bn.eps if eps else 0.0))
    t = bn.bias - (bn.running_mean * s if mean else 0.0)
    w = conv.weight
    per_tap = {
        "sum": w.sum((2, 3)),
        "mean": w.mean((2, 3)),
        "centre": w[:, :, w.shape[2] // 2, w.shape[3] // 2],
    }[taps]
    b = (conv.bias if conv.bias is not None and own_bias else torch.zeros(w.shape[0])) + per_tap @ t
    return w * s.view(1, -1, 1, 1), b


def _compare_fold(
    got: Any,
    case: tuple,
    bn: nn.BatchNorm2d,
    conv: nn.Conv2d,
    bn_before: dict,
    conv_before: dict,
    x: torch.Tensor,
) -> None:
    c_in, c_out, k, stride, bias, eps, h, w = case
    what = (
        f"fold_bn_before_conv(BatchNorm2d({c_in}, eps={eps}), Conv2d({c_in}, {c_out}, "
        f"kernel_size={k}, stride={stride}, bias={bias}))"
    )
    fused = expect_module(_reached(got), what)
    if not isinstance(fused, nn.Conv2d):
        fail(f"{what} should return an nn.Conv2d, got {type(fused).__name__}.")
    if set(conv.state_dict()) != set(conv_before):
        fail(
            f"{what} modified the original conv (its parameters are now "
            f"{sorted(conv.state_dict())}); build a new conv (or a copy)."
        )
    for key, value in conv.state_dict().items():
        if not torch.equal(value, conv_before[key]):
            fail(f"{what} modified the original conv's {key}; build a new conv (or a copy).")
    for key, value in bn.state_dict().items():
        if not torch.equal(value, bn_before[key]):
            fail(f"{what} modified the batch norm's {key}.")
    with torch.no_grad():
        got_y = call(fused, x.to(fused.weight.dtype), describe=f"x {tuple(x.shape)}")
        ref = conv(bn(x))

        def out(**mistake: Any) -> torch.Tensor:
            wt, b = _folded_before(bn, conv, **mistake)
            return F.conv2d(x, wt, b, stride)

        def scaled_outputs() -> torch.Tensor:  # folding as if BN came AFTER the conv
            if c_in != c_out:
                return torch.full_like(ref, float("nan"))
            assert bn.running_var is not None  # built by _bn_eval
            assert bn.running_mean is not None
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            b = conv.bias if conv.bias is not None else torch.zeros(c_out)
            return F.conv2d(x, conv.weight * s.view(-1, 1, 1, 1), (b - bn.running_mean) * s + bn.bias, stride)

        wrong = {
            "You scaled the conv's OUTPUT channels (the recipe for a BN that comes after the "
            "conv); here BN acts on the conv's INPUT, so scale W along the input-channel "
            "axis: W * s.view(1, -1, 1, 1).": scaled_outputs,
            "The shift reaches every kernel tap: sum the weights over the kernel positions "
            "(W.sum((2, 3)) @ t), not their mean.": lambda: out(taps="mean"),
            "The shift reaches every kernel tap, not only the centre one: sum the weights "
            "over the kernel positions (W.sum((2, 3)) @ t).": lambda: out(taps="centre"),
            "Your bias drops the conv's own bias: b' = b + W.sum((2, 3)) @ t.": lambda: out(own_bias=False),
            "Your shift forgets the running mean: t = beta - mean * s.": lambda: out(mean=False),
            "Use s = gamma / sqrt(running_var + eps): you left out eps.": lambda: out(eps=False),
        }
    expect_tensor(
        got_y,
        ref,
        f"{what}(x {tuple(x.shape)})",
        wrong=wrong,
        atol=1e-4,
        rtol=1e-4,
        shape_hint="Keep the conv's kernel size, stride and padding=0.",
    )


# (C_in, C_out, kernel, stride, bias, eps, H, W): the first case has C_in == C_out so that folding
# over the wrong channel axis still runs (and can be named); non-square kernels and maps, strides
# that do not divide the input, with and without a conv bias.
_FOLD_CASES: list[tuple[int, int, tuple[int, int], int | tuple[int, int], bool, float, int, int]] = [
    (3, 3, (3, 2), 1, True, 0.1, 7, 6),
    (2, 4, (3, 3), 2, False, 1e-3, 9, 8),
    (4, 2, (1, 3), (2, 1), True, 0.5, 5, 7),
    (1, 3, (2, 2), 1, False, 1e-5, 6, 5),
]


@checker(
    "fold batch norm into the following conv",
    requirement="a new Conv2d equal to conv(bn(x)) for bn in eval mode, bn and conv (weights, buffers, "
    "modes, gradients) left as they were",
)
def check_fold_bn_before_conv(ctx: Context, fn: Callable[..., nn.Conv2d]) -> str:
    """Check ``fn(bn, conv)`` returns one ``nn.Conv2d`` equal to ``conv(bn(x))`` (bn in eval mode).

    The convolutions have ``padding=0`` and ``groups=1``; strides, kernel shapes and biases vary.
    """
    cases = list(_FOLD_CASES)
    for _ in range(2):
        kh, kw = ctx.randint(1, 3), ctx.randint(1, 3)
        cases.append(
            (
                ctx.randint(1, 4),
                ctx.randint(1, 4),
                (kh, kw),
                ctx.randint(1, 2),
                bool(ctx.randint(0, 1)),
                float(ctx.choice([1e-3, 0.1])),
                ctx.randint(kh + 2, 8),
                ctx.randint(kw + 2, 8),
            )
        )
    pairs = []
    for c_in, c_out, k, stride, bias, eps, _h, _w in cases:
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(ctx.randn(*conv.weight.shape, dtype=torch.float32) * 0.5)
            if conv.bias is not None:
                conv.bias.copy_(ctx.randn(c_out, dtype=torch.float32))
        pairs.append((_bn_eval(c_in, ctx, eps), conv))
    saved = [(copy.deepcopy(bn.state_dict()), copy.deepcopy(conv.state_dict())) for bn, conv in pairs]
    answers = []
    modules = [m for pair in pairs for m in pair]
    with preserved_state(*modules, what="fold_bn_before_conv", reveal=True), forbidden(FOLDING):
        for bn, conv in pairs:
            answers.append(_attempt(fn, bn, conv, describe=f"({bn}, {conv})"))
            if bn.training or not conv.training:
                bn.eval()
                conv.train()
                answers[-1] = CheckFailed(
                    "fold_bn_before_conv changed the modules' train/eval mode (the batch norm "
                    "was in eval mode, the conv in train mode); fold a copy, leave the inputs "
                    "as they were."
                )
    for case, (bn, conv), (bn_before, conv_before), got in zip(cases, pairs, saved, answers, strict=True):
        x = ctx.randn(2, case[0], case[6], case[7], dtype=torch.float32)
        _compare_fold(got, case, bn, conv, bn_before, conv_before, x)
    return "your single conv equals batch norm (eval mode) followed by the conv, with and without bias."


# ------------------------------------------------------------------ exercise 4: which layers cancel a bias

BIAS = (10.0, -10.0, 3.0, 0.0)
_BIAS_WHY = {
    "ReLU": "ReLU subtracts no mean, so the constant comes out wherever the value stays positive.",
    "batch norm, train mode": "train-mode batch norm subtracts each channel's mean over (N, H, W): the "
    "constant moves every value of the channel and that mean alike, so it cancels.",
    "batch norm, eval mode": "eval-mode batch norm subtracts a FIXED running mean, so the constant passes "
    "through.",
    "instance norm": "instance norm subtracts each image's own channel mean over (H, W): one channel, one "
    "constant, so it cancels.",
    "group norm, 2 groups of 2 channels": "group norm averages over the channels of a group, whose constants "
    "differ (10 and -10): only their average is removed.",
    "layer norm over (C, H, W)": "layer norm averages over all channels, whose constants differ: only their "
    "average is removed.",
}


def bias_layers() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Exercise 4's layers, by the names ``PREDICTIONS`` uses."""
    return {
        "ReLU": torch.relu,
        "batch norm, train mode": lambda t: F.batch_norm(t, None, None, training=True),
        "batch norm, eval mode": nn.BatchNorm2d(4).eval(),
        "instance norm": nn.InstanceNorm2d(4),
        "group norm, 2 groups of 2 channels": nn.GroupNorm(2, 4),
        "layer norm over (C, H, W)": nn.GroupNorm(1, 4),
    }


@checker(
    "predictions: which layers cancel a per-channel bias",
    requirement="for each layer, True exactly when a different constant per channel leaves its output "
    "unchanged",
)
def check_bias_predictions(ctx: Context, predictions: Any) -> str:
    """Compare ``PREDICTIONS`` (layer name -> the bias cancels?) with what each layer does."""
    layers = bias_layers()
    if predictions is None:
        fail("PREDICTIONS is still None: write True or False for each layer, then run the reveal cell.")
    if not isinstance(predictions, Mapping):
        fail(f"PREDICTIONS should be a dict from layer name to True/False, got {type(predictions).__name__}.")
    missing = [name for name in layers if name not in predictions]
    unknown = [name for name in predictions if name not in layers]
    if missing or unknown:
        fail(
            f"PREDICTIONS needs exactly the exercise's six layer names; missing {missing}, unknown {unknown}."
        )
    x = ctx.randn(8, 4, 5, 5, dtype=torch.float32)
    bias = torch.tensor(BIAS).view(1, -1, 1, 1)
    wrong = []
    with torch.no_grad():
        for name, layer in layers.items():
            got = predictions[name]
            if not isinstance(got, bool):
                fail(f"PREDICTIONS[{name!r}] should be True or False, got {got!r}.")
            cancels = float((layer(x + bias) - layer(x)).abs().max()) < 1e-3
            if got != cancels:
                wrong.append(f"{name!r}: it {'cancels' if cancels else 'does NOT cancel'}; {_BIAS_WHY[name]}")
    if wrong:
        fail(f"{len(wrong)} of 6 predictions differ from what the layers do. " + " ".join(wrong))
    return "a per-channel constant cancels exactly where every subtracted mean lies within one channel."
