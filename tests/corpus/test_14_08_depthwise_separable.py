"""Wrong-answer corpus for the 14.8 exercises (depthwise separable convolutions)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import depthwise as checks

# ---------------------------------------------------------------- Exercise 1: parameter counts


def params_reference(c_in, c_out, k):
    return c_in * c_out * k * k, c_in * k * k + c_in * c_out


def params_from_layer_shapes(c_in, c_out, k):
    standard = math.prod((c_out, c_in, k, k))
    return standard, math.prod((c_in, 1, k, k)) + math.prod((c_out, c_in, 1, 1))


def params_depthwise_per_output_pair(c_in, c_out, k):
    return c_in * c_out * k * k, c_in * c_out * k * k + c_in * c_out


def params_without_pointwise(c_in, c_out, k):
    return c_in * c_out * k * k, c_in * k * k


def params_depthwise_on_outputs(c_in, c_out, k):
    return c_in * c_out * k * k, c_out * k * k + c_in * c_out


def params_without_depthwise(c_in, c_out, k):
    return c_in * c_out * k * k, c_in * c_out


def params_ratio_times_standard(c_in, c_out, k):
    standard = c_in * c_out * k * k
    return standard, standard * (1 / c_out + 1 / k**2)  # right value, but a float


def params_as_tensors(c_in, c_out, k):
    import torch as _torch

    return _torch.tensor(c_in * c_out * k * k), _torch.tensor(c_in * k * k + c_in * c_out)


def test_params_right_answers_pass() -> None:
    accepted(checks.check_separable_params, params_reference)
    accepted(checks.check_separable_params, params_from_layer_shapes)


def test_params_mistakes_are_named() -> None:
    rejected(checks.check_separable_params, params_depthwise_per_output_pair, hint="ONE k x k filter")
    rejected(checks.check_separable_params, params_without_pointwise, hint="left out the pointwise")
    rejected(checks.check_separable_params, params_depthwise_on_outputs, hint="INPUT channels")
    rejected(checks.check_separable_params, params_without_depthwise, hint="left out the depthwise")
    rejected(checks.check_separable_params, params_ratio_times_standard, hint="should be an int")
    rejected(checks.check_separable_params, params_as_tensors, hint="should be a Python int")


# ---------------------------------------------------------------- Exercise 2: separable as standard


def to_standard_reference(depthwise_weight, pointwise_weight):
    return pointwise_weight * depthwise_weight.transpose(0, 1)


def to_standard_einsum(depthwise_weight, pointwise_weight):
    return torch.einsum("oc,chw->ochw", pointwise_weight[:, :, 0, 0], depthwise_weight[:, 0])


def to_standard_loop(depthwise_weight, pointwise_weight):
    c_out, c = pointwise_weight.shape[:2]
    out = torch.zeros(c_out, c, *depthwise_weight.shape[2:], dtype=depthwise_weight.dtype)
    for o in range(c_out):
        for i in range(c):
            out[o, i] = pointwise_weight[o, i, 0, 0] * depthwise_weight[i, 0]
    return out


def to_standard_summed_over_channels(depthwise_weight, pointwise_weight):
    w = to_standard_reference(depthwise_weight, pointwise_weight)
    return w.sum(1, keepdim=True).expand_as(w)


def to_standard_depthwise_by_output(depthwise_weight, pointwise_weight):
    return pointwise_weight * depthwise_weight


def to_standard_without_pointwise(depthwise_weight, pointwise_weight):
    c_out = pointwise_weight.shape[0]
    return depthwise_weight.transpose(0, 1).expand(c_out, -1, -1, -1)


def to_standard_square_kernel_only(depthwise_weight, pointwise_weight):
    c, _, k, _ = depthwise_weight.shape
    return pointwise_weight * depthwise_weight.reshape(1, c, k, k)


def to_standard_by_probing(depthwise_weight, pointwise_weight):
    """Runs the separable pair on one-hot images and reads the weight off: a convolution does it."""
    c, _, kh, kw = depthwise_weight.shape
    probes = torch.zeros(c * kh * kw, c, 2 * kh - 1, 2 * kw - 1)
    for idx in range(c * kh * kw):
        ch, i, j = idx // (kh * kw), (idx // kw) % kh, idx % kw
        probes[idx, ch, kh - 1 - i + kh - 1 - (kh - 1), kw - 1 - j + kw - 1 - (kw - 1)] = 1
    out = F.conv2d(F.conv2d(probes, depthwise_weight, groups=c), pointwise_weight)
    return out[:, :, 0, 0].T.reshape(-1, c, kh, kw)


def to_standard_inference_mode_half_steps(depthwise_weight, pointwise_weight):
    with torch.inference_mode():
        return (pointwise_weight * depthwise_weight.permute(1, 0, 2, 3)).clone()


def test_to_standard_right_answers_pass() -> None:
    accepted(checks.check_separable_to_standard, to_standard_reference)
    accepted(checks.check_separable_to_standard, to_standard_einsum)
    accepted(checks.check_separable_to_standard, to_standard_loop)
    accepted(checks.check_separable_to_standard, to_standard_inference_mode_half_steps)


def test_to_standard_mistakes_are_named() -> None:
    rejected(
        checks.check_separable_to_standard,
        to_standard_by_probing,
        hint="computes a convolution for you",
        requirement="without running a convolution",
    )
    rejected(
        checks.check_separable_to_standard,
        to_standard_summed_over_channels,
        hint="summed over the input channels",
    )
    rejected(checks.check_separable_to_standard, to_standard_depthwise_by_output, hint="OUTPUT channel")
    rejected(
        checks.check_separable_to_standard,
        to_standard_without_pointwise,
        hint="pointwise weights are missing",
    )
    rejected(checks.check_separable_to_standard, to_standard_square_kernel_only, hint="square kernel")


# ---------------------------------------------------------------- Exercise 3: the block


class BlockReference(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, inner_relu=True, final_relu=True):
        super().__init__()
        self.inner_relu, self.final_relu = inner_relu, final_relu
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        x = self.bn1(self.depthwise(x))
        x = F.relu(x) if self.inner_relu else x
        x = self.bn2(self.pointwise(x))
        return F.relu(x) if self.final_relu else x


class BlockSharedInplaceRelu(BlockReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn2(self.pointwise(self.relu(self.bn1(self.depthwise(x))))))


class BlockWithoutGroups(BlockReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride, 1, bias=False)


class BlockStrideOnPointwise(BlockReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, 1)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


def block_without_inner_relu(in_channels, out_channels, stride=1):
    return BlockReference(in_channels, out_channels, stride, inner_relu=False)


def block_without_final_relu(in_channels, out_channels, stride=1):
    return BlockReference(in_channels, out_channels, stride, final_relu=False)


class BlockWithConvBiases(BlockReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)


class BlockDenseForward(BlockReference):
    """Holds the right layers but runs one dense 3x3 conv with a block-diagonal weight."""

    def forward(self, x):
        c = self.depthwise.in_channels
        dense = torch.zeros(c, c, 3, 3, dtype=x.dtype)
        dense[range(c), range(c)] = self.depthwise.weight[:, 0]
        x = F.relu(self.bn1(F.conv2d(x, dense, stride=self.depthwise.stride, padding=1)))
        return F.relu(self.bn2(self.pointwise(x)))


class BlockFullConv3d(BlockReference):
    """Runs the depthwise step as a full conv3d with a depth of one: still a dense convolution."""

    def forward(self, x):
        c = self.depthwise.in_channels
        dense = torch.zeros(c, c, 1, 3, 3, dtype=x.dtype)
        dense[range(c), range(c), 0] = self.depthwise.weight[:, 0]
        s = self.depthwise.stride[0]
        x = F.conv3d(x[:, :, None], dense, stride=(1, s, s), padding=(0, 1, 1))[:, :, 0]
        return F.relu(self.bn2(self.pointwise(F.relu(self.bn1(x)))))


def test_block_right_answers_pass() -> None:
    accepted(checks.check_separable_block, BlockReference)
    accepted(checks.check_separable_block, BlockSharedInplaceRelu)


def test_block_mistakes_are_named() -> None:
    rejected(checks.check_separable_block, BlockWithoutGroups, hint="groups=in_channels")
    rejected(checks.check_separable_block, BlockStrideOnPointwise, hint="stride belongs on the depthwise")
    rejected(checks.check_separable_block, block_without_inner_relu, hint="no ReLU between")
    rejected(checks.check_separable_block, block_without_final_relu, hint="without its ReLU after bn2")
    rejected(checks.check_separable_block, BlockWithConvBiases, hint="without bias")
    for dense in (BlockDenseForward, BlockFullConv3d):
        rejected(
            checks.check_separable_block,
            dense,
            hint="full \\(groups=1\\) convolution",
            requirement="no full convolution",
        )


# ---------------------------------------------------------------- Exercise 4: channels for a saving


def min_channels_reference(k, target):
    if target >= k * k:
        return None
    c_out = 1
    while c_out * k * k < target * (c_out + k * k):
        c_out += 1
    return c_out


def min_channels_closed_form(k, target):
    from fractions import Fraction

    target, k2 = Fraction(target), k * k
    if target >= k2:
        return None
    if target <= Fraction(k2, 1 + k2):
        return 1
    return math.ceil(target * k2 / (k2 - target))


def min_channels_strictly_greater(k, target):
    if target >= k * k:
        return None
    c_out = 1
    while c_out * k * k <= target * (c_out + k * k):
        c_out += 1
    return c_out


def min_channels_never_none(k, target):
    c_out = 1
    while c_out * k * k < target * (c_out + k * k) and c_out < 10**6:
        c_out += 1
    return c_out


def min_channels_rounded_down(k, target):
    if target >= k * k:
        return None
    if target <= k * k / (1 + k * k):
        return 1
    return max(1, math.floor(target * k * k / (k * k - target)))


def min_channels_one_over_k(k, target):
    if target >= k:
        return None
    c_out = 1
    while c_out * k < target * (c_out + k):
        c_out += 1
    return c_out


def test_min_channels_right_answers_pass() -> None:
    accepted(checks.check_min_channels, min_channels_reference)
    accepted(checks.check_min_channels, min_channels_closed_form)


def test_min_channels_mistakes_are_named() -> None:
    rejected(checks.check_min_channels, min_channels_strictly_greater, hint="exact tie")
    rejected(checks.check_min_channels, min_channels_never_none, hint="expected None")
    rejected(checks.check_min_channels, min_channels_rounded_down, hint="rounded down")
    rejected(checks.check_min_channels, min_channels_one_over_k, hint="1/k instead")


# ---------------------------------------------------------------- Exercise 1: layers built, predictions


def params_meta_layers(c_in, c_out, k):
    """Builds the three layers on the meta device and counts: the layers count for you."""

    def count(layer):
        return sum(p.numel() for p in layer.parameters())

    standard = count(nn.Conv2d(c_in, c_out, k, bias=False, device="meta"))
    depthwise = nn.Conv2d(c_in, c_in, k, groups=c_in, bias=False, device="meta")
    return standard, count(depthwise) + count(nn.Conv2d(c_in, c_out, 1, bias=False, device="meta"))


def params_library_helpers(c_in, c_out, k):
    from cnnbook.models import mobile

    return mobile.standard_conv_params(c_in, c_out, k), mobile.separable_conv_params(c_in, c_out, k)


def params_cnnbook_block_imported_inside(c_in, c_out, k):
    from cnnbook.models.mobile import DepthwiseSeparableConv

    block = DepthwiseSeparableConv(c_in, c_out, kernel_size=k)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return c_in * c_out * k * k, sum(c.weight.numel() for c in convs)


def test_params_built_layers_are_refused() -> None:
    for built in (params_meta_layers, params_cnnbook_block_imported_inside):
        rejected(
            checks.check_separable_params,
            built,
            "b",
            "d",
            hint="builds a layer",
            requirement="without building any layer",
        )
    rejected(
        checks.check_separable_params,
        params_library_helpers,
        "b",
        "d",
        hint="_conv_params.*counts the parameters for you",
        requirement="without building any layer",
    )


def test_params_predictions_right_answers_pass() -> None:
    accepted(checks.check_separable_params, params_reference, "b", "d")
    accepted(checks.check_separable_params, params_from_layer_shapes, "(B)", " D ")


def test_params_predictions_mistakes_are_named() -> None:
    requirement = "shrinks_most: the letter"
    rejected(
        checks.check_separable_params,
        params_reference,
        "a",
        "d",
        hint="size does not set the saving.*C_in cancels",
        requirement=requirement,
    )
    rejected(checks.check_separable_params, params_reference, "c", "d", hint="only 16 output channels")
    rejected(checks.check_separable_params, params_reference, "d", "d", hint="does not shrink at all")
    rejected(
        checks.check_separable_params,
        params_reference,
        "b",
        "none",
        hint="the 1x1 layer.*256 extra weights",
        requirement="grows: the letter",
    )
    rejected(
        checks.check_separable_params, params_reference, "b", "c", hint="layer that gets larger is \\(d\\)"
    )
    rejected(checks.check_separable_params, params_reference, "?", "d", hint="still '\\?'")
    rejected(
        checks.check_separable_params, params_reference, "b", None, hint="one of the letters a, b, c, d, none"
    )
    # the counts are checked first: right predictions do not hide a wrong count
    rejected(checks.check_separable_params, params_without_pointwise, "b", "d", hint="left out the pointwise")
