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
    rejected(c.check_correlate2d, correlate_with_f_conv2d, hint="computes a convolution for you")
    rejected(
        c.check_correlate2d, correlate_flipped_kernel, hint="flipped", requirement=r"image\[i \+ m, j \+ n\]"
    )
    rejected(
        c.check_correlate2d, correlate_loops_stop_early, hint="one position early", requirement=r"H - kH \+ 1"
    )


# ---------------------------------------------------------------- exercise 2: flip prediction

SYMMETRIC = {"identity", "box blur", "gaussian", "laplacian", "sharpen"}


def test_flip_prediction_accepts_correct_answers() -> None:
    accepted(c.check_flip_prediction, SYMMETRIC)
    accepted(c.check_flip_prediction, sorted(SYMMETRIC))  # a list is a fine spelling of a set
    accepted(c.check_flip_prediction, frozenset(SYMMETRIC))


def test_flip_prediction_rejects_mistakes() -> None:
    rejected(c.check_flip_prediction, SYMMETRIC | {"sobel x", "sobel y"}, hint="Sobel kernel is its negative")
    rejected(c.check_flip_prediction, SYMMETRIC | {"shift"}, hint="moves the single 1")
    rejected(c.check_flip_prediction, SYMMETRIC - {"laplacian", "sharpen"}, hint="symmetric about its centre")
    rejected(c.check_flip_prediction, {"identity"}, hint="blur kernels are symmetric")
    rejected(c.check_flip_prediction, set(c.FLIP_CHOICES), hint="K.flip\\(0, 1\\) == K")
    rejected(c.check_flip_prediction, "identity, gaussian", hint="must be a set of kernel names")
    rejected(c.check_flip_prediction, SYMMETRIC | {"Sobel"}, hint="unknown kernel name")
    rejected(
        c.check_flip_prediction,
        SYMMETRIC | {"shift"},
        hint="moves the single 1",
        requirement=r"K\.flip\(0, 1\) == K",
    )


# ---------------------------------------------------------------- exercise 3: layer predictions

RIGHT = ((7, 5, 3, 2), 217, (4, 7, 8, 11), (4, 30, 88))


def with_answer(index, value):
    answers = list(RIGHT)
    answers[index] = value
    return answers


def test_layer_predictions_accept_correct_answers() -> None:
    accepted(c.check_layer_predictions, *RIGHT)
    accepted(c.check_layer_predictions, torch.Size([7, 5, 3, 2]), 217, torch.Size([4, 7, 8, 11]), (4, 30, 88))


def test_layer_predictions_reject_mistakes() -> None:
    rejected(c.check_layer_predictions, *with_answer(0, (5, 7, 3, 2)), hint="output channels first")
    rejected(c.check_layer_predictions, *with_answer(0, (7, 3, 2)), hint="spans ALL input channels")
    rejected(c.check_layer_predictions, *with_answer(0, (7, 5, 2, 3)), hint="kH = 3 rows")
    rejected(c.check_layer_predictions, *with_answer(1, 210), hint="left out the biases")
    rejected(c.check_layer_predictions, *with_answer(1, 49), hint="spans all C_in input channels")
    rejected(c.check_layer_predictions, *with_answer(1, 31), hint="one filter")
    rejected(c.check_layer_predictions, *with_answer(1, 217.0), hint="should be an int", requirement="params")
    rejected(
        c.check_layer_predictions, *with_answer(1, torch.tensor(217)), hint="Python int", requirement="params"
    )
    rejected(c.check_layer_predictions, *with_answer(1, 210), hint="biases", requirement=r"nn\.Conv2d\(5, 7")
    rejected(c.check_layer_predictions, *with_answer(2, (4, 7, 10, 12)), hint="no padding")
    rejected(c.check_layer_predictions, *with_answer(2, (4, 5, 8, 11)), hint="C_out channels")
    rejected(c.check_layer_predictions, *with_answer(2, (4, 7, 9, 10)), hint="kH = 3 shrinks the height")
    rejected(c.check_layer_predictions, *with_answer(2, (4, 7, 7, 10)), hint="H - kH \\+ 1 rows")
    rejected(c.check_layer_predictions, *with_answer(2, [4, 7, 8, 11]), hint="tuple of whole numbers")
    rejected(c.check_layer_predictions, *with_answer(3, (4, 88, 30)), hint="in a COLUMN")
    rejected(c.check_layer_predictions, *with_answer(3, (4, 6, 88)), hint="ALL input channels")
    rejected(c.check_layer_predictions, *with_answer(3, (4, 30, 120)), hint="output positions")


# ---------------------------------------------------------------- exercise 4: fix the im2col conv


def im2col_reference(x, weight, bias):
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out = weight.reshape(c_out, -1) @ F.unfold(x, (kh, kw)) + bias[:, None]
    return out.reshape(n, c_out, h - kh + 1, w - kw + 1)


def im2col_einsum_float32(x, weight, bias):  # another spelling, float32 result
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    cols = F.unfold(x.float(), (kh, kw))
    out = torch.einsum("ok,nkl->nol", weight.float().flatten(1), cols) + bias.float()[:, None]
    return out.view(n, c_out, h - kh + 1, w - kw + 1)


def im2col_per_image_loop(x, weight, bias, *unused):  # a loop over the batch, extra harmless arg
    return torch.stack([im2col_reference(x[i : i + 1], weight, bias)[0] for i in range(x.shape[0])])


def im2col_keeps_both_bugs(x, weight, bias):
    return c.conv2d_im2col_broken(x, weight, bias)


def im2col_channels_last_weight(x, weight, bias):
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out = weight.permute(0, 2, 3, 1).reshape(c_out, -1) @ F.unfold(x, (kh, kw)) + bias[:, None]
    return out.reshape(n, c_out, h - kh + 1, w - kw + 1)


def im2col_swapped_output_grid(x, weight, bias):
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out = weight.reshape(c_out, -1) @ F.unfold(x, (kh, kw)) + bias[:, None]
    return out.reshape(n, c_out, w - kw + 1, h - kh + 1)


def im2col_transposed_view_of_grid(x, weight, bias):  # right numbers per position, grid transposed
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    out = weight.reshape(c_out, -1) @ F.unfold(x, (kh, kw)) + bias[:, None]
    return (
        out.reshape(n, c_out, h - kh + 1, w - kw + 1)
        .transpose(2, 3)
        .reshape(n, c_out, h - kh + 1, w - kw + 1)
    )


def im2col_forgot_bias(x, weight, bias):
    return im2col_reference(x, weight, torch.zeros_like(bias))


def im2col_calls_conv2d(x, weight, bias):
    return F.conv2d(x, weight, bias)


def im2col_calls_torch_convolution(x, weight, bias):
    return torch.convolution(x, weight, bias, (1, 1), (0, 0), (1, 1), False, (0, 0), 1)


def test_conv2d_im2col_accepts_correct_answers() -> None:
    accepted(c.check_conv2d_im2col, im2col_reference)
    accepted(c.check_conv2d_im2col, im2col_einsum_float32)
    accepted(c.check_conv2d_im2col, im2col_per_image_loop)


def test_conv2d_im2col_rejects_mistakes() -> None:
    rejected(c.check_conv2d_im2col, im2col_keeps_both_bugs, hint="both bugs are still there")
    rejected(c.check_conv2d_im2col, im2col_channels_last_weight, hint="flattened channel-last")
    rejected(
        c.check_conv2d_im2col, im2col_swapped_output_grid, hint="reshaped to \\(N, C_out, W_out, H_out\\)"
    )
    rejected(c.check_conv2d_im2col, im2col_transposed_view_of_grid, hint="column order")
    rejected(c.check_conv2d_im2col, im2col_forgot_bias, hint="forgot the bias")
    rejected(
        c.check_conv2d_im2col, im2col_keeps_both_bugs, hint="both bugs", requirement="one matrix product"
    )
    rejected(c.check_conv2d_im2col, im2col_calls_conv2d, hint="computes a convolution for you")
    rejected(c.check_conv2d_im2col, im2col_calls_torch_convolution, hint="computes a convolution for you")


# ---------------------------------------------------------------- exercise 5: shift


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
    rejected(c.check_shift, shift_with_roll, hint="wraps", requirement="fills the vacated pixels with zeros")
    rejected(c.check_shift, shift_negative_slice_bug, hint="EMPTY", requirement="also for a zero shift")


# ---------------------------------------------------------------- issue 20: the convolution family


def correlate_by_conv3d_depth_one(image, kernel):
    return F.conv3d(image[None, None, None], kernel[None, None, None].to(image.dtype))[0, 0, 0]


def correlate_by_aten_operator(image, kernel):
    w = kernel[None, None].to(image.dtype)
    return torch.ops.aten.convolution(image[None, None], w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[
        0, 0
    ]


def correlate_by_conv1d_rows(image, kernel):  # one 1-D convolution per kernel row, summed
    kh = kernel.shape[0]
    rows = [
        F.conv1d(image[m : image.shape[0] - kh + 1 + m, None], kernel[m].to(image.dtype)[None, None])[:, 0]
        for m in range(kh)
    ]
    return sum(rows)


def correlate_by_scipy_imported_inside(image, kernel):
    from scipy import signal

    return torch.from_numpy(signal.correlate2d(image.numpy(), kernel.numpy(), mode="valid"))


def test_correlate2d_rejects_the_whole_convolution_family() -> None:
    rejected(c.check_correlate2d, correlate_by_conv3d_depth_one, hint="computes a convolution for you")
    rejected(c.check_correlate2d, correlate_by_aten_operator, hint="computes a convolution for you")
    rejected(c.check_correlate2d, correlate_by_conv1d_rows, hint="computes a convolution for you")
    rejected(c.check_correlate2d, correlate_by_scipy_imported_inside, hint="every convolution|scipy")


def im2col_by_conv3d(x, weight, bias):
    return F.conv3d(x[:, :, None], weight[:, :, None], bias)[:, :, 0]


def test_conv2d_im2col_rejects_the_whole_convolution_family() -> None:
    rejected(c.check_conv2d_im2col, im2col_by_conv3d, hint="computes a convolution for you")
