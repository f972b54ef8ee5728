"""Checks for the section 14.3 exercises (feature maps and receptive fields)."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cnnbook import geometry
from cnnbook.checks.core import (
    Case,
    Context,
    call,
    checker,
    expect_equal,
    fail,
    forbid,
    judge,
    preserved_state,
)

_OURS = "that is cnnbook's own answer; write yours."
RF_LIBRARY = {
    "cnnbook.geometry.receptive_field": _OURS,
    "cnnbook.geometry.module_receptive_field": _OURS,
    "cnnbook.geometry.receptive_field_by_gradient": _OURS,
    "cnnbook.widgets.rf_levels": _OURS,
    "cnnbook.widgets.rf_report": _OURS,
}


def _ints(got: Any, n: int, what: str) -> list[int]:
    if isinstance(got, numbers.Integral):
        fail(
            f"{what} returned one int ({got}); return a list with the receptive field after "
            f"EACH of the {n} layers."
        )
    if got is None:
        fail(f"{what} returned None: did you forget to `return` the list?")
    try:
        values = [int(v) for v in got]
    except (TypeError, ValueError):
        fail(f"{what} should return a list of ints, got {type(got).__name__}.")
    if len(values) != n:
        fail(f"{what} returned {len(values)} values for {n} layers; return one per layer.")
    return values


def _rf_variant(
    layers: Sequence[tuple[int, int]],
    *,
    own_stride: bool = False,
    use_stride: bool = True,
    start: int = 1,
    precedence: bool = False,
) -> list[int]:
    """The recurrence, or one of its usual slips."""
    rf, jump, out = start, 1, []
    for k, s in layers:
        if own_stride:
            jump *= s if use_stride else 1
        rf += (k - 1 * jump) if precedence else (k - 1) * jump
        if not own_stride:
            jump *= s if use_stride else 1
        out.append(rf)
    return out


# stacks of (k, s): the chapter's three 3x3 layers, AlexNet-like and ResNet-stem-like stacks,
# a single layer, 1x1 layers, a stride-3 layer, strides before and after big kernels
_RF_FIXED = [
    [(3, 1)] * 3,
    [(11, 4), (3, 2), (5, 1), (3, 2)],
    [(7, 2), (3, 2), (3, 1), (3, 1)],
    [(5, 1)],
    [(1, 2), (3, 1), (1, 1)],
    [(2, 3), (4, 2), (3, 1)],
    [(3, 2), (3, 2), (3, 2)],
    [(1, 1), (1, 2)],
]


@checker("receptive field recurrence")
def check_receptive_field(ctx: Context, fn: Callable[..., list[int]]) -> str:
    """Check ``fn([(k, s), ...])`` -> receptive field after each layer."""
    stacks = [list(stack) for stack in _RF_FIXED]
    for _ in range(6):
        stacks.append([(ctx.randint(1, 7), ctx.randint(1, 3)) for _ in range(ctx.randint(2, 6))])
    cases = [Case((stack,), f"receptive_field({stack})") for stack in stacks]

    def reference(layers: list[tuple[int, int]]) -> list[int]:
        return [r.rf for r in geometry.receptive_field([geometry.LayerSpec(k, s) for k, s in layers])]

    def compare(got: Any, want: list[int], label: str) -> list[int]:
        return expect_equal(
            _ints(got, len(want), label),
            want,
            label,
            hint="Use r_l = r_{l-1} + (k_l - 1) * (product of the EARLIER strides), r_0 = 1.",
        )

    judge(
        fn,
        cases,
        reference=reference,
        compare=compare,
        forbidden=RF_LIBRARY,
        mistakes=[
            (
                "you multiplied by the strides up to and INCLUDING the current layer; the growth "
                "(k_l - 1) is scaled by the product of the strides of the layers BEFORE it.",
                lambda layers: _rf_variant(layers, own_stride=True),
            ),
            (
                "you ignored the strides: after a stride-s layer, one step on the feature map is s "
                "input pixels, so later kernels grow the field s times faster.",
                lambda layers: _rf_variant(layers, use_stride=False),
            ),
            (
                "you added up the kernel sizes; the field grows by (k - 1) per layer (times the jump), "
                "starting from r_0 = 1.",
                lambda layers: [sum(k for k, _ in layers[: i + 1]) for i in range(len(layers))],
            ),
            (
                "you started from r_0 = 0; before any layer a unit sees one pixel (r_0 = 1).",
                lambda layers: _rf_variant(layers, start=0),
            ),
            (
                "operator precedence: `k - 1 * jump` is k - jump; write (k - 1) * jump.",
                lambda layers: _rf_variant(layers, precedence=True),
            ),
        ],
    )
    return f"receptive fields correct layer by layer on {len(stacks)} stacks (AlexNet-like included)."


@checker("stack of 3x3 convs vs one big kernel")
def check_stack_vs_single(ctx: Context, fn: Callable[..., tuple[int, int, int]]) -> str:
    """Check ``fn(c, n)`` -> (params of n stacked 3x3 convs, params of one kernel, its size)."""
    pairs = [(64, 2), (64, 3), (1, 1), (3, 4), (17, 1), (2, 5)]
    pairs += [(ctx.randint(1, 64), ctx.randint(1, 5)) for _ in range(4)]
    what = [f"stack_vs_single(c={c}, n={n})" for c, n in pairs]
    answers = []
    with forbid(fn, {"torch.nn.Conv2d": "count from the kernel shape, without building layers."}):
        for (c, n), label in zip(pairs, what, strict=True):
            got = call(fn, c, n, describe=label)
            if (
                isinstance(got, (list, tuple))
                and len(got) == 3
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in got)
            ):
                answers.append(tuple(int(v) for v in got))
            else:
                fail(
                    f"{label} should return a tuple of three ints (stack_params, single_params, "
                    f"k), got {got!r}."
                )
    # judge each part on every case; a hint only when that part matches a mistake everywhere
    parts = [
        (
            2,
            "the single kernel size",
            lambda c, n: 2 * n + 1,
            "Each stride-1 3x3 layer grows the receptive field by 2, starting from 1.",
            [
                (
                    "n 3x3 layers see 2n + 1 pixels, not 3n: each layer adds 2 (k - 1), not 3.",
                    lambda c, n: 3 * n,
                ),
                ("n 3x3 layers see 2n + 1 pixels; you forgot the starting pixel (2n).", lambda c, n: 2 * n),
            ],
        ),
        (
            0,
            "params of the 3x3 stack",
            lambda c, n: 9 * n * c * c,
            "One 3x3 layer from c to c channels has 9 c^2 weights.",
            [
                (
                    "a conv with c input and c output channels has c * c * 3 * 3 weights, not c * 3 * 3.",
                    lambda c, n: 9 * n * c,
                ),
                ("that counts biases; the exercise says bias=False.", lambda c, n: 9 * n * c * c + n * c),
                ("that is ONE layer; the stack has n of them.", lambda c, n: 9 * c * c),
            ],
        ),
        (
            1,
            "params of the single kernel",
            lambda c, n: (2 * n + 1) ** 2 * c * c,
            "A k x k conv from c to c channels has k^2 c^2 weights.",
            [
                (
                    "that counts a bias; the exercise says bias=False.",
                    lambda c, n: (2 * n + 1) ** 2 * c * c + c,
                ),
                (
                    "a conv with c input and c output channels has k * k * c * c weights, not k * k * c.",
                    lambda c, n: (2 * n + 1) ** 2 * c,
                ),
                (
                    "that is the size of a (3n) x (3n) kernel; n 3x3 layers see 2n + 1 pixels.",
                    lambda c, n: (3 * n) ** 2 * c * c,
                ),
            ],
        ),
    ]
    for index, name, ref, hint, mistakes in parts:
        got = [a[index] for a in answers]
        want = [ref(c, n) for c, n in pairs]
        if got == want:
            continue
        i = next(i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w)
        for mistake, wrong in mistakes:
            if got == [wrong(c, n) for c, n in pairs]:
                fail(
                    f"{what[i]}[{index}] ({name}): expected {want[i]}, got {got[i]}.\n   "
                    f"Likely mistake: {mistake}"
                )
        fail(f"{what[i]}[{index}] ({name}): expected {want[i]}, got {got[i]}. {hint}")
    return "parameter counts and kernel size right: three 3x3 layers cost 27c² vs 49c² for 7x7."


def _probe_stack(specs: Sequence[tuple[str, int, int, int]]) -> tuple[nn.Sequential, int]:
    """A one-channel stack of ("conv", k, s, d) and ("pool", k, k, 1) layers and its field."""
    layers: list[nn.Module] = []
    geo = []
    for kind, k, s, d in specs:
        if kind == "pool":
            layers.append(nn.AvgPool2d(k, stride=s))
            geo.append(geometry.LayerSpec(k, s))
        else:
            conv = nn.Conv2d(1, 1, k, stride=s, padding=d * (k // 2), dilation=d)
            with torch.no_grad():
                conv.weight.fill_(1.0 / k**2)
                assert conv.bias is not None  # nn.Conv2d's default bias=True
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            geo.append(geometry.LayerSpec(k, s, d * (k // 2), d))
    return nn.Sequential(*layers), geometry.receptive_field(geo)[-1].rf


# a dilated conv alone (a field with holes), plain 3x3 stacks, strides, pooling, a 1x1 conv
_PROBE_FIXED = [
    [("conv", 3, 1, 2)],
    [("conv", 3, 1, 1)] * 3,
    [("conv", 5, 2, 1), ("pool", 2, 2, 1), ("conv", 3, 1, 1)],
    [("conv", 3, 1, 1), ("conv", 3, 1, 2), ("conv", 1, 1, 1)],
    [("pool", 3, 3, 1), ("conv", 3, 2, 1)],
]


def _measure(
    model: nn.Module, size: int, *, unit: str = "centre", all_outputs: bool = False, extent: str = "span"
) -> int:
    """The probe, or one of its usual slips."""
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    h, w = (out.shape[-2] // 2, out.shape[-1] // 2) if unit == "centre" else (0, 0)
    (out.sum() if all_outputs else out[0, 0, h, w]).backward()
    assert x.grad is not None
    grad = x.grad[0, 0].abs()
    rows = grad.sum(dim=1).nonzero()
    if extent == "count":
        return len(rows)
    if extent == "area":
        return int((grad > 0).sum())
    return int(rows.max() - rows.min() + (0 if extent == "no+1" else 1))


@checker("receptive field by gradient")
def check_rf_by_gradient(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(model, size)`` measures the centre unit's receptive field by back-propagation."""
    specs = [list(s) for s in _PROBE_FIXED]
    for _ in range(3):
        stack = []
        for _ in range(ctx.randint(2, 4)):
            if ctx.randint(0, 3) == 0:
                k = ctx.randint(2, 3)
                stack.append(("pool", k, k, 1))
            else:
                stack.append(("conv", ctx.choice([1, 3, 3, 5]), ctx.choice([1, 1, 2]), ctx.choice([1, 1, 2])))
        specs.append(stack)
    cases = []
    for spec in specs:
        model, rf = _probe_stack(spec)
        size = 2 * rf + 8 * ctx.randint(1, 2) + ctx.randint(0, 1)
        cases.append(
            Case(
                (model, size),
                f"rf_by_gradient(model, size={size}) for the stack "
                f"{[(kind, k, s, d) for kind, k, s, d in spec]}",
            )
        )
    fields = {id(c.args[0]): _probe_stack(spec)[1] for c, spec in zip(cases, specs, strict=True)}

    def around() -> contextlib.AbstractContextManager[Any]:
        return preserved_state(*(c.args[0] for c in cases), what="rf_by_gradient")

    def compare(got: Any, want: int, label: str) -> Any:
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        return expect_equal(
            got,
            want,
            label,
            hint=(
                "Back-propagate from ONE output unit near the centre, then measure the extent (last "
                "- first + 1) of the input rows whose gradient is non-zero, on an input of ones."
            ),
        )

    judge(
        fn,
        cases,
        around=around,
        forbidden=RF_LIBRARY,
        reference=lambda model, size: fields[id(model)],
        compare=compare,
        mistakes=[
            (
                "you back-propagated from ALL outputs (e.g. out.sum()): that gives the field of "
                "the whole output map; take the gradient of a single unit near the centre.",
                lambda m, size: _measure(m, size, all_outputs=True),
            ),
            (
                "you counted the rows with a non-zero gradient; a dilated kernel leaves holes "
                "inside its field, so measure the extent: last row - first row + 1.",
                lambda m, size: _measure(m, size, extent="count"),
            ),
            (
                "you forgot the + 1: rows first..last span last - first + 1 pixels.",
                lambda m, size: _measure(m, size, extent="no+1"),
            ),
            (
                "you took the unit at the corner (out[0, 0, 0, 0]); its field is cut off by the "
                "padding; take the unit at the centre (H_out // 2, W_out // 2).",
                lambda m, size: _measure(m, size, unit="corner"),
            ),
            (
                "you counted the non-zero PIXELS (an area); return the height: last row - first row + 1.",
                lambda m, size: _measure(m, size, extent="area"),
            ),
        ],
    )
    return "your gradient probe finds the same receptive fields as the formula."


# ------------------------------------------------------------------ exercise 4: predict a stem


def stem_layers() -> nn.Sequential:
    """ResNet's stem and first two 3x3 convolutions (exercise 4), with one channel."""
    return nn.Sequential(
        nn.Conv2d(1, 1, 7, stride=2, padding=3),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(1, 1, 3, padding=1),
        nn.Conv2d(1, 1, 3, padding=1),
    )


def dilated_layers() -> nn.Sequential:
    """Three 3x3 convolutions with dilations 1, 2 and 4 (exercise 4)."""
    return nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=d, dilation=d) for d in (1, 2, 4)])


def _int_answer(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        fail(
            f"{what} must be a whole number of pixels (an int), got {value!r} of type {type(value).__name__}."
        )
    return value


@checker("receptive-field predictions")
def check_stem_predictions(ctx: Context, rf_stem: Any, jump_stem: Any, rf_dilated: Any) -> str:
    """Check predicted receptive field and jump of ResNet's stem, and of a dilated stack."""
    stem = geometry.module_receptive_field(stem_layers())[-1]
    measured = geometry.receptive_field_by_gradient(stem_layers(), 91, channels=1)
    assert measured == stem.rf  # the recurrence and back-propagation agree
    rf_dil = geometry.module_receptive_field(dilated_layers())[-1].rf
    expect_equal(
        _int_answer(rf_stem, "rf_stem"),
        stem.rf,
        "rf_stem (receptive field after the 4 layers)",
        wrong={
            "each layer adds (k - 1) x jump, and the jump is the product of the strides BEFORE "
            "it: the pool sees jump 2, the 3x3 convs jump 4.": 1 + 6 + 2 + 2 + 2,
            "receptive fields do not add up kernel sizes: a layer adds (k - 1) x jump.": 7 + 3 + 3 + 3,
            "the 3x3 convs come after TWO stride-2 layers: their jump is 4, not 2.": 7
            + 2 * 2
            + 2 * 2
            + 2 * 2,
            "the max pool counts too: a 3x3 pool adds (3 - 1) x jump like a 3x3 conv.": 7 + 2 * 2 + 2 * 2,
        },
        hint="Requirement: r = r + (k - 1) * j, then j = j * s, layer by layer from r = j = 1.",
    )
    expect_equal(
        _int_answer(jump_stem, "jump_stem"),
        stem.jump,
        "jump_stem (input pixels between neighbouring output units)",
        wrong={
            "the max pool has stride 2 too: the jump is 2 x 2.": 2,
            "the 3x3 convs have stride 1: they do not change the jump.": 16,
        },
        hint="Requirement: the jump is the product of all strides so far.",
    )
    expect_equal(
        _int_answer(rf_dilated, "rf_dilated"),
        rf_dil,
        "rf_dilated (three 3x3 convs with dilations 1, 2, 4)",
        wrong={
            "dilation d spreads a 3x3 kernel over 2d + 1 pixels, so it adds 2d: 3, then 7, then 15.": 7,
            "without strides the jump stays 1; the dilated kernels (spans 3, 5, 9) add 2, 4 and 8.": 1
            + 2 * 1
            + 2 * 2 * 1
            + 2 * 4 * 2,
        },
        hint="Requirement: k_eff = k + (k - 1)(d - 1) in place of k, jump 1 throughout.",
    )
    return (
        f"stem: {stem.rf} px with jump {stem.jump} (back-propagation measures {measured} px); "
        f"dilations 1, 2, 4: {rf_dil} px without any downsampling."
    )
