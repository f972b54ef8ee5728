"""Wrong-answer corpus for the 14.2 exercises (stride, padding and dilation)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected

from cnnbook.checks import stride_padding as c

# ---------------------------------------------------------------- exercise 1: conv_out_size


def out_size_reference(n, k, s=1, p=0, d=1):
    k_eff = k + (k - 1) * (d - 1)
    return (n + 2 * p - k_eff) // s + 1


def out_size_with_floor(n, k, s=1, p=0, d=1):  # math.floor of a true division: same integers
    return math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1


def out_size_numpy_int(n, k, s=1, p=0, d=1):  # a NumPy integer is an integer too
    return np.int64((n + 2 * p - d * (k - 1) - 1) // s + 1)


def out_size_forgot_plus_one(n, k, s=1, p=0, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s


def out_size_ignores_dilation(n, k, s=1, p=0, d=1):
    return (n + 2 * p - k) // s + 1


def out_size_dilation_times_k(n, k, s=1, p=0, d=1):
    return (n + 2 * p - d * k) // s + 1


def out_size_padding_one_side(n, k, s=1, p=0, d=1):
    return (n + p - d * (k - 1) - 1) // s + 1


def out_size_rounds_up(n, k, s=1, p=0, d=1):
    return math.ceil((n + 2 * p - d * (k - 1) - 1) / s) + 1


def out_size_true_division(n, k, s=1, p=0, d=1):
    return (n + 2 * p - d * (k - 1) - 1) / s + 1


def test_conv_out_size_accepts_correct_answers() -> None:
    accepted(c.check_conv_out_size, out_size_reference)
    accepted(c.check_conv_out_size, out_size_with_floor)
    accepted(c.check_conv_out_size, out_size_numpy_int)


def test_conv_out_size_rejects_mistakes() -> None:
    rejected(c.check_conv_out_size, out_size_forgot_plus_one, hint=r"forgot the \+ 1")
    rejected(c.check_conv_out_size, out_size_ignores_dilation, hint="ignored the dilation")
    rejected(c.check_conv_out_size, out_size_dilation_times_k, hint=r"k_eff = d \* k")
    rejected(c.check_conv_out_size, out_size_padding_one_side, hint="BOTH sides")
    rejected(c.check_conv_out_size, out_size_rounds_up, hint="rounded up")
    rejected(c.check_conv_out_size, out_size_true_division, hint="//", requirement="as an int")


def test_d_times_k_slip_is_not_called_a_missing_plus_one() -> None:
    """Issue 12: with s = 1 and d = 2 the d*k slip gives the same size as 'forgot + 1'."""
    result = c.check_conv_out_size(out_size_dilation_times_k, seed=0, raise_on_fail=False)
    assert "forgot the + 1" not in result.message


# ---------------------------------------------------------------- exercise 2: same_padding


def same_padding_reference(k, d=1):
    k_eff = k + (k - 1) * (d - 1)
    return k_eff // 2


def same_padding_factored(k, d=1):
    return d * (k // 2)  # k odd: d(k - 1)/2


def same_padding_ignores_dilation(k, d=1):
    return k // 2


def same_padding_total(k, d=1):
    return d * (k - 1)


def same_padding_d_times_k(k, d=1):
    return d * k // 2


def same_padding_rounded_up(k, d=1):
    return math.ceil((d * (k - 1) + 1) / 2)


def test_same_padding_accepts_correct_answers() -> None:
    accepted(c.check_same_padding, same_padding_reference)
    accepted(c.check_same_padding, same_padding_factored)


def test_same_padding_rejects_mistakes() -> None:
    rejected(c.check_same_padding, same_padding_ignores_dilation, hint="right only without dilation")
    rejected(c.check_same_padding, same_padding_total, hint="TOTAL padding")
    rejected(c.check_same_padding, same_padding_d_times_k, hint=r"d \* k")
    rejected(c.check_same_padding, same_padding_rounded_up, hint="rounded up")
    rejected(c.check_same_padding, c.same_padding_buggy, hint="still there", requirement="any dilation")
    rejected(c.check_same_padding, same_padding_true_division, hint="should be an int", requirement="an int")


def same_padding_true_division(k, d=1):
    return d * (k - 1) / 2


# ---------------------------------------------------------------- exercise 2, step 1: a counterexample

BUG_RULE = "does not keep the size"


def test_padding_counterexample_accepts_cases_that_show_the_bug() -> None:
    for case in [(3, 3), (5, 2), (7, 4), (1, 2), [3, 4], (np.int64(5), np.int64(3))]:
        accepted(c.check_padding_counterexample, case)


def test_padding_counterexample_rejects_cases_that_hide_it() -> None:
    rejected(c.check_padding_counterexample, (3, 2), hint="floor hides the bug", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, (5, 1), hint="cannot show with d = 1", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, (7, 1), hint="cannot show with d = 1", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, (4, 3), hint="odd kernel sizes", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, (3.0, 3), hint="should be an int", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, (3, 0), hint="dilation is a whole number", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, 3, hint="a pair", requirement=BUG_RULE)
    rejected(c.check_padding_counterexample, (3, 3, 1), hint="two numbers", requirement=BUG_RULE)


# ---------------------------------------------------------------- exercise 3: dilate_kernel


def dilate_reference(w, d):
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1)
    out[..., ::d, ::d] = w
    return out


def dilate_torch_zeros_float32(w, d):  # torch.zeros without dtype: float32, still right
    kh, kw = w.shape[-2:]
    out = torch.zeros(w.shape[0], w.shape[1], d * (kh - 1) + 1, d * (kw - 1) + 1)
    out[:, :, ::d, ::d] = w
    return out


def dilate_by_index_loops(w, d):
    kh, kw = w.shape[-2:]
    out = torch.zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1, dtype=w.dtype)
    for m in range(kh):
        for n in range(kw):
            out[..., m * d, n * d] = w[..., m, n]
    return out


def dilate_d_zeros_between(w, d):
    return dilate_reference(w, d + 1)


def dilate_zeros_after(w, d):
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * (kh - 1) + 1, d * (kw - 1) + 1)
    out[..., :kh, :kw] = w
    return out


def dilate_size_d_times_k(w, d):
    kh, kw = w.shape[-2:]
    out = w.new_zeros(*w.shape[:-2], d * kh, d * kw)
    out[..., ::d, ::d] = w
    return out


def dilate_square_kernels_only(w, d):
    k = w.shape[-1]
    out = w.new_zeros(*w.shape[:-2], d * (k - 1) + 1, d * (k - 1) + 1)
    out[..., ::d, ::d] = w
    return out


def test_dilate_kernel_accepts_correct_answers() -> None:
    accepted(c.check_dilate_kernel, dilate_reference)
    accepted(c.check_dilate_kernel, dilate_torch_zeros_float32)
    accepted(c.check_dilate_kernel, dilate_by_index_loops)


def test_dilate_kernel_rejects_mistakes() -> None:
    rejected(c.check_dilate_kernel, dilate_d_zeros_between, hint="d zeros between taps")
    rejected(c.check_dilate_kernel, dilate_zeros_after, hint="BETWEEN the taps")
    rejected(c.check_dilate_kernel, dilate_size_d_times_k, hint=r"d \* k wide")
    rejected(c.check_dilate_kernel, dilate_square_kernels_only, hint="one size for both kernel axes")
    rejected(c.check_dilate_kernel, dilate_zeros_after, hint="BETWEEN", requirement="taps d pixels apart")


# ---------------------------------------------------------------- exercise 4: strided_from_dense


def strided_reference(x, w, stride, padding):
    return F.conv2d(x, w, padding=padding)[..., ::stride, ::stride]


def strided_with_pool_of_one(x, w, stride, padding):  # a 1x1 max pool with stride s subsamples
    return F.max_pool2d(F.conv2d(F.pad(x, (padding,) * 4), w), kernel_size=1, stride=stride)


def strided_starts_at_one(x, w, stride, padding):
    return F.conv2d(x, w, padding=padding)[..., 1::stride, 1::stride]


def strided_rows_only(x, w, stride, padding):
    return F.conv2d(x, w, padding=padding)[..., ::stride, :]


def strided_without_padding(x, w, stride, padding):
    return F.conv2d(x, w)[..., ::stride, ::stride]


def strided_subsamples_input(x, w, stride, padding):
    return F.conv2d(F.pad(x, (padding,) * 4)[..., ::stride, ::stride], w)


def strided_passes_stride(x, w, stride, padding):
    return F.conv2d(x, w, stride=stride, padding=padding)


def test_strided_from_dense_accepts_correct_answers() -> None:
    accepted(c.check_strided_from_dense, strided_reference)
    accepted(c.check_strided_from_dense, strided_with_pool_of_one)


def test_strided_from_dense_rejects_mistakes() -> None:
    rejected(
        c.check_strided_from_dense, strided_starts_at_one, hint="index 1", requirement="stride-1 convolution"
    )
    rejected(c.check_strided_from_dense, strided_rows_only, hint="only the rows")
    rejected(c.check_strided_from_dense, strided_without_padding, hint="left out the padding")
    rejected(c.check_strided_from_dense, strided_subsamples_input, hint="INPUT before convolving")
    rejected(c.check_strided_from_dense, strided_passes_stride, hint="called with stride=")


# ---------------------------------------------------------------- exercise 5: size predictions

SIZES = [112, 56, 28, 28, 13]


def test_size_predictions_accept_correct_answers() -> None:
    accepted(c.check_size_predictions, SIZES)
    accepted(c.check_size_predictions, tuple(SIZES))


def test_size_predictions_reject_mistakes() -> None:
    rejected(c.check_size_predictions, [113, 56, 28, 28, 13], hint="round DOWN")
    rejected(c.check_size_predictions, [112, 57, 28, 28, 13], hint="round DOWN")
    rejected(c.check_size_predictions, [112, 56, 28, 28, 14], hint="round DOWN")
    rejected(c.check_size_predictions, [112, 56, 28, 30, 13], hint="span 5 pixels")
    rejected(c.check_size_predictions, [112, 56, 28, 26, 13], hint="BOTH sides")
    rejected(c.check_size_predictions, [112, 56, 28, 28, 12], hint="counts the first window")
    rejected(
        c.check_size_predictions, [112.0, 56, 28, 28, 13], hint="should be an int", requirement="ints?\\)"
    )
    rejected(c.check_size_predictions, [112, 56, 28, 13], hint="list of 5 whole numbers")
    rejected(c.check_size_predictions, 13, hint="list of 5 whole numbers")
    rejected(c.check_size_predictions, [112, 56, 28, 28, 27], hint="n_out = floor", requirement="side length")


# ---------------------------------------------------------------- issue 20: sizes read off a layer


def out_size_read_off_unfold(n, k, s, p, d):
    return F.unfold(torch.zeros(1, 1, 1, n), (1, k), dilation=(1, d), padding=(0, p), stride=(1, s)).shape[-1]


def out_size_read_off_conv3d(n, k, s, p, d):
    x = torch.zeros(1, 1, 1, 1, n)
    return F.conv3d(
        x, torch.zeros(1, 1, 1, 1, k), stride=(1, 1, s), padding=(0, 0, p), dilation=(1, 1, d)
    ).shape[-1]


def out_size_read_off_pool(n, k, s, p, d):
    return F.max_pool1d(torch.zeros(1, 1, n + 2 * p), d * (k - 1) + 1, s).shape[-1]


def test_conv_out_size_rejects_sizes_read_off_a_layer() -> None:
    rejected(c.check_conv_out_size, out_size_read_off_unfold, hint="compute the size with the formula")
    rejected(c.check_conv_out_size, out_size_read_off_conv3d, hint="compute the size with the formula")
    rejected(c.check_conv_out_size, out_size_read_off_pool, hint="compute the size with the formula")
