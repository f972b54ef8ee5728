"""Wrong-answer corpus for the 14.1 exercises (the convolution operation).

Each exercise: the reference answer and correct variants are accepted on every seed; each
realistic mistake (one function per mistake, named for it) is rejected on every seed with a
message naming it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected

from cnnbook.checks import convolution as c

# ---------------------------------------------------------------- exercise 1: correlate2d


def correlate_reference(image, kernel):
    h, w = image.shape
    kh, kw = kernel.shape
    out = image.new_zeros(h - kh + 1, w - kw + 1)
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            out[i, j] = (image[i : i + kh, j : j + kw] * kernel).sum()
    return out


def correlate_unfold_float32(image, kernel):  # vectorised, float32 result: a valid form
    kh, kw = kernel.shape
    patches = image.float().unfold(0, kh, 1).unfold(1, kw, 1)
    return (patches * kernel.float()).sum(dim=(-2, -1))


def correlate_sum_of_shifted_slices(image, kernel):  # loop over taps instead of positions
    kh, kw = kernel.shape
    h, w = image.shape
    return sum(
        kernel[m, n] * image[m : h - kh + 1 + m, n : w - kw + 1 + n] for m in range(kh) for n in range(kw)
    )


def correlate_flipped_kernel(image, kernel):
    return correlate_reference(image, kernel.flip(0, 1))


def correlate_loops_stop_early(image, kernel):
    h, w = image.shape
    kh, kw = kernel.shape
    out = image.new_zeros(h - kh, w - kw)
    for i in range(h - kh):
        for j in range(w - kw):
            out[i, j] = (image[i : i + kh, j : j + kw] * kernel).sum()
    return out


def correlate_square_kernels_only(image, kernel):
    k = kernel.shape[0]
    h, w = image.shape
    out = image.new_zeros(h - k + 1, w - k + 1)
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            out[i, j] = (image[i : i + k, j : j + k] * kernel).sum()
    return out


def correlate_kernel_indexed_transposed(image, kernel):
    h, w = image.shape
    kh, kw = kernel.shape
    out = image.new_zeros(h - kh + 1, w - kw + 1)
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            out[i, j] = sum(image[i + m, j + n] * kernel[n, m] for m in range(kh) for n in range(kw))
    return out


def correlate_square_image_only(image, kernel):
    n = image.shape[0]
    kh, kw = kernel.shape
    out = image.new_zeros(n - kh + 1, n - kw + 1)
    for i in range(n - kh + 1):
        for j in range(n - kw + 1):
            out[i, j] = (image[i : i + kh, j : j + kw] * kernel).sum()
    return out


def correlate_with_f_conv2d(image, kernel):
    return F.conv2d(image[None, None], kernel[None, None])[0, 0]


def test_correlate2d_accepts_correct_answers() -> None:
    accepted(c.check_correlate2d, correlate_reference)
    accepted(c.check_correlate2d, correlate_unfold_float32)
    accepted(c.check_correlate2d, correlate_sum_of_shifted_slices)


def test_correlate2d_rejects_mistakes() -> None:
    rejected(c.check_correlate2d, correlate_flipped_kernel, hint="flipped the kernel")
    rejected(c.check_correlate2d, correlate_loops_stop_early, hint="one position early")
    rejected(c.check_correlate2d, correlate_square_kernels_only, hint="one kernel size for both axes")
    rejected(c.check_correlate2d, correlate_kernel_indexed_transposed, hint=r"kernel\[n, m\]")
    rejected(c.check_correlate2d, correlate_square_image_only, hint="square images and kernels")
    rejected(c.check_correlate2d, correlate_with_f_conv2d, hint=r"torch\.nn\.functional\.conv2d")


# ---------------------------------------------------------------- exercise 2: convolve2d


def convolve_reference(image, kernel):
    return correlate_reference(image, kernel.flip(0, 1))


def convolve_by_reversed_indices(image, kernel):  # flip written as index arithmetic
    kh, kw = kernel.shape
    return correlate_reference(image, kernel[torch.arange(kh - 1, -1, -1)][:, torch.arange(kw - 1, -1, -1)])


def convolve_forgot_flip(image, kernel):
    return correlate_reference(image, kernel)


def convolve_flip_rows_only(image, kernel):
    return correlate_reference(image, kernel.flip(0))


def convolve_flip_columns_only(image, kernel):
    return correlate_reference(image, kernel.flip(1))


def convolve_transposed_instead_of_flipped(image, kernel):
    return correlate_reference(image, kernel.T)


def convolve_rotated_90(image, kernel):
    return correlate_reference(image, torch.rot90(kernel))


def test_convolve2d_accepts_correct_answers() -> None:
    accepted(c.check_convolve2d, convolve_reference)
    accepted(c.check_convolve2d, convolve_by_reversed_indices)


def test_convolve2d_rejects_mistakes() -> None:
    rejected(c.check_convolve2d, convolve_forgot_flip, hint="this is cross-correlation")
    rejected(c.check_convolve2d, convolve_flip_rows_only, hint="rows only")
    rejected(c.check_convolve2d, convolve_flip_columns_only, hint="columns only")
    rejected(c.check_convolve2d, convolve_transposed_instead_of_flipped, hint="transposed")
    rejected(c.check_convolve2d, convolve_rotated_90, hint="90 degrees")


# ---------------------------------------------------------------- exercise 3: conv layer


def layer_reference(x, weight, bias):
    n, c_in = x.shape[:2]
    maps = []
    for b in range(n):
        per_filter = []
        for o in range(weight.shape[0]):
            total = sum(correlate_reference(x[b, ch], weight[o, ch]) for ch in range(c_in))
            per_filter.append(total + bias[o])
        maps.append(torch.stack(per_filter))
    return torch.stack(maps)


def layer_unfold_matmul(x, weight, bias):  # im2col without F.conv2d: a valid form
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    patches = x.unfold(2, kh, 1).unfold(3, kw, 1)  # (N, C_in, H', W', kH, kW)
    out = torch.einsum("nchwij,ocij->nohw", patches, weight)
    return out + bias[None, :, None, None]


def layer_forgot_bias(x, weight, bias):
    return layer_unfold_matmul(x, weight, torch.zeros_like(bias))


def layer_bias_per_input_channel(x, weight, bias):
    return layer_unfold_matmul(x, weight, bias * x.shape[1])


def layer_mean_over_channels(x, weight, bias):
    patches = x.unfold(2, weight.shape[2], 1).unfold(3, weight.shape[3], 1)
    per_channel = torch.einsum("nchwij,ocij->nochw", patches, weight)
    return per_channel.mean(2) + bias[None, :, None, None]


def layer_first_image_only(x, weight, bias):
    return layer_unfold_matmul(x[:1], weight, bias)


def layer_flipped_kernels(x, weight, bias):
    return layer_unfold_matmul(x, weight.flip(2, 3), bias)


def layer_no_channel_sum(x, weight, bias):
    patches = x.unfold(2, weight.shape[2], 1).unfold(3, weight.shape[3], 1)
    per_channel = torch.einsum("nchwij,ocij->nochw", patches, weight) + bias[None, :, None, None, None]
    return per_channel.flatten(1, 2)


def test_conv_layer_accepts_correct_answers() -> None:
    accepted(c.check_conv_layer, layer_reference)
    accepted(c.check_conv_layer, layer_unfold_matmul)


def test_conv_layer_rejects_mistakes() -> None:
    rejected(c.check_conv_layer, layer_forgot_bias, hint="forgot the bias")
    rejected(c.check_conv_layer, layer_bias_per_input_channel, hint="once per input channel")
    rejected(c.check_conv_layer, layer_mean_over_channels, hint="averaged over the input channels")
    rejected(c.check_conv_layer, layer_first_image_only, hint="first image of the batch")
    rejected(c.check_conv_layer, layer_flipped_kernels, hint="flipped the kernels")
    rejected(c.check_conv_layer, layer_no_channel_sum, hint=r"one map per \(filter, input channel\)")


# ---------------------------------------------------------------- exercise 4: shift


def shift_reference(image, dy, dx):
    out = torch.zeros_like(image)
    h, w = image.shape
    out[dy:, dx:] = image[: h - dy, : w - dx]
    return out


def shift_by_padding_and_cropping(image, dy, dx):
    h, w = image.shape
    return F.pad(image, (dx, 0, dy, 0))[:h, :w]


def shift_with_roll(image, dy, dx):
    return torch.roll(image, (dy, dx), dims=(0, 1))


def shift_up_left(image, dy, dx):
    out = torch.zeros_like(image)
    h, w = image.shape
    out[: h - dy, : w - dx] = image[dy:, dx:]
    return out


def shift_axes_swapped(image, dy, dx):
    return shift_reference(image, dx, dy)


def shift_negative_slice_bug(image, dy, dx):
    out = torch.zeros_like(image)
    out[dy:, dx:] = image[:-dy, :-dx]
    return out


def shift_square_only(image, dy, dx):
    n = image.shape[0]
    out = torch.zeros_like(image)
    out[dy:, dx:] = image[: n - dy, : n - dx]
    return out


def test_shift_accepts_correct_answers() -> None:
    accepted(c.check_shift, shift_reference)
    accepted(c.check_shift, shift_by_padding_and_cropping)


def test_shift_rejects_mistakes() -> None:
    rejected(c.check_shift, shift_with_roll, hint="wraps")
    rejected(c.check_shift, shift_up_left, hint="up/left")
    rejected(c.check_shift, shift_axes_swapped, hint="swapped")
    rejected(c.check_shift, shift_negative_slice_bug, hint=r"EMPTY when dy = 0")
    rejected(c.check_shift, shift_square_only, hint="one size for both axes")
