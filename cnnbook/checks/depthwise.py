"""Checks for the section 14.8 exercises (depthwise separable convolutions)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    FAMILY_CONV,
    CheckFailed,
    Context,
    ForbiddenUse,
    call,
    checker,
    count_by_hand,
    expect_equal,
    expect_int,
    expect_module,
    expect_option,
    expect_tensor,
    fail,
    forbidden,
    modules_of,
    randomise_bn,
)
from cnnbook.modules import count_parameters


def _full_convs(block: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Weight shapes of the dense (``groups=1``) k x k convolutions ``block(x)`` really runs.

    Recorded from the operators executed, so a full convolution reached through ``F.conv2d``
    with a hand-made weight, ``conv3d`` or ``torch.ops.aten.convolution`` is found as surely as
    an ``nn.Conv2d`` without ``groups``.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    found: list[tuple[int, ...]] = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func.__name__.startswith("convolution") and len(args) >= 9:
                weight, groups = args[1], args[8]
                if groups == 1 and weight.dim() > 2 and any(s > 1 for s in weight.shape[2:]):
                    found.append(tuple(weight.shape))
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Watch():
        block(x)
    return found


LAYERS = {"a": (1024, 1024, 3), "b": (16, 32, 5), "c": (512, 16, 3), "d": (256, 256, 1)}
"""The four standard layers of the prediction: letter -> (C_in, C_out, k)."""
GROWS_OPTIONS = {**LAYERS, "none": None}


def _layer_saving(letter: str) -> Fraction:
    c_in, c_out, k = LAYERS[letter]
    return Fraction(c_in * c_out * k * k, c_in * k * k + c_in * c_out)


def _savings_line() -> str:
    return ", ".join(f"({x}) {float(_layer_saving(x)):.3f}x" for x in LAYERS)


PREDICTION_REQUIREMENT = (
    "shrinks_most: the letter of the layer whose separable version saves the largest factor; "
    "grows: the letter of the layer that gets larger (or 'none'), as your counts give them"
)


@checker(
    "separable parameter count",
    requirement="(C_in * C_out * k^2, C_in * k^2 + C_in * C_out) as two ints, counted from the shapes "
    "without building any layer",
)
def check_separable_params(
    ctx: Context, fn: Callable[..., tuple[int, int]], shrinks_most: Any = None, grows: Any = None
) -> str:
    """Check ``fn(c_in, c_out, k)`` -> (standard weights, depthwise + pointwise weights).

    Then, if given, the predictions ``shrinks_most`` and ``grows`` about the layers of
    :data:`LAYERS` (letters; ``grows`` may be ``"none"``).
    """
    cases = [(64, 128, 3), (256, 256, 3), (256, 256, 1), (1, 1, 1)] + [
        (ctx.randint(1, 300), ctx.randint(1, 300), ctx.choice([1, 3, 5, 7])) for _ in range(5)
    ]
    for c_in, c_out, k in cases:
        what = f"separable_params(c_in={c_in}, c_out={c_out}, k={k})"
        with forbidden(
            *count_by_hand(),
            why="count the weights from the layer shapes yourself",
            hint2="no layer is needed: a weight of shape (a, b, kh, kw) holds a * b * kh * kw numbers.",
        ):
            got = call(fn, c_in, c_out, k, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (standard, separable), got {got!r}.")
        got = (expect_int(got[0], f"{what}[0] (standard)"), expect_int(got[1], f"{what}[1] (separable)"))
        standard = c_in * c_out * k * k
        expect_equal(
            got[0], standard, f"{what}[0] (standard)", hint="A standard conv has C_in * C_out * k^2 weights."
        )
        expect_equal(
            got[1],
            c_in * k * k + c_in * c_out,
            f"{what}[1] (separable)",
            wrong={
                "The depthwise conv has ONE k x k filter per input channel (C_in * k^2), not "
                "C_in * C_out * k^2.": standard + c_in * c_out,
                "You left out the pointwise 1x1 conv (C_in * C_out).": c_in * k * k,
                "You left out the depthwise conv (C_in * k^2).": c_in * c_out,
                "The depthwise filters work on the INPUT channels: C_in * k^2, not C_out * k^2.": c_out
                * k
                * k
                + c_in * c_out,
            },
            hint="Depthwise: C_in * k^2. Pointwise: C_in * C_out.",
        )
    if shrinks_most is None and grows is None:
        return "right: the separable/standard ratio is 1/C_out + 1/k^2 (about 0.115 for 256 and 3x3)."
    return _check_layer_predictions(shrinks_most, grows)


def _check_layer_predictions(shrinks_most: Any, grows: Any) -> str:
    most = expect_option(shrinks_most, "shrinks_most", LAYERS)
    bigger = expect_option(grows, "grows", GROWS_OPTIONS)
    best = max(LAYERS, key=_layer_saving)
    grown = [x for x in LAYERS if _layer_saving(x) < 1]
    line = f"Your counts give these savings (standard / separable): {_savings_line()}."
    if most != best:
        why = {
            "a": "(a) is by far the largest layer, but size does not set the saving: C_in cancels "
            "from P_sep / P_std = 1/C_out + 1/k^2, and with a 3x3 kernel the saving stays below "
            "k^2 = 9 however wide the layer.",
            "c": "(c) has only 16 output channels, so the depthwise filters' share 1/C_out is "
            "large: 1/16 + 1/9 of the weights remain.",
            "d": "(d) does not shrink at all: a 1x1 kernel has no spatial filter to factorise.",
        }[most]
        fail(
            f"shrinks_most = '{most}', but the largest saving is ({best}). {why} {line}",
            requirement=PREDICTION_REQUIREMENT,
            hint2="the saving is C_out k^2 / (C_out + k^2): the kernel sets the ceiling k^2, C_out "
            "how close a layer gets to it; C_in does not appear.",
        )
    if bigger not in grown and not (bigger == "none" and not grown):
        c_in, c_out, _ = LAYERS[grown[0]]
        std, sep = c_in * c_out, c_in + c_in * c_out
        fail(
            f"grows = '{bigger}', but the layer that gets larger is ({grown[0]}), the 1x1 layer: "
            f"its 'depthwise' step is one 1x1 filter per channel, {c_in} extra weights in front "
            f"of the same {c_in} x {c_out} mixing matrix ({sep:,} instead of {std:,}). {line}",
            requirement=PREDICTION_REQUIREMENT,
            hint2="for k = 1 the saving C_out k^2 / (C_out + k^2) is C_out / (C_out + 1): below 1.",
        )
    return (
        f"the counts are right, and so were your predictions: {_savings_line()}. The kernel sets "
        "the ceiling (k^2), the output width how close a layer gets; C_in cancels."
    )


SUM_OVER_CHANNELS = (
    "Each output filter was summed over the input channels; in a separable conv "
    "output channel o keeps one k x k slice per input channel c: "
    "P[o, c] * D[c]."
)
DEPTHWISE_BY_OUTPUT = (
    "The depthwise filter was picked by the OUTPUT channel (D[o]); the filter "
    "that reaches output o through input c is input c's own filter D[c]."
)
NO_POINTWISE = "The pointwise weights are missing: every (o, c) slice must be scaled by P[o, c]."
SQUARE_ONLY = "Your code assumes a square kernel; keep kh and kw apart (weight shape (C, 1, kh, kw))."


@checker(
    "separable as a standard convolution",
    requirement="W[o, c] = P[o, c] * D[c] of shape (C_out, C, kh, kw), worked out from the weights "
    "without running a convolution",
)
def check_separable_to_standard(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(depthwise_weight (C, 1, kh, kw), pointwise_weight (C_out, C, 1, 1))``.

    The answer is the ``(C_out, C, kh, kw)`` weight of one standard convolution equal to the
    depthwise-then-pointwise pair. Fixed cases: square and non-square kernels, ``C_out``
    equal to and different from ``C``, one channel.
    """
    cases = [(3, 3, 3, 3), (3, 5, 3, 2), (2, 4, 1, 5), (1, 2, 3, 3)]
    cases += [(ctx.randint(1, 5), ctx.randint(1, 5), ctx.choice([1, 3, 5]), ctx.choice([1, 3, 5]))]
    for c, c_out, kh, kw in cases:
        dw, pw = ctx.randn(c, 1, kh, kw), ctx.randn(c_out, c, 1, 1)
        what = f"separable_to_standard(depthwise {tuple(dw.shape)}, pointwise {tuple(pw.shape)})"
        try:
            with forbidden(
                FAMILY_CONV,
                why="work the standard weight out from the two weights (running the separable "
                "pair on probe images would let a convolution find it for you)",
            ):
                got = call(fn, dw.clone(), pw.clone(), describe=what)
        except ForbiddenUse:
            raise
        except CheckFailed as exc:
            fail(f"{exc}{' ' + SQUARE_ONLY if kh != kw else ''}")
        expected = pw * dw.transpose(0, 1)  # (C_out, C, 1, 1) * (1, C, kh, kw)
        wrong = {
            SUM_OVER_CHANNELS: expected.sum(1, keepdim=True).expand_as(expected),
            NO_POINTWISE: dw.transpose(0, 1).expand_as(expected),
        }
        if c == c_out:
            wrong[DEPTHWISE_BY_OUTPUT] = pw * dw
        expect_tensor(
            got, expected, what, wrong=wrong, shape_hint="One standard conv weight: (C_out, C, kh, kw)."
        )
        x = ctx.randn(2, c, kh + 3, kw + 2)
        separable = F.conv2d(F.conv2d(x, dw, groups=c), pw)
        expect_tensor(F.conv2d(x, got.to(x.dtype)), separable, f"F.conv2d(x, {what})", atol=1e-6)
    return (
        "a depthwise separable conv is a standard conv whose weight factorises as W[o, c] = P[o, c] * D[c]."
    )


def _saving(c_out: int, k: int) -> Fraction:
    """Standard / separable weights, exactly: C_out k^2 / (C_out + k^2)."""
    return Fraction(c_out * k * k, c_out + k * k)


def _min_channels(k: int, target: Fraction) -> int | None:
    if target >= k * k:
        return None
    c = 1
    while _saving(c, k) < target:
        c += 1
    return c


@checker(
    "channels needed for a saving",
    requirement="the smallest int C_out with C_out k^2 / (C_out + k^2) >= target (ties count), else None",
)
def check_min_channels(ctx: Context, fn: Callable[..., int | None]) -> str:
    """Check ``fn(k, target)`` = smallest ``C_out`` whose saving is at least ``target``, or None.

    Fixed cases include exact ties (k=3, target 4.5 and 8; k=5, target 12.5), targets that no
    ``C_out`` reaches (target >= k^2, k = 1), and targets every layer reaches.
    """
    cases = [
        (3, Fraction(8)),
        (3, Fraction(9, 2)),
        (5, Fraction(25, 2)),
        (3, Fraction(6)),
        (3, Fraction(9)),
        (1, Fraction(1)),
        (7, Fraction(1, 2)),
        (5, Fraction(20)),
        (3, Fraction(10)),
    ]
    cases += [(ctx.choice([3, 5, 7]), Fraction(ctx.randint(2, 40), 4)) for _ in range(2)]
    for k, target in cases:
        t = int(target) if target.denominator == 1 else float(target)
        what = f"min_channels_for_saving(k={k}, target={t})"
        got = call(fn, k, t, describe=what)
        expected = _min_channels(k, target)
        if expected is None:
            if got is not None:
                fail(
                    f"{what}: expected None, got {got!r}. The saving C_out k^2 / (C_out + k^2) "
                    f"stays below k^2 = {k * k} for every C_out, so no layer reaches {t}."
                )
            continue
        tie = _saving(expected, k) == target
        below = (
            "" if expected == 1 else f", C_out = {expected - 1} only {float(_saving(expected - 1, k)):.4g}"
        )
        mistakes = {
            "At an exact tie the saving EQUALS the target, which counts ('at least'); check "
            "candidates with exact integer arithmetic (a floating-point formula can land just "
            "above the integer and round up).": expected + 1 if tie else None,
            "You rounded down: the smallest C_out that reaches the target is the ceiling.": expected - 1
            if not tie and expected > 1
            else None,
            "You used 1/k instead of 1/k^2 in the saving.": _min_channels_k(k, target),
        }
        if got is None:
            if mistakes["You used 1/k instead of 1/k^2 in the saving."] is None:
                fail(f"{what}: expected {expected}, got None. You used 1/k instead of 1/k^2 in the saving.")
            fail(
                f"{what}: expected {expected}, got None; C_out = {expected} saves "
                f"{float(_saving(expected, k)):.4g}x >= {t}."
            )
        if (
            (isinstance(got, bool) or not isinstance(got, int))
            and isinstance(got, (int, float))
            and float(got) == expected
        ):
            fail(f"{what}: return an int (a channel count), got {got!r} of type {type(got).__name__}.")
        expect_equal(
            got,
            expected,
            what,
            wrong={h: v for h, v in mistakes.items() if v is not None},
            hint=f"The saving of C_out channels is C_out k^2 / (C_out + k^2): C_out = "
            f"{expected} gives {float(_saving(expected, k)):.4g}{below}.",
        )
    return "right: the saving C_out k^2 / (C_out + k^2) grows towards k^2 but never reaches it."


def _min_channels_k(k: int, target: Fraction) -> int | None:
    """The answer for the mistaken saving 1 / (1/C_out + 1/k)."""
    if target >= k:
        return None
    c = 1
    while Fraction(c * k, c + k) < target:
        c += 1
    return c


class _RefSeparable(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, variant: str = "") -> torch.Tensor:
        x = self.bn1(self.depthwise(x))
        x = x if variant == "no_inner_relu" else torch.relu(x)
        x = self.bn2(self.pointwise(x))
        return x if variant == "no_final_relu" else torch.relu(x)


SEPARABLE_REQUIREMENT = (
    "depthwise 3x3 (stride, padding 1, groups=in_channels, no bias) -> BN -> ReLU -> "
    "pointwise 1x1 (no bias) -> BN -> ReLU, and no full convolution anywhere in forward"
)

SEPARABLE_MISTAKES = {
    "no_inner_relu": "There is no ReLU between the depthwise and the pointwise conv "
    "(depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU).",
    "no_final_relu": "The block ends without its ReLU after bn2 (that linear ending is "
    "MobileNetV2's projection, not this block).",
}


@checker("depthwise separable block", requirement=SEPARABLE_REQUIREMENT)
def check_separable_block(ctx: Context, cls: Callable[..., nn.Module]) -> str:
    """Check ``cls(c_in, c_out, stride)`` is depthwise 3x3 -> BN -> ReLU -> 1x1 -> BN -> ReLU."""
    for c_in, c_out, stride in [(4, 8, 1), (6, 12, 2), (8, 8, 1)]:
        what = f"DepthwiseSeparableConv({c_in}, {c_out}, stride={stride})"
        block = expect_module(call(cls, c_in, c_out, stride, describe=what), what)
        ref = _RefSeparable(c_in, c_out, stride)
        dw = getattr(block, "depthwise", None)
        pw = getattr(block, "pointwise", None)
        if not isinstance(dw, nn.Conv2d) or not isinstance(pw, nn.Conv2d):
            fail(f"{what} needs two nn.Conv2d attributes named depthwise and pointwise.")
        if dw.groups != c_in:
            fail(
                f"{what}: depthwise.groups = {dw.groups}; set groups=in_channels ({c_in}) so each "
                f"channel gets its own 3x3 filter (otherwise it is a standard conv with "
                f"{dw.weight.numel():,} weights instead of {c_in * 9})."
            )
        if pw.kernel_size != (1, 1):
            fail(f"{what}: the pointwise conv must be 1x1, got {pw.kernel_size}.")
        if pw.stride != (1, 1) or dw.stride != (stride, stride):
            fail(
                f"{what}: the stride belongs on the depthwise conv (got depthwise "
                f"{dw.stride}, pointwise {pw.stride}); striding the 1x1 conv instead computes "
                f"the depthwise output at full resolution and throws 3/4 of it away."
            )
        if count_parameters(block) != count_parameters(ref):
            fail(
                f"{what} has {count_parameters(block):,} parameters, expected {count_parameters(ref):,} "
                f"(convs without bias, since each is followed by BatchNorm2d)."
            )
        try:
            block.load_state_dict(ref.state_dict())
        except RuntimeError as exc:
            fail(
                f"{what}: use the attribute names depthwise, pointwise, bn1, bn2: {str(exc).splitlines()[0]}"
            )
        randomise_bn(ref, ctx.gen)
        state = {k: v.clone() for k, v in ref.state_dict().items()}
        x = ctx.randn(4, c_in, 7, 9, dtype=torch.float32)
        for mode in ("eval", "train"):
            block.load_state_dict(state)
            ref.load_state_dict(state)
            block.train(mode == "train")
            ref.train(mode == "train")
            with torch.no_grad():
                try:
                    got = call(block, x, describe=f"x {tuple(x.shape)} in {mode} mode")
                except CheckFailed as exc:
                    fail(
                        f"{exc} -- bn1 normalises the depthwise output ({c_in} channels), bn2 "
                        f"the pointwise output ({c_out} channels)."
                    )
                expected = ref(x)
                wrong = {}
                for variant, hint in SEPARABLE_MISTAKES.items():
                    ref.load_state_dict(state)
                    wrong[hint] = ref(x, variant)
            expect_tensor(
                got,
                expected,
                f"{what}(x) in {mode} mode",
                wrong=wrong,
                atol=1e-4,
                rtol=1e-4,
                shape_hint="depthwise 3x3 (stride, padding 1) -> BN -> ReLU -> 1x1 -> "
                "BN -> ReLU gives (N, C_out, ceil(H/stride), ceil(W/stride)).",
            )
        if not modules_of(block, nn.BatchNorm2d):
            fail(f"{what} has no batch norm.")
        block.eval()
        dense = _full_convs(block, x)
        if dense:
            fail(
                f"{what}: its forward pass runs a full (groups=1) convolution with a weight of "
                f"shape {dense[0]}, so the block is not separable whatever its attributes hold: "
                f"the only k x k convolution may be the depthwise one (groups=in_channels), "
                f"followed by the 1x1 pointwise one.",
                requirement=SEPARABLE_REQUIREMENT,
                hint2="call self.depthwise(x) and self.pointwise(x) in forward; do not build a "
                "dense weight or call F.conv2d with groups=1 on a 3x3 kernel.",
            )
    return "your block matches MobileNet's depthwise separable unit."
