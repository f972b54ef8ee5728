"""Tests for cnnbook.zoo: the 14.17 comparison table agrees with the counts asserted elsewhere."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from cnnbook import zoo
from cnnbook.modules import count_parameters
from cnnbook.summary import count_macs

matplotlib.use("Agg")

# The counts the section notebooks and the model tests assert (14.6, 14.7, 14.8, test_efficientnet).
ASSERTED_PARAMS = {
    "LeNet-5": 61_706,
    "AlexNet": 61_100_840,
    "VGG-16": 138_357_544,
    "ResNet-18": 11_689_512,
    "ResNet-50": 25_557_032,
    "EfficientNet-B0": 5_288_548,
    "EfficientNet-Lite0": 4_652_008,
}


@pytest.fixture(scope="module")
def rows() -> dict[str, zoo.ArchRow]:
    return {a.name: zoo.count_row(a.name) for a in zoo.ARCHITECTURES}


def test_every_chapter_network_is_listed() -> None:
    names = [a.name for a in zoo.ARCHITECTURES]
    assert len(names) == len(set(names)) == 11
    for name in (
        "LeNet-5",
        "AlexNet",
        "VGG-16",
        "ResNet-18",
        "ResNet-50",
        "MobileNetV2",
        "MobileNetV3-L",
        "EfficientNet-B0",
        "EfficientNet-Lite0",
        "ConvNeXt-T",
        "ViT-B/16",
    ):
        assert zoo.architecture(name).name == name
    assert zoo.architecture("resnet-50").name == "ResNet-50"


def test_counts_match_the_other_notebooks(rows: dict[str, zoo.ArchRow]) -> None:
    for name, expected in ASSERTED_PARAMS.items():
        assert rows[name].params == expected, name
    assert round(rows["ResNet-18"].macs / 1e9, 3) == 1.814  # asserted in 14.6


def test_counts_match_torchvision_metadata(rows: dict[str, zoo.ArchRow]) -> None:
    # torchvision publishes num_params and "_ops" (GMACs, labelled GFLOPS) for each weight set
    for arch in zoo.ARCHITECTURES:
        if arch.weights_enum is None:
            continue
        meta = zoo.torchvision_weights(arch.weights_enum).meta
        assert rows[arch.name].params == meta["num_params"], arch.name
        assert round(rows[arch.name].macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-3), arch.name


def test_meta_device_counts_equal_real_model_counts() -> None:
    real = zoo.build("MobileNetV3-L", "cpu")
    row = zoo.count_row("MobileNetV3-L")
    assert next(real.parameters()).device.type == "cpu"
    assert not real.training
    assert row.params == count_parameters(real)
    assert row.macs == count_macs(real, (1, 3, 224, 224))
    lenet = zoo.count_row("LeNet-5")
    assert lenet.input_shape == (1, 1, 32, 32)
    # conv 6*28*28*25 + 16*10*10*150 + 120*400, fc 120*84 + 84*10
    assert lenet.macs == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 120 * 84 + 84 * 10


def test_published_accuracies_and_sources(rows: dict[str, zoo.ArchRow]) -> None:
    assert rows["LeNet-5"].top1 is None
    assert "never" in rows["LeNet-5"].top1_source
    assert rows["EfficientNet-Lite0"].top1 == zoo.LITE0_TOP1 == 75.1
    assert "tensorflow/tpu" in rows["EfficientNet-Lite0"].top1_source
    assert rows["ResNet-50"].top1 == pytest.approx(76.13)
    assert rows["EfficientNet-B0"].top1 == pytest.approx(77.692)
    assert "torchvision" in rows["ViT-B/16"].top1_source
    assert all(0 < r.top1 < 100 for r in rows.values() if r.top1 is not None)


def test_each_row_names_the_recipe_torchvision_describes(rows: dict[str, zoo.ArchRow]) -> None:
    # torchvision's own description of each weight set (meta["_docs"]) backs the recipe column
    keyword = {
        "AlexNet": ("simplified", "simplified"),
        "VGG-16": ("simplified", "simplified"),
        "ResNet-18": ("simple training recipe", "simple"),
        "ResNet-50": ("simple training recipe", "simple"),
        "MobileNetV2": ("simple training recipe", "simple"),
        "MobileNetV3-L": ("simple training recipe", "simple"),
        "EfficientNet-B0": ("ported from the original paper", "ported"),
        "ConvNeXt-T": ("new training recipe", "new recipe"),
        "ViT-B/16": ("DeIT", "DeiT"),
    }
    for arch in zoo.ARCHITECTURES:
        if arch.weights_enum is None:
            continue
        docs = zoo.torchvision_weights(arch.weights_enum).meta["_docs"]
        in_docs, in_recipe = keyword[arch.name]
        assert in_docs in docs, arch.name
        assert in_recipe in rows[arch.name].recipe, arch.name
    assert "recipe" in zoo.format_table(list(rows.values())).splitlines()[0]


def test_cifar_model_by_name_with_a_clear_error() -> None:
    assert type(zoo.cifar_model("SimpleCNN")).__name__ == "SimpleCNN"
    net = zoo.cifar_model("fastnet", widths=(8, 16, 16))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"Unknown MODEL 'resnet-18'.*'fastnet'.*Did you mean 'resnet18'"):
        zoo.cifar_model("resnet-18")
    with pytest.raises(ValueError, match="does not take"):
        zoo.cifar_model("simplecnn", widths=(8, 16, 16))


def test_measure_times_only_what_is_asked() -> None:
    got = zoo.measure(["LeNet-5", "AlexNet"], time_names=["LeNet-5"], repeats=2, warmup=0)
    assert [r.name for r in got] == ["LeNet-5", "AlexNet"]
    assert got[0].latency_ms is not None
    assert got[0].latency_ms > 0
    assert got[0].latency.repeats == 2
    assert got[1].latency_ms is None
    assert got[1].latency is None
    assert got[1].params == 61_100_840


def test_measure_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="choose one of .*Did you mean 'ResNet-50'"):
        zoo.measure(["ResNet-51"])
    with pytest.raises(ValueError, match="not in names"):
        zoo.measure(["LeNet-5"], time_names=["AlexNet"])
    with pytest.raises(ValueError, match="repeats"):
        zoo.measure(["LeNet-5"], repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        zoo.measure(["LeNet-5"], warmup=-1)
    with pytest.raises(ValueError, match="weight enum"):
        zoo.torchvision_weights("NoSuch_Weights")


def test_format_table_and_plots(rows: dict[str, zoo.ArchRow]) -> None:
    from dataclasses import replace

    table = list(rows.values())
    table[0] = replace(table[0], latency_ms=1.5)
    table[3] = replace(table[3], latency_ms=20.0)
    text = zoo.format_table(table)
    assert len(text.splitlines()) == 2 + len(table)
    assert "138,357,544" in text
    assert "32x32" in text
    assert "75.1" in text
    fig = zoo.plot_tradeoffs(table, title="t")
    first, second = fig.axes
    assert first.get_xscale() == second.get_xscale() == "log"
    assert len(first.collections) == 10  # LeNet has no accuracy
    assert len(second.collections) == 1  # only ResNet-18 has both latency and accuracy
    assert "not timed" in second.get_title()


def test_build_runs_a_forward_pass() -> None:
    model = zoo.build("LeNet-5")
    with torch.inference_mode():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_add_latency_leaves_untimed_rows_alone() -> None:
    counted = [zoo.count_row("LeNet-5")]
    assert zoo.add_latency(counted, []) == counted
    timed = zoo.add_latency(counted, ["lenet-5"], repeats=1, warmup=0)
    assert timed[0].params == counted[0].params
    assert timed[0].latency_ms > 0


def test_importing_the_name_tables_does_not_load_matplotlib() -> None:
    """cnnbook.pretrained reads its backbone names from zoo; that must not drag in matplotlib."""
    import subprocess
    import sys

    code = "import sys, cnnbook.pretrained, cnnbook.zoo; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
