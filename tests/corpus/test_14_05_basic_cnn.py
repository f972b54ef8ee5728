"""Wrong-answer corpus for the 14.5 exercises (building a basic CNN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import basic_cnn as checks

# ---------------------------------------------------------------- Exercise 1: predictions at 64x64

PARAMS_64, MACS_64 = 4_216_522, 22_413_312
CONV_PARAMS = 896 + 18_496


def test_size_predictions_right_answers_pass() -> None:
    accepted(checks.check_size_predictions, PARAMS_64, MACS_64)
    accepted(checks.check_size_predictions, CONV_PARAMS + (64 * 16 * 16 * 256 + 256) + 2570, 4 * 5_603_328)


def test_size_predictions_mistakes_are_named() -> None:
    rejected(checks.check_size_predictions, 1_070_794, MACS_64, hint="grows with the image")
    rejected(checks.check_size_predictions, 2_119_370, MACS_64, hint="AREA")
    rejected(
        checks.check_size_predictions, PARAMS_64 + 3 * CONV_PARAMS, MACS_64, hint="keep their parameters"
    )
    rejected(checks.check_size_predictions, PARAMS_64 - 362, MACS_64, hint="biases")
    rejected(checks.check_size_predictions, float(PARAMS_64), MACS_64, hint="whole number")
    rejected(checks.check_size_predictions, PARAMS_64, 5_603_328, hint="OUTPUT PIXEL")
    rejected(checks.check_size_predictions, PARAMS_64, 2 * 5_603_328, hint="4x, not 2x")
    rejected(checks.check_size_predictions, PARAMS_64, CONV_PARAMS, hint="not their multiply-accumulates")
    rejected(checks.check_size_predictions, PARAMS_64, 22.4e6, hint="whole number")
    rejected(checks.check_size_predictions, PARAMS_64, 22_413_313, hint="weights x output pixels")


# ---------------------------------------------------------------- Exercise 2: build_cnn


def cnn_reference(in_channels, num_classes, image_size, widths):
    layers, prev = [], in_channels
    for width in widths:
        layers += [nn.Conv2d(prev, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        prev = width
    side = image_size // 2 ** len(widths)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * side * side, num_classes))


def cnn_padding_same_shared_relu(in_channels, num_classes, image_size, widths):
    relu, layers, prev = nn.ReLU(inplace=True), [], in_channels
    for width in widths:
        layers += [nn.Conv2d(prev, width, (3, 3), padding="same"), relu, nn.MaxPool2d(2, 2)]
        prev = width
    side = image_size // 2 ** len(widths)
    return nn.Sequential(*layers, nn.Flatten(1), nn.Linear(prev * side * side, num_classes))


class CnnModule(nn.Module):
    """A hand-written module with F.relu after the pool (max-pool and ReLU commute)."""

    def __init__(self, in_channels, num_classes, image_size, widths):
        super().__init__()
        chans = [in_channels, *widths]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, widths, strict=False))
        side = image_size // 2 ** len(widths)
        self.head = nn.Linear(widths[-1] * side * side, num_classes)

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(F.max_pool2d(conv(x), 2))
        return self.head(x.flatten(1))


def _variant(
    in_channels,
    num_classes,
    image_size,
    widths,
    *,
    pool=nn.MaxPool2d,
    relu_every=True,
    stride=1,
    relu_on_logits=False,
):
    layers, prev = [], in_channels
    for i, width in enumerate(widths):
        layers.append(nn.Conv2d(prev, width, 3, stride=stride, padding=1))
        if relu_every or i == 0:
            layers.append(nn.ReLU())
        if stride == 1:
            layers.append(pool(2))
        prev = width
    side = image_size // 2 ** len(widths)
    tail = [nn.ReLU()] if relu_on_logits else []
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * side * side, num_classes), *tail)


def cnn_avg_pool(*args):
    return _variant(*args, pool=nn.AvgPool2d)


def cnn_relu_after_first_conv_only(*args):
    return _variant(*args, relu_every=False)


def cnn_stride_two_conv_instead_of_pool(*args):
    return _variant(*args, stride=2)


def cnn_relu_on_logits_not_after_convs(in_channels, num_classes, image_size, widths):
    layers, prev = [], in_channels
    for width in widths:
        layers += [nn.Conv2d(prev, width, 3, padding=1), nn.MaxPool2d(2)]
        prev = width
    side = image_size // 2 ** len(widths)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * side * side, num_classes), nn.ReLU())


def cnn_linear_sized_for_one_pool(in_channels, num_classes, image_size, widths):
    model = cnn_reference(in_channels, num_classes, image_size, widths)
    side = image_size // 2
    model[-1] = nn.Linear(widths[-1] * side * side, num_classes)
    return model


def cnn_no_padding(in_channels, num_classes, image_size, widths):
    model = cnn_reference(in_channels, num_classes, image_size, widths)
    for m in model:
        if isinstance(m, nn.Conv2d):
            m.padding = (0, 0)
    return model


def test_build_cnn_right_answers_pass() -> None:
    accepted(checks.check_build_cnn, cnn_reference)
    accepted(checks.check_build_cnn, CnnInFloat64)
    accepted(checks.check_build_cnn, cnn_padding_same_shared_relu)
    accepted(checks.check_build_cnn, CnnModule)


def test_build_cnn_mistakes_are_named() -> None:
    rejected(checks.check_build_cnn, cnn_avg_pool, hint="AvgPool2d")
    rejected(checks.check_build_cnn, cnn_relu_after_first_conv_only, hint="Only the first conv")
    rejected(checks.check_build_cnn, cnn_stride_two_conv_instead_of_pool, hint="stride-2")
    rejected(checks.check_build_cnn, cnn_relu_on_logits_not_after_convs, hint="on the logits")
    rejected(checks.check_build_cnn, cnn_linear_sized_for_one_pool, hint="Linear layer expects")
    rejected(checks.check_build_cnn, cnn_no_padding, hint="shape|padding")


# ---------------------------------------------------------------- Exercise 3: FixedCNN


class FixedReference(nn.Module):
    def __init__(self, num_classes=10, head=None, fc1_in=64 * 8 * 8, pad2=1, flatten=None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=pad2)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(fc1_in, 256)
        self.fc2 = nn.Linear(256, num_classes)
        self.head, self.flatten = head, flatten or (lambda x: x.flatten(1))

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.fc2(F.relu(self.fc1(self.flatten(x))))
        return x if self.head is None else self.head(x)


def fixed_with_view_batch_axis(num_classes=10):
    return FixedReference(num_classes, flatten=lambda x: x.view(x.size(0), -1))


def fixed_keeps_softmax(num_classes=10):
    return FixedReference(num_classes, head=lambda z: F.softmax(z, dim=1))


def fixed_returns_log_softmax(num_classes=10):
    return FixedReference(num_classes, head=lambda z: F.log_softmax(z, dim=1))


def fixed_resizes_fc1_instead_of_padding(num_classes=10):
    return FixedReference(num_classes, fc1_in=64 * 7 * 7, pad2=0)


def fixed_hard_codes_batch_of_64(num_classes=10):
    return FixedReference(num_classes, flatten=lambda x: x.reshape(64, -1))


def test_fixed_cnn_right_answers_pass() -> None:
    accepted(checks.check_fixed_cnn, FixedReference)
    accepted(checks.check_fixed_cnn, fixed_with_view_batch_axis)


def test_fixed_cnn_mistakes_are_named() -> None:
    rejected(checks.check_fixed_cnn, fixed_keeps_softmax, hint="probabilities")
    rejected(checks.check_fixed_cnn, fixed_returns_log_softmax, hint="log-probabilities")
    rejected(checks.check_fixed_cnn, fixed_resizes_fc1_instead_of_padding, hint="padding=1")
    rejected(checks.check_fixed_cnn, fixed_hard_codes_batch_of_64, hint="hard-coded")


# ---------------------------------------------------------------- side effects of a forward pass

STATE_RULE = "forward pass leaves the caller's state alone"


class CnnEvalInForward(CnnModule):
    """Switches itself to eval mode "so the outputs are deterministic" and never switches back."""

    def forward(self, x):
        self.eval()
        return super().forward(x)


class CnnRestoresTopModeOnly(CnnModule):
    """Saves and restores the top module's mode only: a layer frozen in eval mode wakes up."""

    def forward(self, x):
        was = self.training
        self.eval()
        try:
            return super().forward(x)
        finally:
            self.train(was)


class CnnZeroGradInForward(CnnModule):
    """Clears the gradients "before every step", inside forward."""

    def forward(self, x):
        self.zero_grad()
        return super().forward(x)


class CnnMaxNormAfterForward(CnnModule):
    """Applies a max-norm constraint to the head in place after computing the output."""

    def forward(self, x):
        out = super().forward(x)
        with torch.no_grad():
            self.head.weight.clamp_(-0.01, 0.01)
        return out


class CnnInFloat64(CnnModule):
    """A correct variant: float64 weights, the input converted in forward."""

    def __init__(self, *args):
        super().__init__(*args)
        self.double()

    def forward(self, x):
        return super().forward(x.double())


def test_build_cnn_side_effects_are_named() -> None:
    rejected(checks.check_build_cnn, CnnEvalInForward, hint="eval mode", requirement=STATE_RULE)
    rejected(
        checks.check_build_cnn,
        CnnRestoresTopModeOnly,
        hint="put `convs.0`.*train mode",
        requirement=STATE_RULE,
    )
    rejected(checks.check_build_cnn, CnnZeroGradInForward, hint="wiped the gradients", requirement=STATE_RULE)
    rejected(
        checks.check_build_cnn,
        CnnMaxNormAfterForward,
        hint="changed the model's weights",
        requirement=STATE_RULE,
    )


class FixedEvalInForward(FixedReference):
    def forward(self, x):
        self.eval()
        return super().forward(x)


class FixedRestoresTopModeOnly(FixedReference):
    def forward(self, x):
        was = self.training
        self.eval()
        out = super().forward(x)
        self.train(was)
        return out


class FixedZeroGradInForward(FixedReference):
    def forward(self, x):
        self.zero_grad(set_to_none=True)
        return super().forward(x)


class FixedMaxNormAfterForward(FixedReference):
    def forward(self, x):
        out = super().forward(x)
        with torch.no_grad():
            self.fc2.weight.clamp_(-0.01, 0.01)
        return out


class FixedWithDropoutOff(FixedReference):
    """A correct variant: a dropout layer with p = 0 changes nothing."""

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop(super().forward(x))


def test_fixed_cnn_side_effects_are_named() -> None:
    accepted(checks.check_fixed_cnn, FixedWithDropoutOff)
    rejected(checks.check_fixed_cnn, FixedEvalInForward, hint="eval mode", requirement=STATE_RULE)
    rejected(
        checks.check_fixed_cnn,
        FixedRestoresTopModeOnly,
        hint="put `conv1`.*train mode",
        requirement=STATE_RULE,
    )
    rejected(
        checks.check_fixed_cnn, FixedZeroGradInForward, hint="wiped the gradients", requirement=STATE_RULE
    )
    rejected(
        checks.check_fixed_cnn,
        FixedMaxNormAfterForward,
        hint="changed the model's weights",
        requirement=STATE_RULE,
    )


def test_size_predictions_name_the_requirement() -> None:
    rejected(
        checks.check_size_predictions,
        1_070_794,
        MACS_64,
        hint="grows with the image",
        requirement="params_64",
    )
    rejected(checks.check_size_predictions, PARAMS_64, 22_413_312.0, hint="int", requirement="conv_macs_64")
    rejected(checks.check_build_cnn, cnn_avg_pool, hint="AvgPool2d", requirement="MaxPool2d")
