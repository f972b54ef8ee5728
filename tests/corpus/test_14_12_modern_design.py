"""Wrong-answer corpus for the 14.12 exercises (modern CNN design principles)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected

from cnnbook.checks import modern_design as checks

# ---------------------------------------------------------------- Exercise 1: squeeze-and-excitation


def se_reference(x, w1, b1, w2, b2):
    s = x.mean(dim=(2, 3))
    g = torch.sigmoid(F.linear(torch.relu(F.linear(s, w1, b1)), w2, b2))
    return x * g[:, :, None, None]


def se_with_modules_float32(x, w1, b1, w2, b2):
    """nn layers with copied weights, adaptive pooling, float32 throughout: also right."""
    fc1, fc2 = torch.nn.Linear(w1.shape[1], w1.shape[0]), torch.nn.Linear(w2.shape[1], w2.shape[0])
    with torch.no_grad():
        fc1.weight.copy_(w1), fc1.bias.copy_(b1), fc2.weight.copy_(w2), fc2.bias.copy_(b2)
    xf = x.float()
    s = F.adaptive_avg_pool2d(xf, 1).flatten(1)
    g = fc2(F.relu(fc1(s))).sigmoid()
    return xf * g.view(*g.shape, 1, 1)


def se_max_pool(x, w1, b1, w2, b2):
    g = torch.sigmoid(F.linear(torch.relu(F.linear(x.amax(dim=(2, 3)), w1, b1)), w2, b2))
    return x * g[:, :, None, None]


def se_sum_pool(x, w1, b1, w2, b2):
    g = torch.sigmoid(F.linear(torch.relu(F.linear(x.sum(dim=(2, 3)), w1, b1)), w2, b2))
    return x * g[:, :, None, None]


def se_without_relu(x, w1, b1, w2, b2):
    g = torch.sigmoid(F.linear(F.linear(x.mean(dim=(2, 3)), w1, b1), w2, b2))
    return x * g[:, :, None, None]


def se_softmax_gate(x, w1, b1, w2, b2):
    g = torch.softmax(F.linear(torch.relu(F.linear(x.mean(dim=(2, 3)), w1, b1)), w2, b2), dim=1)
    return x * g[:, :, None, None]


def se_gate_only(x, w1, b1, w2, b2):
    return torch.sigmoid(F.linear(torch.relu(F.linear(x.mean(dim=(2, 3)), w1, b1)), w2, b2))


def test_se_right_answers_pass() -> None:
    accepted(checks.check_squeeze_excite, se_reference)
    accepted(checks.check_squeeze_excite, se_with_modules_float32)


def test_se_mistakes_are_named() -> None:
    check = checks.check_squeeze_excite
    rejected(check, se_max_pool, hint="maximum")
    rejected(check, se_sum_pool, hint="SUM over positions")
    rejected(check, se_without_relu, hint="ReLU .* missing")
    rejected(check, se_softmax_gate, hint="softmax")
    rejected(check, se_gate_only, hint="gate alone")


# ---------------------------------------------------------------- Exercise 2: compound scaling


def scale_reference(phi, alpha=1.2, beta=1.1, gamma=1.15):
    d, w, r = alpha**phi, beta**phi, gamma**phi
    return d, w, r, d * w**2 * r**2


def scale_numpy_list(phi, alpha=1.2, beta=1.1, gamma=1.15):
    """NumPy scalars in a list, cost as exp of a log-sum: also right."""
    d, w, r = np.power([alpha, beta, gamma], phi)
    return [d, w, r, np.exp(phi * (math.log(alpha) + 2 * math.log(beta) + 2 * math.log(gamma)))]


def scale_times_phi(phi, alpha=1.2, beta=1.1, gamma=1.15):
    d, w, r = alpha * phi, beta * phi, gamma * phi
    return d, w, r, d * w**2 * r**2


def scale_flops_not_squared(phi, alpha=1.2, beta=1.1, gamma=1.15):
    d, w, r = alpha**phi, beta**phi, gamma**phi
    return d, w, r, d * w * r


def scale_flops_two_to_phi(phi, alpha=1.2, beta=1.1, gamma=1.15):
    return alpha**phi, beta**phi, gamma**phi, 2.0**phi


def scale_hard_coded_bases(phi, alpha=1.2, beta=1.1, gamma=1.15):
    return scale_reference(phi)


def test_scale_right_answers_pass() -> None:
    accepted(checks.check_compound_scale, scale_reference)
    accepted(checks.check_compound_scale, scale_numpy_list)


def test_scale_mistakes_are_named() -> None:
    check = checks.check_compound_scale
    rejected(check, scale_times_phi, hint="POWERS")
    rejected(check, scale_flops_not_squared, hint="count TWICE")
    rejected(check, scale_flops_two_to_phi, hint="design target")
    rejected(check, scale_hard_coded_bases, hint="instead of the alpha, beta, gamma passed in")


# ---------------------------------------------------------------- Exercise 3: CutMix near the border


def test_cutmix_prediction_right_answers_pass() -> None:
    accepted(checks.check_cutmix_prediction, 0.82)
    accepted(checks.check_cutmix_prediction, 1 - 182 / 1024)
    accepted(checks.check_cutmix_prediction, torch.tensor(0.822))


def test_cutmix_prediction_mistakes_are_named() -> None:
    check = checks.check_cutmix_prediction
    rejected(check, 0.5, hint="DRAWN")
    rejected(check, 0.18, hint="PARTNER")
    rejected(check, 0.527, hint="UNCLIPPED")
    rejected(check, 0.7, hint="Count the clipped box")
    rejected(check, None, hint="still None")
    rejected(check, "0.82", hint="should be a number")


# ---------------------------------------------------------------- Exercise 4: channel widths


def widths_reference(channels, width_mult, divisor=8):
    exact = channels * width_mult
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return rounded


def widths_with_floor_division(channels, width_mult, divisor=8):
    """math.floor of exact / divisor + 1/2, returned as a NumPy integer: also right."""
    exact = channels * width_mult
    rounded = divisor * max(1, math.floor(exact / divisor + 0.5))
    return np.int64(rounded + divisor if rounded < 0.9 * exact else rounded)


def widths_python_round(channels, width_mult, divisor=8):
    exact = channels * width_mult
    rounded = max(divisor, round(exact / divisor) * divisor)
    return rounded + divisor if rounded < 0.9 * exact else rounded


def widths_round_down(channels, width_mult, divisor=8):
    exact = channels * width_mult
    rounded = max(divisor, int(exact) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * exact else rounded


def widths_without_ten_percent_rule(channels, width_mult, divisor=8):
    return max(divisor, int(channels * width_mult + divisor / 2) // divisor * divisor)


def widths_rule_on_base_channels(channels, width_mult, divisor=8):
    rounded = max(divisor, int(channels * width_mult + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def widths_divisor_ignored(channels, width_mult, divisor=8):
    return widths_reference(channels, width_mult, 8)


def widths_max_eight(channels, width_mult, divisor=8):
    exact = channels * width_mult
    rounded = max(8, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def widths_as_float(channels, width_mult, divisor=8):
    return float(widths_reference(channels, width_mult, divisor))


def test_widths_right_answers_pass() -> None:
    accepted(checks.check_round_filters, widths_reference)
    accepted(checks.check_round_filters, widths_with_floor_division)


def test_widths_mistakes_are_named() -> None:
    check = checks.check_round_filters
    rejected(check, widths_python_round, hint="halves to the EVEN")
    rejected(check, widths_round_down, hint="rounded DOWN")
    rejected(check, widths_without_ten_percent_rule, hint="10% rule is missing")
    rejected(check, widths_rule_on_base_channels, hint="SCALED width")
    rejected(check, widths_divisor_ignored, hint="ignored the divisor")
    rejected(check, widths_max_eight, hint="max\\(divisor, ...\\), not max\\(8")
    rejected(check, widths_as_float, hint="should be an int")
