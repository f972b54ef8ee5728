"""Wrong-answer corpus for the 14.4 exercises (pooling layers)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected

from cnnbook.checks import pooling as c

# ---------------------------------------------------------------- exercise 1: max_pool2d


def pool_reference(x, kernel_size, stride=None, padding=0):
    stride = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    windows = xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)
    return windows.amax(dim=(-2, -1))


def pool_with_loops(x, kernel_size, stride=None, padding=0):
    s = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    h_out = (xp.shape[2] - kernel_size) // s + 1
    w_out = (xp.shape[3] - kernel_size) // s + 1
    out = x.new_empty(x.shape[0], x.shape[1], h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            out[:, :, i, j] = xp[:, :, i * s : i * s + kernel_size, j * s : j * s + kernel_size].amax(
                (-2, -1)
            )
    return out


def pool_zero_padding(x, kernel_size, stride=None, padding=0):
    return pool_reference(F.pad(x, (padding,) * 4), kernel_size, stride)


def pool_averages(x, kernel_size, stride=None, padding=0):
    stride = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("nan"))
    return xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride).nanmean(dim=(-2, -1))


def pool_default_stride_one(x, kernel_size, stride=None, padding=0):
    return pool_reference(x, kernel_size, 1 if stride is None else stride, padding)


def pool_keeps_partial_window(x, kernel_size, stride=None, padding=0):
    s = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    h_out = -(-(xp.shape[2] - kernel_size) // s) + 1  # ceil
    w_out = -(-(xp.shape[3] - kernel_size) // s) + 1
    out = x.new_empty(x.shape[0], x.shape[1], h_out, w_out)
    for i in range(h_out):
        for j in range(w_out):
            out[:, :, i, j] = xp[:, :, i * s : i * s + kernel_size, j * s : j * s + kernel_size].amax(
                (-2, -1)
            )
    return out


def pool_pads_one_side(x, kernel_size, stride=None, padding=0):
    return pool_reference(F.pad(x, (0, padding, 0, padding), value=float("-inf")), kernel_size, stride)


def pool_first_image_only(x, kernel_size, stride=None, padding=0):
    return pool_reference(x[:1], kernel_size, stride, padding)


def pool_calls_max_pool2d(x, kernel_size, stride=None, padding=0):
    return F.max_pool2d(x, kernel_size, stride, padding)


def test_max_pool2d_accepts_correct_answers() -> None:
    accepted(c.check_max_pool2d, pool_reference)
    accepted(c.check_max_pool2d, pool_with_loops)


def test_max_pool2d_rejects_mistakes() -> None:
    rejected(c.check_max_pool2d, pool_zero_padding, hint="padded with zeros")
    rejected(c.check_max_pool2d, pool_averages, hint="averaged")
    rejected(c.check_max_pool2d, pool_default_stride_one, hint="defaults to the kernel size")
    rejected(c.check_max_pool2d, pool_keeps_partial_window, hint="partial window")
    rejected(c.check_max_pool2d, pool_pads_one_side, hint="only one side")
    rejected(c.check_max_pool2d, pool_first_image_only, hint="batch of one")
    rejected(c.check_max_pool2d, pool_calls_max_pool2d, hint="pools for you")
    rejected(
        c.check_max_pool2d, pool_zero_padding, hint="padded with zeros", requirement="never wins the maximum"
    )
    rejected(c.check_max_pool2d, pool_averages, hint="averaged", requirement="the maximum of each window")


# ---------------------------------------------------------------- exercise 2: head predictions

HEADS = (25_089_000, 513_000, 51_201_000, 513_000)


def heads_with(index, value):
    answers = list(HEADS)
    answers[index] = value
    return answers


def test_head_predictions_accept_correct_answers() -> None:
    accepted(c.check_head_predictions, *HEADS)
    accepted(c.check_head_predictions, 512 * 49 * 1000 + 1000, 512_000 + 1000, 51_200_000 + 1000, 513_000)


def test_head_predictions_reject_mistakes() -> None:
    rejected(c.check_head_predictions, *heads_with(0, 25_088_000), hint="forgot the bias")
    rejected(c.check_head_predictions, *heads_with(1, 25_089_000), hint="ONE number")
    rejected(c.check_head_predictions, *heads_with(0, 513_000), hint="keeps every position")
    rejected(c.check_head_predictions, *heads_with(2, 25_089_000), hint="10 x 10")
    rejected(c.check_head_predictions, *heads_with(3, 51_201_000), hint="ONE number")
    rejected(c.check_head_predictions, *heads_with(3, 512_000), hint="forgot the bias")
    rejected(
        c.check_head_predictions, *heads_with(2, 51_201_000.0), hint="should be an int", requirement="ints"
    )
    rejected(
        c.check_head_predictions,
        *heads_with(2, 46_593_000),
        hint="features x classes \\+ classes",
        requirement="Linear head with bias",
    )
    rejected(
        c.check_head_predictions,
        *heads_with(1, np.float64(513_000)),
        hint="should be an int",
        requirement="ints",
    )


# ---------------------------------------------------------------- exercise 3: unchanged moves

RIGHT = {"no pooling": 0, "max pool 2x2": 8, "max pool 2x2, twice": 12, "avg pool 2x2": 8}


def test_unchanged_prediction_accepts_correct_answers() -> None:
    accepted(c.check_unchanged_prediction, RIGHT)
    accepted(c.check_unchanged_prediction, dict(reversed(list(RIGHT.items()))))  # any key order


def test_unchanged_prediction_rejects_mistakes() -> None:
    rejected(c.check_unchanged_prediction, {**RIGHT, "no pooling": 15}, hint="equivariant, not invariant")
    rejected(c.check_unchanged_prediction, {**RIGHT, "max pool 2x2": 7}, hint="window's last column")
    rejected(c.check_unchanged_prediction, {**RIGHT, "max pool 2x2, twice": 8}, hint="one 4x4 window")
    rejected(c.check_unchanged_prediction, {**RIGHT, "max pool 2x2, twice": 11}, hint="window's last column")
    rejected(c.check_unchanged_prediction, {**RIGHT, "avg pool 2x2": 0}, hint="as often as max pooling")
    rejected(
        c.check_unchanged_prediction,
        {**RIGHT, "max pool 2x2": 8.0},
        hint="should be an int",
        requirement="ints",
    )
    rejected(c.check_unchanged_prediction, {**RIGHT, "max pool 2x2": 0.53}, hint="should be an int")
    rejected(
        c.check_unchanged_prediction,
        {**RIGHT, "max pool 2x2": torch.tensor(8)},
        hint="Python int",
        requirement="leave its output exactly unchanged",
    )
    rejected(
        c.check_unchanged_prediction,
        {**RIGHT, "max pool 2x2, twice": 11},
        hint="last column",
        requirement="how many of the 15 one-pixel moves",
    )
    rejected(c.check_unchanged_prediction, {"max pool 2x2": 8}, hint="exactly the keys")
    rejected(c.check_unchanged_prediction, [0, 8, 12, 8], hint="must be a dict")


# ---------------------------------------------------------------- issue 20: the pooling family


def pool_by_two_max_pool1d_passes(x, kernel_size, stride=None, padding=0):
    k, s, p = kernel_size, stride or kernel_size, padding
    n, ch, h, w = x.shape
    rows = F.max_pool1d(x.reshape(n * ch * h, 1, w), k, s, p).reshape(n, ch, h, -1)
    cols = F.max_pool1d(rows.transpose(2, 3).reshape(-1, 1, h), k, s, p)
    return cols.reshape(n, ch, rows.shape[3], -1).transpose(2, 3)


def pool_by_max_pool3d(x, kernel_size, stride=None, padding=0):
    s = stride or kernel_size
    return F.max_pool3d(x[:, :, None], (1, kernel_size, kernel_size), (1, s, s), (0, padding, padding))[
        :, :, 0
    ]


def pool_by_adaptive_pool(x, kernel_size, stride=None, padding=0):
    return F.adaptive_max_pool2d(x, (x.shape[2] // kernel_size, x.shape[3] // kernel_size))


def test_max_pool2d_rejects_the_whole_pooling_family() -> None:
    rejected(c.check_max_pool2d, pool_by_two_max_pool1d_passes, hint="pools for you")
    rejected(c.check_max_pool2d, pool_by_max_pool3d, hint="pools for you")
    rejected(c.check_max_pool2d, pool_by_adaptive_pool, hint="pools for you")
