"""Checks for the section 14.10 exercises (visualising features: what a forward hook keeps, Grad-CAM,
filters, activation maximisation).

The checks use :func:`tiny_cnn`, a small random CNN with nested layers (``layer1.0.conv1``
sits inside a residual block, next to a top-level ``conv1``), so an answer that only finds
top-level layers, or matches names by substring, is caught. Every check runs fixed edge cases
first (nested names, non-square images, a forward pass that raises, a heat map that is
positive everywhere, odd widths, ...) so a given answer gets the same verdict on every seed;
random cases add to them. :func:`cnnbook.checks.core.preserved_state` makes sure the student's
code leaves no hook behind, also when the forward pass raises, and restores grad mode,
train/eval mode and ``requires_grad``.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import Any

import torch
from torch import nn

from cnnbook.checks.core import (
    CheckFailed,
    Context,
    Family,
    as_tensor,
    call,
    checker,
    deeper_hint,
    expect_detached,
    expect_number,
    expect_tensor,
    fail,
    fixed,
    forbidden,
    preserved_state,
)

READY_HOOKS = Family(
    name="ready-made feature extraction and Grad-CAM",
    does="does the whole exercise for you",
    task="write the hooks yourself",
    scope="every ready-made version (cnnbook.interpret's functions, the grad-cam package, "
    "torchvision's create_feature_extractor)",
    python=(
        (
            r"cnnbook\.interpret",
            r"^(feature_maps|capture_outputs|layer_output|grad_cam|activation_maximization)$",
        ),
        (r"pytorch_grad_cam(\.[\w.]+)?", r"CAM|Cam"),
        (r"torchvision\.models\.feature_extraction", r"^create_feature_extractor$"),
    ),
)
NESTED_HINT = (
    "works for top-level layers but not for the nested layer {name!r}: "
    "getattr(model, name) and model.named_children() only see the top level. Look "
    "the layer up with dict(model.named_modules())[name] or model.get_submodule(name)."
)


class _Block(nn.Module):
    """A residual block: ``conv2(relu(conv1(x))) + shortcut(x)`` (names as in a ResNet)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, (3, 5), padding=(1, 2))
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x))) + self.shortcut(x)


def tiny_cnn(classes: int = 4) -> nn.Sequential:
    """A small random CNN with top-level and nested layers for hook and Grad-CAM checks.

    Layers: ``conv1``, ``relu1``, ``pool``, ``layer1`` (a residual block ``layer1.0`` with
    ``layer1.0.conv1``, ``layer1.0.relu``, ``layer1.0.conv2``, ``layer1.0.shortcut``),
    ``relu2``, ``gap``, ``flat``, ``fc``.
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 6, 3, padding=1),
            relu1=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            layer1=nn.Sequential(_Block(6, 8)),
            relu2=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, classes),
        )
    )


def _run_raising(fn: Callable[..., object], model: nn.Module, args: tuple, what: str) -> None:
    """Call ``fn`` on an input that makes the forward pass raise; hooks must be gone after."""
    # raising is expected here; only the state counts
    with preserved_state(model, what=what, reveal=True), suppress(Exception):
        fn(model, *args)


# ------------------------------------------------------------------------------ Exercise 1


def hook_net() -> nn.Sequential:
    """Exercise 1's network: conv -> batch norm -> in-place ReLU -> pool -> linear, eval mode."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 8, 3, padding=1),
            bn=nn.BatchNorm2d(8),
            relu=nn.ReLU(inplace=True),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 4),
        )
    ).eval()


def kept_by_hook(keep: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run :func:`hook_net` once (no gradients) with a hook on ``bn`` storing ``keep(output)``.

    Returns:
        ``(stored, true)``: what the hook stored, and batch norm's real output (recomputed).
    """
    net = hook_net()
    x = torch.randn(2, 3, 10, 10)
    stored: dict[str, torch.Tensor] = {}
    bn, conv = net.get_submodule("bn"), net.get_submodule("conv")
    handle = bn.register_forward_hook(lambda _m, _i, out: stored.update(bn=keep(out)))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    with torch.no_grad():
        true = bn(conv(x))
    return stored["bn"].detach(), true


@checker(
    "prediction: what the hook kept",
    requirement="PREDICTED_MIN is the smallest value the hook on `bn` really stores",
)
def check_hook_prediction(ctx: Context, predicted: Any) -> str:
    """Compare ``PREDICTED_MIN`` with the smallest value exercise 1's hook really stores."""
    value = expect_number(predicted, "PREDICTED_MIN")
    stored, true = kept_by_hook(lambda out: out.detach())
    truth = float(stored.min())
    if abs(value - truth) <= 1e-6:
        return "the hook kept a view that the in-place ReLU then overwrote: its smallest value is 0."
    if value < truth:
        fail(
            f"you predicted {value:g}; the smallest stored value is {truth:g}. Batch norm's output "
            f"does go down to {float(true.min()):.2f}, but the hook did not keep that: detach() "
            f"returns a tensor that shares the SAME memory as the output, and the in-place ReLU "
            f"that runs right after the hook writes max(x, 0) into it."
        )
    fail(
        f"you predicted {value:g}; the smallest stored value is {truth:g}. The stored map is the "
        f"in-place ReLU's output (it shares memory with batch norm's output), and a ReLU output "
        f"has many values exactly 0 and none below."
    )
    return ""


HOOK_OPTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "a": lambda out: out.detach().clone(),
    "b": lambda out: out,
    "c": lambda out: out.data,
    "d": lambda out: out.detach(),  # the forward pass runs under torch.no_grad() anyway
}
_OPTION_WHY = {
    "b": "`output` itself is the very tensor the in-place ReLU overwrites.",
    "c": "`.data` is another view of the same memory, just like detach().",
    "d": "torch.no_grad() changes what autograd records, not where values are stored: detach() "
    "still shares memory with the output.",
}


@checker(
    "choice: a hook that keeps batch norm's output",
    requirement="FIX names the option whose stored tensor equals batch norm's output",
)
def check_hook_fix(ctx: Context, choice: Any) -> str:
    """``FIX`` must name the one option whose stored tensor equals batch norm's real output."""
    if choice is None:
        fail("FIX is still None: set it to one letter, 'a', 'b', 'c' or 'd'.")
    if not isinstance(choice, str) or choice.strip().lower() not in HOOK_OPTIONS:
        fail(f"FIX should be one of the letters 'a', 'b', 'c' or 'd', got {choice!r}.")
    letter = choice.strip().lower()
    stored, true = kept_by_hook(HOOK_OPTIONS[letter])
    if not torch.equal(stored, true):
        fail(
            f"option {letter!r} still stores the ReLU's output (smallest value "
            f"{float(stored.min()):g}, where batch norm's is {float(true.min()):.2f}): "
            f"{_OPTION_WHY[letter]} Which option makes a copy?"
        )
    return "only a copy (clone) keeps the values the hook saw."


# ------------------------------------------------------------------------------ Exercise 2


def reference_grad_cam(
    model: nn.Module, x: torch.Tensor, target_class: int, layer: str, variant: str = ""
) -> torch.Tensor:
    """Grad-CAM at the layer's resolution, min-max scaled; ``variant`` reproduces a mistake.

    Variants: ``"no_relu"``, ``"act_weights"`` (channels weighted by mean activation),
    ``"all_classes"`` (the sum of all logits back-propagated), ``"no_norm"`` (not scaled),
    ``"max_only"`` (divided by the max without subtracting the min).
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        store["a"] = out

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        handle.remove()
    score = logits.sum() if variant == "all_classes" else logits[0, target_class]
    grad = torch.autograd.grad(score, store["a"])[0]
    acts = store["a"].detach()
    weights = (
        acts.mean(dim=(2, 3), keepdim=True)
        if variant == "act_weights"
        else grad.mean(dim=(2, 3), keepdim=True)
    )
    cam = (weights * acts).sum(dim=1)[0]
    if variant != "no_relu":
        cam = torch.relu(cam)
    if variant == "no_norm":
        return cam
    if variant != "max_only":
        cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


GRAD_CAM_HINT2 = (
    "print your map next to checks.reference_grad_cam(model, x, target_class, layer_name) on one "
    "small case and compare step by step: the channel weights grad.mean(dim=(2, 3)) have shape "
    "(1, C, 1, 1); the weighted sum over dim=1, then ReLU, then (cam - cam.min()) / (cam.max() + 1e-8)."
)


def positive_cam_model(classes: int = 4, target: int = 1) -> nn.Sequential:
    """A :func:`tiny_cnn` whose Grad-CAM map at ``relu2`` for ``target`` is positive everywhere.

    The shortcut's bias makes every ``relu2`` activation positive and the head's weights for
    ``target`` are positive, so the map's minimum is well above zero: scaling by the maximum
    alone then differs from min-max scaling.
    """
    model = tiny_cnn(classes)
    shortcut, fc = model.get_submodule("layer1.0.shortcut"), model.get_submodule("fc")
    assert isinstance(shortcut, nn.Conv2d)
    assert shortcut.bias is not None
    assert isinstance(fc, nn.Linear)
    with torch.no_grad():
        shortcut.bias.fill_(3.0)
        fc.weight[target].abs_().add_(0.1)
    return model.eval()


@checker(
    "Grad-CAM",
    requirement="the ReLU of the gradient-weighted channel sum at the layer, min-max scaled, "
    "returned detached; hooks removed and the caller's gradients, modes and grad mode left alone",
)
def check_grad_cam(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(model, image (1, C, H, W), target_class, layer_name)`` -> (H_l, W_l) in [0, 1].

    Fixed cases: a map positive everywhere at ``relu2`` (min-max scaling differs from dividing
    by the max), the nested ``layer1.0.conv2`` and ``layer1.0`` on non-square images, the
    first and the last class; an input on which the forward pass raises (the hooks must still
    be removed); then random models, classes and layers.
    """
    cases = [
        (
            fixed(200, lambda: positive_cam_model(4, 1)),
            1,
            "relu2",
            fixed(201, lambda: torch.randn(1, 3, 12, 16)),
        ),
        (
            fixed(202, lambda: tiny_cnn(4).eval()),
            0,
            "layer1.0.conv2",
            fixed(203, lambda: torch.randn(1, 3, 14, 10)),
        ),
        (
            fixed(204, lambda: tiny_cnn(3).eval()),
            2,
            "layer1.0",
            fixed(205, lambda: torch.randn(1, 3, 10, 12)),
        ),
    ]
    while len(cases) < 5:
        model = tiny_cnn().eval()
        x = ctx.randn(1, 3, 2 * ctx.randint(4, 7), 2 * ctx.randint(4, 7), dtype=torch.float32)
        target, layer = ctx.randint(0, 3), ctx.choice(["layer1.0.conv2", "relu2", "layer1.0"])
        if reference_grad_cam(model, x, target, layer).max() > 0.5:  # skip all-zero maps
            cases.append((model, target, layer, x))
    top_level_ok = False
    for model, target, layer, x in cases:
        ref = reference_grad_cam(model, x, target, layer)
        what = f"grad_cam(model, x {tuple(x.shape)}, target_class={target}, layer_name={layer!r})"
        with forbidden(READY_HOOKS), preserved_state(model, what=what, reveal=True):
            try:
                got = call(fn, model, x.clone(), target, layer, describe=what)
            except CheckFailed as exc:
                if top_level_ok and "." in layer:
                    fail(f"{what} {NESTED_HINT.format(name=layer)} ({exc})")
                raise
        expect_detached(got, f"the map {what} returned", why="the text asks for the map returned detached")
        got = as_tensor(got, what)
        if got.ndim == 4 and got.shape[:2] == (1, 1):
            got = got[0, 0]
        elif got.ndim == 3 and got.shape[0] == 1:
            got = got[0]
        wrong = {
            "The ReLU is missing: keep only the positive evidence for the class.": partial(
                reference_grad_cam, model, x, target, layer, "no_relu"
            ),
            "You weighted the channels by their mean ACTIVATION; Grad-CAM weights them by the "
            "mean GRADIENT of the class score.": partial(
                reference_grad_cam, model, x, target, layer, "act_weights"
            ),
            "You back-propagated the sum of all logits; use the target class's score only.": partial(
                reference_grad_cam, model, x, target, layer, "all_classes"
            ),
            "The map is not scaled: subtract its min, then divide by its max, so it spans [0, 1].": partial(
                reference_grad_cam, model, x, target, layer, "no_norm"
            ),
            "You divided by the max without subtracting the min first: where the whole map is "
            "positive its smallest value must become 0.": partial(
                reference_grad_cam, model, x, target, layer, "max_only"
            ),
        }
        with deeper_hint(GRAD_CAM_HINT2):
            expect_tensor(
                got,
                ref,
                what,
                wrong=wrong,
                atol=1e-4,
                rtol=1e-3,
                shape_hint="Return the map at the layer's resolution, (H_l, W_l), without upsampling.",
            )
        top_level_ok = top_level_ok or "." not in layer
    _run_raising(
        fn,
        tiny_cnn().eval(),
        (torch.zeros(1, 5, 8, 8), 0, "relu2"),
        "grad_cam on an input whose forward pass raises",
    )
    return "your Grad-CAM matches the reference, nested layers and positive maps included."


# ------------------------------------------------------------------------------ Exercise 3


@checker(
    "left-half share of a heat map",
    requirement="the heat in the first W // 2 columns divided by the map's total heat",
)
def check_left_share(ctx: Context, fn: Callable[..., float]) -> str:
    """Check ``fn(cam (H, W))`` = heat in the left ``W // 2`` columns / total heat.

    Fixed cases: an odd width (the middle column counts as right), an even width, a map
    taller than wide, heat only in the middle column; then random maps.
    """
    middle = torch.zeros(3, 5, dtype=torch.float64)
    middle[:, 2] = 1.0
    middle[0, 0] = 1.0
    maps = [
        fixed(300 + i, partial(torch.rand, *s, dtype=torch.float64)) + 0.1
        for i, s in enumerate([(4, 7), (3, 6), (9, 4)])
    ] + [middle]
    h, w = ctx.randint(2, 9), ctx.randint(2, 9)
    maps.append(ctx.rand(h, w) * (ctx.rand(h, w) > 0.3) + 0.01)
    for cam in maps:
        h, w = cam.shape
        what = f"left_share(cam of shape {tuple(cam.shape)})"
        got = call(fn, cam.clone(), describe=what)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, numbers.Real) or isinstance(got, bool):
            fail(f"{what} should return a float, got {type(got).__name__}.")
        got = float(got)
        total = float(cam.sum())
        ref = float(cam[:, : w // 2].sum()) / total
        if abs(got - ref) > 1e-6:
            mistakes = {
                "you took the top half of the ROWS; the left half is the first W // 2 "
                "COLUMNS (cam[:, :W // 2]).": float(cam[: h // 2].sum()) / total,
                "you measured the right half.": float(cam[:, w // 2 :].sum()) / total,
                "for an odd width you counted the middle column as left; the left half is the "
                "first W // 2 columns.": float(cam[:, : (w + 1) // 2].sum()) / total,
                "you returned the heat in the left half without dividing by the total heat cam.sum().": float(
                    cam[:, : w // 2].sum()
                ),
            }
            hint = next(
                (m for m, v in mistakes.items() if abs(got - v) < 1e-6),
                "divide the heat in cam[:, :W // 2] by the total heat cam.sum().",
            )
            fail(f"{what}: expected {ref:.4f}, got {got:.4f}; {hint}")
    return "left_share divides the left half's heat by the total."


# ------------------------------------------------------------------------------ Exercise 4


def colleague_normalize_filters(w: torch.Tensor) -> torch.Tensor:
    """Min-max scale each filter of (C_out, C_in, k_h, k_w) to [0, 1] for display."""
    lo = w.amin(dim=(2, 3), keepdim=True)
    hi = w.amax(dim=(2, 3), keepdim=True)
    return (w - lo) / (hi - lo).clamp_min(1e-12)  # a constant (dead) filter becomes 0, not NaN


def reference_normalize_filters(w: torch.Tensor) -> torch.Tensor:
    """Each filter (all its C_in x k_h x k_w values) to [0, 1] by its own min and max; 0 if constant."""
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    span = w.amax(dim=(1, 2, 3), keepdim=True) - lo
    return torch.where(span > 0, (w - lo) / torch.where(span > 0, span, 1), torch.zeros_like(w))


BUG_INPUT_REQUIREMENT = (
    "a weight tensor (C_out, C_in, k_h, k_w) with as few values as possible on which the "
    "colleague's normalize_filters and a correct one disagree"
)


@checker("the smallest input that shows the bug", requirement=BUG_INPUT_REQUIREMENT)
def check_filter_bug_input(ctx: Context, w: Any) -> str:
    """``w`` must make :func:`colleague_normalize_filters` differ from the reference, with 2 values.

    Two values are the fewest: the bug (one min and max per input channel instead of per
    filter) needs ``C_in >= 2``, and each channel can be one pixel, ``(1, 2, 1, 1)``.
    """
    del ctx  # nothing random: the answer is one tensor
    if w is None:
        fail("SMALLEST_BUG_INPUT is still None: write a weight tensor (C_out, C_in, k_h, k_w).")
    try:
        t = torch.as_tensor(w)
    except (TypeError, ValueError, RuntimeError):
        fail(f"SMALLEST_BUG_INPUT should be a tensor of filter weights, got {type(w).__name__}.")
    if t.dim() != 4 or t.numel() == 0:
        fail(
            f"SMALLEST_BUG_INPUT has shape {tuple(t.shape)}; conv weights have 4 non-empty "
            f"dimensions (C_out, C_in, k_h, k_w), e.g. torch.tensor([[[[1.0]]]]) has shape (1, 1, 1, 1)."
        )
    if t.dtype == torch.bool or t.is_complex():
        fail(f"SMALLEST_BUG_INPUT should hold real numbers, got dtype {t.dtype}.")
    t = t.detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        fail("SMALLEST_BUG_INPUT holds NaN or inf; real filter weights are finite numbers.")
    theirs, right = colleague_normalize_filters(t), reference_normalize_filters(t)
    if torch.allclose(theirs, right, atol=1e-6, rtol=0):
        if t.shape[1] == 1:
            fail(
                f"on your input of shape {tuple(t.shape)} the colleague's function is right: with "
                f"one input channel (C_in = 1), the min and max of each channel ARE the min and max "
                f"of the whole filter. What must the input have for the two to differ?",
                hint2="give one filter several input channels whose values span different ranges.",
            )
        fail(
            f"on your input of shape {tuple(t.shape)} both functions give the same result: every "
            f"input channel of each filter spans the same range as the whole filter (or the "
            f"filter is constant). Make the channels of one filter span different ranges.",
            hint2="the colleague's min and max are taken over dims (2, 3), one pair per input "
            "channel; a correct one takes them over dims (1, 2, 3).",
        )
    if t.numel() > 2:
        fail(
            f"your input of shape {tuple(t.shape)} shows the bug, with {t.numel()} values; a "
            f"smaller one exists. Which dimension must be larger than 1 for the bug to matter, "
            f"and how few values can each of its parts hold?",
            hint2="one output filter, a 1 x 1 kernel: how many input channels, and how many values "
            "in each, make the two scalings disagree?",
        )
    return (
        f"shape {tuple(t.shape)}: two input channels of one pixel each. The colleague scales each "
        f"channel on its own, so each becomes a constant 0; the whole filter spans [0, 1]."
    )


FILTERS_REQUIREMENT = (
    "each filter (all its C_in x k_h x k_w values) scaled to [0, 1] by its own min and max, a "
    "constant filter all zeros, in a new tensor"
)


@checker("filter normalisation for display", requirement=FILTERS_REQUIREMENT)
def check_normalize_filters(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(w (C_out, C_in, k_h, k_w))`` min-max scales each filter to [0, 1] separately.

    Fixed cases: non-square kernels (3 x 5), one input channel, filters of very different
    contrast and offset, a dead (all-zero) filter and a constant one among live filters; then
    random shapes. Values are compared to within 1e-3, a quarter of one grey level of an
    8-bit display, so a small guard added to max - min is accepted.
    """
    shapes = [
        (4, 3, 3, 5),
        (3, 1, 5, 3),
        (5, 4, 1, 1),
        (4, 2, 3, 3),
        (ctx.randint(2, 8), ctx.randint(1, 4), ctx.choice([3, 5, 7]), ctx.choice([3, 5, 7])),
    ]
    for i, shape in enumerate(shapes):
        g = torch.Generator().manual_seed(400 + i) if i < 4 else ctx.gen
        w = torch.randn(*shape, generator=g, dtype=torch.float64) * (
            torch.rand(shape[0], 1, 1, 1, generator=g, dtype=torch.float64) * 5 + 0.1
        )
        w = w + torch.randn(shape[0], 1, 1, 1, generator=g, dtype=torch.float64) * 3
        if i == 3:
            w[1] = 0.0  # a dead filter
            w[2] = 0.7  # a constant one
        what = f"normalize_filters(w of shape {tuple(w.shape)})"
        given = w.clone()
        got = call(fn, given, describe=what)
        if not torch.equal(given, w):
            fail(
                f"{what} changed w in place; return a new tensor (the model's weights must "
                f"not change for a plot)."
            )
        flat = w.flatten(1)
        lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
        ref = reference_normalize_filters(w)
        constant = (hi == lo).flatten()
        if bool(constant.any()) and isinstance(got, torch.Tensor) and got.shape == w.shape:
            bad = got.detach()[constant]
            if not bool(torch.isfinite(bad).all()):
                fail(
                    f"{what}: filters {constant.nonzero().flatten().tolist()} are constant (one is "
                    f"all zeros, a dead filter), so max - min = 0 and your division gives "
                    f"{bad.flatten()[0].item()}. The text asks for zeros there.",
                    hint2="divide only where max > min: torch.where(span > 0, ..., 0), or "
                    "clamp the span from below as the colleague did.",
                )
        expect_tensor(
            got,
            ref,
            what,
            wrong={
                "You scaled all filters together (global min and max); scale each filter by its "
                "own min and max so low-contrast filters stay visible.": (w - w.min()) / (w.max() - w.min()),
                "You scaled each channel of each filter separately, which distorts the filter's "
                "colours; use one min and max per filter (over its C_in x k_h x k_w values).": (
                    colleague_normalize_filters(w)
                ),
                "You divided by the max without subtracting the min first: each filter must span "
                "exactly [0, 1], from its min to its max.": w / hi,
                "You divided by (max - min) but did not subtract the min first.": w / (hi - lo),
                "A constant filter should come out all zeros (as the colleague's clamp and "
                "torchvision's make_grid give), not grey.": torch.where(hi > lo, ref, 0.5),
            },
            shape_hint="Keep the shape (C_out, C_in, k_h, k_w).",
            atol=1e-3,
            rtol=0.0,
        )
    return "each filter now spans [0, 1] on its own scale, and a dead filter stays black."


# ------------------------------------------------------------------------------ Exercise 5


def reference_maximize_unit(
    model: nn.Module,
    layer: str,
    channel: int,
    row: int,
    col: int,
    start: torch.Tensor,
    steps: int,
    lr: float,
    variant: str = "",
) -> torch.Tensor:
    """Plain gradient ascent on one unit; ``variant`` reproduces a mistake.

    Variants: ``"descent"`` (steps against the gradient), ``"channel_mean"`` (the channel's
    mean instead of one unit), ``"accumulate"`` (the image's gradient never zeroed),
    ``"swapped"`` (``row`` and ``col`` exchanged).
    """
    x = start.detach().clone()
    total = torch.zeros_like(x)
    store: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    try:
        for _ in range(steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                model(x)
                out = store["out"]
                if variant == "channel_mean":
                    act = out[0, channel].mean()
                elif variant == "swapped":
                    if col >= out.shape[2] or row >= out.shape[3]:
                        return torch.full_like(start, float("nan"))
                    act = out[0, channel, col, row]
                else:
                    act = out[0, channel, row, col]
                (grad,) = torch.autograd.grad(act, x)
            total = total + grad
            step = total if variant == "accumulate" else grad
            x = (x - lr * step if variant == "descent" else x + lr * step).detach()
    finally:
        handle.remove()
    return x


MAXIMIZE_HINT2 = (
    "each step: x.requires_grad_(True), one forward pass with the hook, "
    "(g,) = torch.autograd.grad(out[0, channel, row, col], x), then x = (x + lr * g).detach(); "
    "torch.autograd.grad leaves the parameters' .grad alone, .backward() does not."
)


def maximize_model() -> nn.Sequential:
    """A :func:`tiny_cnn` in eval mode whose parameters all require gradients."""
    return tiny_cnn().eval()


@checker(
    "activation maximisation of one unit",
    requirement="`steps` steps of plain gradient ascent on output[0, channel, row, col], a fresh "
    "gradient each step, the image returned detached, `start` and the model (its .grad included) "
    "left as they were",
)
def check_maximize_unit(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(model, layer, channel, row, col, start, steps, lr)`` (plain gradient ascent).

    Fixed cases: the nested ``layer1.0.conv2`` at a unit off the diagonal of a non-square map
    (row != col, so swapping them shows), 3 steps; the top-level ``conv1`` at a corner unit,
    2 steps; then a random case. Each case also checks that ``start`` is not changed, the
    parameters' ``.grad`` are untouched and no hook, mode or ``requires_grad`` change is left.
    """
    cases = [
        ("layer1.0.conv2", 5, 1, 2, (1, 3, 6, 12), 3, 0.1),
        ("conv1", 2, 0, 0, (1, 3, 7, 9), 2, 0.05),
        ("layer1.0.conv2", 3, 3, 1, (1, 3, 10, 8), 4, 0.2),
        (
            ctx.choice(["layer1.0.conv1", "layer1.0.conv2", "conv1"]),
            ctx.randint(0, 5),
            ctx.randint(0, 2),
            ctx.randint(0, 2),
            (1, 3, 2 * ctx.randint(3, 5), 2 * ctx.randint(3, 5)),
            ctx.randint(2, 4),
            0.1,
        ),
    ]
    for i, (layer, channel, row, col, shape, steps, lr) in enumerate(cases):
        fixed_case = i < 3
        model = fixed(500 + i, maximize_model) if fixed_case else maximize_model()
        start = (
            fixed(510 + i, partial(torch.randn, *shape))
            if fixed_case
            else ctx.randn(*shape, dtype=torch.float32)
        ) * 0.1
        given = start.clone()
        what = (
            f"maximize_unit(model, {layer!r}, channel={channel}, row={row}, col={col}, "
            f"start {tuple(shape)}, steps={steps}, lr={lr:g})"
        )
        with forbidden(READY_HOOKS), preserved_state(model, what=what, reveal=True):
            got = call(fn, model, layer, channel, row, col, given, steps, lr, describe=what)
        if not torch.equal(given, start):
            fail(f"{what} changed `start` in place; work on a copy (start.detach().clone()).")
        expect_detached(got, f"the image {what} returned", why="the text asks for the final image, detached")
        got = as_tensor(got, what)
        unit = partial(reference_maximize_unit, model, layer, channel, row, col, start, steps, lr)
        ref = unit()
        with deeper_hint(MAXIMIZE_HINT2):
            expect_tensor(
                got,
                ref,
                what,
                wrong={
                    "You stepped against the gradient (x - lr * grad): that MINIMISES the unit; "
                    "gradient ascent adds it.": partial(unit, variant="descent"),
                    "You maximised the mean of the whole channel; this exercise asks for the one unit "
                    "at (row, col) of that channel.": partial(unit, variant="channel_mean"),
                    "The image's gradient accumulates over the steps: zero it (image.grad = None) or "
                    "use torch.autograd.grad, which returns a fresh gradient every step.": partial(
                        unit, variant="accumulate"
                    ),
                    "row and col are swapped: the unit is output[0, channel, row, col].": partial(
                        unit, variant="swapped"
                    ),
                },
                shape_hint="Return the image, with the same shape as start.",
                atol=1e-5,
                rtol=1e-4,
            )
    return "plain gradient ascent on one unit, with the model left exactly as it was."
