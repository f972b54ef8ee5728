"""Tests for cnnbook.models.classic (SimpleCNN, LeNet-5, AlexNet, VGG) and its torchvision mapping."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision_reference import max_abs_diff_after_loading

from cnnbook.models import (
    VGG,
    VGG_CONFIGS,
    AlexNet,
    LeNet5,
    SimpleCNN,
    load_torchvision_state_dict,
    make_vgg_block,
    vgg11,
    vgg16,
)
from cnnbook.models.convert import vgg_feature_names
from cnnbook.modules import count_parameters


def test_simple_cnn_shapes_and_parameters() -> None:
    model = SimpleCNN()
    x = torch.randn(2, 3, 32, 32)
    after1 = model.pool(torch.relu(model.conv1(x)))
    after2 = model.pool(torch.relu(model.conv2(after1)))
    assert after1.shape == (2, 32, 16, 16)
    assert after2.shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 10)
    # conv1 3*32*9+32, conv2 32*64*9+64, fc1 4096*256+256, fc2 256*10+10
    assert count_parameters(model) == 896 + 18_496 + 1_048_832 + 2_570 == 1_070_794


def test_simple_cnn_other_sizes_and_bad_input() -> None:
    model = SimpleCNN(num_classes=5, in_channels=1, image_size=28)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 5)
    with pytest.raises(ValueError, match="divisible by 4"):
        SimpleCNN(image_size=30)
    with pytest.raises(ValueError, match="unsqueeze"):
        SimpleCNN()(torch.randn(3, 32, 32))
    with pytest.raises(TypeError):
        SimpleCNN()(torch.randn(1, 3, 32, 32).numpy())


def test_simple_cnn_dropout_only_in_training() -> None:
    model = SimpleCNN().eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(1)
        assert not torch.equal(a, model(x))


def test_lenet5_layer_shapes_and_parameter_count() -> None:
    model = LeNet5()
    assert count_parameters(model) == 61_706
    x = torch.randn(2, 1, 32, 32)
    expected = {
        "c1": (2, 6, 28, 28),
        "s2": (2, 6, 14, 14),
        "c3": (2, 16, 10, 10),
        "s4": (2, 16, 5, 5),
        "c5": (2, 120, 1, 1),
    }
    for name, layer in model.features.named_children():
        x = layer(x)
        if name in expected:
            assert x.shape == expected[name], name
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    kinds = {type(m) for m in model.modules()}
    assert nn.Tanh in kinds
    assert nn.AvgPool2d in kinds
    assert nn.ReLU not in kinds
    assert nn.MaxPool2d not in kinds


def test_lenet5_rejects_unpadded_mnist() -> None:
    with pytest.raises(ValueError, match="pad"):
        LeNet5()(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        LeNet5()(torch.randn(1, 3, 32, 32))


def test_alexnet_matches_torchvision() -> None:
    torch.manual_seed(0)
    ours, ref = AlexNet(), torchvision.models.alexnet()
    assert count_parameters(ours) == count_parameters(ref) == 61_100_840
    diff = max_abs_diff_after_loading(ours, ref, torch.randn(1, 3, 224, 224))
    print(f"AlexNet max |ours - torchvision| = {diff:.3g}")
    feats = ours.features(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 256, 6, 6)


def test_make_vgg_block() -> None:
    block = make_vgg_block(64, 128, 3)
    convs = [m for m in block if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert isinstance(block[-1], nn.MaxPool2d)
    assert block(torch.randn(1, 64, 16, 16)).shape == (1, 128, 8, 8)
    weights = 64 * 128 * 9 + 2 * 128 * 128 * 9
    assert count_parameters(block) == weights + 3 * 128
    with pytest.raises(ValueError, match="num_convs"):
        make_vgg_block(3, 64, 0)


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_vgg_feature_index_mapping_follows_torchvision(name: str) -> None:
    with torch.device("meta"):  # layout only, no weights needed
        ref = getattr(torchvision.models, name)()
    conv_indices = [i for i, m in enumerate(ref.features) if isinstance(m, nn.Conv2d)]
    assert sorted(vgg_feature_names(VGG_CONFIGS[name])) == conv_indices


def test_vgg11_matches_torchvision_small_input() -> None:
    torch.manual_seed(0)
    ours, ref = vgg11(), torchvision.models.vgg11()
    assert count_parameters(ours) == count_parameters(ref) == 132_863_336
    # 64x64 keeps the test quick; the adaptive pool still feeds 512x7x7 to the classifier.
    diff = max_abs_diff_after_loading(ours, ref, torch.randn(1, 3, 64, 64))
    print(f"VGG-11 max |ours - torchvision| = {diff:.3g}")


def test_vgg16_matches_torchvision_and_fc_holds_most_parameters() -> None:
    torch.manual_seed(0)
    ours, ref = vgg16(), torchvision.models.vgg16()
    assert count_parameters(ours) == count_parameters(ref) == 138_357_544
    conv = count_parameters(ours.features)
    fc = count_parameters(ours.classifier)
    assert conv == 14_714_688
    assert fc == 25_088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000 == 123_642_856
    diff = max_abs_diff_after_loading(ours, ref, torch.randn(1, 3, 224, 224))
    print(f"VGG-16 max |ours - torchvision| = {diff:.3g}")


def test_vgg_rejects_wrong_config() -> None:
    with pytest.raises(ValueError, match="one entry per block"):
        VGG((2, 2, 3))


def test_loading_checks_architecture_and_shapes() -> None:
    with torch.device("meta"):  # the checks run before any tensor is copied
        ref = torchvision.models.alexnet(num_classes=10)
        alexnet, vgg = AlexNet(num_classes=1000), VGG(VGG_CONFIGS["vgg11"], num_classes=10)
    with pytest.raises(ValueError, match="Shape mismatch"):
        load_torchvision_state_dict(alexnet, ref)
    with pytest.raises(TypeError, match="No torchvision key mapping"):
        load_torchvision_state_dict(LeNet5(), ref)
    with pytest.raises(ValueError, match="different model"):
        load_torchvision_state_dict(vgg, ref)
    with pytest.raises(TypeError, match="state dict or nn.Module"):
        load_torchvision_state_dict(alexnet, [1, 2, 3])
