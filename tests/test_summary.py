"""Tests for cnnbook.summary: parameter counts, MACs/FLOPs and the layer table."""

from __future__ import annotations

import pytest
import torch
import torchinfo
from torch import nn
from torchvision.models import get_model_weights

from cnnbook.models import AlexNet, SimpleCNN, resnet18, resnet50, vgg16
from cnnbook.modules import count_parameters
from cnnbook.summary import (
    count_flops,
    count_macs,
    format_count,
    format_layer_table,
    layer_table,
    macs_by_module,
)


def test_count_parameters_trainable_and_shared() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    assert count_parameters(model) == 10 * 20 + 20 + 20 * 5 + 5
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 20 * 5 + 5
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied) == 16 + 4 + 4
    with pytest.raises(TypeError):
        count_parameters([torch.zeros(3)])


@pytest.mark.parametrize(
    ("layer", "shape", "expected_macs"),
    [
        (nn.Conv2d(3, 16, 3, padding=1), (2, 3, 32, 32), 2 * 16 * 32 * 32 * 3 * 9),
        (nn.Conv2d(8, 8, 5, stride=2), (1, 8, 21, 21), 8 * 9 * 9 * 8 * 25),
        (nn.Conv2d(32, 32, 3, padding=1, groups=32), (1, 32, 10, 10), 32 * 10 * 10 * 1 * 9),
        (nn.Conv2d(256, 64, 1), (1, 256, 14, 14), 64 * 14 * 14 * 256),
        (nn.Linear(100, 7), (5, 100), 5 * 100 * 7),
    ],
)
def test_macs_follow_the_closed_form(layer: nn.Module, shape: tuple, expected_macs: int) -> None:
    assert count_macs(layer, shape) == expected_macs
    assert count_flops(layer, torch.randn(shape)) == 2 * expected_macs


@pytest.mark.parametrize(
    ("name", "builder"),
    [("alexnet", AlexNet), ("vgg16", vgg16), ("resnet18", resnet18), ("resnet50", resnet50)],
)
def test_macs_match_torchvision_published_figures(name: str, builder) -> None:
    # torchvision's tables head this column "GFLOPS", but the values are GMACs
    # (ResNet-18: 1.814). A meta-device model counts without computing anything.
    with torch.device("meta"):
        model = builder()
    published = get_model_weights(name).DEFAULT.meta["_ops"]
    macs = count_macs(model, (1, 3, 224, 224))
    assert round(macs / 1e9, 3) == pytest.approx(published, abs=0.0011)


def test_macs_by_module_sums_children_and_restores_mode() -> None:
    model = resnet18(num_classes=10, stem="cifar").train()
    per = macs_by_module(model, (1, 3, 32, 32))
    assert model.training
    stages = ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert sum(per[s] for s in stages) == per[""]
    assert per["layer1.0.conv1"] == 64 * 32 * 32 * 64 * 9
    assert per["fc"] == 512 * 10


def test_layer_table_for_simple_cnn() -> None:
    model = SimpleCNN()
    rows = layer_table(model, (1, 3, 32, 32))
    assert rows[0].name == ""
    assert rows[0].params == 1_070_794
    by_name = {r.name: r for r in rows[1:]}
    assert by_name["conv1"].output_shape == (1, 32, 32, 32)
    assert by_name["conv2"].output_shape == (1, 64, 16, 16)
    assert by_name["fc1"].output_shape == (1, 256)
    assert by_name["fc1"].params == 64 * 8 * 8 * 256 + 256
    assert by_name["conv2"].macs == 64 * 16 * 16 * 32 * 9
    assert [r.output_shape for r in rows if r.name == "pool"] == [(1, 32, 16, 16), (1, 64, 8, 8)]
    reference = torchinfo.summary(model, input_size=(1, 3, 32, 32), verbose=0, device="cpu")
    assert rows[0].params == reference.total_params
    text = format_layer_table(rows)
    assert "MACs" in text
    assert "conv1 (Conv2d)" in text
    assert "1,070,794" in text


def test_layer_table_nested_names_and_bad_input() -> None:
    rows = layer_table(resnet18(), (1, 3, 64, 64), depth=2)
    names = [r.name for r in rows]
    assert "layer2.0" in names
    assert "stem.conv" in names
    assert sum(r.params for r in rows if r.depth == 1) == 11_689_512
    reference = torchinfo.summary(resnet18(), input_size=(1, 3, 64, 64), depth=2, verbose=0, device="cpu")
    ours = [(r.depth, r.output_shape) for r in rows[1:]]
    theirs = [(i.depth, tuple(i.output_size)) for i in reference.summary_list[1:] if i.depth <= 2]
    assert ours == theirs
    with pytest.raises(ValueError, match="positive ints"):
        count_macs(SimpleCNN(), (1, 3, 0, 32))
    with pytest.raises(ValueError, match="depth"):
        layer_table(SimpleCNN(), (1, 3, 32, 32), depth=-1)


def test_format_count_names_unit() -> None:
    assert format_count(1_814_073_344, "MACs") == "1.81 GMACs"
    assert format_count(53_248, "params") == "53.25 Kparams"
    assert format_count(12, "FLOPs") == "12 FLOPs"


def test_layer_table_reproduces_chapter_shapes_and_cleans_up() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(128, 256, 3, padding=1),
    )
    rows = layer_table(net, (1, 3, 224, 224))
    assert [r.output_shape[1:] for r in rows[1:]] == [
        (64, 224, 224),
        (64, 112, 112),
        (128, 112, 112),
        (128, 56, 56),
        (256, 56, 56),
    ]
    assert rows[1].params == 64 * 3 * 9 + 64
    assert net.training  # mode restored
    assert not net[0]._forward_hooks  # hooks removed
    assert not net[0]._forward_pre_hooks


def test_layer_table_names_the_failing_layer() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(ValueError, match=r"after layer '1' \(Flatten\) produced \(1, 7200\)"):
        layer_table(net, (1, 3, 32, 32))
    assert not net[0]._forward_hooks
    assert net.training
    with pytest.raises(ValueError, match="at the first layer"):
        layer_table(nn.Sequential(nn.Linear(5, 2)), (1, 3))


def test_layer_table_on_meta_device_lists_each_call() -> None:
    with torch.device("meta"):
        model = SimpleCNN()
    rows = layer_table(model, (2, 3, 32, 32))
    assert [r.name for r in rows].count("pool") == 2  # one module, called twice: two rows
    assert rows[0].output_shape == (2, 10)
