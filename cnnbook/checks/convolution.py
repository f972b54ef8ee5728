"""Checks for the section 14.1 exercises (the convolution operation).

Every check runs fixed edge cases first, then random ones, through
:func:`cnnbook.checks.core.judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cnnbook.checks.core import (
    FAMILY_CONV,
    NONSQUARE_HINT,
    Case,
    Context,
    checker,
    deeper_hint,
    expect_equal,
    expect_int,
    fail,
    judge,
    tensor_compare,
)
from cnnbook.kernels import classic_kernels

Fn = Callable[..., torch.Tensor]

_WHY_CONV = "write the sliding sum yourself (F.unfold and matrix products are fine in exercise 4)"

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


@checker(
    "correlate2d",
    requirement="out[i, j] = sum over m, n of image[i + m, j + n] * kernel[m, n], shape "
    "(H - kH + 1, W - kW + 1) for any image and kernel sizes, with no convolution function",
)
def check_correlate2d(ctx: Context, fn: Fn) -> str:
    """Check a single-channel valid cross-correlation ``fn(image (H, W), kernel (kH, kW))``."""
    cases = _image_kernel_cases(ctx, _CORRELATE_FIXED, 4)
    judge(
        fn,
        cases,
        reference=_ref_correlate,
        forbidden=FAMILY_CONV,
        why=_WHY_CONV,
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
                "multiply image[i:i + kh, j:j + kw] by kernel itself (no flip, no [::-1]) and sum.",
            ),
            (
                "your loops stop one position early: a valid correlation has H - kH + 1 rows and "
                "W - kW + 1 columns (range(h - kh + 1)).",
                lambda im, k: _ref_correlate(im, k)[:-1, :-1],
                "a 3x3 kernel on a 3x3 image fits once: range(3 - 3 + 1) gives the one position 0.",
            ),
            (
                "you used one kernel size for both axes (kernel.shape[0]); a kernel can be "
                "non-square: kh, kw = kernel.shape.",
                _correlate_loops_square_only,
                "try a 2x3 kernel on a 5x7 image: the output is 4x5 and every window is "
                "image[i:i + kh, j:j + kw].",
            ),
            (
                "you indexed the kernel as kernel[n, m] (transposed); m runs over rows and n over "
                "columns: kernel[m, n].",
                _transposed_kernel,
                "image[i + m, j + n] pairs with kernel[m, n]: the same m for rows in both.",
            ),
        ],
        patterns=[("nonsquare", NONSQUARE_HINT)],
        hint="print your output next to F.conv2d(image[None, None], kernel[None, None])[0, 0] for "
        "the case above; compare one position by hand.",
        hint2="out[0, 0] is (image[:kh, :kw] * kernel).sum(); out[i, j] moves that window i rows "
        "down and j columns right.",
    )
    return (
        f"your correlate2d matches torch.nn.functional.conv2d on {len(cases)} image/kernel "
        f"pairs (non-square, 1x1 and image-sized kernels included)."
    )


# ------------------------------------------------------------------ exercise 2: flip or not?

# the kernels the student sorts: the classic bank plus one that moves the image by a pixel
FLIP_CHOICES = (
    "identity",
    "box blur",
    "gaussian",
    "sobel x",
    "sobel y",
    "laplacian",
    "sharpen",
    "shift",
)


def flip_kernels() -> dict[str, torch.Tensor]:
    """The kernels of exercise 2: :func:`cnnbook.kernels.classic_kernels` plus ``"shift"``."""
    bank = classic_kernels()
    shift = torch.zeros(3, 3)
    shift[1, 0] = 1.0  # out[i, j] = image[i + 1, j]: reads the pixel to the left of the centre
    bank["shift"] = shift
    return bank


def _names(got: Any, what: str) -> set[str]:
    if isinstance(got, str) or not isinstance(got, (set, frozenset, list, tuple)):
        fail(
            f"{what} must be a set of kernel names such as {{'identity', 'gaussian'}}, got "
            f"{type(got).__name__} {got!r}."
        )
    names = set(got)
    unknown = sorted(str(n) for n in names if n not in FLIP_CHOICES)
    if unknown:
        fail(f"{what}: unknown kernel name(s) {unknown}; choose among {list(FLIP_CHOICES)}.")
    return names


@checker(
    "convolution vs cross-correlation prediction",
    requirement="same_either_way: exactly the kernels K for which true convolution equals "
    "cross-correlation on every image, that is K.flip(0, 1) == K",
)
def check_flip_prediction(ctx: Context, predicted: Any) -> str:
    """Check the set of kernels for which true convolution equals cross-correlation."""
    names = _names(predicted, "same_either_way")
    image = ctx.randn(9, 11)
    truth = {
        name
        for name, k in flip_kernels().items()
        if torch.allclose(_ref_correlate(image, k.double()), _ref_correlate(image, k.double().flip(0, 1)))
    }
    if names == truth:
        return (
            f"{sorted(truth)} are unchanged by a half-turn, so flipping them changes nothing; "
            "the Sobel kernels change sign and the shift moves the other way."
        )
    missing, extra = sorted(truth - names), sorted(names - truth)
    reasons = []
    if {"sobel x", "sobel y"} & set(extra):
        reasons.append(
            "a half-turn of a Sobel kernel is its negative (the -1 column and the +1 column swap), "
            "so convolution gives the correlation's negative: the edges flip sign."
        )
    if "shift" in extra:
        reasons.append(
            "a half-turn moves the single 1 of 'shift' to the other side of the centre: "
            "convolution moves the image the opposite way."
        )
    if set(missing) & {"laplacian", "sharpen", "identity"}:
        reasons.append(
            "the identity, the Laplacian and sharpen look the same after a half-turn (row and "
            "column order reversed): each is symmetric about its centre."
        )
    if set(missing) & {"box blur", "gaussian"}:
        reasons.append(
            "blur kernels are symmetric about their centre, so a half-turn leaves them as they are."
        )
    fail(
        f"you predicted {sorted(names)}; these are missing: {missing}; these do not belong: {extra}. "
        + " ".join(reasons),
        hint2="a half-turn sends entry [m, n] of a 3x3 kernel to [2 - m, 2 - n]: write each kernel "
        "next to its half-turn and keep those that read the same.",
    )


# ------------------------------------------------------------------ exercise 3: predict a layer

# the layer and batch of exercise 3
PREDICT_LAYER = {"in_channels": 5, "out_channels": 7, "kernel_size": (3, 2)}
PREDICT_INPUT = (4, 5, 10, 12)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _shape(got: Any, what: str) -> tuple[int, ...]:
    if isinstance(got, torch.Size):
        got = tuple(got)
    if not isinstance(got, tuple) or not all(_is_int(v) for v in got):
        fail(f"{what} must be a tuple of whole numbers such as (2, 3, 4), got {got!r}.")
    return got


@checker(
    "conv layer predictions",
    requirement="weight_shape, params (an int), output_shape and cols_shape of "
    "nn.Conv2d(5, 7, kernel_size=(3, 2)) on an input of shape (4, 5, 10, 12)",
)
def check_layer_predictions(
    ctx: Context, weight_shape: Any, params: Any, output_shape: Any, cols_shape: Any
) -> str:
    """Check predicted weight shape, parameter count, output shape and im2col shape."""
    layer = torch.nn.Conv2d(**PREDICT_LAYER)  # type: ignore[arg-type]
    x = torch.zeros(PREDICT_INPUT)
    c_out, c_in, kh, kw = layer.weight.shape
    n, _, h, w = PREDICT_INPUT
    true_weight = tuple(layer.weight.shape)
    true_params = sum(p.numel() for p in layer.parameters())
    true_out = tuple(layer(x).shape)
    true_cols = tuple(F.unfold(x, (kh, kw)).shape)
    with deeper_hint("layer.weight holds C_out filters, each with one kH x kW slice per input channel."):
        _expect_weight(weight_shape, true_weight, c_out, c_in, kh, kw)
    with deeper_hint("weights: one number per (output channel, input channel, row, column) of a filter."):
        _expect_params(params, true_params, c_out, c_in, kh, kw)
    with deeper_hint("height 10 - 3 + 1, width 12 - 2 + 1; the batch N stays, the channels become C_out."):
        _expect_output(output_shape, true_out, n, c_in, c_out, h, w, kh, kw)
    with deeper_hint(
        "F.unfold gives one column per output position; each column holds one patch: C_in * kH * kW numbers."
    ):
        _expect_cols(cols_shape, true_cols, n, c_in, kh, kw, h, w, true_out)
    return (
        f"weight {true_weight}, {true_params} parameters, output {true_out} and im2col columns "
        f"{true_cols}, all predicted."
    )


def _expect_weight(weight_shape: Any, true_weight: tuple, c_out: int, c_in: int, kh: int, kw: int) -> None:
    expect_equal(
        _shape(weight_shape, "weight_shape"),
        true_weight,
        "weight_shape",
        wrong={
            "PyTorch stores the output channels first: (C_out, C_in, kH, kW).": (c_in, c_out, kh, kw),
            "each filter spans ALL input channels: the weight has a C_in axis.": (c_out, kh, kw),
            "kernel_size=(3, 2) means kH = 3 rows and kW = 2 columns.": (c_out, c_in, kw, kh),
        },
        hint="One filter of shape (C_in, kH, kW) per output channel.",
    )


def _expect_params(params: Any, true_params: int, c_out: int, c_in: int, kh: int, kw: int) -> None:
    expect_equal(
        expect_int(params, "params"),
        true_params,
        "params",
        wrong={
            "you left out the biases: one per output channel.": true_params - c_out,
            "each filter spans all C_in input channels: C_out * C_in * kH * kW weights.": c_out * kh * kw
            + c_out,
            "you counted one filter; the layer has C_out of them.": c_in * kh * kw + 1,
        },
        hint="Count C_out * C_in * kH * kW weights plus C_out biases.",
    )


def _expect_output(
    output_shape: Any, true_out: tuple, n: int, c_in: int, c_out: int, h: int, w: int, kh: int, kw: int
) -> None:
    expect_equal(
        _shape(output_shape, "output_shape"),
        true_out,
        "output_shape",
        wrong={
            "there is no padding: the output shrinks to (H - kH + 1) x (W - kW + 1).": (n, c_out, h, w),
            "the output has C_out channels (one per filter), not C_in.": (n, c_in, h - kh + 1, w - kw + 1),
            "kH = 3 shrinks the height and kW = 2 the width, not the other way round.": (
                n,
                c_out,
                h - kw + 1,
                w - kh + 1,
            ),
            "a valid correlation has H - kH + 1 rows, not H - kH.": (n, c_out, h - kh, w - kw),
        },
        hint="The output is (N, C_out, H - kH + 1, W - kW + 1).",
    )


def _expect_cols(
    cols_shape: Any, true_cols: tuple, n: int, c_in: int, kh: int, kw: int, h: int, w: int, true_out: tuple
) -> None:
    k, positions = c_in * kh * kw, true_out[2] * true_out[3]
    expect_equal(
        _shape(cols_shape, "cols_shape"),
        true_cols,
        "cols_shape",
        wrong={
            "F.unfold puts each patch in a COLUMN: (N, C_in*kH*kW, L), patches along the last axis.": (
                n,
                positions,
                k,
            ),
            "one column holds the patch of ALL input channels: C_in*kH*kW numbers.": (n, kh * kw, positions),
            "L counts the output positions (H_out * W_out), not the input pixels.": (n, k, h * w),
        },
        hint="The im2col matrix is (N, C_in*kH*kW, H_out*W_out).",
    )


# ------------------------------------------------------------------ exercise 4: fix im2col

# (N, C_in, C_out, H, W, kH, kW): each bug of the broken version shows on some of these and
# hides on others (one input channel; a square output)
_IM2COL_FIXED = [
    (1, 1, 2, 8, 8, 3, 3),
    (2, 3, 4, 6, 6, 3, 3),
    (1, 1, 3, 5, 7, 2, 3),
    (2, 3, 2, 7, 5, 3, 2),
    (3, 2, 1, 4, 6, 1, 1),
    (1, 4, 3, 5, 5, 5, 5),
]


def _im2col_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight, bias)


def conv2d_im2col_broken(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The exercise's broken im2col convolution (two bugs)."""
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw))
    out = weight.permute(0, 2, 3, 1).reshape(c_out, -1) @ cols
    out = out + bias[:, None]
    return out.reshape(n, c_out, w - kw + 1, h - kh + 1)


def _channels_last_weight(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out = weight.permute(0, 2, 3, 1).reshape(c_out, -1) @ F.unfold(x, (kh, kw)) + bias[:, None]
    return out.reshape(n, c_out, h - kh + 1, w - kw + 1)


def _swapped_reshape(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out = weight.reshape(c_out, -1) @ F.unfold(x, (kh, kw)) + bias[:, None]
    return out.reshape(n, c_out, w - kw + 1, h - kh + 1)


def _transposed_grid(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    out = F.conv2d(x, weight, bias)
    return out.transpose(2, 3).reshape(out.shape)


@checker(
    "conv2d_im2col (fixed)",
    requirement="conv2d_im2col(x, weight, bias) equals F.conv2d(x, weight, bias) for any batch, "
    "number of channels and non-square output, as one matrix product with F.unfold's columns",
)
def check_conv2d_im2col(ctx: Context, fn: Fn) -> str:
    """Check ``fn(x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out,))``."""
    shapes = list(_IM2COL_FIXED)
    for _ in range(3):
        kh, kw = ctx.randint(1, 3), ctx.randint(1, 3)
        shapes.append(
            (
                ctx.randint(1, 3),
                ctx.randint(2, 3),
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
        tags = set()
        if c_in > 1 and kh * kw > 1:
            tags.add("channels")
        if h - kh != w - kw:
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
        reference=_im2col_ref,
        forbidden=FAMILY_CONV,
        why=_WHY_CONV,
        compare=tensor_compare(lambda _: "The output is (N, C_out, H - kH + 1, W - kW + 1): height first."),
        mistakes=[
            (
                "both bugs are still there: the weight is flattened in another order than "
                "F.unfold's columns, and the result is reshaped to (W_out, H_out).",
                conv2d_im2col_broken,
                "print F.unfold(x, (kh, kw))[0, :, 0] next to x[0, :, :kh, :kw].flatten() for a 2-channel x: "
                "that is the order each row of the weight matrix must follow.",
            ),
            (
                "the weight is flattened channel-last (permute(0, 2, 3, 1)) but F.unfold's columns "
                "are channel-first (c, then row, then column): flatten the weight as it is, "
                "weight.reshape(C_out, -1). One input channel hides this bug.",
                _channels_last_weight,
                "a column of F.unfold lists channel 0's kH*kW taps, then channel 1's, ...: "
                "weight[o].flatten() is already in that order.",
            ),
            (
                "the result is reshaped to (N, C_out, W_out, H_out); F.unfold walks the output grid row "
                "by row, so it is (N, C_out, H_out, W_out). A square output hides this bug.",
                _swapped_reshape,
                "output position l = i * W_out + j: reshape(n, c_out, H_out, W_out) puts it at row i, "
                "column j.",
            ),
            (
                "the output grid comes out in column order; F.unfold's last axis walks the output "
                "positions row by row (H_out rows of W_out), so reshape it straight to "
                "(N, C_out, H_out, W_out), with no transpose.",
                _transposed_grid,
                "the product already has the positions in row order; the reshape alone restores the grid.",
            ),
            (
                "you forgot the bias: add bias[o] to every position of output channel o.",
                lambda x, w, b: F.conv2d(x, w),
                "the bias has one value per output channel: add bias[:, None] to the (C_out, L) product.",
            ),
        ],
        patterns=[
            (
                "channels",
                "right with one input channel, wrong with several: the order in which the weight "
                "is flattened must match F.unfold's columns (channel, then row, then column).",
            ),
            (
                "nonsquare",
                "right when the output is square, wrong otherwise: the output grid is H_out rows "
                "by W_out columns.",
            ),
        ],
        hint="compare your output with F.conv2d(x, weight, bias) on a 2-channel input whose output "
        "is not square: which bug still shows?",
        hint2="two things must agree: the order of each flattened filter with F.unfold's column "
        "order (channel, row, column), and the output grid (H_out rows of W_out).",
    )
    return (
        f"your conv2d_im2col matches torch.nn.functional.conv2d on {len(cases)} layers "
        "(one and several input channels, square and non-square outputs)."
    )


# ------------------------------------------------------------------ exercise 5: shift


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


@checker(
    "shift",
    requirement="shift(image, dy, dx) moves the content dy rows down and dx columns right, fills "
    "the vacated pixels with zeros and keeps the shape (H, W), also for a zero shift and "
    "non-square images",
)
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
                "start from torch.zeros_like(image) and copy the part that stays inside.",
            ),
            (
                "you shifted up/left; a positive dy moves content DOWN (out[i + dy] = image[i]).",
                lambda im, dy, dx: _ref_shift(im.flip(0, 1), dy, dx).flip(0, 1),
                "out[dy:, dx:] is the part that receives the image; the top dy rows stay zero.",
            ),
            (
                "dy and dx are swapped: dy is the row (vertical) offset, dx the column offset.",
                lambda im, dy, dx: _ref_shift(im, dx, dy),
                "dy slices axis 0 (rows), dx axis 1 (columns).",
            ),
            (
                "image[:-dy] is EMPTY when dy = 0 (-0 is 0): slice with image[:h - dy, :w - dx] so "
                "a zero shift works.",
                _shift_negative_slices,
                "slice with image[:h - dy, :w - dx]: h - 0 keeps every row.",
            ),
            (
                "you used one size for both axes (image.shape[0]); images can be non-square: "
                "h, w = image.shape.",
                _shift_square_only,
                "h, w = image.shape and use each for its own axis.",
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
        hint="print shift(torch.arange(12.).reshape(3, 4), 1, 2) and check by hand where each number went.",
        hint2="start from zeros of the image's shape and fill its bottom-right (H - dy) x (W - dx) "
        "part from the image's top-left part of the same size; slice with h - dy, not -dy "
        "(x[:-0] is empty).",
    )
    return (
        f"shift moves content down/right and fills with zeros, on {len(cases)} cases (zero "
        f"shifts and non-square images included)."
    )
