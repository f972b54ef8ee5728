"""Checks for the section 14.4 exercises (pooling layers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    BATCH_HINT,
    FAMILY_POOL,
    NONSQUARE_HINT,
    Case,
    Context,
    checker,
    deeper_hint,
    expect_equal,
    expect_int,
    expect_tensor,
    fail,
    judge,
)
from cnnbook.modules import count_parameters


def _pool_compare(got: Any, want: torch.Tensor, label: str) -> torch.Tensor:
    return expect_tensor(
        got,
        want,
        label,
        shape_hint=(
            "The output size follows the conv formula floor((n + 2p - k) / s) + 1, with s = k when "
            "stride is None."
        ),
    )


def _partial_windows(x: torch.Tensor, k: int, s: int | None = None, p: int = 0) -> torch.Tensor:
    """Max pooling that keeps a last window sticking out of the (padded) input (rounds up)."""
    s = k if s is None else s
    xp = F.pad(x, (p,) * 4, value=float("-inf"))
    extra = [(-(-(n - k) // s)) * s + k - n for n in xp.shape[-2:]]
    xp = F.pad(xp, (0, extra[1], 0, extra[0]), value=float("-inf"))
    return xp.unfold(2, k, s).unfold(3, k, s).amax(dim=(-2, -1))


# (N, C, H, W, k, stride, padding, negative): sizes not divisible by the window, non-square
# maps, batch and channels > 1, overlapping windows, padding on all-negative maps (where a zero
# pad would win), the default stride
_MAX_POOL_FIXED = [
    (1, 1, 4, 4, 2, None, 0, False),
    (1, 2, 5, 5, 2, None, 0, False),
    (1, 1, 7, 7, 3, 2, 1, True),
    (2, 3, 5, 7, 2, None, 0, False),
    (1, 2, 7, 6, 3, 2, 1, True),
    (2, 1, 6, 9, 2, 1, 0, False),
    (1, 3, 8, 5, 3, None, 1, True),
    (3, 2, 7, 8, 3, 3, 0, False),
    (1, 1, 9, 9, 3, 2, 0, True),
    (2, 2, 5, 6, 2, 2, 1, True),
]


@checker(
    "max pooling",
    requirement="max_pool2d(x, kernel_size, stride=None, padding=0): the maximum of each window, "
    "stride = kernel_size when None, padding that never wins the maximum, a last window that does "
    "not fit dropped, and no pooling function of PyTorch or cnnbook",
)
def check_max_pool2d(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), kernel_size, stride=None, padding=0)`` against F.max_pool2d."""
    shapes = list(_MAX_POOL_FIXED)
    for _ in range(3):
        k = ctx.randint(2, 3)
        shapes.append(
            (
                ctx.randint(1, 2),
                ctx.randint(1, 3),
                ctx.randint(k + 2, 11),
                ctx.randint(k + 2, 11),
                k,
                ctx.choice([None, 1, 2]),
                ctx.randint(0, 1),
                ctx.randint(0, 1) == 1,
            )
        )
    cases = []
    for n, c, h, w, k, s, p, negative in shapes:
        x = ctx.randn(n, c, h, w)
        if negative:  # all-negative maps reveal zero padding
            x = -x.abs() - 0.1
        tags = set() if h == w else {"nonsquare"}
        if n > 1:
            tags.add("batch")
        label = (
            f"max_pool2d(x {(n, c, h, w)}, kernel_size={k}"
            f"{'' if s is None else f', stride={s}'}{f', padding={p}' if p else ''})"
        )
        cases.append(Case((x, k) if s is None and not p else (x, k, s, p), label, frozenset(tags)))

    def ref(x: torch.Tensor, k: int, s: int | None = None, p: int = 0) -> torch.Tensor:
        return F.max_pool2d(x, k, k if s is None else s, p)

    judge(
        fn,
        cases,
        reference=ref,
        compare=_pool_compare,
        forbidden=FAMILY_POOL,
        why="take the maximum of each window yourself",
        mistakes=[
            (
                "you padded with zeros; a zero on the border can beat negative values. Pad with -inf so "
                "the padding never wins the max.",
                lambda x, k, s=None, p=0: F.max_pool2d(F.pad(x, (p,) * 4), k, k if s is None else s),
                "F.pad takes value=float('-inf').",
            ),
            (
                "you averaged; max pooling keeps the LARGEST value of each window.",
                lambda x, k, s=None, p=0: F.avg_pool2d(
                    x, k, k if s is None else s, p, count_include_pad=False
                ),
                "take .amax over the window's two axes, not .mean.",
            ),
            (
                "with stride=None the stride defaults to the kernel size (non-overlapping windows), not 1.",
                lambda x, k, s=None, p=0: F.max_pool2d(x, k, 1 if s is None else s, p),
                "write s = kernel_size if stride is None else stride before anything else.",
            ),
            (
                "you kept a last, partial window; PyTorch drops windows that do not fit (floor), "
                "like a convolution.",
                _partial_windows,
                "compute the output size with floor((n + 2p - k) / s) + 1 and take only that many windows.",
            ),
            (
                "you padded only one side (right/bottom); padding p adds p pixels on EACH side.",
                lambda x, k, s=None, p=0: F.max_pool2d(
                    F.pad(x, (0, p, 0, p), value=float("-inf")), k, k if s is None else s
                ),
                "F.pad(x, (p, p, p, p), ...) pads left, right, top and bottom.",
            ),
        ],
        patterns=[("batch", BATCH_HINT), ("nonsquare", NONSQUARE_HINT)],
        hint="print your output next to F.max_pool2d(x, k, stride, padding) for the case above.",
        hint2="pad with F.pad(x, (p,) * 4, value=float('-inf')), then x.unfold(2, k, s).unfold(3, k, "
        "s) gives every window; take .amax over its last two axes.",
    )
    return (
        "your max pooling matches F.max_pool2d on "
        f"{len(cases)} cases, including the "
        "default stride, -inf padding and sizes not divisible by the window."
    )


# the question of exercise 2: VGG-16's classifier head at two image sizes
HEAD_CHANNELS, HEAD_CLASSES = 512, 1000


def _head_params(features: int) -> int:
    return count_parameters(nn.Linear(features, HEAD_CLASSES, device="meta"))


@checker(
    "classifier head predictions",
    requirement="flatten_224, gap_224, flatten_320, gap_320: the parameters (ints) of a Linear "
    "head with bias to 1,000 classes, after flattening the 512-channel map or after global "
    "average pooling",
)
def check_head_predictions(
    ctx: Context, flatten_224: Any, gap_224: Any, flatten_320: Any, gap_320: Any
) -> str:
    """Check predicted head parameter counts (flatten vs GAP) for 224 and 320 pixel inputs."""
    answers = {"flatten_224": flatten_224, "gap_224": gap_224, "flatten_320": flatten_320, "gap_320": gap_320}
    for name, value in answers.items():
        answers[name] = expect_int(value, name)
    c, n = HEAD_CHANNELS, HEAD_CLASSES
    truth = {
        "flatten_224": _head_params(c * 7 * 7),
        "gap_224": _head_params(c),
        "flatten_320": _head_params(c * 10 * 10),
        "gap_320": _head_params(c),
    }
    for name, want in truth.items():
        side = 7 if name.endswith("224") else 10
        flat = name.startswith("flatten")
        with deeper_hint(
            f"a {side}x{side} map of 512 channels gives 512 * {side} * {side} features when "
            "flattened, 512 after GAP; a Linear layer has features * 1000 weights + 1000 biases."
        ):
            _expect_head(answers[name], want, name, side, flat, truth, c, n)
    return (
        f"flatten heads {truth['flatten_224']:,} -> {truth['flatten_320']:,} parameters, GAP heads "
        f"{truth['gap_224']:,} at both sizes: GAP decouples the head from the image size."
    )


def _expect_head(got: int, want: int, name: str, side: int, flat: bool, truth: dict, c: int, n: int) -> None:
    expect_equal(
        got,
        want,
        name,
        wrong={
            "you forgot the bias: the Linear layer has one per class.": want - n,
            "with global average pooling each channel becomes ONE number: the head sees 512 "
            "features, whatever the map size.": (c * side * side * n + n) if not flat else -1,
            "flattening keeps every position: 512 x H x W features, not 512.": (c * n + n) if flat else -1,
            "VGG-16 halves the side five times (224 / 32 = 7, 320 / 32 = 10): the map at 320 "
            "pixels is 10 x 10, so the flattened head grows; the GAP head does not.": (
                truth["flatten_224"] if name == "flatten_320" else -1
            ),
        },
        hint="Count features x classes + classes, with features = 512 x H x W (flatten) or 512 "
        "(GAP), and H = W = side / 32.",
    )


# the pipelines of exercise 3, in the order the student predicts them
MOVE_PIPELINES = ("no pooling", "max pool 2x2", "max pool 2x2, twice", "avg pool 2x2")
MOVE_SIZE = 16  # side of the map; a row has MOVE_SIZE - 1 one-pixel moves to the right


def _move_pipelines() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {
        "no pooling": lambda t: t,
        "max pool 2x2": lambda t: F.max_pool2d(t, 2),
        "max pool 2x2, twice": lambda t: F.max_pool2d(F.max_pool2d(t, 2), 2),
        "avg pool 2x2": lambda t: F.avg_pool2d(t, 2),
    }


def unchanged_moves(op: Callable[[torch.Tensor], torch.Tensor], row: int = 5) -> int:
    """How many of the one-pixel moves to the right along ``row`` leave ``op``'s output unchanged."""
    same = 0
    for col in range(MOVE_SIZE - 1):
        a, b = torch.zeros(1, 1, MOVE_SIZE, MOVE_SIZE), torch.zeros(1, 1, MOVE_SIZE, MOVE_SIZE)
        a[0, 0, row, col], b[0, 0, row, col + 1] = 1.0, 1.0
        same += bool(torch.equal(op(a), op(b)))
    return same


@checker(
    "unchanged moves prediction",
    requirement="unchanged: for each pipeline, how many of the 15 one-pixel moves to the right "
    "leave its output exactly unchanged (ints)",
)
def check_unchanged_prediction(ctx: Context, predicted: Any) -> str:
    """Check predicted counts of one-pixel moves that leave each pipeline's output unchanged."""
    if not isinstance(predicted, dict) or set(predicted) != set(MOVE_PIPELINES):
        fail(f"unchanged must be a dict with exactly the keys {list(MOVE_PIPELINES)}, got {predicted!r}.")
    moves = MOVE_SIZE - 1
    row = ctx.randint(0, MOVE_SIZE - 1)  # every row gives the same counts
    for name, op in _move_pipelines().items():
        got = expect_int(predicted[name], f"unchanged[{name!r}]")
        truth = unchanged_moves(op, row)
        window = {"max pool 2x2": 2, "max pool 2x2, twice": 4, "avg pool 2x2": 2}.get(name, 1)
        with deeper_hint(
            f"draw a row of 16 cells and mark the {window}-wide windows: a move from column c to "
            f"c + 1 keeps the output only if both columns fall in the same window (and, for the "
            f"average, the window's mean is the same)."
        ):
            _expect_moves(got, truth, name, moves, window)
    return (
        "counts predicted: 0 without pooling, 8 of 15 with one 2x2 pool (average or max), 12 of 15 "
        "with two; pooling buys invariance only within its windows."
    )


def _expect_moves(got: int, truth: int, name: str, moves: int, window: int) -> None:
    expect_equal(
        got,
        truth,
        f"unchanged[{name!r}] (of the {moves} moves along a row)",
        wrong={
            "without pooling every move changes the output: a convolution (or nothing) is "
            "equivariant, not invariant.": moves if name == "no pooling" else -1,
            f"a move stays inside one {window}-wide window when the 1 does not sit in the "
            f"window's last column: count the starting columns 0..{moves - 1} with "
            f"col % {window} != {window - 1}.": moves - moves // window - 1,
            "average pooling moves with the 1 exactly as often as max pooling: both give one "
            "number per 2x2 window, and a move inside a window keeps that number.": 0
            if name == "avg pool 2x2"
            else -1,
            "two 2x2 max pools act like one 4x4 window here, not like one 2x2 pool.": 8
            if name == "max pool 2x2, twice"
            else -1,
        },
        hint=f"Count the moves (1 at column c -> c + 1) of the {moves} after which the pooled "
        "map is exactly the same.",
    )
