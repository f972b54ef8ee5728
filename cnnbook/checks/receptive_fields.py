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
    checker,
    deeper_hint,
    expect_equal,
    expect_int,
    fail,
    judge,
    preserved_state,
)
from cnnbook.modules import count_parameters

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
    if not isinstance(got, (list, tuple)):
        fail(f"{what} should return a list of ints, got {type(got).__name__}.")
    values = [expect_int(v, f"{what}[{i}]") for i, v in enumerate(got)]
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


@checker(
    "receptive field recurrence",
    requirement="receptive_field(layers) returns [r_1, ..., r_L] (ints), r_l = r_{l-1} + (k_l - 1) x "
    "(product of the strides of the layers before l), r_0 = 1",
)
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
                "in the loop, update rf with the current jump first and multiply the jump by s afterwards.",
            ),
            (
                "you ignored the strides: after a stride-s layer, one step on the feature map is s "
                "input pixels, so later kernels grow the field s times faster.",
                lambda layers: _rf_variant(layers, use_stride=False),
                "keep a running jump (the product of the strides so far) and multiply (k - 1) by it.",
            ),
            (
                "you added up the kernel sizes; the field grows by (k - 1) per layer (times the jump), "
                "starting from r_0 = 1.",
                lambda layers: [sum(k for k, _ in layers[: i + 1]) for i in range(len(layers))],
                "two stride-1 3x3 layers see 5 pixels, not 6: 1 + 2 + 2.",
            ),
            (
                "you started from r_0 = 0; before any layer a unit sees one pixel (r_0 = 1).",
                lambda layers: _rf_variant(layers, start=0),
                "one 3x3 layer must give 3: 1 + (3 - 1).",
            ),
            (
                "operator precedence: `k - 1 * jump` is k - jump; write (k - 1) * jump.",
                lambda layers: _rf_variant(layers, precedence=True),
                "put parentheses around k - 1.",
            ),
        ],
        hint2="keep two running values: rf (starts at 1) and jump (starts at 1); for each layer "
        "first rf += (k - 1) * jump, then jump *= s; append rf.",
    )
    return f"receptive fields correct layer by layer on {len(stacks)} stacks (AlexNet-like included)."


# ------------------------------------------------------------------ exercise 2: choose a design

KERNEL_CHANNELS = 256  # channels in and out of every design of exercise 2
# the designs of exercise 2: (kernel, dilation) per stride-1 conv, a ReLU between two convs
KERNEL_OPTIONS: dict[str, tuple[tuple[int, int], ...]] = {
    "A": ((7, 1),),
    "B": ((3, 1), (3, 1), (3, 1)),
    "C": ((3, 3),),
    "D": ((3, 1), (5, 1)),
}


def kernel_design(option: str, channels: int = KERNEL_CHANNELS) -> nn.Sequential:
    """Design ``option`` of exercise 2: stride-1 convs without bias, "same" padding, ReLU between."""
    layers: list[nn.Module] = []
    for i, (k, d) in enumerate(KERNEL_OPTIONS[option]):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(channels, channels, k, padding=d * (k - 1) // 2, dilation=d, bias=False))
    return nn.Sequential(*layers)


def pixels_reaching(model: nn.Module, size: int = 15) -> int:
    """How many input pixels change the centre output unit (positive weights, so nothing cancels)."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    (grad,) = torch.autograd.grad(out[0, 0, size // 2, size // 2], x)
    return int((grad != 0).sum())


def _letter_dict(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict) or set(value) != set(KERNEL_OPTIONS):
        fail(f"{what} must be a dict with the keys {sorted(KERNEL_OPTIONS)}, got {value!r}.")
    return {key: expect_int(v, f"{what}[{key!r}]") for key, v in value.items()}


@checker(
    "one big kernel or a stack of 3x3s",
    requirement="choice: the design in which every pixel of the 7x7 window can change the output, "
    "with the fewest weights among those; weights and pixels_seen: each design's weights (c = 256 "
    "in and out, no bias) and how many of the 49 pixels reach one output unit (ints)",
)
def check_kernel_choice(ctx: Context, choice: Any, weights: Any, pixels_seen: Any) -> str:
    """Check the chosen design of exercise 2 and the counts that justify it."""
    c = KERNEL_CHANNELS
    got_w = _letter_dict(weights, "weights")
    got_p = _letter_dict(pixels_seen, "pixels_seen")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        true_w = {key: count_parameters(kernel_design(key, c)) for key in KERNEL_OPTIONS}
    true_p = {key: pixels_reaching(kernel_design(key, 1)) for key in KERNEL_OPTIONS}
    for key, layers in KERNEL_OPTIONS.items():
        taps = sum(k * k for k, _ in layers)
        with deeper_hint(
            "a k x k conv from c to c channels holds one k x k slice per (output, input) channel "
            "pair: k * k * c * c weights; a stack adds its layers' counts."
        ):
            expect_equal(
                got_w[key],
                true_w[key],
                f"weights[{key!r}]",
                wrong={
                    "the designs have no bias (bias=False).": true_w[key] + c * len(layers),
                    "each conv maps ALL c input channels to each of its c outputs: k * k * c * c, "
                    "not k * k * c.": taps * c,
                    "that is the count of one layer; add up every conv of the design.": layers[0][0] ** 2
                    * c
                    * c,
                    "a dilated kernel keeps its k * k weights: the holes hold no weights.": (7 * 7 * c * c)
                    if key == "C"
                    else -1,
                },
                hint="Count k * k * c * c per conv, summed over the design's convs.",
            )
    for key in KERNEL_OPTIONS:
        with deeper_hint(
            "follow one output unit back layer by layer: a 3x3 conv with dilation d reads the 3 x 3 "
            "pixels at offsets -d, 0, +d; a stack reads the union of what each unit it uses reads."
        ):
            expect_equal(
                got_p[key],
                true_p[key],
                f"pixels_seen[{key!r}] (of the 49 pixels of the 7x7 window)",
                wrong={
                    "a 3x3 kernel with dilation 3 spans 7x7, but it reads only its 9 taps: the 40 "
                    "pixels between them never reach the output.": 49 if key == "C" else -1,
                    "three 3x3 layers have 27 taps, but together they read every pixel of the 7x7 "
                    "window: the second layer's taps each see a different 3x3 patch.": 27
                    if key == "B"
                    else -1,
                    "the 3x3 then 5x5 stack reads a full 7x7 window (3 + 5 - 1 = 7), not 9 + 25 "
                    "separate taps.": 34 if key == "D" else -1,
                },
                hint="Count the pixels of the 7x7 window that can change the centre output unit.",
            )
    if not isinstance(choice, str) or choice.strip().upper() not in KERNEL_OPTIONS:
        fail(f"choice must be one of the letters {sorted(KERNEL_OPTIONS)}, got {choice!r}.")
    picked = choice.strip().upper()
    full = [key for key in KERNEL_OPTIONS if true_p[key] == 49]
    best = min(full, key=lambda key: true_w[key])
    if picked != best:
        if true_p[picked] < 49:
            why = (
                f"{picked} has the fewest weights ({true_w[picked]:,}), but only {true_p[picked]} of "
                f"the 49 pixels reach its output: it fails the first requirement."
            )
        else:
            why = (
                f"{picked} sees all 49 pixels, but with {true_w[picked]:,} weights; {best} sees them "
                f"all with {true_w[best]:,}."
            )
        fail(
            f"choice {picked!r}: {why}",
            hint2="first cross out the designs whose pixels_seen is below 49, then pick the "
            "smallest weights among the rest.",
        )
    return (
        f"{best}: three 3x3 layers see the whole 7x7 window with {true_w[best]:,} weights "
        f"(27c², {true_w[best] / true_w['A']:.0%} of one 7x7 conv's 49c²) and two extra ReLUs; "
        f"the dilated 3x3 is cheaper still but reads only {true_p['C']} of the 49 pixels."
    )


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


@checker(
    "receptive field by gradient",
    requirement="rf_by_gradient(model, size): back-propagate from the single centre output unit of "
    "the first channel on an input of ones and return the height (last row - first row + 1) of the "
    "non-zero input gradient, as an int; leave the model's modes, weights and the grad mode as "
    "they were",
)
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
        # the models arrive in train mode with their first layer frozen in eval mode, as inside a
        # model being trained; the probe's backward may add to .grad (grads=False), nothing else
        return preserved_state(
            *(c.args[0] for c in cases), what="rf_by_gradient", reveal=True, grads=False, weights=True
        )

    def compare(got: Any, want: int, label: str) -> Any:
        return expect_equal(
            expect_int(got, label),
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
                "index one unit: out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward().",
            ),
            (
                "you counted the rows with a non-zero gradient; a dilated kernel leaves holes "
                "inside its field, so measure the extent: last row - first row + 1.",
                lambda m, size: _measure(m, size, extent="count"),
                "find the first and the last row with a non-zero gradient and subtract.",
            ),
            (
                "you forgot the + 1: rows first..last span last - first + 1 pixels.",
                lambda m, size: _measure(m, size, extent="no+1"),
                "rows 3 to 5 are 3 rows: 5 - 3 + 1.",
            ),
            (
                "you took the unit at the corner (out[0, 0, 0, 0]); its field is cut off by the "
                "padding; take the unit at the centre (H_out // 2, W_out // 2).",
                lambda m, size: _measure(m, size, unit="corner"),
                "the centre unit is out[0, 0, H_out // 2, W_out // 2].",
            ),
            (
                "you counted the non-zero PIXELS (an area); return the height: last row - first row + 1.",
                lambda m, size: _measure(m, size, extent="area"),
                "sum the gradient over the columns first, then look at the rows.",
            ),
        ],
        hint2="rows = x.grad[0, 0].abs().sum(dim=1).nonzero() lists the rows that reach the unit; "
        "the height is rows.max() - rows.min() + 1, whatever lies between.",
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


@checker(
    "receptive-field predictions",
    requirement="rf_stem and jump_stem after ResNet's stem and two 3x3 convolutions, rf_dilated after "
    "three 3x3 convolutions with dilations 1, 2, 4: whole numbers of pixels (ints)",
)
def check_stem_predictions(ctx: Context, rf_stem: Any, jump_stem: Any, rf_dilated: Any) -> str:
    """Check predicted receptive field and jump of ResNet's stem, and of a dilated stack."""
    stem = geometry.module_receptive_field(stem_layers())[-1]
    measured = geometry.receptive_field_by_gradient(stem_layers(), 91, channels=1)
    assert measured == stem.rf  # the recurrence and back-propagation agree
    rf_dil = geometry.module_receptive_field(dilated_layers())[-1].rf
    with deeper_hint(
        "a table with one row per layer: k, s, then r += (k - 1) * j and j *= s, from r = j = 1; "
        "the pool is a layer like the others."
    ):
        _expect_stem(rf_stem, jump_stem, rf_dilated, stem.rf, stem.jump, rf_dil)
    return (
        f"stem: {stem.rf} px with jump {stem.jump} (back-propagation measures {measured} px); "
        f"dilations 1, 2, 4: {rf_dil} px without any downsampling."
    )


def _expect_stem(rf_stem: Any, jump_stem: Any, rf_dilated: Any, rf: int, jump: int, rf_dil: int) -> None:
    expect_equal(
        expect_int(rf_stem, "rf_stem"),
        rf,
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
        hint="Use r = r + (k - 1) * j, then j = j * s, layer by layer from r = j = 1.",
    )
    expect_equal(
        expect_int(jump_stem, "jump_stem"),
        jump,
        "jump_stem (input pixels between neighbouring output units)",
        wrong={
            "the max pool has stride 2 too: the jump is 2 x 2.": 2,
            "the 3x3 convs have stride 1: they do not change the jump.": 16,
        },
        hint="The jump is the product of all strides so far.",
    )
    expect_equal(
        expect_int(rf_dilated, "rf_dilated"),
        rf_dil,
        "rf_dilated (three 3x3 convs with dilations 1, 2, 4)",
        wrong={
            "dilation d spreads a 3x3 kernel over 2d + 1 pixels, so it adds 2d: 3, then 7, then 15.": 7,
            "without strides the jump stays 1; the dilated kernels (spans 3, 5, 9) add 2, 4 and 8.": 1
            + 2 * 1
            + 2 * 2 * 1
            + 2 * 4 * 2,
        },
        hint="Use k_eff = k + (k - 1)(d - 1) in place of k, jump 1 throughout.",
    )
