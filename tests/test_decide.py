"""Tests for cnnbook.decide: every branch of 14.17's decision guide, bad input, the widget."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnnbook.decide import LARGE_DATASET, TASKS, DecisionWidget, Recommendation, recommend

CLASSIFICATION = {
    # (latency_critical, large, pretrained) -> architecture
    (True, False, False): "MobileNetV3 or EfficientNet-Lite",
    (True, False, True): "MobileNetV3 or EfficientNet-Lite",
    (True, True, False): "MobileNetV3 or EfficientNet-Lite",
    (True, True, True): "MobileNetV3 or EfficientNet-Lite",
    (False, True, False): "EfficientNet-B4/B5 or ConvNeXt-Base",
    (False, True, True): "EfficientNet-B4/B5 or ConvNeXt-Base",
    (False, False, True): "ResNet-50 or EfficientNet-B0, fine-tuned",
    (False, False, False): "ResNet-18, adding capacity as needed",
}


@pytest.mark.parametrize(("fast", "large", "pretrained"), list(CLASSIFICATION))
def test_every_classification_branch(fast: bool, large: bool, pretrained: bool) -> None:
    size = 1_000_000 if large else 2_000
    rec = recommend(fast, size, pretrained)
    assert isinstance(rec, Recommendation)
    assert rec.architecture == CLASSIFICATION[(fast, large, pretrained)]
    assert rec.backbone is None
    assert rec.reasons
    assert all(isinstance(r, str) for r in rec.reasons)
    assert rec.path[0] == "task=classification"
    assert rec.path[1] == f"latency-critical={'yes' if fast else 'no'}"
    if not fast:  # the later questions are asked only when speed is not critical
        assert rec.path[2] == f"large={'yes' if large else 'no'}"
        assert len(rec.path) == (3 if large else 4)
    else:
        assert len(rec.path) == 2


def test_all_four_leaves_are_reached() -> None:
    leaves = {
        recommend(f, s, p).architecture
        for f, s, p in itertools.product((True, False), (10, 10**6), (True, False))
    }
    assert leaves == set(CLASSIFICATION.values())


def test_large_means_more_than_the_threshold() -> None:
    assert recommend(False, LARGE_DATASET, True).path[2] == "large=no"
    assert recommend(False, LARGE_DATASET + 1, True).path[2] == "large=yes"
    assert recommend(False, 50, True, large_dataset=49).path[2] == "large=yes"
    assert recommend(False, 0, False).architecture.startswith("ResNet-18")


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pretrained", [True, False])
def test_segmentation_is_unet_with_the_classification_backbone(fast: bool, pretrained: bool) -> None:
    rec = recommend(fast, 3_000, pretrained, "segmentation")
    assert rec.architecture == "U-Net"
    assert rec.backbone == recommend(fast, 3_000, pretrained).architecture
    assert rec.path[0] == "task=segmentation"
    assert "U-Net" in rec.reasons[0]


@pytest.mark.parametrize("size", [3_000, 500_000])
def test_detection_branches(size: int) -> None:
    fast = recommend(True, size, True, "Detection ")
    assert fast.architecture == "YOLOv8"
    assert fast.backbone == "MobileNetV3 or EfficientNet-Lite"
    slow = recommend(False, size, True, "detection")
    assert slow.architecture == "Faster R-CNN"
    assert slow.backbone == recommend(False, size, True).architecture
    assert "two-stage" in slow.reasons[0]


def test_str_lists_reasons() -> None:
    text = str(recommend(False, 10, True, "segmentation"))
    assert text.startswith("U-Net (backbone: ResNet-50")
    assert text.count("\n  - ") == len(recommend(False, 10, True, "segmentation").reasons)


def test_numpy_values_are_accepted() -> None:
    rec = recommend(np.bool_(True), np.int64(5), np.bool_(False))
    assert rec.architecture == "MobileNetV3 or EfficientNet-Lite"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"latency_critical": "yes"}, TypeError, "latency_critical must be True or False"),
        ({"latency_critical": 1}, TypeError, "latency_critical"),
        ({"pretrained_for_domain": None}, TypeError, "pretrained_for_domain"),
        ({"dataset_size": 1.5e4}, TypeError, "whole number"),
        ({"dataset_size": True}, TypeError, "whole number"),
        ({"dataset_size": -1}, ValueError, "at least 0"),
        ({"task": "captioning"}, ValueError, "classification, segmentation, detection"),
        ({"task": 3}, TypeError, "task must be a string"),
        ({"large_dataset": -5}, ValueError, "large_dataset"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs: dict, error: type, match: str) -> None:
    args = {
        "latency_critical": False,
        "dataset_size": 100,
        "pretrained_for_domain": True,
        "task": "classification",
        **kwargs,
    }
    with pytest.raises(error, match=match):
        recommend(**args)


def test_widget_follows_its_controls() -> None:
    w = DecisionWidget()
    assert "ResNet-50" in w.answer.value
    assert w.task.options == TASKS
    w.latency.value = True
    assert "MobileNetV3" in w.answer.value
    assert "latency-critical=yes" in w.answer.value
    w.latency.value = False
    w.size.value = 2_000_000
    assert "ConvNeXt-Base" in w.answer.value
    w.task.value = "detection"
    assert "Faster R-CNN" in w.answer.value
    assert "backbone" in w.answer.value
    w.size.value = 10
    w.pretrained.value = False
    w.task.value = "classification"
    assert "ResNet-18" in w.answer.value
    assert w.recommendation == recommend(False, 10, False)
    assert "application/vnd.jupyter.widget-view+json" in w._repr_mimebundle_()
