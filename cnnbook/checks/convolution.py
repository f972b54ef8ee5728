"""Checks for the section 14.1 exercises (the convolution operation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnbook.checks.core import Context, call, checker, expect_tensor, forbid

Fn = Callable[..., torch.Tensor]

_WHOLE = "it computes the whole convolution for you; write the sliding sum yourself."
_OURS = "that is cnnbook's own answer; write yours."
# library functions that would do the exercise for the student
CONV_LIBRARY = {
    "torch.nn.functional.conv2d": _WHOLE, "torch.conv2d": _WHOLE, "torch.nn.Conv2d": _WHOLE,
    "torch.nn.functional.conv1d": _WHOLE, "torch.conv1d": _WHOLE, "torch.convolution": _WHOLE,
    "torch.nn.functional.conv_transpose2d": _WHOLE, "torch._convolution": _WHOLE,
    "cnnbook.ops.conv2d_loops": _OURS, "cnnbook.ops.conv2d_unfold": _OURS,
    "cnnbook.ops.convolve2d": _OURS, "cnnbook.ops.correlate1d": _OURS,
    "cnnbook.ops.convolve1d": _OURS, "cnnbook.kernels.apply_kernel": _OURS,
    "scipy.signal.correlate2d": _WHOLE, "scipy.signal.convolve2d": _WHOLE,
    "scipy.signal.correlate": _WHOLE, "scipy.signal.convolve": _WHOLE,
    "scipy.signal.fftconvolve": _WHOLE, "scipy.ndimage.correlate": _WHOLE,
    "scipy.ndimage.convolve": _WHOLE, "numpy.convolve": _WHOLE, "numpy.correlate": _WHOLE,
}


def _ref_correlate(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(image[None, None], kernel[None, None])[0, 0]


def _random_image_kernel(ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    kh, kw = ctx.randint(1, 4), ctx.randint(2, 5)
    h, w = ctx.randint(kh + 1, 11), ctx.randint(kw + 1, 12)
    return ctx.randn(h, w), ctx.randn(kh, kw)


@checker("correlate2d")
def check_correlate2d(ctx: Context, fn: Fn) -> str:
    """Check a single-channel valid cross-correlation ``fn(image (H, W), kernel (kH, kW))``."""
    for _ in range(6):
        image, kernel = _random_image_kernel(ctx)
        desc = f"image {tuple(image.shape)} and kernel {tuple(kernel.shape)}"
        with forbid(fn, CONV_LIBRARY):
            got = call(fn, image.clone(), kernel.clone(), describe=desc)
        h, w = image.shape
        kh, kw = kernel.shape
        expect_tensor(
            got, _ref_correlate(image, kernel), f"correlate2d({desc})",
            shape_hint=(f"A valid correlation has (H - kH + 1) x (W - kW + 1) = "
                        f"{h - kh + 1} x {w - kw + 1} outputs: the kernel must fit entirely "
                        f"inside the image at every position."),
            wrong={
                "You flipped the kernel: that is *true* convolution. Deep-learning "
                "'convolution' is cross-correlation: out[i, j] = sum image[i+m, j+n] * kernel[m, n].":
                    _ref_correlate(image, kernel.flip(0, 1)),
                "You used the transposed kernel (kernel.T); index the kernel as kernel[m, n] "
                "with m over rows and n over columns.":
                    (_ref_correlate(image, kernel.T) if kh == kw else image.new_zeros(0)),
            })
    return "your correlate2d matches torch.nn.functional.conv2d on 6 random image/kernel pairs."


@checker("convolve2d (true convolution)")
def check_convolve2d(ctx: Context, fn: Fn) -> str:
    """Check a single-channel valid *true* convolution (kernel flipped in both axes)."""
    for _ in range(6):
        image, kernel = _random_image_kernel(ctx)
        desc = f"image {tuple(image.shape)} and kernel {tuple(kernel.shape)}"
        with forbid(fn, CONV_LIBRARY):
            got = call(fn, image.clone(), kernel.clone(), describe=desc)
        expect_tensor(
            got, _ref_correlate(image, kernel.flip(0, 1)), f"convolve2d({desc})",
            shape_hint="Like correlation, valid convolution gives (H - kH + 1) x (W - kW + 1).",
            wrong={
                "This is cross-correlation: true convolution flips the kernel in BOTH axes "
                "first (kernel.flip(0, 1)).": _ref_correlate(image, kernel),
                "You flipped the kernel along the rows only; flip both axes (kernel.flip(0, 1)).":
                    _ref_correlate(image, kernel.flip(0)),
                "You flipped the kernel along the columns only; flip both axes "
                "(kernel.flip(0, 1)).":
                    _ref_correlate(image, kernel.flip(1)),
            })
    return "your convolve2d matches scipy.signal.convolve2d(mode='valid') on 6 random pairs."


@checker("multi-channel conv layer")
def check_conv_layer(ctx: Context, fn: Fn) -> str:
    """Check ``fn(x (N, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out,))``."""
    for _ in range(5):
        n, c_in, c_out = ctx.randint(1, 3), ctx.randint(2, 4), ctx.randint(2, 5)
        k = ctx.randint(1, 3)
        h, w = ctx.randint(k + 1, 8), ctx.randint(k + 1, 9)
        x, weight, bias = ctx.randn(n, c_in, h, w), ctx.randn(c_out, c_in, k, k), ctx.randn(c_out)
        desc = (f"x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
        with forbid(fn, CONV_LIBRARY):
            got = call(fn, x.clone(), weight.clone(), bias.clone(), describe=desc)
        ref = F.conv2d(x, weight, bias)
        expect_tensor(
            got, ref, f"conv_layer({desc})",
            shape_hint=(f"The output is (N, C_out, H - k + 1, W - k + 1) = {tuple(ref.shape)}: one "
                        f"feature map per filter, each summing over ALL input channels."),
            wrong={
                "You forgot the bias: add bias[o] to every pixel of output channel o.":
                    F.conv2d(x, weight),
                "You added the bias once per input channel; add it once per output pixel, after "
                "summing over the input channels.":
                    F.conv2d(x, weight, bias * c_in),
                "You flipped the kernels (true convolution); conv layers compute cross-correlation.":
                    F.conv2d(x, weight.flip(2, 3), bias),
            })
    return "your conv layer matches torch.nn.functional.conv2d (with bias) on 5 random layers."


def _ref_shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., dy:, dx:] = image[..., : h - dy, : w - dx]
    return out


@checker("shift")
def check_shift(ctx: Context, fn: Fn) -> str:
    """Check ``fn(image (H, W), dy, dx)``: move content down/right, fill with zeros."""
    for _ in range(6):
        h, w = ctx.randint(4, 9), ctx.randint(4, 9)
        image = ctx.randn(h, w)
        dy, dx = ctx.randint(0, 3), ctx.randint(0, 3)
        desc = f"image {tuple(image.shape)}, dy={dy}, dx={dx}"
        got = call(fn, image.clone(), dy, dx, describe=desc)
        expect_tensor(
            got, _ref_shift(image, dy, dx), f"shift({desc})",
            shape_hint="A shift keeps the image size: the output is (H, W).",
            wrong={
                "torch.roll wraps the pixels that fall off one edge around to the other; here "
                "the vacated rows/columns must be zeros.":
                    torch.roll(image, (dy, dx), (0, 1)),
                "You shifted up/left; a positive dy moves content DOWN (out[i + dy] = image[i]).":
                    _ref_shift(image.flip(0, 1), dy, dx).flip(0, 1),
                "dy and dx are swapped: dy is the row (vertical) offset, dx the column offset.":
                    _ref_shift(image, dx, dy),
            })
    return "shift moves content down/right and fills the gap with zeros."
