"""Checks for the section 14.2 exercises (stride, padding, dilation)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cnnbook import geometry
from cnnbook.checks.core import (
    BATCH_HINT,
    FAMILY_CONV,
    FAMILY_POOL,
    FAMILY_UNFOLD,
    NONSQUARE_HINT,
    Case,
    Context,
    call,
    checker,
    deeper_hint,
    expect_equal,
    expect_int,
    expect_tensor,
    fail,
    forbidden,
    guard,
    judge,
)

_FORMULA = "compute the size from the formula instead of asking a library."
SIZE_LIBRARY = {
    "cnnbook.geometry.conv_output_size": _FORMULA,
    "cnnbook.geometry.pool_output_size": _FORMULA,
    "cnnbook.geometry.same_padding": _FORMULA,
    "cnnbook.geometry.effective_kernel_size": _FORMULA,
    "torch.nn.functional.conv2d": _FORMULA,
    "torch.conv2d": _FORMULA,
    "torch.nn.Conv2d": _FORMULA,
    "torch.nn.functional.conv1d": _FORMULA,
    "torch.conv1d": _FORMULA,
    "torch.nn.Conv1d": _FORMULA,
}


def _int_compare(hint: str) -> Callable[[Any, Any, str], Any]:
    def compare(got: Any, want: Any, label: str) -> Any:
        return expect_equal(expect_int(got, label), want, label, hint=hint)

    return compare


def _size_cases(
    fixed: Sequence[tuple[int, ...]], extra: list[tuple[int, ...]], name: str, params: str
) -> list[Case]:
    return [
        Case(args, f"{name}({', '.join(f'{p}={v}' for p, v in zip(params.split(), args, strict=True))})")
        for args in [*fixed, *extra]
    ]


# (n, k, s, p, d): the chapter's examples, sizes not divisible by the stride, dilation with and
# without padding, a kernel that fits exactly once, a 1x1 kernel, stride larger than the kernel
_OUT_SIZE_FIXED = [
    (32, 3, 1, 1, 1),
    (32, 3, 2, 1, 1),
    (8, 3, 1, 2, 2),
    (224, 11, 4, 2, 1),
    (7, 3, 2, 0, 1),
    (10, 3, 1, 0, 3),
    (9, 2, 3, 1, 2),
    (5, 5, 1, 0, 1),
    (6, 1, 1, 0, 1),
    (13, 4, 3, 2, 2),
    (17, 3, 2, 0, 2),
    (12, 5, 1, 1, 3),
    (11, 2, 4, 0, 1),
    (20, 3, 3, 1, 4),
]


def _no_layer_ops() -> contextlib.AbstractContextManager[Any]:
    """Block every convolution, pooling and unfold: a size must come from the formula."""
    return forbidden(
        FAMILY_CONV,
        FAMILY_POOL,
        FAMILY_UNFOLD,
        why="compute the size with the formula, not by running a layer",
    )


def _k_eff(k: int, d: int) -> int:
    return d * (k - 1) + 1


@checker(
    "conv output size",
    requirement="conv_out_size(n, k, s, p, d) = floor((n + 2p - k_eff) / s) + 1 with "
    "k_eff = k + (k - 1)(d - 1), as an int, from the formula (no layer run)",
)
def check_conv_out_size(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(n, k, s, p, d)`` = floor((n + 2p - d(k-1) - 1) / s) + 1 on many layers."""
    extra: list[tuple[int, ...]] = []
    while len(extra) < 26:
        n, k, s, p, d = (
            ctx.randint(5, 40),
            ctx.randint(1, 7),
            ctx.randint(1, 4),
            ctx.randint(0, 3),
            ctx.randint(1, 3),
        )
        if _k_eff(k, d) <= n + 2 * p:
            extra.append((n, k, s, p, d))
    cases = _size_cases(_OUT_SIZE_FIXED, extra, "conv_out_size", "n k s p d")
    judge(
        fn,
        cases,
        reference=lambda n, k, s, p, d: geometry.conv_output_size(n, k, s, p, d),
        forbidden=SIZE_LIBRARY,
        around=_no_layer_ops,
        compare=_int_compare("The formula is floor((n + 2p - k_eff) / s) + 1 with k_eff = d(k - 1) + 1."),
        mistakes=[
            (
                "you forgot the + 1: a kernel that fits exactly once still gives one output.",
                lambda n, k, s, p, d: (n + 2 * p - _k_eff(k, d)) // s,
                "take n = k_eff, p = 0, s = 1: the kernel fits exactly once, so the answer must be 1.",
            ),
            (
                "you ignored the dilation: use the effective kernel size k_eff = d(k - 1) + 1.",
                lambda n, k, s, p, d: (n + 2 * p - k) // s + 1,
                "a 3x3 kernel with dilation 2 has taps at offsets 0, 2, 4: it spans 5 pixels, not 3.",
            ),
            (
                "you used k_eff = d * k; a dilated kernel has k - 1 gaps of d pixels between its k "
                "taps, so k_eff = d(k - 1) + 1.",
                lambda n, k, s, p, d: (n + 2 * p - d * k) // s + 1,
                "count the pixels from the first tap to the last: k taps with k - 1 gaps of d.",
            ),
            (
                "padding p is added on BOTH sides, so the padded length is n + 2p.",
                lambda n, k, s, p, d: (n + p - _k_eff(k, d)) // s + 1,
                "padding=1 turns a row of 5 pixels into 7: one zero on the left, one on the right.",
            ),
            (
                "you rounded up; PyTorch rounds DOWN (floor), dropping a last partial window.",
                lambda n, k, s, p, d: math.ceil((n + 2 * p - _k_eff(k, d)) / s) + 1,
                "use `//`, which rounds down, as PyTorch does.",
            ),
            (
                "you divided the + 1 by the stride too: it is floor((n + 2p - k_eff) / s) + 1.",
                lambda n, k, s, p, d: (n + 2 * p - _k_eff(k, d) + 1) // s,
                "the windows start at 0, s, 2s, ...: floor((n + 2p - k_eff) / s) counts the steps "
                "after the first window; add 1 for the first.",
            ),
        ],
        hint2="work the smallest failing case by hand: k_eff first, then n + 2p - k_eff, then // s, "
        "then + 1; compare each step with your code.",
    )
    return f"conv_out_size agrees with PyTorch's nn.Conv2d on {len(cases)} layer configurations."


def same_padding_buggy(k: int, d: int = 1) -> int:
    """The classmate's ``same_padding`` of exercise 2 (one bug: the span of a dilated kernel)."""
    k_eff = k + d - 1  # dilation widens the kernel
    return k_eff // 2


def _kept(n: int, k: int, d: int, padding: int) -> int:
    """The output side of a real stride-1 ``nn.Conv2d`` on an ``n x n`` input (shapes only)."""
    conv = torch.nn.Conv2d(1, 1, k, padding=padding, dilation=d, device="meta")
    with torch.no_grad():
        return int(conv(torch.zeros(1, 1, n, n, device="meta")).shape[-1])


@checker(
    "a case that shows the padding bug",
    requirement="counterexample = (k, d): an odd kernel size k >= 1 and a dilation d >= 1 (ints) "
    "for which same_padding_buggy(k, d) does not keep the size of a stride-1 convolution",
)
def check_padding_counterexample(ctx: Context, counterexample: Any) -> str:
    """Check that ``(k, d)`` makes the classmate's padding change the size (measured with a conv)."""
    if isinstance(counterexample, (str, bytes)) or not isinstance(counterexample, (tuple, list)):
        fail(f"counterexample must be a pair (k, d) such as (5, 1), got {counterexample!r}.")
    if len(counterexample) != 2:
        fail(f"counterexample must hold two numbers, k and d; got {len(counterexample)}: {counterexample!r}.")
    k, d = expect_int(counterexample[0], "k"), expect_int(counterexample[1], "d")
    if k > 99:
        fail(f"k = {k}: keep the kernel below 100 here; a small case shows the bug as well.")
    if k < 1 or k % 2 == 0:
        fail(
            f"k = {k}: the function is meant for odd kernel sizes k >= 1 (an even kernel cannot be "
            f"padded equally on both sides), so an even k shows no bug of it."
        )
    if d < 1 or d > 64:
        fail(f"d = {d}: a dilation is a whole number from 1 up (keep it below 65 here).")
    right, buggy = _k_eff(k, d), k + d - 1
    n = max(16, 2 * right)  # large enough for any padding
    p_bug = same_padding_buggy(k, d)
    out = _kept(n, k, d, p_bug)
    if out == n:
        if d == 1:
            why = (
                "Without dilation the classmate's span k + d - 1 is just k, the right one: the bug "
                "cannot show with d = 1."
            )
        elif right == buggy:
            why = "For a 1x1 kernel both spans are 1."
        else:
            why = (
                f"The spans differ ({buggy} in their code, {right} really), but both halve, rounded "
                f"down, to the same padding {p_bug}: the floor hides the bug here."
            )
        fail(
            f"with k={k}, d={d} their padding {p_bug} keeps {n} at {out}: this case passes. {why}",
            hint2="list the span of a dilated kernel for a few (k, d): it is k + (k - 1)(d - 1) "
            "(every one of the k - 1 gaps grows), while their code uses k + d - 1; look for a "
            "pair where the two spans halve to different paddings.",
        )
    right_p = (right - 1) // 2
    assert _kept(n, k, d, right_p) == n
    return (
        f"with k={k}, d={d} their padding {p_bug} turns {n} into {out}; the kernel spans "
        f"k + (k - 1)(d - 1) = {right} pixel{'s' if right > 1 else ''}, not k + d - 1 = {buggy}, "
        f"so it needs padding {right_p}."
    )


@checker(
    "same padding",
    requirement="same_padding(k, d): the padding per side (an int) that keeps the size of a "
    "stride-1 convolution with an odd kernel k and any dilation d >= 1",
)
def check_same_padding(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(k, d)``: the padding that keeps the size for stride 1 and an odd kernel."""
    grid = [(k, d) for k in (1, 3, 5, 7) for d in (1, 2, 3, 4)]
    cases = [Case((k, d), f"same_padding(k={k}, d={d})") for k, d in grid]
    judge(
        fn,
        cases,
        reference=lambda k, d: d * (k - 1) // 2,
        forbidden=SIZE_LIBRARY,
        around=_no_layer_ops,
        compare=_int_compare("Solve n = n + 2p - k_eff + 1 for p, with k_eff = d(k - 1) + 1."),
        mistakes=[
            (
                "that is k // 2, right only without dilation: a dilated kernel spans "
                "k_eff = d(k - 1) + 1 pixels, so pad k_eff // 2.",
                lambda k, d: k // 2,
                "a dilated kernel spans k_eff = k + (k - 1)(d - 1) pixels; pad half of k_eff - 1 on "
                "each side.",
            ),
            (
                "that is the TOTAL padding; nn.Conv2d's padding is added on each side, so halve it.",
                lambda k, d: d * (k - 1),
                "nn.Conv2d(padding=p) adds p zeros on the left AND p on the right.",
            ),
            (
                "you used k_eff = d * k; the span of a dilated kernel is d(k - 1) + 1.",
                lambda k, d: d * k // 2,
                "count the pixels from the first tap to the last: k taps with k - 1 gaps of d.",
            ),
            (
                "you rounded up (ceil(k_eff / 2)); k_eff is odd here and the padding per side is "
                "(k_eff - 1) / 2.",
                lambda k, d: math.ceil(_k_eff(k, d) / 2),
                "a 3x3 kernel without dilation needs padding 1, not 2: (3 - 1) / 2.",
            ),
            (
                "the bug of the classmate's version is still there: a dilated kernel is not d - 1 "
                "pixels wider than k but (k - 1)(d - 1) wider, because every one of its k - 1 gaps "
                "grows.",
                same_padding_buggy,
                "draw the taps of a 3x3 kernel with dilation 3: 3 taps, 2 gaps of 3 pixels each, "
                "so it spans 7 pixels.",
            ),
        ],
        hint2="write n_out = n + 2p - k_eff + 1 (stride 1), set n_out = n and solve for p; "
        "k_eff = k + (k - 1)(d - 1).",
    )
    n = ctx.randint(16, 30)
    for k, d in grid:  # show that the answer really keeps the size
        conv = torch.nn.Conv2d(1, 1, k, padding=d * (k - 1) // 2, dilation=d)
        assert conv(torch.zeros(1, 1, n, n)).shape[-1] == n
    return "your padding keeps the size for every odd kernel and dilation (checked with nn.Conv2d)."


def _ref_dilate(w: torch.Tensor, d: int) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1)
    out[..., ::d, ::d] = w
    return out


def _dilate_wide(w: torch.Tensor, d: int) -> torch.Tensor:
    return _ref_dilate(w, d + 1)


def _dilate_at_end(w: torch.Tensor, d: int) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1)
    out[..., :kh, :kw] = w
    return out


def _dilate_d_times_k(w: torch.Tensor, d: int) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * kh, d * kw)
    out[..., ::d, ::d] = w
    return out


def _dilate_square_only(w: torch.Tensor, d: int) -> torch.Tensor:
    k = w.shape[-1]
    out = w.new_zeros(*w.shape[:-2], d * (k - 1) + 1, d * (k - 1) + 1)
    out[..., ::d, ::d] = w
    return out


# (C_out, C_in, kH, kW, d): non-square kernels, d = 1 (unchanged), a 1x1 kernel, one channel
_DILATE_FIXED = [
    (2, 3, 3, 3, 2),
    (1, 2, 2, 3, 2),
    (2, 1, 3, 1, 3),
    (1, 1, 3, 3, 1),
    (3, 2, 1, 1, 4),
    (2, 2, 1, 4, 2),
    (1, 3, 4, 2, 3),
]


@checker(
    "dilate kernel",
    requirement="dilate_kernel(w, d): shape (C_out, C_in, d(kH - 1) + 1, d(kW - 1) + 1) with the "
    "original taps d pixels apart and zeros between them, for non-square and 1x1 kernels",
)
def check_dilate_kernel(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(w (C_out, C_in, kH, kW), d)``: the kernel with d-1 zeros between taps."""
    shapes = list(_DILATE_FIXED)
    for _ in range(3):
        shapes.append(
            (ctx.randint(1, 3), ctx.randint(1, 3), ctx.randint(1, 4), ctx.randint(1, 4), ctx.randint(1, 4))
        )
    cases = [
        Case(
            (ctx.randn(co, ci, kh, kw), d),
            f"dilate_kernel(w of shape {(co, ci, kh, kw)}, d={d})",
            frozenset() if kh == kw else frozenset({"nonsquare"}),
        )
        for co, ci, kh, kw, d in shapes
    ]

    def compare(got: Any, want: torch.Tensor, label: str) -> torch.Tensor:
        kh, kw = want.shape[-2:]
        return expect_tensor(
            got,
            want,
            label,
            shape_hint=f"The dilated kernel spans k_eff = d(k - 1) + 1 per side: {kh} x {kw}.",
        )

    judge(
        fn,
        cases,
        reference=_ref_dilate,
        compare=compare,
        forbidden=FAMILY_CONV,
        why="build the spread-out kernel yourself; no convolution is needed",
        mistakes=[
            (
                "you put d zeros between taps; dilation d means d - 1 zeros (d = 1 is the plain kernel).",
                _dilate_wide,
                "dilate_kernel(w, 1) must return w unchanged: no zeros at all for d = 1.",
            ),
            (
                "the zeros must go BETWEEN the taps (spacing d), not after the kernel.",
                _dilate_at_end,
                "the taps go to rows and columns 0, d, 2d, ...: assign with a slice of step d.",
            ),
            (
                "you made the kernel d * k wide; with k - 1 gaps of d - 1 zeros it spans "
                "d(k - 1) + 1 (no trailing zeros).",
                _dilate_d_times_k,
                "the last tap sits at index d(k - 1), so the size is d(k - 1) + 1.",
            ),
            (
                "you used one size for both kernel axes (w.shape[-1]); kernels can be non-square: "
                "kh, kw = w.shape[-2:].",
                _dilate_square_only,
                "kh, kw = w.shape[-2:] and use each for its own axis.",
            ),
        ],
        patterns=[("nonsquare", NONSQUARE_HINT)],
        hint="print dilate_kernel(torch.ones(1, 1, 2, 3), 2)[0, 0]: the ones must sit d apart, "
        "zeros between them, and nothing after the last one.",
        hint2="make zeros of the dilated shape, then assign the kernel to every d-th row and column "
        "with a slice of step d.",
    )
    # the point of the exercise: an ordinary convolution with the spread-out kernel is a dilated
    # one (the answer's own dtype is fine: compared in float64)
    for c in cases[:3]:
        w, d = c.args
        got = call(fn, w.clone(), d, describe=c.label)
        x = ctx.randn(1, w.shape[1], 16, 17)
        expect_tensor(
            F.conv2d(x, got.detach().to(x.dtype)),
            F.conv2d(x, w, dilation=d),
            f"conv with your dilated kernel vs conv with dilation={d}",
        )
    return "convolving with your zero-stuffed kernel equals nn.Conv2d(..., dilation=d)."


def _stride_of(args: tuple, kwargs: dict) -> Any:
    return args[3] if len(args) > 3 else kwargs.get("stride", 1)


def _veto_stride(*args: Any, **kwargs: Any) -> str | None:
    stride = _stride_of(args, kwargs)
    if stride not in (1, (1, 1), [1, 1]):
        return (
            f"it was called with stride={stride}; the point is to compute the stride-1 "
            f"output and keep every s-th value yourself."
        )
    return None


@contextlib.contextmanager
def _no_strided_conv() -> Iterator[None]:
    with guard("torch.nn.functional.conv2d", _veto_stride), guard("torch.conv2d", _veto_stride):
        yield


# (N, C_in, C_out, H, W, kH, kW, s, p): sizes not divisible by the stride, non-square inputs and
# kernels, batch and channels > 1, padding larger than 1, stride larger than the kernel
_STRIDED_FIXED = [
    (1, 1, 1, 8, 8, 3, 3, 2, 1),
    (2, 3, 2, 7, 10, 3, 3, 2, 1),
    (1, 2, 3, 11, 9, 2, 3, 3, 0),
    (3, 1, 2, 9, 6, 3, 1, 2, 2),
    (2, 2, 1, 10, 13, 1, 1, 3, 0),
    (1, 3, 1, 12, 7, 2, 2, 4, 1),
]


@checker(
    "stride as subsampling",
    requirement="strided_from_dense(x, w, stride, padding) equals F.conv2d(x, w, stride=stride, "
    "padding=padding), computed from a stride-1 convolution (with the padding) by keeping some "
    "of its values",
)
def check_strided_from_dense(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, w, stride, padding)`` built from a stride-1 convolution."""
    shapes = list(_STRIDED_FIXED)
    for _ in range(3):
        kh, kw = ctx.randint(1, 4), ctx.randint(1, 4)
        shapes.append(
            (
                ctx.randint(1, 2),
                ctx.randint(1, 3),
                ctx.randint(1, 3),
                ctx.randint(kh + 2, 13),
                ctx.randint(kw + 2, 13),
                kh,
                kw,
                ctx.randint(2, 3),
                ctx.randint(0, 2),
            )
        )
    cases = []
    for n, c_in, c_out, h, w_, kh, kw, s, p in shapes:
        tags = set() if (h == w_ and kh == kw) else {"nonsquare"}
        if n > 1:
            tags.add("batch")
        cases.append(
            Case(
                (ctx.randn(n, c_in, h, w_), ctx.randn(c_out, c_in, kh, kw), s, p),
                f"strided_from_dense(x {(n, c_in, h, w_)}, w {(c_out, c_in, kh, kw)}, "
                f"stride={s}, padding={p})",
                frozenset(tags),
            )
        )
    judge(
        fn,
        cases,
        around=_no_strided_conv,
        reference=lambda x, w, s, p: F.conv2d(x, w, stride=s, padding=p),
        compare=lambda got, want, label: expect_tensor(
            got, want, label, shape_hint="Keep rows and columns 0, s, 2s, ... of the padded stride-1 output."
        ),
        mistakes=[
            (
                "you started subsampling at index 1; the first strided output is the first dense "
                "output (keep indices 0, s, 2s, ...).",
                lambda x, w, s, p: F.conv2d(x, w, padding=p)[..., 1::s, 1::s],
                "the strided output's first value is the dense output's first value: slice from 0.",
            ),
            (
                "you subsampled only the rows; keep every s-th column as well.",
                lambda x, w, s, p: F.conv2d(x, w, padding=p)[..., ::s, :],
                "slice both spatial axes: [..., ::s, ::s].",
            ),
            (
                "you subsampled only the columns; keep every s-th row as well.",
                lambda x, w, s, p: F.conv2d(x, w, padding=p)[..., :, ::s],
                "slice both spatial axes: [..., ::s, ::s].",
            ),
            (
                "you left out the padding (or padded after subsampling); pad the input, convolve, "
                "then keep every s-th output.",
                lambda x, w, s, p: F.conv2d(x, w)[..., ::s, ::s],
                "pass padding=padding to the stride-1 convolution, then subsample its output.",
            ),
            (
                "you subsampled the INPUT before convolving; subsample the stride-1 OUTPUT.",
                lambda x, w, s, p: F.conv2d(F.pad(x, (p,) * 4)[..., ::s, ::s], w),
                "convolve at stride 1 first, then keep every s-th row and column of the result.",
            ),
        ],
        patterns=[("nonsquare", NONSQUARE_HINT), ("batch", BATCH_HINT)],
        hint="print the stride-1 output and the strided one for a small input: which rows and "
        "columns of the first reappear in the second?",
        hint2="the strided output at (i, j) is the stride-1 output at (i * s, j * s).",
    )
    return (
        f"a strided convolution is the stride-1 convolution with every s-th output kept "
        f"({len(cases)} cases, sizes not divisible by the stride included)."
    )


# ------------------------------------------------------------------ exercise 5: predict sizes

# the stack of exercise 5: (kind, kernel, stride, padding, dilation), on a 224-pixel side
SIZE_STACK = (
    ("conv", 7, 2, 3, 1),
    ("max pool", 3, 2, 1, 1),
    ("conv", 3, 2, 1, 1),
    ("conv", 3, 1, 2, 2),
    ("conv", 3, 2, 0, 1),
)
SIZE_INPUT = 224


def size_stack() -> torch.nn.Sequential:
    """The layers of exercise 5 with one channel."""
    layers: list[torch.nn.Module] = []
    for kind, k, s, p, d in SIZE_STACK:
        if kind == "conv":
            layers.append(torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d))
        else:
            layers.append(torch.nn.MaxPool2d(k, stride=s, padding=p))
    return torch.nn.Sequential(*layers)


@checker(
    "output-size predictions",
    requirement="sizes: the side length (an int) after each of the five layers of the table, "
    "each from the previous layer's output",
)
def check_size_predictions(ctx: Context, sizes: Any) -> str:
    """Check the predicted side length after each layer of :data:`SIZE_STACK`."""
    if not isinstance(sizes, (list, tuple)) or len(sizes) != len(SIZE_STACK):
        fail(f"sizes must be a list of {len(SIZE_STACK)} whole numbers (one per layer), got {sizes!r}.")
    sizes = [expect_int(v, f"sizes[{i}]") for i, v in enumerate(sizes)]
    x = torch.zeros(1, 1, SIZE_INPUT, SIZE_INPUT)
    truth = []
    with torch.no_grad():
        for layer in size_stack():
            x = layer(x)
            truth.append(int(x.shape[-1]))
    for i, ((kind, k, s, p, d), got, want) in enumerate(zip(SIZE_STACK, sizes, truth, strict=True)):
        n = SIZE_INPUT if i == 0 else truth[i - 1]  # judge each layer on the true input size
        k_eff = k + (k - 1) * (d - 1)
        with deeper_hint(
            f"layer {i + 1} by hand: k_eff = {k} + ({k} - 1)({d} - 1), then ({n} + 2 * {p} - k_eff) "
            f"// {s} + 1."
        ):
            _expect_size(got, want, i, kind, k, s, p, d, n, k_eff)
    return f"every size predicted: {SIZE_INPUT} -> " + " -> ".join(str(t) for t in truth) + "."


def _expect_size(
    got: int, want: int, i: int, kind: str, k: int, s: int, p: int, d: int, n: int, k_eff: int
) -> None:
    expect_equal(
        got,
        want,
        f"sizes[{i}] (layer {i + 1}: {kind} {k}x{k}, stride {s}, padding {p}, dilation {d}, input {n})",
        wrong={
            "round DOWN: a last window that would stick out of the padded input is dropped "
            "(floor((n + 2p - k_eff) / s) + 1).": math.ceil((n + 2 * p - k_eff) / s) + 1,
            "dilation 2 makes a 3x3 kernel span 5 pixels: k_eff = k + (k - 1)(d - 1).": (
                (n + 2 * p - k) // s + 1 if d > 1 else -1
            ),
            "padding p is added on BOTH sides: n + 2p.": (n + p - k_eff) // s + 1,
            "the +1 counts the first window: floor((n + 2p - k_eff) / s) + 1.": (n + 2 * p - k_eff) // s,
        },
        hint="Use n_out = floor((n + 2p - k_eff) / s) + 1 with the previous layer's output as n "
        "(pooling follows the same rule).",
    )
