"""Tests for cnnbook.models.resnet: blocks, builders, CIFAR variants and torchvision equality."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision_reference import max_abs_diff_after_loading

from cnnbook.models import (
    BasicBlock,
    Bottleneck,
    ResNet,
    load_torchvision_state_dict,
    rename_torchvision_keys,
    resnet18,
    resnet34,
    resnet50,
    resnet_cifar,
)
from cnnbook.modules import count_parameters


def test_basic_block_shortcut_kinds_and_shapes() -> None:
    same = BasicBlock(64, 64)
    assert isinstance(same.shortcut, nn.Identity)
    assert same(torch.randn(2, 64, 8, 8)).shape == (2, 64, 8, 8)
    down = BasicBlock(64, 128, stride=2)
    conv = down.shortcut.conv
    assert conv.kernel_size == (1, 1)
    assert conv.stride == (2, 2)
    assert conv.bias is None
    assert isinstance(down.shortcut.bn, nn.BatchNorm2d)
    assert down(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    wider = BasicBlock(32, 64, stride=1)
    assert wider.shortcut is not None
    assert not isinstance(wider.shortcut, nn.Identity)


def test_basic_block_adds_the_input() -> None:
    block = BasicBlock(8, 8).eval()
    plain = BasicBlock(8, 8, residual=False).eval()
    plain.load_state_dict(block.state_dict())  # same layers, no shortcut parameters here
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        # Zeroing the last BN's scale makes F(x) = 0, so y = ReLU(0 + x) = ReLU(x).
        for b in (block, plain):
            b.bn2.weight.zero_()
        torch.testing.assert_close(block(x), torch.relu(x))
        assert plain.shortcut is None
        torch.testing.assert_close(plain(x), torch.zeros_like(x))


def test_bottleneck_matches_torchvision_block() -> None:
    ours = Bottleneck(256, 64, stride=2)
    assert ours.out_channels == 256
    assert ours.conv1.stride == (1, 1)
    assert ours.conv2.stride == (2, 2)  # stride on the 3x3
    downsample = nn.Sequential(nn.Conv2d(256, 256, 1, stride=2, bias=False), nn.BatchNorm2d(256))
    ref = tv_resnet.Bottleneck(256, 64, stride=2, downsample=downsample)
    assert count_parameters(ours) == count_parameters(ref)
    identity = Bottleneck(256, 64)
    assert isinstance(identity.shortcut, nn.Identity)
    # 1x1 256->64, 3x3 64->64, 1x1 64->256, and three BNs
    assert count_parameters(identity) == 16_384 + 36_864 + 16_384 + 2 * (64 + 64 + 256)
    assert ours(torch.randn(1, 256, 14, 14)).shape == (1, 256, 7, 7)


@pytest.mark.parametrize(
    ("builder", "expected"),
    [(resnet18, 11_689_512), (resnet34, 21_797_672), (resnet50, 25_557_032)],
)
def test_parameter_counts_equal_torchvision(builder, expected: int) -> None:
    with torch.device("meta"):  # shapes only: counting needs no memory or initialisation
        ref, ours = getattr(torchvision.models, builder.__name__)(), builder()
    assert count_parameters(ours) == count_parameters(ref) == expected


@pytest.mark.parametrize(("builder", "side"), [(resnet18, 224), (resnet34, 64), (resnet50, 224)])
def test_outputs_equal_torchvision_after_key_mapping(builder, side: int) -> None:
    torch.manual_seed(0)
    ours, ref = builder(), getattr(torchvision.models, builder.__name__)()
    diff = max_abs_diff_after_loading(ours, ref, torch.randn(1, 3, side, side))
    print(f"{builder.__name__} at {side}x{side}: max |ours - torchvision| = {diff:.3g}")


def test_key_mapping_names() -> None:
    with torch.device("meta"):
        keys = rename_torchvision_keys(torchvision.models.resnet50().state_dict(), resnet50())
    assert "stem.conv.weight" in keys
    assert "stem.bn.running_var" in keys
    assert "layer2.0.shortcut.conv.weight" in keys
    assert "layer2.0.shortcut.bn.bias" in keys
    assert not any("downsample" in k for k in keys)


def test_loading_rejects_other_depth() -> None:
    with torch.device("meta"):
        ours, ref = resnet34(), torchvision.models.resnet18()
    with pytest.raises(ValueError, match="does not fit"):
        load_torchvision_state_dict(ours, ref)


def test_imagenet_stem_shapes() -> None:
    model = resnet18().eval()
    with torch.no_grad():
        stem = model.stem(torch.randn(1, 3, 224, 224))
        feats = model.forward_features(torch.randn(1, 3, 224, 224))
    assert stem.shape == (1, 64, 56, 56)
    assert feats.shape == (1, 512, 7, 7)
    assert resnet50().num_features == 2048


def test_cifar_stem_variant() -> None:
    model = resnet18(num_classes=10, stem="cifar")
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.stem.conv.kernel_size == (3, 3)
    assert model.stem.conv.stride == (1, 1)
    # Widely published count for the CIFAR ResNet-18 (3x3 stem, no max-pool, 10 classes).
    assert count_parameters(model) == 11_173_962
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 512, 4, 4)
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("depth", [20, 56])
def test_resnet_cifar_depth_counts_weighted_layers(depth: int) -> None:
    model = resnet_cifar(depth)
    plain = resnet_cifar(depth, residual=False)
    main_path = [
        m
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name
    ]
    assert len(main_path) == depth
    # Only the two projection shortcuts (16->32, 32->64, each conv + BN) differ.
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_parameters(model) - count_parameters(plain) == projections
    assert all(b.shortcut is None for b in plain.modules() if isinstance(b, BasicBlock))
    assert plain(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_bad_arguments() -> None:
    with pytest.raises(ValueError, match="6n"):
        resnet_cifar(21)
    with pytest.raises(ValueError, match="stem"):
        resnet18(stem="tiny")
    with pytest.raises(ValueError, match="same, non-zero length"):
        ResNet(BasicBlock, (2, 2), widths=(64, 128, 256))
    with pytest.raises(ValueError, match="stride"):
        BasicBlock(8, 8, stride=3)
    with pytest.raises(ValueError, match="unsqueeze"):
        resnet18()(torch.randn(3, 224, 224))
