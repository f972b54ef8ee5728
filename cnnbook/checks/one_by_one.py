"""Checks for the section 14.7 exercises (1x1 convolutions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    FAMILY_CONV,
    CheckFailed,
    Context,
    call,
    checker,
    count_by_hand,
    expect_equal,
    expect_int,
    expect_module,
    expect_no_shared_storage,
    expect_option,
    expect_tensor,
    fail,
    forbidden,
    preserved_state,
)


def _pointwise(c_in: int, c_out: int, bias: bool, gen: torch.Generator) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(c_out, c_in, 1, 1, generator=gen))
        if conv.bias is not None:  # bias=True
            conv.bias.copy_(torch.randn(c_out, generator=gen))
    return conv


def _as_conv_output(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight.reshape(*weight.shape[:2], 1, 1), bias)


B2_ONLY = (
    "The merged bias ignores first's bias: it is W2 @ b1 + b2, because first's bias "
    "passes through second's weights."
)
B_SUM = "The biases were added as b1 + b2, but first's bias is mixed by second's weights: use W2 @ b1 + b2."
NO_BIAS = "The merged conv has no bias (or a zero one); it needs b = W2 @ b1 + b2."
ORDER = (
    "The merged weight multiplies the matrices in the wrong order: second(first(x)) is "
    "W2 @ W1 (second's matrix on the left)."
)


@checker(
    "merged 1x1 convolutions",
    requirement="one new 1x1 nn.Conv2d owning W = W2 @ W1 and b = W2 @ b1 + b2, computed as "
    "matrices without running a convolution, first and second unchanged",
)
def check_merge_pointwise(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(first, second)`` returns ONE 1x1 ``nn.Conv2d`` equal to ``second(first(x))``.

    Fixed cases: channel counts all different, a square case (so a matrix product in the wrong
    order runs), and every combination of missing biases. ``first`` and ``second`` must come
    back unchanged.
    """
    cases = [
        (4, 4, 4, True, True),
        (3, 5, 2, True, True),
        (3, 6, 4, False, True),
        (5, 2, 3, True, False),
        (2, 3, 4, False, False),
    ]
    cases += [
        (
            ctx.randint(1, 6),
            ctx.randint(1, 6),
            ctx.randint(1, 6),
            ctx.choice([True, False]),
            ctx.choice([True, False]),
        )
        for _ in range(2)
    ]
    for c_in, c_mid, c_out, bias1, bias2 in cases:
        first, second = _pointwise(c_in, c_mid, bias1, ctx.gen), _pointwise(c_mid, c_out, bias2, ctx.gen)
        before = [t.detach().clone() for t in (*first.parameters(), *second.parameters())]
        what = (
            f"merge_pointwise(Conv2d({c_in}, {c_mid}, 1, bias={bias1}), "
            f"Conv2d({c_mid}, {c_out}, 1, bias={bias2}))"
        )
        with (
            preserved_state(first, second, what="merge_pointwise"),
            forbidden(
                FAMILY_CONV,
                why="work the merged weight and bias out as matrices (W2 @ W1, W2 @ b1 + b2); "
                "running the two layers on probe inputs would let a convolution find them for you",
            ),
        ):
            merged = expect_module(call(fn, first, second, describe=what), what)
        after = [t.detach() for t in (*first.parameters(), *second.parameters())]
        if any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)):
            fail(
                f"{what} changed the weights of `first` or `second`; build a new layer and leave "
                f"the two inputs as they were."
            )
        if not isinstance(merged, nn.Conv2d) or merged.kernel_size != (1, 1):
            fail(
                f"{what} should return ONE nn.Conv2d with kernel_size=1 (the point is to replace "
                f"two layers by one), got {type(merged).__name__}"
                f"{'' if not isinstance(merged, nn.Conv2d) else f' with kernel {merged.kernel_size}'}."
            )
        expect_no_shared_storage(merged, first, f"{what}, the merged conv")
        expect_no_shared_storage(merged, second, f"{what}, the merged conv")
        if (merged.in_channels, merged.out_channels) != (c_in, c_out):
            fail(
                f"{what} returned a conv from {merged.in_channels} to {merged.out_channels} "
                f"channels; expected {c_in} -> {c_out}."
            )
        x = ctx.randn(2, c_in, 3, 5, dtype=torch.float32)
        w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
        b1 = first.bias if first.bias is not None else torch.zeros(c_mid)  # bias=bias1
        b2 = second.bias if second.bias is not None else torch.zeros(c_out)  # bias=bias2
        with torch.no_grad():
            got = call(merged, x, describe=f"x of shape {tuple(x.shape)}")
            expected = second(first(x))
            wrong: dict[str, torch.Tensor] = {}
            if bias1:
                wrong[B2_ONLY] = _as_conv_output(w2 @ w1, b2, x)
                if c_mid == c_out:
                    wrong[B_SUM] = _as_conv_output(w2 @ w1, b1 + b2, x)
            if bias1 or bias2:
                wrong[NO_BIAS] = _as_conv_output(w2 @ w1, None, x)
            if c_in == c_mid == c_out:
                wrong[ORDER] = _as_conv_output(w1 @ w2, w2 @ b1 + b2, x)
        expect_tensor(got, expected, f"{what}(x)", wrong=wrong, atol=1e-4, rtol=1e-4)
    return "one 1x1 conv with W = W2 @ W1 and b = W2 @ b1 + b2 replaces the pair, with or without biases."


def _integer_pointwise(c_in: int, c_mid: int, bias: bool, gen: torch.Generator) -> nn.Conv2d:
    """A 1x1 conv with weights and bias in {-1, 0, 1}: on integer inputs it outputs exact zeros."""
    conv = nn.Conv2d(c_in, c_mid, 1, bias=bias)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-1, 2, (c_mid, c_in, 1, 1), generator=gen).float())
        if conv.bias is not None:  # bias=True
            conv.bias.copy_(torch.randint(-1, 2, (c_mid,), generator=gen).float())
    return conv


HOLDS_REQUIREMENT = (
    "a bool mask (N, H, W), True exactly where every channel of first(x) is >= 0 (there the ReLU "
    "changes nothing, so the merged layer equals second(relu(first(x))) whatever second is)"
)
HOLDS_MISTAKES = {
    "strict": "A channel of first(x) that is exactly 0 passes the ReLU unchanged (ReLU(0) = 0), "
    "so the merged layer is still right there: use >= 0, not > 0.",
    "any": "One negative channel is enough for the ReLU to change that pixel: every channel of "
    "first(x) must be >= 0 (.all over the channels, not .any).",
    "input": "The ReLU acts on first(x), the pre-activation, not on x: a non-negative x can give "
    "negative channels after first (its weights and bias can be negative), and the other way round.",
    "no_bias": "The ReLU sees first's output WITH its bias: W1 x + b1.",
}


def _holds_variants(z: torch.Tensor, x: torch.Tensor, no_bias: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "strict": (z > 0).all(1),
        "any": (z >= 0).any(1),
        "input": (x >= 0).all(1),
        "no_bias": (no_bias >= 0).all(1),
    }


@checker("where the merged layer still holds", requirement=HOLDS_REQUIREMENT)
def check_where_merge_holds(ctx: Context, fn: Callable[..., Any]) -> str:
    """Check ``fn(first, x)`` -> bool mask (N, H, W): all channels of ``first(x)`` are >= 0.

    Integer weights and inputs give exact zeros before the ReLU (the ``>`` vs ``>=`` edge case);
    fixed cases cover one channel, no bias, a batch of two and non-square maps.
    """
    cases = [(1, 1, True, 1, 1, 3), (2, 3, True, 1, 2, 3), (3, 2, False, 2, 3, 2), (2, 4, True, 2, 4, 5)]
    cases += [(ctx.randint(1, 4), ctx.randint(1, 4), ctx.choice([True, False]), 2, 3, 4)]
    failures: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    consistent = set(HOLDS_MISTAKES)
    for c_in, c_mid, bias, n, h, w in cases:
        first = _integer_pointwise(c_in, c_mid, bias, ctx.gen)
        x = torch.randint(-2, 3, (n, c_in, h, w), generator=ctx.gen).float()
        what = f"where_merge_holds(Conv2d({c_in}, {c_mid}, 1, bias={bias}), x of shape {tuple(x.shape)})"
        with preserved_state(first, what="where_merge_holds"):
            got = call(fn, first, x.clone(), describe=what)
        with torch.no_grad():
            z = first(x)
            want = (z >= 0).all(1)
        if not isinstance(got, torch.Tensor):
            fail(f"{what} should return a tensor (a bool mask), got {type(got).__name__}.")
        if got.shape != want.shape:
            fail(
                f"{what} returned shape {tuple(got.shape)}; expected {tuple(want.shape)}: one value "
                "per pixel (N, H, W), the channels reduced away (.all(dim=1), no keepdim).",
                hint2="(first(x) >= 0) has shape (N, C_mid, H, W): reduce it over dim 1.",
            )
        if got.dtype != torch.bool:
            fail(f"{what} returned dtype {got.dtype}; return a bool mask (a comparison gives one).")
        with torch.no_grad():
            no_bias = F.conv2d(x, first.weight)
        for key, mask in _holds_variants(z, x, no_bias).items():
            if not torch.equal(got, mask):
                consistent.discard(key)  # this mistake does not explain the answer on this case
        if not torch.equal(got, want):
            failures.append((what, z, got, want))
    if failures:  # name a mistake only if it explains the answer on every case; show the smallest
        what, z, got, want = failures[0]
        for key, mistake in HOLDS_MISTAKES.items():
            if key in consistent:
                fail(f"{what}: wrong mask. {mistake}", hint2=_holds_hint2(z, got, want))
        fail(
            f"{what}: wrong mask. {_holds_hint2(z, got, want)}",
            hint2="ReLU(v) = v exactly when v >= 0: the pixel is left alone when that holds for "
            "every one of its channels of first(x).",
        )
    return (
        "the merged layer is right exactly where the ReLU changes nothing; one negative channel "
        "anywhere and the pair computes something no single 1x1 conv can."
    )


def _holds_hint2(z: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> str:
    """Name the first pixel where the masks differ, with first(x) there."""
    n, i, j = (int(v) for v in (got != want).nonzero()[0])
    values = [round(float(v), 4) for v in z[n, :, i, j]]
    return (
        f"At pixel (n={n}, i={i}, j={j}) first(x) is {values}: your mask says {bool(got[n, i, j])}, "
        f"but the merged layer is {'right' if want[n, i, j] else 'wrong'} there. Ask: does the "
        "ReLU change any of these numbers?"
    )


def _bottleneck(c: int, c_mid: int, k: int) -> tuple[int, int]:
    """(direct k x k weights c -> c, 1x1 reduction c -> c_mid plus k x k c_mid -> c_mid)."""
    return c * c * k * k, c * c_mid + c_mid * c_mid * k * k


COUNT_BY_HAND = count_by_hand((r"cnnbook\.checks\.one_by_one", r"^_bottleneck$"))
"""Building any layer, cnnbook's counting helpers and this module's reference count."""


def _largest_saving_mid(c: int, k: int) -> int:
    """The largest c_mid whose bottleneck holds fewer weights than the direct conv (0: none)."""
    return max((m for m in range(1, c + 1) if _bottleneck(c, m, k)[1] < _bottleneck(c, m, k)[0]), default=0)


STOPS_OPTIONS = {"a": 64, "b": 128, "c": 242, "d": 255}
STOPS_REQUIREMENT = (
    "stops_paying: the letter (a, b, c or d) of the largest c_mid whose bottleneck still holds "
    "fewer weights than the direct 3x3 conv on 256 channels, as your counts give it"
)


@checker(
    "bottleneck savings",
    requirement="(c * c * k * k, c * c_mid + c_mid * c_mid * k * k) as two ints, weights only, "
    "counted from the shapes without building any layer",
)
def check_bottleneck_params(
    ctx: Context, fn: Callable[..., tuple[int, int]], stops_paying: Any = None
) -> str:
    """Check ``fn(c, c_mid, k)`` -> (direct kxk params, 1x1-reduce + kxk params), no biases.

    Then, if given, the prediction ``stops_paying`` (a letter of :data:`STOPS_OPTIONS`): up to
    which ``c_mid`` the bottleneck saves weights for ``c = 256, k = 3``.
    """
    cases = [(256, 64, 3), (256, 242, 3), (256, 243, 3), (4, 4, 1)] + [
        (ctx.randint(4, 512), ctx.randint(1, 128), ctx.choice([1, 3, 5])) for _ in range(4)
    ]
    for c, c_mid, k in cases:
        what = f"bottleneck_params(c={c}, c_mid={c_mid}, k={k})"
        with forbidden(
            *COUNT_BY_HAND,
            why="count the weights from the layer shapes yourself",
            hint2="no layer is needed: a k x k conv from a to b channels holds a * b * k * k weights.",
        ):
            got = call(fn, c, c_mid, k, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (direct_params, bottleneck_params), got {got!r}.")
        got = (expect_int(got[0], f"{what}[0] (direct)"), expect_int(got[1], f"{what}[1] (bottleneck)"))
        direct = c * c * k * k
        expect_equal(
            got[0],
            direct,
            f"{what}[0] (direct)",
            wrong={
                "That counts biases; the exercise counts weights only.": direct + c,
            },
            hint="A k x k conv from c to c channels has c * c * k * k weights.",
        )
        reduce, spatial = c * c_mid, c_mid * c_mid * k * k
        expect_equal(
            got[1],
            reduce + spatial,
            f"{what}[1] (bottleneck)",
            wrong={
                "You left out the 1x1 reduction (c * c_mid weights).": spatial,
                "The k x k conv runs on the REDUCED channels: c_mid * c_mid * k * k, "
                "not c * c_mid * k * k.": reduce + c * c_mid * k * k,
                "You added a 1x1 expansion back to c channels; this exercise counts only the "
                "1x1 reduction and the k x k conv.": reduce + spatial + c_mid * c,
            },
            hint="1x1 from c to c_mid: c * c_mid; then k x k from c_mid to c_mid: c_mid^2 k^2.",
        )
    if stops_paying is None:
        return "right: for 256 channels a 1x1 reduction to 64 cuts a 3x3 conv from 589,824 to 53,248 weights."
    return _check_stops_paying(stops_paying)


def _check_stops_paying(stops_paying: Any) -> str:
    letter = expect_option(stops_paying, "stops_paying", STOPS_OPTIONS)
    last = _largest_saving_mid(256, 3)
    direct = _bottleneck(256, last, 3)[0]
    if STOPS_OPTIONS[letter] != last:
        m = STOPS_OPTIONS[letter]
        at, after = _bottleneck(256, m, 3)[1], _bottleneck(256, m + 1, 3)[1]
        if m < last:
            why = (
                f"at c_mid = {m + 1} the bottleneck still holds only {after:,} weights against "
                f"{direct:,}: the 3x3 convolution on c_mid channels costs 9 c_mid^2, which stays well "
                f"below 9 c^2 until c_mid comes close to c."
            )
        else:
            why = (
                f"at c_mid = {m} the bottleneck holds {at:,} weights, more than the direct "
                f"{direct:,}: the 1x1 reduction itself costs c * c_mid = {256 * m:,} weights, so "
                f"close to c the bottleneck costs more than it saves."
            )
        fail(
            f"your prediction was ({letter}), c_mid = {m}, but your own counts show the bottleneck "
            f"saving weights up to c_mid = {last} and no further. {why}",
            requirement=STOPS_REQUIREMENT,
            hint2="the bottleneck saves while c * c_mid + 9 c_mid^2 < 9 c^2: try c_mid = c, where it "
            "costs exactly c^2 more than the direct conv, then a little below.",
        )
    return (
        f"the counts are right, and so was your prediction: the bottleneck saves weights up to "
        f"c_mid = {last} (of 256). Below c the 3x3 on c_mid channels saves 9 (c^2 - c_mid^2); the "
        f"1x1 reduction costs c * c_mid; they balance just below c."
    )


@checker(
    "a bottleneck in front of a 1x1 convolution",
    requirement="largest_saving_mid_k1: the largest c_mid (an int) for which a 1x1 reduction to "
    "c_mid plus a 1x1 conv on c_mid channels holds fewer weights than one 1x1 conv on c = 256",
)
def check_bottleneck_k1(ctx: Context, largest_saving_mid_k1: Any) -> str:
    """Check the follow-up: the break-even width of a bottleneck when the kernel is 1x1."""
    want = _largest_saving_mid(256, 1)
    got = expect_int(largest_saving_mid_k1, "largest_saving_mid_k1")
    direct, at = _bottleneck(256, got, 1)
    try:
        expect_equal(
            got,
            want,
            "largest_saving_mid_k1",
            wrong={
                f"At c_mid = {want + 1} the bottleneck holds {_bottleneck(256, want + 1, 1)[1]:,} "
                f"weights, already more than the direct {direct:,}: that is the first width that no "
                "longer saves; the question asks for the last one that does.": want + 1,
                "That is the answer for a 3x3 kernel; with k = 1 the layer you replace is itself "
                "cheap (c^2 = 65,536), so the 1x1 reduction's c * c_mid weights matter much more.": (
                    _largest_saving_mid(256, 3)
                ),
                f"At c_mid = 255 the bottleneck holds {_bottleneck(256, 255, 1)[1]:,} weights, almost "
                f"twice the direct {direct:,}: the reduction costs c * c_mid on top of c_mid^2.": 255,
                f"c_mid = 128 still saves ({_bottleneck(256, 128, 1)[1]:,} < {direct:,}), and so do "
                "somewhat wider ones: look further.": 128,
            },
            hint=f"Your value gives {at:,} bottleneck weights against {direct:,}: find the largest "
            "c_mid with c * c_mid + c_mid^2 < c^2.",
        )
    except CheckFailed as exc:
        raise CheckFailed(
            str(exc),
            hint2="loop over c_mid = 1, 2, ..., 256 with your bottleneck_params(256, c_mid, 1) and keep "
            "the last c_mid whose bottleneck count is below the direct one.",
        ) from None
    return (
        f"c_mid = {want}: about 0.62 c, the golden ratio's 1/phi, where c * c_mid + c_mid^2 = c^2. With a "
        "1x1 kernel the reduction's own cost weighs as much as what it saves."
    )


@checker(
    "Linear as a 1x1 convolution",
    requirement="a 1x1 nn.Conv2d with its own copy of the Linear's weight (C_out, C_in, 1, 1) and "
    "bias, the Linear unchanged",
)
def check_linear_to_conv1x1(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(linear)`` returns a 1x1 ``nn.Conv2d`` applying ``linear`` at every pixel."""
    cases = [(4, 4, (5, 3)), (3, 5, (2, 7)), (6, 2, (1, 1))]
    cases += [(ctx.randint(1, 8), ctx.randint(1, 8), (ctx.randint(1, 6), ctx.randint(1, 6)))]
    for c_in, c_out, (h, w) in cases:
        linear = nn.Linear(c_in, c_out)
        before = [t.detach().clone() for t in linear.parameters()]
        what = f"linear_to_conv1x1(nn.Linear({c_in}, {c_out}))"
        with preserved_state(linear, what="linear_to_conv1x1"):
            conv = expect_module(call(fn, linear, describe=what), what)
        if any(not torch.equal(a, b.detach()) for a, b in zip(before, linear.parameters(), strict=True)):
            fail(f"{what} changed the Linear layer's weights; copy them into the conv instead.")
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1):
            fail(f"{what} should return an nn.Conv2d with kernel_size=1, got {type(conv).__name__}.")
        expect_no_shared_storage(conv, linear, f"{what}, the conv")
        x = ctx.randn(2, c_in, h, w, dtype=torch.float32)
        with torch.no_grad():
            ref = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            got = call(conv, x, describe=f"x {tuple(x.shape)}")
            no_bias = ref - linear.bias.view(1, -1, 1, 1)
            own_bias = conv.bias.detach().view(1, -1, 1, 1) if conv.bias is not None else 0
            wrong = {
                "The weights match but the bias was not copied: set conv.bias to linear.bias.": no_bias
                + own_bias
            }
            if c_in == c_out:
                wrong[
                    "The weight matrix is transposed: linear.weight is already (C_out, C_in), "
                    "the layout a conv weight (C_out, C_in, 1, 1) needs."
                ] = F.conv2d(x, linear.weight.T[:, :, None, None], linear.bias)
        expect_tensor(
            got,
            ref,
            f"{what}(x)",
            wrong=wrong,
            shape_hint="Apply the Linear layer to each pixel's channel vector: (N, C_out, H, W).",
            atol=1e-5,
        )
    return "your conv applies the Linear layer to every pixel: a fully connected layer is a 1x1 conv."
