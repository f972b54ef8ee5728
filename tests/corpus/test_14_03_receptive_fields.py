"""Wrong-answer corpus for the 14.3 exercises (feature maps and receptive fields)."""

from __future__ import annotations

import math

import numpy as np
import torch
from corpus_tools import accepted, rejected

from cnnbook.checks import receptive_fields as c

# ---------------------------------------------------------------- exercise 1: receptive_field


def rf_reference(layers):
    rf, jump, out = 1, 1, []
    for k, s in layers:
        rf += (k - 1) * jump
        jump *= s
        out.append(rf)
    return out


def rf_with_prod_of_earlier_strides(layers):  # the formula written literally, returning a tuple
    return tuple(
        1 + sum((k - 1) * math.prod(s for _, s in layers[:i]) for i, (k, _) in enumerate(layers[: j + 1]))
        for j in range(len(layers))
    )


def rf_includes_own_stride(layers):
    rf, jump, out = 1, 1, []
    for k, s in layers:
        jump *= s
        rf += (k - 1) * jump
        out.append(rf)
    return out


def rf_ignores_strides(layers):
    rf, out = 1, []
    for k, _ in layers:
        rf += k - 1
        out.append(rf)
    return out


def rf_sums_kernel_sizes(layers):
    return [sum(k for k, _ in layers[: i + 1]) for i in range(len(layers))]


def rf_starts_at_zero(layers):
    rf, jump, out = 0, 1, []
    for k, s in layers:
        rf += (k - 1) * jump
        jump *= s
        out.append(rf)
    return out


def rf_precedence_slip(layers):
    rf, jump, out = 1, 1, []
    for k, s in layers:
        rf += k - 1 * jump
        jump *= s
        out.append(rf)
    return out


def rf_as_floats(layers):
    return [float(r) for r in rf_reference(layers)]


def rf_last_value_only(layers):
    return rf_reference(layers)[-1]


def test_receptive_field_accepts_correct_answers() -> None:
    accepted(c.check_receptive_field, rf_reference)
    accepted(c.check_receptive_field, rf_with_prod_of_earlier_strides)


def test_receptive_field_rejects_mistakes() -> None:
    rejected(c.check_receptive_field, rf_includes_own_stride, hint="INCLUDING the current layer")
    rejected(c.check_receptive_field, rf_ignores_strides, hint="ignored the strides")
    rejected(c.check_receptive_field, rf_sums_kernel_sizes, hint="added up the kernel sizes")
    rejected(c.check_receptive_field, rf_starts_at_zero, hint="r_0 = 0")
    rejected(c.check_receptive_field, rf_precedence_slip, hint="precedence")
    rejected(c.check_receptive_field, rf_last_value_only, hint="after EACH")
    rejected(
        c.check_receptive_field,
        rf_includes_own_stride,
        hint="INCLUDING",
        requirement="strides of the layers before",
    )
    rejected(c.check_receptive_field, rf_as_floats, hint="should be an int", requirement="ints")


# ---------------------------------------------------------------- exercise 2: choose a design

C = 256
WEIGHTS = {"A": 49 * C * C, "B": 27 * C * C, "C": 9 * C * C, "D": 34 * C * C}
PIXELS = {"A": 49, "B": 49, "C": 9, "D": 49}
CHOICE_RULE = "every pixel of the 7x7 window"


def test_kernel_choice_accepts_correct_answers() -> None:
    accepted(c.check_kernel_choice, "B", WEIGHTS, PIXELS)
    accepted(c.check_kernel_choice, " b", WEIGHTS, PIXELS)  # a lower-case letter with a space
    accepted(  # NumPy integers are whole numbers too
        c.check_kernel_choice, "B", {k: np.int64(v) for k, v in WEIGHTS.items()}, PIXELS
    )


def test_kernel_choice_rejects_mistakes() -> None:
    req = CHOICE_RULE
    # the cheapest design, whose holes leave 40 pixels out
    rejected(c.check_kernel_choice, "C", WEIGHTS, PIXELS, hint="only 9 of the 49", requirement=req)
    # the big kernel: sees everything, but at 49 c^2
    rejected(c.check_kernel_choice, "A", WEIGHTS, PIXELS, hint="sees all 49 pixels", requirement=req)
    rejected(c.check_kernel_choice, "D", WEIGHTS, PIXELS, hint="sees all 49 pixels", requirement=req)
    # the justification: taps mistaken for the field, the dilated span mistaken for its pixels
    rejected(c.check_kernel_choice, "B", WEIGHTS, {**PIXELS, "C": 49}, hint="40 pixels", requirement=req)
    rejected(c.check_kernel_choice, "B", WEIGHTS, {**PIXELS, "B": 27}, hint="27 taps", requirement=req)
    rejected(c.check_kernel_choice, "B", WEIGHTS, {**PIXELS, "D": 34}, hint="3 \\+ 5 - 1", requirement=req)
    # weights: biases, channels counted once, one layer of a stack, a dilated kernel as a 7x7
    with_bias = {k: v + C * len(c.KERNEL_OPTIONS[k]) for k, v in WEIGHTS.items()}
    rejected(c.check_kernel_choice, "B", with_bias, PIXELS, hint="no bias", requirement=req)
    once = {k: v // C for k, v in WEIGHTS.items()}
    rejected(c.check_kernel_choice, "B", once, PIXELS, hint="not k \\* k \\* c", requirement=req)
    rejected(
        c.check_kernel_choice, "B", {**WEIGHTS, "B": 9 * C * C}, PIXELS, hint="one layer", requirement=req
    )
    rejected(
        c.check_kernel_choice,
        "B",
        {**WEIGHTS, "C": 49 * C * C},
        PIXELS,
        hint="holes hold no",
        requirement=req,
    )
    # types: floats for counts, a missing option, a letter that is not an option
    rejected(
        c.check_kernel_choice, "B", {k: float(v) for k, v in WEIGHTS.items()}, PIXELS, hint="should be an int"
    )
    rejected(c.check_kernel_choice, "B", {"A": 1, "B": 2}, PIXELS, hint="keys")
    rejected(c.check_kernel_choice, "E", WEIGHTS, PIXELS, hint="one of the letters")


# ---------------------------------------------------------------- exercise 3: rf_by_gradient


def probe_reference(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    h, w = out.shape[-2] // 2, out.shape[-1] // 2
    out[0, 0, h, w].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    return int(rows.max() - rows.min() + 1)


def probe_with_autograd_grad(model, size):  # torch.autograd.grad and a tensor result
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    (g,) = torch.autograd.grad(out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2], x)
    rows = torch.where(g[0, 0].ne(0).any(dim=1))[0]
    return int(rows[-1] - rows[0] + 1)


def probe_in_eval_mode_restored(model, size):  # saves and restores every layer's own mode
    modes = [m.training for m in model.modules()]
    model.eval()
    try:
        return probe_reference(model, size)
    finally:
        for m, mode in zip(model.modules(), modes, strict=True):
            m.train(mode)


def probe_returns_a_tensor(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    (g,) = torch.autograd.grad(out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2], x)
    rows = torch.where(g[0, 0].ne(0).any(dim=1))[0]
    return rows[-1] - rows[0] + 1


def probe_leaves_eval_mode(model, size):  # "a probe should run in eval mode"
    model.eval()
    return probe_reference(model, size)


def probe_restores_top_mode_only(model, size):
    was = model.training
    model.eval()
    try:
        return probe_reference(model, size)
    finally:
        model.train(was)


def probe_sets_weights_to_one(model, size):  # "positive weights, so nothing cancels"
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    return probe_reference(model, size)


def probe_all_outputs(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    model(x).sum().backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    return int(rows.max() - rows.min() + 1)


def probe_counts_rows(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    return int((x.grad[0, 0].abs().sum(dim=1) > 0).sum())


def probe_forgets_plus_one(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    return int(rows.max() - rows.min())


def probe_corner_unit(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    model(x)[0, 0, 0, 0].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    return int(rows.max() - rows.min() + 1)


def probe_leaves_grad_off(model, size):
    torch.set_grad_enabled(False)
    with torch.enable_grad():
        return probe_reference(model, size)


def test_rf_by_gradient_accepts_correct_answers() -> None:
    accepted(c.check_rf_by_gradient, probe_reference)
    accepted(c.check_rf_by_gradient, probe_with_autograd_grad)
    accepted(c.check_rf_by_gradient, probe_in_eval_mode_restored)


def test_rf_by_gradient_rejects_mistakes() -> None:
    rejected(c.check_rf_by_gradient, probe_all_outputs, hint="ALL outputs")
    rejected(c.check_rf_by_gradient, probe_counts_rows, hint="counted the rows")
    rejected(c.check_rf_by_gradient, probe_forgets_plus_one, hint=r"forgot the \+ 1")
    rejected(c.check_rf_by_gradient, probe_corner_unit, hint="corner")
    rejected(c.check_rf_by_gradient, probe_leaves_grad_off, hint="gradients were left off")
    assert torch.is_grad_enabled()


PROBE_RULE = "leave the model's modes, weights and the grad mode"


def test_rf_by_gradient_rejects_side_effects_and_types() -> None:
    rejected(
        c.check_rf_by_gradient,
        probe_leaves_eval_mode,
        hint="left the model in eval mode",
        requirement=PROBE_RULE,
    )
    rejected(
        c.check_rf_by_gradient,
        probe_restores_top_mode_only,
        hint="put `0` .*train mode",
        requirement=PROBE_RULE,
    )
    rejected(
        c.check_rf_by_gradient,
        probe_sets_weights_to_one,
        hint="changed the model's weights",
        requirement=PROBE_RULE,
    )
    rejected(c.check_rf_by_gradient, probe_returns_a_tensor, hint="Python int", requirement="as an int")


# ---------------------------------------------------------------- exercise 4: stem predictions


def test_stem_predictions_accept_correct_answers() -> None:
    accepted(c.check_stem_predictions, 27, 4, 15)


def test_stem_predictions_reject_mistakes() -> None:
    rejected(c.check_stem_predictions, 13, 4, 15, hint="product of the strides BEFORE it")
    rejected(c.check_stem_predictions, 16, 4, 15, hint="do not add up kernel sizes")
    rejected(c.check_stem_predictions, 15, 4, 15, hint="the max pool counts too")
    rejected(c.check_stem_predictions, 27.0, 4, 15, hint="should be an int", requirement="ints")
    rejected(c.check_stem_predictions, 27, 2, 15, hint="max pool has stride 2 too")
    rejected(c.check_stem_predictions, 27, 16, 15, hint="do not change the jump")
    rejected(c.check_stem_predictions, 27, 4, 7, hint="spreads a 3x3 kernel")
    rejected(c.check_stem_predictions, 27, 4, 9, hint="k_eff = k \\+ \\(k - 1\\)\\(d - 1\\)")
