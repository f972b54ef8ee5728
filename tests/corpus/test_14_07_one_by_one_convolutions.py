"""Wrong-answer corpus for the 14.7 exercises (1x1 convolutions)."""

from __future__ import annotations

import torch
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import one_by_one as checks

# ---------------------------------------------------------------- Exercise 1: merge two 1x1 convs


def _bias(conv):
    return conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)


def merge_reference(first, second):
    w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
    merged = nn.Conv2d(first.in_channels, second.out_channels, 1)
    with torch.no_grad():
        merged.weight.copy_((w2 @ w1)[:, :, None, None])
        merged.bias.copy_(w2 @ _bias(first) + _bias(second))
    return merged


def merge_with_einsum_and_parameters(first, second):
    with torch.no_grad():
        w = torch.einsum("om,mi->oi", second.weight.flatten(1), first.weight.flatten(1))
        b = torch.einsum("om,m->o", second.weight.flatten(1), _bias(first)) + _bias(second)
    merged = nn.Conv2d(first.in_channels, second.out_channels, kernel_size=(1, 1))
    merged.weight = nn.Parameter(w[:, :, None, None])
    merged.bias = nn.Parameter(b)
    return merged


def merge_keeps_second_bias_only(first, second):
    merged = merge_reference(first, second)
    with torch.no_grad():
        merged.bias.copy_(_bias(second))
    return merged


def merge_adds_biases(first, second):
    merged = merge_reference(first, second)
    with torch.no_grad():
        b1 = _bias(first)
        merged.bias.copy_(_bias(second) + (b1 if b1.numel() == second.out_channels else 0))
    return merged


def merge_wrong_matrix_order(first, second):
    w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
    merged = merge_reference(first, second)
    with torch.no_grad():
        merged.weight.copy_((w1 @ w2)[:, :, None, None])
    return merged


def merge_without_bias(first, second):
    w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
    merged = nn.Conv2d(first.in_channels, second.out_channels, 1, bias=False)
    with torch.no_grad():
        merged.weight.copy_((w2 @ w1)[:, :, None, None])
    return merged


def merge_assumes_both_biases(first, second):
    w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]
    merged = nn.Conv2d(first.in_channels, second.out_channels, 1)
    with torch.no_grad():
        merged.weight.copy_((w2 @ w1)[:, :, None, None])
        merged.bias.copy_(w2 @ first.bias + second.bias)
    return merged


def merge_reuses_second_bias(first, second):
    merged = merge_reference(first, second)
    if first.bias is None and second.bias is not None:
        merged.bias = second.bias  # the same Parameter: training one changes the other
    return merged


def merge_by_probing(first, second):
    """Reads the merged map off the pair's outputs on probe images: a convolution does the work."""
    with torch.no_grad():
        eye = torch.eye(first.in_channels)[:, :, None, None]
        b = second(first(torch.zeros(1, first.in_channels, 1, 1)))[0, :, 0, 0]
        w = (second(first(eye))[:, :, 0, 0] - b).T
    merged = nn.Conv2d(first.in_channels, second.out_channels, 1)
    with torch.no_grad():
        merged.weight.copy_(w[:, :, None, None])
        merged.bias.copy_(b)
    return merged


def merge_in_double(first, second):
    """Computes in float64 and copies back: right (copy_ casts to the conv's float32)."""
    w1, w2 = first.weight[:, :, 0, 0].double(), second.weight[:, :, 0, 0].double()
    merged = nn.Conv2d(first.in_channels, second.out_channels, 1)
    with torch.no_grad():
        merged.weight.copy_((w2 @ w1)[:, :, None, None])
        merged.bias.copy_(w2 @ _bias(first).double() + _bias(second).double())
    return merged


def merge_returns_the_pair(first, second):
    return nn.Sequential(first, second)


def test_merge_right_answers_pass() -> None:
    accepted(checks.check_merge_pointwise, merge_reference)
    accepted(checks.check_merge_pointwise, merge_with_einsum_and_parameters)
    accepted(checks.check_merge_pointwise, merge_in_double)


def test_merge_mistakes_are_named() -> None:
    rejected(checks.check_merge_pointwise, merge_keeps_second_bias_only, hint="ignores first's bias")
    rejected(checks.check_merge_pointwise, merge_adds_biases, hint="b1 \\+ b2")
    rejected(checks.check_merge_pointwise, merge_wrong_matrix_order, hint="wrong order")
    rejected(checks.check_merge_pointwise, merge_without_bias, hint="has no bias")
    rejected(checks.check_merge_pointwise, merge_assumes_both_biases, hint="raised TypeError.*bias=False")
    rejected(checks.check_merge_pointwise, merge_returns_the_pair, hint="ONE nn.Conv2d")
    rejected(checks.check_merge_pointwise, merge_reuses_second_bias, hint="shares memory")
    rejected(
        checks.check_merge_pointwise,
        merge_by_probing,
        hint="convolution.*W2 @ W1",
        requirement="without running a convolution",
    )


# ---------------------------------------------------------------- Exercise 2: bottleneck savings


def bottleneck_reference(c, c_mid, k=3):
    return c * c * k * k, c * c_mid + c_mid * c_mid * k * k


def bottleneck_from_shapes(c, c_mid, k=3):
    shapes = [(c, c, k, k)], [(c_mid, c, 1, 1), (c_mid, c_mid, k, k)]
    return tuple(sum(a * b * h * w for a, b, h, w in group) for group in shapes)


def bottleneck_counts_biases(c, c_mid, k=3):
    return c * c * k * k + c, c * c_mid + c_mid + c_mid * c_mid * k * k + c_mid


def bottleneck_without_reduction(c, c_mid, k=3):
    return c * c * k * k, c_mid * c_mid * k * k


def bottleneck_kxk_on_full_channels(c, c_mid, k=3):
    return c * c * k * k, c * c_mid + c * c_mid * k * k


def bottleneck_adds_expansion(c, c_mid, k=3):
    return c * c * k * k, c * c_mid + c_mid * c_mid * k * k + c_mid * c


def bottleneck_true_division(c, c_mid, k=3):
    return c * c * k**2 / 1, c * c_mid + c_mid * c_mid * k**2 / 1


def bottleneck_numpy_float(c, c_mid, k=3):
    import numpy as np

    return int(c * c * k * k), np.float64(c * c_mid + c_mid * c_mid * k * k)


def test_bottleneck_right_answers_pass() -> None:
    accepted(checks.check_bottleneck_params, bottleneck_reference)
    accepted(checks.check_bottleneck_params, bottleneck_from_shapes)


def test_bottleneck_mistakes_are_named() -> None:
    rejected(checks.check_bottleneck_params, bottleneck_counts_biases, hint="biases")
    rejected(checks.check_bottleneck_params, bottleneck_without_reduction, hint="left out the 1x1")
    rejected(checks.check_bottleneck_params, bottleneck_kxk_on_full_channels, hint="REDUCED")
    rejected(checks.check_bottleneck_params, bottleneck_adds_expansion, hint="expansion")
    rejected(checks.check_bottleneck_params, bottleneck_true_division, hint="should be an int")
    rejected(checks.check_bottleneck_params, bottleneck_numpy_float, hint="should be an int")


# ---------------------------------------------------------------- Exercise 3: Linear as 1x1 conv


def to_conv_reference(linear):
    conv = nn.Conv2d(linear.in_features, linear.out_features, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
        conv.bias.copy_(linear.bias)
    return conv


def to_conv_with_view_and_new_parameters(linear):
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    conv.weight = nn.Parameter(linear.weight.detach().clone().view(*linear.weight.shape, 1, 1))
    conv.bias = nn.Parameter(linear.bias.detach().clone())
    return conv


def to_conv_weight_view(linear):
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    conv.weight = nn.Parameter(linear.weight.detach().view(*linear.weight.shape, 1, 1))  # a view
    with torch.no_grad():
        conv.bias.copy_(linear.bias)
    return conv


def to_conv_same_bias(linear):
    conv = to_conv_reference(linear)
    conv.bias = linear.bias  # the Linear's own Parameter
    return conv


def to_conv_without_bias_copy(linear):
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
    return conv


def to_conv_transposed_weight(linear):
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.T.reshape(linear.out_features, linear.in_features, 1, 1))
        conv.bias.copy_(linear.bias)
    return conv


def to_conv_fresh_weights(linear):
    return nn.Conv2d(linear.in_features, linear.out_features, 1)


def to_conv_returns_linear(linear):
    return linear


def test_linear_to_conv_right_answers_pass() -> None:
    accepted(checks.check_linear_to_conv1x1, to_conv_reference)
    accepted(checks.check_linear_to_conv1x1, to_conv_with_view_and_new_parameters)


def test_linear_to_conv_mistakes_are_named() -> None:
    rejected(checks.check_linear_to_conv1x1, to_conv_without_bias_copy, hint="bias was not copied")
    rejected(checks.check_linear_to_conv1x1, to_conv_transposed_weight, hint="transposed")
    rejected(checks.check_linear_to_conv1x1, to_conv_fresh_weights, hint="wrong values")
    rejected(checks.check_linear_to_conv1x1, to_conv_returns_linear, hint="kernel_size=1")
    rejected(checks.check_linear_to_conv1x1, to_conv_weight_view, hint="shares memory")
    rejected(checks.check_linear_to_conv1x1, to_conv_same_bias, hint="shares memory")


# ---------------------------------------------------------------- Exercise 2: where the merge holds


def holds_reference(first, x):
    with torch.no_grad():
        return (first(x) >= 0).all(dim=1)


def holds_by_min_and_einsum(first, x):
    """The smallest channel of W1 x + b1, written out with einsum and the bias handled by hand."""
    z = torch.einsum("oc,nchw->nohw", first.weight.detach()[:, :, 0, 0], x)
    if first.bias is not None:
        z = z + first.bias.detach()[None, :, None, None]
    return z.amin(dim=1) >= 0


def holds_negated_any(first, x):
    with torch.inference_mode():
        return ~(first(x) < 0).any(1)


def holds_strict(first, x):
    with torch.no_grad():
        return (first(x) > 0).all(dim=1)


def holds_any_channel(first, x):
    with torch.no_grad():
        return (first(x) >= 0).any(dim=1)


def holds_on_the_input(first, x):
    return (x >= 0).all(dim=1)


def holds_without_bias(first, x):
    with torch.no_grad():
        return (torch.nn.functional.conv2d(x, first.weight) >= 0).all(dim=1)


def holds_keepdim(first, x):
    with torch.no_grad():
        return (first(x) >= 0).all(dim=1, keepdim=True)


def holds_channel_mask(first, x):
    with torch.no_grad():
        return first(x) >= 0


def holds_as_floats(first, x):
    with torch.no_grad():
        return (first(x) >= 0).all(dim=1).float()


def holds_leaves_first_in_eval(first, x):
    first.eval()
    return holds_reference(first, x)


def test_where_merge_holds_right_answers_pass() -> None:
    accepted(checks.check_where_merge_holds, holds_reference)
    accepted(checks.check_where_merge_holds, holds_by_min_and_einsum)
    accepted(checks.check_where_merge_holds, holds_negated_any)


def test_where_merge_holds_mistakes_are_named() -> None:
    requirement = "True exactly where every channel of first\\(x\\) is >= 0"
    rejected(checks.check_where_merge_holds, holds_strict, hint="exactly 0.*>= 0", requirement=requirement)
    rejected(checks.check_where_merge_holds, holds_any_channel, hint="\\.all over", requirement=requirement)
    rejected(checks.check_where_merge_holds, holds_on_the_input, hint="not on x", requirement=requirement)
    rejected(
        checks.check_where_merge_holds, holds_without_bias, hint="WITH its bias", requirement=requirement
    )
    rejected(checks.check_where_merge_holds, holds_keepdim, hint="no keepdim")
    rejected(checks.check_where_merge_holds, holds_channel_mask, hint="reduced away")
    rejected(checks.check_where_merge_holds, holds_as_floats, hint="bool mask")
    rejected(checks.check_where_merge_holds, holds_leaves_first_in_eval, hint="eval mode|mode")


# ---------------------------------------------------------------- Exercise 3: the prediction, the follow-up


def bottleneck_meta_layers(c, c_mid, k=3):
    """Builds the layers on the meta device and counts: the layers count for you."""

    def count(*layers):
        return sum(p.numel() for layer in layers for p in layer.parameters())

    direct = count(nn.Conv2d(c, c, k, bias=False, device="meta"))
    reduce = nn.Conv2d(c, c_mid, 1, bias=False, device="meta")
    return direct, count(reduce, nn.Conv2d(c_mid, c_mid, k, bias=False, device="meta"))


def bottleneck_lazy_layers_imported_inside(c, c_mid, k=3):
    from torch.nn.modules.conv import LazyConv2d

    layer = LazyConv2d(c, k, bias=False)
    layer(torch.zeros(1, c, k, k))
    return layer.weight.numel(), c * c_mid + c_mid * c_mid * k * k


def test_bottleneck_prediction_right_answers_pass() -> None:
    for letter in ("c", "C", "(c)"):
        accepted(checks.check_bottleneck_params, bottleneck_reference, letter)


def test_bottleneck_built_layers_are_refused() -> None:
    for built in (bottleneck_meta_layers, bottleneck_lazy_layers_imported_inside):
        rejected(
            checks.check_bottleneck_params,
            built,
            "c",
            hint="builds a layer",
            requirement="without building any layer",
        )


def test_bottleneck_prediction_mistakes_are_named() -> None:
    for letter in ("a", "b"):
        rejected(
            checks.check_bottleneck_params,
            bottleneck_reference,
            letter,
            hint="up to c_mid = 242.*well below 9 c\\^2",
            requirement="stops_paying: the letter",
        )
    rejected(
        checks.check_bottleneck_params,
        bottleneck_reference,
        "d",
        hint="1x1 reduction itself costs",
        requirement="stops_paying: the letter",
    )
    rejected(checks.check_bottleneck_params, bottleneck_reference, "?", hint="still '\\?'")
    rejected(checks.check_bottleneck_params, bottleneck_reference, 242, hint="one of the letters")
    rejected(checks.check_bottleneck_params, bottleneck_kxk_on_full_channels, "c", hint="REDUCED")


def test_bottleneck_k1_right_answers_pass() -> None:
    import numpy as np

    accepted(checks.check_bottleneck_k1, 158)
    accepted(checks.check_bottleneck_k1, np.int64(158))


def test_bottleneck_k1_mistakes_are_named() -> None:
    requirement = "largest c_mid"
    rejected(
        checks.check_bottleneck_k1, 159, hint="first width that no\\s+longer saves", requirement=requirement
    )
    rejected(checks.check_bottleneck_k1, 242, hint="answer for a 3x3 kernel", requirement=requirement)
    rejected(checks.check_bottleneck_k1, 255, hint="reduction costs c \\* c_mid", requirement=requirement)
    rejected(checks.check_bottleneck_k1, 128, hint="look further", requirement=requirement)
    rejected(checks.check_bottleneck_k1, 158.0, hint="int")
    rejected(checks.check_bottleneck_k1, 100, hint="largest\\s+c_mid with")
