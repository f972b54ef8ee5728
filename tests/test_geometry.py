"""cnnbook.geometry against PyTorch's own layers and published receptive fields."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torch import nn

from cnnbook import geometry as g


def _meta(n: int) -> torch.Tensor:
    return torch.empty(1, 1, n, n, device="meta")


def test_conv_output_size_matches_conv2d_on_random_sweep() -> None:
    rng = random.Random(0)
    checked = errors = 0
    for _ in range(3000):
        n, k = rng.randint(1, 40), rng.randint(1, 9)
        s, p, d = rng.randint(1, 5), rng.randint(0, 5), rng.randint(1, 4)
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, device="meta")
        try:
            expected = conv(_meta(n)).shape[-1]
        except RuntimeError:
            with pytest.raises(ValueError, match="larger than the padded input"):
                g.conv_output_size(n, k, s, p, d)
            errors += 1
            continue
        assert g.conv_output_size(n, k, s, p, d) == expected, (n, k, s, p, d)
        checked += 1
    assert checked > 2000  # both branches were exercised
    assert errors > 50


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_same_padding_matches_pytorch_same_for_stride_one() -> None:
    rng = random.Random(1)
    for _ in range(500):
        n, k, d = rng.randint(1, 30), rng.randint(1, 7), rng.randint(1, 3)
        conv = nn.Conv2d(1, 1, k, padding="same", dilation=d, device="meta")
        assert conv(_meta(n)).shape[-1] == g.conv_output_size(n, k, 1, "same", d) == n
        lo, hi = g.same_padding(k, 1, d)
        assert lo + hi == g.effective_kernel_size(k, d) - 1
        assert hi - lo in (0, 1)


def test_same_padding_with_stride_gives_ceil() -> None:
    rng = random.Random(2)
    for _ in range(500):
        n, k, s = rng.randint(1, 40), rng.randint(1, 7), rng.randint(2, 4)
        lo, hi = g.same_padding(k, s, 1, size=n)
        x = nn.functional.pad(torch.zeros(1, 1, n, n), (lo, hi, lo, hi))
        out = nn.functional.conv2d(x, torch.zeros(1, 1, k, k), stride=s)
        assert out.shape[-1] == g.conv_output_size(n, k, s, "same") == -(-n // s)
    with pytest.raises(ValueError, match="pass size"):
        g.same_padding(3, 2)


def test_pool_output_size_matches_maxpool_and_avgpool() -> None:
    rng = random.Random(3)
    checked = 0
    for _ in range(3000):
        n, k = rng.randint(1, 40), rng.randint(1, 6)
        s, d = rng.randint(1, 4), rng.randint(1, 3)
        p = rng.randint(0, k // 2)
        ceil = rng.random() < 0.5
        pool = nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil)
        try:
            expected = pool(_meta(n)).shape[-1]
        except RuntimeError:
            with pytest.raises(ValueError, match="larger than the padded input"):
                g.pool_output_size(n, k, s, p, d, ceil)
            continue
        assert g.pool_output_size(n, k, s, p, d, ceil) == expected, (n, k, s, p, d, ceil)
        if d == 1:
            assert nn.AvgPool2d(k, s, p, ceil_mode=ceil)(_meta(n)).shape[-1] == expected
        checked += 1
    assert checked > 2000


def test_transposed_conv_output_size_matches_convtranspose2d() -> None:
    rng = random.Random(4)
    checked = 0
    for _ in range(2000):
        n, k, s = rng.randint(1, 20), rng.randint(1, 6), rng.randint(1, 4)
        d, p = rng.randint(1, 3), rng.randint(0, 3)
        op = rng.randint(0, max(s, d) - 1)
        layer = nn.ConvTranspose2d(1, 1, k, s, p, output_padding=op, dilation=d, device="meta")
        try:
            expected = layer(_meta(n)).shape[-1]
        except RuntimeError:
            with pytest.raises(ValueError, match="removes the whole output"):
                g.transposed_conv_output_size(n, k, s, p, op, d)
            continue
        assert g.transposed_conv_output_size(n, k, s, p, op, d) == expected
        checked += 1
    assert checked > 1500


def test_stride_two_conv_and_transposed_conv_invert_sizes() -> None:
    for n in range(4, 40, 2):
        down = g.conv_output_size(n, 3, 2, 1)
        assert g.transposed_conv_output_size(down, 3, 2, 1, output_padding=1) == n


@pytest.mark.parametrize(("k", "d", "expected"), [(3, 1, 3), (3, 2, 5), (3, 4, 9), (5, 2, 9), (1, 7, 1)])
def test_effective_kernel_size(k: int, d: int, expected: int) -> None:
    assert g.effective_kernel_size(k, d) == expected


@pytest.mark.parametrize(
    "bad",
    [
        dict(size=0, kernel=3),
        dict(size=8, kernel=0),
        dict(size=8, kernel=3, stride=0),
        dict(size=8, kernel=3, dilation=0),
        dict(size=8, kernel=3, padding=-1),
        dict(size=8, kernel=3, padding="full"),
    ],
)
def test_bad_arguments_are_clear(bad: dict) -> None:
    with pytest.raises(ValueError, match="must be|padding"):
        g.conv_output_size(**bad)


def test_kernel_larger_than_input_message_names_fix() -> None:
    with pytest.raises(ValueError, match="add at least 2 padding"):
        g.conv_output_size(5, 9)


def test_three_3x3_convs_see_7x7_and_strides_multiply_jump() -> None:
    rows = g.receptive_field([g.LayerSpec(3, 1, 1)] * 3)
    assert [r.rf for r in rows] == [3, 5, 7]
    rows = g.receptive_field([g.LayerSpec(3, 2, 1), g.LayerSpec(3, 2, 1), g.LayerSpec(3, 1, 1)])
    assert [r.jump for r in rows] == [2, 4, 4]
    assert [r.rf for r in rows] == [3, 7, 15]


def test_dilated_stack_grows_exponentially() -> None:
    rows = g.receptive_field([g.LayerSpec(3, 1, d, d) for d in (1, 2, 4, 8)])
    assert [r.rf for r in rows] == [3, 7, 15, 31]


def test_published_receptive_fields_alexnet_vgg16() -> None:
    alex = g.module_receptive_field(torchvision.models.alexnet().features)
    vgg = g.module_receptive_field(torchvision.models.vgg16().features)
    assert alex[-1].rf == 195
    assert alex[-1].jump == 32
    assert vgg[-1].rf == 212
    assert vgg[-1].jump == 32


def test_upto_stops_and_unknown_name_is_clear() -> None:
    feats = torchvision.models.vgg16().features
    assert g.module_receptive_field(feats, upto="4")[-1].rf == 6  # after the first max pool
    with pytest.raises(ValueError, match="No submodule"):
        g.layer_specs(feats, upto="nope")


def test_gradient_probe_agrees_with_formula_on_real_models() -> None:
    vgg_block = torchvision.models.vgg16().features[:10]  # two VGG blocks
    assert g.receptive_field_by_gradient(vgg_block, 64) == g.module_receptive_field(vgg_block)[-1].rf == 16
    dilated = nn.Sequential(
        *[
            nn.Sequential(nn.Conv2d(2, 2, 3, padding=d, dilation=d), nn.BatchNorm2d(2), nn.ReLU())
            for d in (1, 2, 4)
        ]
    )
    dilated[0][0] = nn.Conv2d(3, 2, 3, padding=1)
    assert g.receptive_field_by_gradient(dilated, 41) == g.module_receptive_field(dilated)[-1].rf
    alex = torchvision.models.alexnet().features
    assert g.receptive_field_by_gradient(alex, 227 + 64) == 195


def test_gradient_probe_on_resnet_branches() -> None:
    # A chain formula cannot read ResNet's branches; the probe still measures something sane:
    # ResNet-18's layer1 output (after stem + 2 basic blocks) sees 43 px.
    m = torchvision.models.resnet18()
    stem_to_layer1 = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1)
    assert g.receptive_field_by_gradient(stem_to_layer1, 128) == 43


def _recurrence_by_hand(model: nn.Module) -> int:
    """An independent receptive field: the recurrence over every conv/pool module's geometry.

    MobileNetV2's and EfficientNet's shortcuts are identities, so the field is that of the
    main path, i.e. of every conv and pool layer in order (1x1 convs, SE convs included, add 0).
    """
    rf, jump = 1, 1
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            d = getattr(m, "dilation", 1)
            d = d if isinstance(d, int) else d[0]
            rf += d * (k - 1) * jump
            jump *= s
    return rf


@pytest.mark.parametrize(
    ("build", "blocks", "expected"),
    [
        # stem + 7 inverted residual blocks: after the residual additions the probe's activations
        # pass 6, where a ReLU6 would stop every gradient ("The gradient vanished" before the fix)
        (torchvision.models.mobilenet_v2, 8, 75),
        # stem + MBConv stages with squeeze-excitation (global pooling) and SiLU
        (torchvision.models.efficientnet_b0, 5, 147),
    ],
)
def test_gradient_probe_on_mobilenet_v2_and_efficientnet_b0(build, blocks: int, expected: int) -> None:
    torch.manual_seed(0)
    model = build(weights=None)
    features = model.features[:blocks]
    before = {k: v.clone() for k, v in features.state_dict().items()}
    kinds = [type(m) for m in features.modules()]
    rf = _recurrence_by_hand(features)
    assert rf == g.module_receptive_field(features)[-1].rf == expected
    jump = g.module_receptive_field(features)[-1].jump
    assert g.receptive_field_by_gradient(features, rf + 2 * jump) == expected
    # the model itself is untouched: same modules (ReLU6, SiLU, AdaptiveAvgPool2d), same weights
    assert [type(m) for m in features.modules()] == kinds
    assert all(torch.equal(before[k], v) for k, v in features.state_dict().items())


class _Doubling(nn.Module):
    """x + conv(x): with the probe's positive averaging weights, activations double."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


@pytest.mark.parametrize(
    "act", [nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU]
)
def test_gradient_probe_makes_bounded_activations_transparent(act: type[nn.Module]) -> None:
    # three residual doublings take the probe's activations to 8: past ReLU6's 6, Hardtanh's 1
    # and Hardsigmoid's 3, where their gradient is exactly 0 (MobileNetV2's failure)
    net = nn.Sequential(_Doubling(), _Doubling(), _Doubling(), act(), nn.Conv2d(3, 3, 3, padding=1), act())
    assert g.receptive_field_by_gradient(net, 25) == 1 + 4 * 2 == _recurrence_by_hand(net)
    assert isinstance(net[3], act)  # the model keeps its activations


def test_gradient_probe_rejects_small_input_and_non_maps() -> None:
    with pytest.raises(ValueError, match="larger input_size"):
        g.receptive_field_by_gradient(nn.Sequential(*[nn.Conv2d(3, 3, 3)] * 1, nn.Conv2d(3, 3, 5)), 7)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        g.receptive_field_by_gradient(nn.Sequential(nn.Conv2d(3, 1, 3), nn.Flatten()), 9)
