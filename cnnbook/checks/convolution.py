"""Checks for the section 14.1 exercises (the convolution operation).

Every check runs fixed edge cases first, then random ones, through
:func:`cnnbook.checks.core.judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from cnnbook.checks.core import (
    BATCH_HINT,
    CONV_LIBRARY,
    NONSQUARE_HINT,
    Case,
    Context,
    checker,
    judge,
    tensor_compare,
)

Fn = Callable[..., torch.Tensor]

# ------------------------------------------------------------------ exercise 1: correlate2d


def _ref_correlate(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(image[None, None], kernel[None, None].to(image.dtype))[0, 0]


def _image_kernel_cases(
    ctx: Context, fixed: Sequence[tuple[int, int, int, int]], n_random: int
) -> list[Case]:
    shapes = list(fixed)
    for _ in range(n_random):
        kh, kw = ctx.randint(1, 4), ctx.randint(1, 5)
        shapes.append((ctx.randint(kh, 10), ctx.randint(kw, 11), kh, kw))
    cases = []
    for h, w, kh, kw in shapes:
        image, kernel = ctx.randn(h, w), ctx.randn(kh, kw)
        tags = frozenset() if (h == w and kh == kw) else frozenset({"nonsquare"})
        cases.append(Case((image, kernel), f"image {(h, w)} and kernel {(kh, kw)}", tags))
    return cases


# (H, W, kH, kW): non-square image and kernel both ways, a 1x1 kernel, a kernel as large as the
# image (one output), a one-row kernel, a square case
_CORRELATE_FIXED = [
    (4, 4, 3, 3),
    (5, 7, 2, 3),
    (7, 5, 3, 2),
    (6, 6, 2, 2),
    (3, 6, 1, 1),
    (5, 5, 5, 5),
    (4, 9, 1, 4),
    (8, 3, 3, 1),
]


def _correlate_loops_square_only(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel.shape[0]  # one size for both axes
    h, w = image.shape
    out = image.new_zeros(h - k + 1, w - k + 1)
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            out[i, j] = (image[i : i + k, j : j + k] * kernel).sum()
    return out


def _transposed_kernel(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    if kernel.shape[0] != kernel.shape[1]:  # kernel[n, m] with m < kH, n < kW: IndexError
        raise IndexError("index out of range")
    return _ref_correlate(image, kernel.T)


@checker("correlate2d")
def check_correlate2d(ctx: Context, fn: Fn) -> str:
    """Check a single-channel valid cross-correlation ``fn(image (H, W), kernel (kH, kW))``."""
    cases = _image_kernel_cases(ctx, _CORRELATE_FIXED, 4)
    judge(
        fn,
        cases,
        reference=_ref_correlate,
        forbidden=CONV_LIBRARY,
        compare=tensor_compare(
            lambda _: (
                "A valid correlation has (H - kH + 1) x (W - kW + 1) "
                "outputs: the kernel must fit inside the image."
            )
        ),
        mistakes=[
            (
                "you flipped the kernel: that is *true* convolution. Deep-learning 'convolution' "
                "is cross-correlation: out[i, j] = sum image[i+m, j+n] * kernel[m, n].",
                lambda im, k: _ref_correlate(im, k.flip(0, 1)),
            ),
            (
                "your loops stop one position early: a valid correlation has H - kH + 1 rows and "
                "W - kW + 1 columns (range(h - kh + 1)).",
                lambda im, k: _ref_correlate(im, k)[:-1, :-1],
            ),
            (
                "you used one kernel size for both axes (kernel.shape[0]); a kernel can be "
                "non-square: kh, kw = kernel.shape.",
                _correlate_loops_square_only,
            ),
            (
                "you indexed the kernel as kernel[n, m] (transposed); m runs over rows and n over "
                "columns: kernel[m, n].",
                _transposed_kernel,
            ),
        ],
        patterns=[("nonsquare", NONSQUARE_HINT)],
    )
    return (
        f"your correlate2d matches torch.nn.functional.conv2d on {len(cases)} image/kernel "
        f"pairs (non-square, 1x1 and image-sized kernels included)."
    )


# ------------------------------------------------------------------ exercise 2: convolve2d


def _flipped_conv(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return _ref_correlate(image, kernel.flip(0, 1))


def _correlate_or_empty(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Like a loop version: an empty result when the kernel is one pixel too large."""
    h, w = image.shape[0] - kernel.shape[0] + 1, image.shape[1] - kernel.shape[1] + 1
    if min(h, w) < 0:
        raise RuntimeError("negative dimension")
    return image.new_zeros(h, w) if min(h, w) == 0 else _ref_correlate(image, kernel)


@checker("convolve2d (true convolution)")
def check_convolve2d(ctx: Context, fn: Fn) -> str:
    """Check a single-channel valid *true* convolution (kernel flipped in both axes)."""
    cases = _image_kernel_cases(ctx, _CORRELATE_FIXED, 4)
    judge(
        fn,
        cases,
        reference=_flipped_conv,
        forbidden=CONV_LIBRARY,
        compare=tensor_compare(
            lambda _: "Like correlation, valid convolution gives (H - kH + 1) x (W - kW + 1)."
        ),
        mistakes=[
            (
                "this is cross-correlation: true convolution flips the kernel in BOTH axes first "
                "(kernel.flip(0, 1)).",
                _ref_correlate,
            ),
            (
                "you flipped the kernel along the rows only (flip(0)); flip both axes (kernel.flip(0, 1)).",
                lambda im, k: _ref_correlate(im, k.flip(0)),
            ),
            (
                "you flipped the kernel along the columns only (flip(1)); flip both axes "
                "(kernel.flip(0, 1)).",
                lambda im, k: _ref_correlate(im, k.flip(1)),
            ),
            (
                "you transposed the kernel (kernel.T); a flip reverses the order of the rows and of "
                "the columns: kernel.flip(0, 1).",
                lambda im, k: _correlate_or_empty(im, k.T),
            ),
            (
                "you rotated the kernel by 90 degrees; the flip of convolution is a half-turn "
                "(180 degrees): kernel.flip(0, 1).",
                lambda im, k: _correlate_or_empty(im, torch.rot90(k, 1, (0, 1))),
            ),
        ],
        patterns=[("nonsquare", NONSQUARE_HINT)],
    )
    return f"your convolve2d matches scipy.signal.convolve2d(mode='valid') on {len(cases)} pairs."


# ------------------------------------------------------------------ exercise 3: conv layer

# (N, C_in, C_out, H, W, kH, kW)
_LAYER_FIXED = [
    (1, 1, 2, 4, 4, 3, 3),
    (2, 3, 4, 5, 7, 2, 3),
    (3, 2, 1, 6, 5, 3, 1),
    (2, 2, 3, 3, 4, 3, 4),
    (1, 3, 2, 5, 5, 1, 1),
    (4, 1, 1, 4, 6, 2, 2),
]


def _layer_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight, bias)


def _no_channel_sum(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    maps = [
        F.conv2d(x[:, c : c + 1], weight[o : o + 1, c : c + 1], bias[o : o + 1])
        for o in range(weight.shape[0])
        for c in range(x.shape[1])
    ]
    return torch.cat(maps, dim=1)


@checker("multi-channel conv layer")
def check_conv_layer(ctx: Context, fn: Fn) -> str:
    """Check ``fn(x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out,))``."""
    shapes = list(_LAYER_FIXED)
    for _ in range(3):
        kh, kw = ctx.randint(1, 3), ctx.randint(1, 3)
        shapes.append(
            (
                ctx.randint(1, 3),
                ctx.randint(1, 3),
                ctx.randint(1, 4),
                ctx.randint(kh, 7),
                ctx.randint(kw, 8),
                kh,
                kw,
            )
        )
    cases = []
    for n, c_in, c_out, h, w, kh, kw in shapes:
        x, weight, bias = ctx.randn(n, c_in, h, w), ctx.randn(c_out, c_in, kh, kw), ctx.randn(c_out)
        tags = {"batch"} if n > 1 else set()
        if h != w or kh != kw:
            tags.add("nonsquare")
        cases.append(
            Case(
                (x, weight, bias),
                f"x {(n, c_in, h, w)}, weight {(c_out, c_in, kh, kw)}, bias {(c_out,)}",
                frozenset(tags),
            )
        )
    judge(
        fn,
        cases,
        reference=_layer_ref,
        forbidden=CONV_LIBRARY,
        compare=tensor_compare(
            lambda _: (
                "The output is (N, C_out, H - kH + 1, W - kW + 1): one "
                "feature map per filter, each summing over ALL input "
                "channels."
            )
        ),
        mistakes=[
            (
                "you forgot the bias: add bias[o] to every pixel of output channel o.",
                lambda x, w, b: F.conv2d(x, w),
            ),
            (
                "you added the bias once per input channel; add it once per output pixel, after "
                "summing over the input channels.",
                lambda x, w, b: F.conv2d(x, w, b * x.shape[1]),
            ),
            (
                "you flipped the kernels (true convolution); conv layers compute cross-correlation.",
                lambda x, w, b: F.conv2d(x, w.flip(2, 3), b),
            ),
            (
                "you averaged over the input channels; a filter SUMS its responses over all input channels.",
                lambda x, w, b: F.conv2d(x, w / x.shape[1], b),
            ),
            (
                "you made one map per (filter, input channel) pair; each filter sums over ALL input "
                "channels into ONE output map.",
                _no_channel_sum,
            ),
            (
                "you only processed the first image of the batch (x[0]); the output needs one "
                "result per image: shape (N, C_out, ...).",
                lambda x, w, b: F.conv2d(x[:1], w, b),
            ),
        ],
        patterns=[("batch", BATCH_HINT), ("nonsquare", NONSQUARE_HINT)],
    )
    return (
        f"your conv layer matches torch.nn.functional.conv2d (with bias) on {len(cases)} "
        f"layers (batches, one and several channels, non-square kernels)."
    )


# ------------------------------------------------------------------ exercise 4: shift


def _ref_shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., dy:, dx:] = image[..., : h - dy, : w - dx]
    return out


def _shift_negative_slices(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(image)
    out[dy:, dx:] = image[:-dy, :-dx]  # image[:-0] is empty
    return out


def _shift_square_only(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    n = image.shape[0]  # one size for both axes
    out = torch.zeros_like(image)
    out[dy:, dx:] = image[: n - dy, : n - dx]
    return out


# (H, W, dy, dx): zero shifts (both, one axis), non-square, a shift of all but one row
_SHIFT_FIXED = [
    (5, 5, 1, 2),
    (5, 7, 2, 3),
    (6, 4, 0, 0),
    (6, 4, 0, 2),
    (4, 6, 3, 0),
    (5, 5, 4, 4),
    (7, 3, 2, 1),
    (4, 8, 1, 6),
]


@checker("shift")
def check_shift(ctx: Context, fn: Fn) -> str:
    """Check ``fn(image (H, W), dy, dx)``: move content down/right, fill with zeros."""
    shapes = list(_SHIFT_FIXED)
    for _ in range(4):
        h, w = ctx.randint(3, 9), ctx.randint(3, 9)
        shapes.append((h, w, ctx.randint(0, h - 1), ctx.randint(0, w - 1)))
    cases = []
    for h, w, dy, dx in shapes:
        tags = set()
        if h != w:
            tags.add("nonsquare")
        if dy == 0 or dx == 0:
            tags.add("zero shift")
        cases.append(Case((ctx.randn(h, w), dy, dx), f"image {(h, w)}, dy={dy}, dx={dx}", frozenset(tags)))
    judge(
        fn,
        cases,
        reference=_ref_shift,
        compare=tensor_compare(lambda _: "A shift keeps the image size: the output is (H, W)."),
        mistakes=[
            (
                "torch.roll wraps the pixels that fall off one edge around to the other; here the "
                "vacated rows and columns must be zeros.",
                lambda im, dy, dx: torch.roll(im, (dy, dx), (0, 1)),
            ),
            (
                "you shifted up/left; a positive dy moves content DOWN (out[i + dy] = image[i]).",
                lambda im, dy, dx: _ref_shift(im.flip(0, 1), dy, dx).flip(0, 1),
            ),
            (
                "dy and dx are swapped: dy is the row (vertical) offset, dx the column offset.",
                lambda im, dy, dx: _ref_shift(im, dx, dy),
            ),
            (
                "image[:-dy] is EMPTY when dy = 0 (-0 is 0): slice with image[:h - dy, :w - dx] so "
                "a zero shift works.",
                _shift_negative_slices,
            ),
            (
                "you used one size for both axes (image.shape[0]); images can be non-square: "
                "h, w = image.shape.",
                _shift_square_only,
            ),
        ],
        patterns=[
            (
                "zero shift",
                "Your answer fails only when dy or dx is 0: check what your "
                "slices give for a zero shift (x[:-0] is empty).",
            ),
            ("nonsquare", NONSQUARE_HINT),
        ],
    )
    return (
        f"shift moves content down/right and fills with zeros, on {len(cases)} cases (zero "
        f"shifts and non-square images included)."
    )
