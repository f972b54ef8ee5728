"""Wrong-answer corpus for the 14.3 exercises (feature maps and receptive fields)."""

from __future__ import annotations

import math

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


# ---------------------------------------------------------------- exercise 2: stack_vs_single


def stack_reference(c_, n):
    k = 2 * n + 1
    return n * 9 * c_ * c_, k * k * c_ * c_, k


def stack_as_list(c_, n):  # a list is as good as a tuple
    return [9 * n * c_**2, (2 * n + 1) ** 2 * c_**2, 2 * n + 1]


def stack_kernel_3n(c_, n):
    return 9 * n * c_ * c_, (3 * n) ** 2 * c_ * c_, 3 * n


def stack_channels_once(c_, n):
    k = 2 * n + 1
    return 9 * n * c_, k * k * c_, k


def stack_counts_biases(c_, n):
    k = 2 * n + 1
    return 9 * n * c_ * c_ + n * c_, k * k * c_ * c_ + c_, k


def stack_one_layer_only(c_, n):
    k = 2 * n + 1
    return 9 * c_ * c_, k * k * c_ * c_, k


def test_stack_vs_single_accepts_correct_answers() -> None:
    accepted(c.check_stack_vs_single, stack_reference)
    accepted(c.check_stack_vs_single, stack_as_list)


def test_stack_vs_single_rejects_mistakes() -> None:
    rejected(c.check_stack_vs_single, stack_kernel_3n, hint="not 3n")
    rejected(c.check_stack_vs_single, stack_channels_once, hint=r"c \* c \* 3 \* 3")
    rejected(c.check_stack_vs_single, stack_counts_biases, hint="counts biases")
    rejected(c.check_stack_vs_single, stack_one_layer_only, hint="ONE layer")


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
    return rows[-1] - rows[0] + 1


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


def test_rf_by_gradient_rejects_mistakes() -> None:
    rejected(c.check_rf_by_gradient, probe_all_outputs, hint="ALL outputs")
    rejected(c.check_rf_by_gradient, probe_counts_rows, hint="counted the rows")
    rejected(c.check_rf_by_gradient, probe_forgets_plus_one, hint=r"forgot the \+ 1")
    rejected(c.check_rf_by_gradient, probe_corner_unit, hint="corner")
    rejected(c.check_rf_by_gradient, probe_leaves_grad_off, hint="gradients were left off")
    assert torch.is_grad_enabled()


# ---------------------------------------------------------------- exercise 4: stem predictions


def test_stem_predictions_accept_correct_answers() -> None:
    accepted(c.check_stem_predictions, 27, 4, 15)


def test_stem_predictions_reject_mistakes() -> None:
    rejected(c.check_stem_predictions, 13, 4, 15, hint="product of the strides BEFORE it")
    rejected(c.check_stem_predictions, 16, 4, 15, hint="do not add up kernel sizes")
    rejected(c.check_stem_predictions, 15, 4, 15, hint="the max pool counts too")
    rejected(c.check_stem_predictions, 27.0, 4, 15, hint="whole number")
    rejected(c.check_stem_predictions, 27, 2, 15, hint="max pool has stride 2 too")
    rejected(c.check_stem_predictions, 27, 16, 15, hint="do not change the jump")
    rejected(c.check_stem_predictions, 27, 4, 7, hint="spreads a 3x3 kernel")
    rejected(c.check_stem_predictions, 27, 4, 9, hint="k_eff = k \\+ \\(k - 1\\)\\(d - 1\\)")
