"""Checks for the section 14.12 exercises (squeeze-and-excitation, compound scaling, a prediction
of CutMix's label weight near the border, hardware-friendly channel widths).

Every check runs fixed edge cases first (a batch of one, non-square maps, ``1 x 1`` maps, a class
absent from the batch, a partner permutation that is not a reversal, bases other than
EfficientNet's, a non-integer ``phi``, ties at a rounding threshold), then a few random cases, so
a given answer gets the same verdict on every seed. A hint is printed only when the answer
equals a known mistake recomputed on the same inputs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from cnnbook.checks.core import (
    Context,
    Family,
    call,
    checker,
    expect_equal,
    expect_int,
    expect_number,
    expect_tensor,
    fail,
    forbidden,
    preserved_state,
)

READY_SE = Family(
    name="squeeze-and-excitation",
    does="is a ready-made squeeze-and-excitation block",
    task="write the squeeze, the excitation and the gating yourself",
    scope="every ready-made SE module (torchvision's and cnnbook's SqueezeExcitation)",
    python=(
        (r"torchvision\.ops(\.misc)?", r"^SqueezeExcitation$"),
        (r"cnnbook\.models\.mobile", r"^SqueezeExcitation$"),
    ),
)
READY_SCALING = Family(
    name="compound scaling",
    does="computes the multipliers for you",
    task="compute the multipliers yourself",
    scope="every compound-scaling function of cnnbook.scaling",
    python=((r"cnnbook\.scaling", r"^(compound_\w+|flops_factor)$"),),
)
READY_DIVISIBLE = Family(
    name="channel rounding",
    does="applies the rounding rule for you",
    task="write the rounding rule yourself",
    scope="every ready-made version of the rule (cnnbook's round_filters, torchvision's "
    "_make_divisible, timm's make_divisible)",
    python=(
        (r"cnnbook\.scaling", r"^round_filters$"),
        (r"torchvision\.models\._utils", r"^_make_divisible$"),
        (r"timm\.layers(\.[\w.]+)?", r"^make_divisible$"),
    ),
)


def _number(got: Any, what: str) -> float:
    """The student's returned value as a float, or a clear failure (never a raw traceback)."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if got is None:
        fail(f"{what} is None: did you forget to `return` the result?")
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        fail(f"{what} should be a number, got {type(got).__name__}.")
    return float(got)


# ------------------------------------------------------------------ exercise 1: squeeze-and-excitation


def _se(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    pool: str = "mean",
    act: str = "relu",
    gate: str = "sigmoid",
    apply: bool = True,
) -> torch.Tensor:
    s = {"mean": x.mean(dim=(2, 3)), "max": x.amax(dim=(2, 3)), "sum": x.sum(dim=(2, 3))}[pool]
    h = s @ w1.T + b1
    h = torch.relu(h) if act == "relu" else h
    z = h @ w2.T + b2
    g = {"sigmoid": torch.sigmoid(z), "softmax": torch.softmax(z, dim=1), "none": z}[gate]
    return x * g[:, :, None, None] if apply else g


def _compare_se(
    got: Any, args: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], what: str
) -> None:
    expect_tensor(
        got,
        _se(*args),
        what,
        wrong={
            "You squeezed with the maximum; SE squeezes each channel with its MEAN (global "
            "average pooling).": lambda: _se(*args, pool="max"),
            "You squeezed with the SUM over positions; SE uses the MEAN (global average "
            "pooling), which does not grow with the image size.": lambda: _se(*args, pool="sum"),
            "The ReLU between the two linear layers is missing.": lambda: _se(*args, act="none"),
            "The gate uses softmax across channels; SE uses an independent sigmoid per "
            "channel (channels do not compete).": lambda: _se(*args, gate="softmax"),
            "The sigmoid is missing: the gate must lie in (0, 1).": lambda: _se(*args, gate="none"),
            "You returned the gate alone; return the rescaled feature map x * gate "
            "(shape (N, C, H, W)).": lambda: _se(*args, apply=False),
        },
        shape_hint="Return the rescaled feature map x * gate, shape (N, C, H, W).",
    )


# (N, C, r, H, W): several images on a non-square map, a batch of one, a 1x1 map, ratio 3.
_SE_CASES = [(3, 8, 4, 2, 5), (1, 4, 2, 3, 4), (2, 6, 3, 5, 3), (2, 4, 4, 1, 1)]


@checker(
    "squeeze-and-excitation",
    requirement="y_c = sigmoid(W2 ReLU(W1 GAP(x) + b1) + b2)_c * x_c for every image and channel, written "
    "without a ready-made SE module",
)
def check_squeeze_excite(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, w1 (C/r, C), b1, w2 (C, C/r), b2)`` = x * sigmoid(fc2(relu(fc1(GAP(x)))))."""
    cases = list(_SE_CASES)
    for _ in range(2):
        cases.append(
            (
                ctx.randint(1, 3),
                ctx.choice([4, 8, 12]),
                ctx.choice([2, 4]),
                ctx.randint(1, 6),
                ctx.randint(1, 6),
            )
        )
    for n, c, r, h, w in cases:
        x = ctx.randn(n, c, h, w) + 0.5
        w1, b1 = ctx.randn(c // r, c), ctx.randn(c // r)
        w2, b2 = ctx.randn(c, c // r), ctx.randn(c)
        args = (x, w1, b1, w2, b2)
        what = f"squeeze_excite(x {tuple(x.shape)}, w1 {tuple(w1.shape)}, b1, w2 {tuple(w2.shape)}, b2)"
        with preserved_state(what=what), forbidden(READY_SE):
            got = call(fn, *(a.clone() for a in args), describe=what)
        _compare_se(got, args, what)
    return "your SE block recalibrates channels exactly as the reference."


# ------------------------------------------------------------------ exercise 2: compound scaling


@checker(
    "compound scaling",
    requirement="depth alpha^phi, width beta^phi, resolution gamma^phi, and FLOPs exactly depth x width^2 "
    "x resolution^2, for the bases given",
)
def check_compound_scale(ctx: Context, fn: Callable[..., tuple[float, float, float, float]]) -> str:
    """Check ``fn(phi, alpha, beta, gamma)`` -> (depth, width, resolution, flops) multipliers."""
    cases: list[tuple[float, float, float, float]] = [
        (2, 1.2, 1.1, 1.15),
        (3, 1.3, 1.05, 1.2),
        (1.5, 1.2, 1.1, 1.15),
        (1, 1.2, 1.1, 1.15),
        (0, 1.4, 1.2, 1.1),
    ]
    cases += [
        (
            ctx.randint(0, 7),
            1 + ctx.randint(0, 30) / 100,
            1 + ctx.randint(0, 30) / 100,
            1 + ctx.randint(0, 30) / 100,
        )
        for _ in range(3)
    ]
    for phi, a, b, g in cases:
        what = f"compound_scale(phi={phi}, alpha={a}, beta={b}, gamma={g})"
        with forbidden(READY_SCALING):
            got = call(fn, phi, a, b, g, describe=what)
        if not isinstance(got, (tuple, list)) or len(got) != 4:
            fail(f"{what} should return a tuple (depth, width, resolution, flops), got {got!r}.")
        values = tuple(_number(v, f"{what}[{i}]") for i, v in enumerate(got))
        d, w, r = a**phi, b**phi, g**phi
        expect_equal(
            values[:3],
            (d, w, r),
            f"{what}[:3]",
            rel=1e-6,
            wrong={
                "You multiplied by phi; the multipliers are POWERS: alpha ** phi.": (
                    a * phi,
                    b * phi,
                    g * phi,
                ),
                "You used EfficientNet's 1.2, 1.1, 1.15 instead of the alpha, beta, gamma passed in.": (
                    1.2**phi,
                    1.1**phi,
                    1.15**phi,
                ),
            },
            hint="depth = alpha**phi, width = beta**phi, resolution = gamma**phi.",
        )
        expect_equal(
            values[3],
            d * w**2 * r**2,
            f"{what}[3] (FLOPs factor)",
            rel=1e-6,
            wrong={
                "Width and resolution count TWICE: FLOPs grow with width^2 (both input and output "
                "channels) and resolution^2 (height and width).": d * w * r,
                "Depth counts once (linear): FLOPs = d * w^2 * r^2.": d**2 * w**2 * r**2,
                "2 ** phi is only the design target (alpha * beta^2 * gamma^2 is about 2 for "
                "EfficientNet's bases); compute d * w^2 * r^2 from the multipliers.": 2.0**phi,
            },
            hint="A conv's cost is proportional to depth x channels^2 x pixels: d * w^2 * r^2.",
        )
    return "right: with alpha=1.2, beta=1.1, gamma=1.15 each step of phi costs about 1.92x."


# ------------------------------------------------------------------ exercise 3: CutMix near the border

CUTMIX_CASE = (0.5, 32, 32, (2, 3))  # lambda drawn, H, W, centre (row, col)


@checker(
    "prediction: CutMix's label weight near the border",
    requirement="lambda' = 1 - (area of the box clipped to the image) / (H W), to two decimals",
)
def check_cutmix_prediction(ctx: Context, predicted: Any) -> str:
    """Compare ``PREDICTED_WEIGHT`` with the label weight CutMix really uses (to 0.01)."""
    value = expect_number(predicted, "PREDICTED_WEIGHT")
    lam, h, w, (cy, cx) = CUTMIX_CASE
    half_h, half_w = int(0.5 * math.sqrt(1 - lam) * h), int(0.5 * math.sqrt(1 - lam) * w)
    rows = min(cy + half_h, h) - max(cy - half_h, 0)
    cols = min(cx + half_w, w) - max(cx - half_w, 0)
    truth = 1 - rows * cols / (h * w)
    if abs(value - truth) <= 0.01:
        return f"the box is clipped to {rows} x {cols} pixels, so the original keeps {truth:.3f}."
    mistakes = {
        lam: "that is the lambda that was DRAWN; the box is clipped at the image border, and the "
        "label weight is recomputed from the pixels actually kept.",
        1 - truth: "that is the PARTNER's weight (the pasted share); the original image keeps the rest.",
        1 - (2 * half_h) * (2 * half_w) / (h * w): "that is the weight of an UNCLIPPED box; centred at "
        "(row 2, column 3) most of the box falls outside the image.",
    }
    for v, hint in mistakes.items():
        if abs(value - v) <= 0.01:
            fail(f"you predicted {value:.3f}, the label weight used is {truth:.3f}: {hint}")
    fail(
        f"you predicted {value:.3f}, the label weight used is {truth:.3f}. Count the clipped box: "
        f"half-sides int(0.5 * sqrt(1 - lambda) * 32) = {half_w}, rows max(2 - {half_h}, 0) .. "
        f"min(2 + {half_h}, 32), columns likewise around 3."
    )
    return ""


# ------------------------------------------------------------------ exercise 4: channel widths


def _round_filters(
    channels: int,
    width_mult: float,
    divisor: int = 8,
    *,
    how: str = "half_up",
    guard: str = "exact",
    floor: int | None = None,
) -> int:
    exact = channels * width_mult
    lowest = divisor if floor is None else floor
    if how == "half_up":
        rounded = max(lowest, int(exact + divisor / 2) // divisor * divisor)
    elif how == "round":  # Python's round(): halves go to the even multiple
        rounded = max(lowest, round(exact / divisor) * divisor)
    elif how == "floor":
        rounded = max(lowest, int(exact) // divisor * divisor)
    else:  # ceil
        rounded = max(lowest, math.ceil(exact / divisor) * divisor)
    limit = {"exact": exact, "base": channels, "none": 0.0}[guard]
    if rounded < 0.9 * limit:
        rounded += divisor
    return int(rounded)


# (channels, width_mult, divisor): a tie that Python's round() sends to the even multiple (52 ->
# 48), the 10% guard (11.9 -> 8 -> 16), a value that floors and ceils differently, the guard with
# the base count, divisor 16, an exact multiple, tiny widths.
_WIDTH_CASES = [
    (26, 2.0, 8),
    (17, 0.7, 8),
    (60, 1.0, 8),
    (41, 1.0, 8),
    (8, 1.49, 8),
    (40, 1.0, 16),
    (112, 1.4, 8),
    (16, 0.25, 8),
    (320, 1.2, 8),
    (16, 0.25, 16),  # max(divisor, ...): 16 here, where max(8, ...) gives 8
    (4, 0.25, 4),  # ... and 4 here, where max(8, ...) gives 8
]


@checker(
    "hardware-friendly channel widths",
    requirement="an int: nearest multiple of divisor (halves up), at least divisor, plus one divisor if "
    "below 0.9 e",
)
def check_round_filters(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(channels, width_mult, divisor)`` against EfficientNet's rounding rule."""
    cases = list(_WIDTH_CASES)
    for _ in range(3):
        cases.append((ctx.randint(3, 400), 0.25 + ctx.randint(0, 175) / 100, ctx.choice([4, 8, 16])))
    got_all: list[int] = []
    with forbidden(READY_DIVISIBLE):
        for channels, mult, divisor in cases:
            what = f"round_filters({channels}, {mult}, divisor={divisor})"
            got = call(fn, channels, mult, divisor, describe=what)
            got_all.append(expect_int(got, f"{what} (a number of channels)"))
    expected = [_round_filters(*case) for case in cases]
    if got_all == expected:
        return "your widths follow EfficientNet's rule: nearest multiple, halves up, never 10% short."
    # A mistake is named only if it reproduces every answer, so its hint cannot be a coincidence.
    mistakes: dict[str, list[int]] = {
        "Python's round() sends halves to the EVEN multiple (round(6.5) == 6); the rule "
        "rounds halves UP: int(exact + divisor / 2) // divisor * divisor.": [
            _round_filters(*case, how="round") for case in cases
        ],
        "You rounded DOWN (int() or //); round to the NEAREST multiple.": [
            _round_filters(*case, how="floor") for case in cases
        ],
        "You rounded UP (ceil); round to the NEAREST multiple.": [
            _round_filters(*case, how="ceil") for case in cases
        ],
        "The 10% rule compares with the SCALED width channels * width_mult, not the base channel count.": [
            _round_filters(*case, guard="base") for case in cases
        ],
        "The 10% rule is missing: when rounding lands more than 10% below channels * "
        "width_mult, add one divisor.": [_round_filters(*case, guard="none") for case in cases],
        "You ignored the divisor argument and rounded to multiples of 8.": [
            _round_filters(c, m, 8) for c, m, _ in cases
        ],
        "The floor is the divisor itself, max(divisor, ...), not max(8, ...): with divisor 16 "
        "a width of 8 is not a multiple of 16, and with divisor 4 the floor is 4.": [
            _round_filters(*case, floor=8) for case in cases
        ],
    }
    i = next(j for j, (a, b) in enumerate(zip(got_all, expected, strict=True)) if a != b)
    channels, mult, divisor = cases[i]
    what = f"round_filters({channels}, {mult}, divisor={divisor})"
    for hint, values in mistakes.items():
        if values == got_all:
            fail(f"{what}: expected {expected[i]}, got {got_all[i]}. {hint}")
    fail(
        f"{what}: expected {expected[i]}, got {got_all[i]}. exact = {channels * mult:.4g}: round "
        f"to the nearest multiple of {divisor} (halves up), at least {divisor}, plus one "
        f"{divisor} if that is more than 10% below exact."
    )
    return ""
