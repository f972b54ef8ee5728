"""Wrong-answer corpus for the 14.6 exercises (VGG block, VGG parameters, ResNet blocks)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import architectures as checks

# ---------------------------------------------------------------- Exercise 1: VGG block


def vgg_reference(in_channels, out_channels, num_convs):
    layers = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers, nn.MaxPool2d(2, 2))


def vgg_one_shared_relu_padding_same(in_channels, out_channels, num_convs):
    relu, layers = nn.ReLU(), []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding="same"), relu]
    return nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2))


def vgg_library_block(in_channels, out_channels, num_convs):
    from cnnbook.models import make_vgg_block

    return make_vgg_block(in_channels, out_channels, num_convs)


def vgg_avg_pool(in_channels, out_channels, num_convs):
    block = vgg_reference(in_channels, out_channels, num_convs)
    block[-1] = nn.AvgPool2d(2, 2)
    return block


def vgg_single_relu_at_the_end(in_channels, out_channels, num_convs):
    convs = [
        nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
        for i in range(num_convs)
    ]
    return nn.Sequential(*convs, nn.ReLU(), nn.MaxPool2d(2, 2))


def vgg_every_conv_from_in_channels(in_channels, out_channels, num_convs):
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2, 2))


def vgg_no_padding(in_channels, out_channels, num_convs):
    layers = []
    for i in range(num_convs):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2, 2))


def vgg_stride_two_instead_of_pool(in_channels, out_channels, num_convs):
    layers = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(
                in_channels if i == 0 else out_channels,
                out_channels,
                3,
                padding=1,
                stride=2 if i == num_convs - 1 else 1,
            ),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


def test_vgg_block_right_answers_pass() -> None:
    accepted(checks.check_vgg_block, vgg_reference)
    accepted(checks.check_vgg_block, vgg_one_shared_relu_padding_same)
    accepted(checks.check_vgg_block, vgg_library_block)


def test_vgg_block_mistakes_are_named() -> None:
    rejected(checks.check_vgg_block, vgg_avg_pool, hint="MaxPool2d")
    rejected(checks.check_vgg_block, vgg_single_relu_at_the_end, hint="one after EVERY conv")
    rejected(checks.check_vgg_block, vgg_every_conv_from_in_channels, hint="Only the FIRST conv")
    rejected(checks.check_vgg_block, vgg_no_padding, hint="padding 1")
    rejected(checks.check_vgg_block, vgg_stride_two_instead_of_pool, hint="stride 2")


# ---------------------------------------------------------------- Exercise 2: VGG parameters

WIDTHS = (64, 128, 256, 512, 512)


def vgg_params_reference(convs_per_block, num_classes=1000):
    conv, prev = 0, 3
    for n, width in zip(convs_per_block, WIDTHS, strict=True):
        for _ in range(n):
            conv += 9 * prev * width + width
            prev = width
    fc = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * num_classes + num_classes)
    return conv, fc


def vgg_params_as_list_sums(convs_per_block, num_classes=1000):
    ins = [3] + [w for n, w in zip(convs_per_block, WIDTHS, strict=True) for _ in range(n)][:-1]
    outs = [w for n, w in zip(convs_per_block, WIDTHS, strict=True) for _ in range(n)]
    conv = sum(9 * a * b + b for a, b in zip(ins, outs, strict=True))
    dims = [512 * 7 * 7, 4096, 4096, num_classes]
    return conv, sum(a * b + b for a, b in zip(dims, dims[1:], strict=False))


def vgg_params_no_conv_bias(convs_per_block, num_classes=1000):
    conv, fc = vgg_params_reference(convs_per_block, num_classes)
    return conv - sum(n * w for n, w in zip(convs_per_block, WIDTHS, strict=True)), fc


def vgg_params_no_linear_bias(convs_per_block, num_classes=1000):
    conv, fc = vgg_params_reference(convs_per_block, num_classes)
    return conv, fc - 4096 - 4096 - num_classes


def vgg_params_first_fc_from_512(convs_per_block, num_classes=1000):
    conv, _ = vgg_params_reference(convs_per_block, num_classes)
    return conv, (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * num_classes + num_classes)


def vgg_params_first_conv_from_64(convs_per_block, num_classes=1000):
    conv, fc = vgg_params_reference(convs_per_block, num_classes)
    return conv - 9 * 3 * 64 + 9 * 64 * 64, fc


def vgg_params_float_division(convs_per_block, num_classes=1000):
    conv, fc = vgg_params_reference(convs_per_block, num_classes)
    return conv / 1, fc * 1.0  # the right numbers, as floats


def vgg_params_as_tensors(convs_per_block, num_classes=1000):
    conv, fc = vgg_params_reference(convs_per_block, num_classes)
    return torch.tensor(conv), torch.tensor(fc)


def vgg_params_from_shape_objects(convs_per_block, num_classes=1000):
    """Shape arithmetic through torch.Size and a meta tensor: counted from the shapes, no layer built."""
    shapes, prev = [], 3
    for n, width in zip(convs_per_block, WIDTHS, strict=True):
        for _ in range(n):
            shapes += [torch.Size((width, prev, 3, 3)), torch.Size((width,))]
            prev = width
    conv = sum(s.numel() for s in shapes)
    dims = [512 * 7 * 7, 4096, 4096, num_classes]
    fc = sum(torch.empty(b, a, device="meta").numel() + b for a, b in zip(dims, dims[1:], strict=False))
    return conv, fc


def _count(module):
    return sum(p.numel() for p in module.parameters())


def vgg_params_meta_layers(convs_per_block, num_classes=1000):
    """Builds every layer on the meta device (no memory) and counts: the layers count for you."""
    conv, prev = 0, 3
    for n, width in zip(convs_per_block, WIDTHS, strict=True):
        for _ in range(n):
            conv += _count(nn.Conv2d(prev, width, 3, padding=1, device="meta"))
            prev = width
    dims = [512 * 7 * 7, 4096, 4096, num_classes]
    fc = sum(_count(nn.Linear(a, b, device="meta")) for a, b in zip(dims, dims[1:], strict=False))
    return conv, fc


def vgg_params_torchvision_imported_inside(convs_per_block, num_classes=1000):
    """torchvision's VGG built from a layer list, imported inside the body (after the check starts)."""
    from torchvision.models.vgg import VGG, make_layers

    cfg = []
    for n, width in zip(convs_per_block, WIDTHS, strict=True):
        cfg += [width] * n + ["M"]
    model = VGG(make_layers(cfg), num_classes=num_classes, init_weights=False)
    return _count(model.features), _count(model.classifier)


def vgg_params_skip_init_aliases(convs_per_block, num_classes=1000):
    """Layers reached through other names (the module paths, skip_init) than nn.Conv2d / nn.Linear."""
    from torch.nn.modules import conv as conv_module
    from torch.nn.modules import linear as linear_module
    from torch.nn.utils import skip_init

    conv, prev = 0, 3
    for n, width in zip(convs_per_block, WIDTHS, strict=True):
        for _ in range(n):
            conv += _count(skip_init(conv_module.Conv2d, prev, width, 3))
            prev = width
    dims = [512 * 7 * 7, 4096, 4096, num_classes]
    layer = getattr(linear_module, "Lin" + "ear")
    return conv, sum(_count(layer(a, b, device="meta")) for a, b in zip(dims, dims[1:], strict=False))


def vgg_params_checks_own_answer(convs_per_block, num_classes=1000):
    from cnnbook.checks import architectures

    return architectures.vgg_param_counts(convs_per_block, num_classes)


def vgg_params_try_layers_then_formula(convs_per_block, num_classes=1000):
    """Tries the meta-device layers and falls back on the formula when that fails: still used them."""
    try:
        return vgg_params_meta_layers(convs_per_block, num_classes)
    except Exception:
        return vgg_params_reference(convs_per_block, num_classes)


def test_vgg_params_right_answers_pass() -> None:
    accepted(checks.check_vgg_params, vgg_params_reference)
    accepted(checks.check_vgg_params, vgg_params_as_list_sums)
    accepted(checks.check_vgg_params, vgg_params_from_shape_objects)


def test_vgg_params_built_layers_are_refused() -> None:
    for built in (
        vgg_params_meta_layers,
        vgg_params_torchvision_imported_inside,
        vgg_params_skip_init_aliases,
        vgg_params_try_layers_then_formula,
    ):
        rejected(
            checks.check_vgg_params,
            built,
            hint="builds a layer.*count the parameters from the layer shapes yourself",
            requirement="without building any layer",
        )
    rejected(
        checks.check_vgg_params,
        vgg_params_checks_own_answer,
        hint="vgg_param_counts.*counts the parameters for you",
        requirement="without building any layer",
    )


def test_vgg_params_mistakes_are_named() -> None:
    rejected(checks.check_vgg_params, vgg_params_no_conv_bias, hint="conv biases")
    rejected(checks.check_vgg_params, vgg_params_no_linear_bias, hint="Linear biases")
    rejected(checks.check_vgg_params, vgg_params_first_fc_from_512, hint="25,088")
    rejected(checks.check_vgg_params, vgg_params_first_conv_from_64, hint="3 RGB channels")
    rejected(
        checks.check_vgg_params, vgg_params_float_division, hint="should be an int", requirement="two ints"
    )
    rejected(checks.check_vgg_params, vgg_params_as_tensors, hint="should be a Python int")


# ---------------------------------------------------------------- Exercise 3: BasicBlock


class BasicReference(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class BasicIdentityModuleInplaceRelu(BasicReference):
    """nn.Identity() for the identity shortcut and one in-place ReLU module reused."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return self.relu(out)


class BasicReluBeforeAdd(BasicReference):
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out))) + self.shortcut(x)


class BasicNoFinalRelu(BasicReference):
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)


class BasicNoProjection(BasicReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = nn.Sequential()


class BasicStrideOnSecondConv(BasicReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False)


class BasicProjectionWithoutBatchNorm(BasicReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False))


class BasicOneBatchNormTwice(BasicReference):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn2 = self.bn1  # one instance at two places: shared weights and statistics


def test_basic_block_right_answers_pass() -> None:
    accepted(checks.check_basic_block, BasicReference)
    accepted(checks.check_basic_block, BasicIdentityModuleInplaceRelu)


def test_basic_block_mistakes_are_named() -> None:
    rejected(checks.check_basic_block, BasicReluBeforeAdd, hint="AFTER the addition")
    rejected(checks.check_basic_block, BasicNoFinalRelu, hint="final ReLU")
    rejected(checks.check_basic_block, BasicNoProjection, hint="no projection shortcut")
    rejected(checks.check_basic_block, BasicStrideOnSecondConv, hint="stride belongs on conv1")
    rejected(checks.check_basic_block, BasicProjectionWithoutBatchNorm, hint="no BatchNorm2d")
    rejected(checks.check_basic_block, BasicOneBatchNormTwice, hint="bn1 and bn2 are the same BatchNorm2d")


# ---------------------------------------------------------------- Exercise 4: Bottleneck (v1)


class BottleneckReference(nn.Module):
    expansion = 4

    def __init__(self, in_channels, mid_channels, stride=1, stride_on_3x3=False):
        super().__init__()
        out_channels = 4 * mid_channels
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, 1 if stride_on_3x3 else stride, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, stride if stride_on_3x3 else 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class BottleneckStrideAsSlice(BottleneckReference):
    """A 1x1 conv with stride 2 is a 1x1 conv on every other pixel: same function."""

    def __init__(self, in_channels, mid_channels, stride=1):
        super().__init__(in_channels, mid_channels, stride)
        self.step = stride
        self.conv1.stride = (1, 1)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x[:, :, :: self.step, :: self.step])))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def bottleneck_v15_stride_on_3x3(in_channels, mid_channels, stride=1):
    return BottleneckReference(in_channels, mid_channels, stride, stride_on_3x3=True)


class BottleneckReluBeforeAdd(BottleneckReference):
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out))) + self.shortcut(x)


class BottleneckNoProjectionWhenChannelsChange(BottleneckReference):
    def __init__(self, in_channels, mid_channels, stride=1):
        super().__init__(in_channels, mid_channels, stride)
        if stride == 1:
            self.shortcut = nn.Sequential()


class BottleneckNoExpansion(BottleneckReference):
    def __init__(self, in_channels, mid_channels, stride=1):
        super().__init__(in_channels, mid_channels, stride)
        self.conv3 = nn.Conv2d(mid_channels, mid_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid_channels)


class BottleneckSharedBatchNorm(BottleneckReference):
    def __init__(self, in_channels, mid_channels, stride=1):
        super().__init__(in_channels, mid_channels, stride)
        self.bn2 = self.bn1  # both run on mid_channels, so it even fits


def test_bottleneck_right_answers_pass() -> None:
    accepted(checks.check_bottleneck_block, BottleneckReference)
    accepted(checks.check_bottleneck_block, BottleneckStrideAsSlice)


def test_bottleneck_mistakes_are_named() -> None:
    rejected(checks.check_bottleneck_block, bottleneck_v15_stride_on_3x3, hint="v1.5")
    rejected(checks.check_bottleneck_block, BottleneckSharedBatchNorm, hint="bn1 and bn2 are the same")
    rejected(checks.check_bottleneck_block, BottleneckReluBeforeAdd, hint="AFTER the addition")
    rejected(
        checks.check_bottleneck_block, BottleneckNoProjectionWhenChannelsChange, hint="no projection shortcut"
    )
    rejected(checks.check_bottleneck_block, BottleneckNoExpansion, hint="4 \\* mid_channels")


# ---------------------------------------------------------------- Exercise 5: silence


def silence_reference(block):
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    return block


def silence_with_fill_on_data(block):
    block.bn2.weight.data.fill_(0.0)
    block.bn2.bias.data.fill_(0.0)
    return block


def silence_weight_only(block):
    with torch.no_grad():
        block.bn2.weight.zero_()
    return block


def silence_bn1_instead_of_bn2(block):
    with torch.no_grad():
        block.bn1.weight.zero_()
        block.bn1.bias.zero_()
    return block


def silence_leaves_gradients_off(block):
    torch.set_grad_enabled(False)
    block.bn2.weight.zero_()
    block.bn2.bias.zero_()
    return block


def silence_freezes_bn2(block):
    block.bn2.weight.requires_grad_(False)
    block.bn2.bias.requires_grad_(False)
    return silence_reference(block)


def silence_returns_a_fresh_block(block):
    return silence_reference(
        type(block)(block.conv1.in_channels, block.conv1.out_channels, block.conv1.stride[0])
    )


def test_silence_right_answers_pass() -> None:
    accepted(checks.check_silence, silence_reference, BasicReference)
    accepted(checks.check_silence, silence_with_fill_on_data, BasicReference)


def test_silence_mistakes_are_named() -> None:
    rejected(checks.check_silence, silence_weight_only, BasicReference, hint="shift beta")
    rejected(checks.check_silence, silence_bn1_instead_of_bn2, BasicReference, hint="changed bn1")
    rejected(
        checks.check_silence, silence_leaves_gradients_off, BasicReference, hint="gradients were left off"
    )
    rejected(checks.check_silence, silence_freezes_bn2, BasicReference, hint="requires_grad")
    rejected(checks.check_silence, silence_returns_a_fresh_block, BasicReference, hint="in place")


# ---------------------------------------------------------------- Exercise 2: the prediction and GAP


def test_vgg_share_prediction_right_answers_pass() -> None:
    for letter in ("d", "D", "(d)", " d "):
        accepted(checks.check_vgg_params, vgg_params_reference, letter)


def test_vgg_share_prediction_mistakes_are_named() -> None:
    for letter in ("a", "b", "c"):
        rejected(
            checks.check_vgg_params,
            vgg_params_reference,
            letter,
            hint="your own count gives 89%.*25,088",
            requirement="classifier_share: the letter",
        )
    rejected(checks.check_vgg_params, vgg_params_reference, "?", hint="still '\\?'")
    rejected(checks.check_vgg_params, vgg_params_reference, 0.9, hint="one of the letters a, b, c, d")
    rejected(checks.check_vgg_params, vgg_params_reference, "90%", hint="one of the letters")
    # the counting function is checked first: a right prediction does not hide a wrong count
    rejected(checks.check_vgg_params, vgg_params_no_conv_bias, "d", hint="conv biases")


VGG16_CONV = 14_714_688
GAP_CLASSIFIER = (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)


def test_vgg_gap_right_answers_pass() -> None:
    accepted(checks.check_vgg_gap, VGG16_CONV + GAP_CLASSIFIER)
    accepted(checks.check_vgg_gap, np.int64(VGG16_CONV + GAP_CLASSIFIER))


def test_vgg_gap_mistakes_are_named() -> None:
    requirement = "total parameter count"
    rejected(
        checks.check_vgg_gap, 138_357_544, hint="averaging itself has no parameters", requirement=requirement
    )
    rejected(checks.check_vgg_gap, VGG16_CONV, hint="only the convolutions", requirement=requirement)
    rejected(
        checks.check_vgg_gap, GAP_CLASSIFIER, hint="only the three fully connected", requirement=requirement
    )
    rejected(
        checks.check_vgg_gap,
        138_357_544 - (25088 * 4096 + 4096),
        hint="not removed",
        requirement=requirement,
    )
    rejected(checks.check_vgg_gap, VGG16_CONV + GAP_CLASSIFIER - 4096, hint="left out a bias")
    rejected(checks.check_vgg_gap, VGG16_CONV + GAP_CLASSIFIER + 512 * 6 * 4096, hint="512 x 7")
    rejected(checks.check_vgg_gap, float(VGG16_CONV + GAP_CLASSIFIER), hint="int")
    rejected(checks.check_vgg_gap, VGG16_CONV + GAP_CLASSIFIER + 1000, hint="Only the first fully connected")
