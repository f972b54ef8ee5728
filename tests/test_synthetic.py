"""cnnbook.synthetic: seeded shape scenes whose masks and boxes agree with what was drawn."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from cnnbook.synthetic import (
    CLASSES,
    detection_scenes,
    make_shape_scenes,
    segmentation_scenes,
)


def test_shapes_dtypes_and_ranges() -> None:
    s = make_shape_scenes(12, size=40, seed=3)
    assert s.images.shape == (12, 3, 40, 40)
    assert s.images.dtype == torch.float32
    assert s.masks.shape == (12, 40, 40)
    assert s.masks.dtype == torch.int64
    assert float(s.images.min()) >= 0.0
    assert float(s.images.max()) <= 1.0
    assert set(s.masks.unique().tolist()) <= set(range(len(CLASSES)))
    assert len(s) == len(s.boxes) == len(s.labels) == 12
    for b, lab in zip(s.boxes, s.labels, strict=True):
        assert b.shape == (len(lab), 4)
        assert 1 <= len(lab) <= 3
        assert lab.min() >= 1
        assert lab.max() <= 3


def test_same_seed_same_scenes_other_seed_differs() -> None:
    a, b, c = (make_shape_scenes(5, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.masks, b.masks)
    assert all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes, strict=True))
    assert not torch.equal(a.images, c.images)


def test_boxes_are_tight_around_their_shape_pixels() -> None:
    s = make_shape_scenes(40, size=48, objects=(1, 3), object_size=(8, 16), seed=1)
    for mask, boxes, labels in zip(s.masks, s.boxes, s.labels, strict=True):
        covered = torch.zeros_like(mask, dtype=torch.bool)
        for (x1, y1, x2, y2), lab in zip(boxes.long().tolist(), labels.tolist(), strict=True):
            inside = mask[y1:y2, x1:x2] == lab
            # every edge row/column of a tight box touches the shape
            assert inside[0].any()
            assert inside[-1].any()
            assert inside[:, 0].any()
            assert inside[:, -1].any()
            covered[y1:y2, x1:x2] = True
        assert not (mask > 0)[~covered].any(), "a shape pixel lies outside every box"


def test_fill_ratio_identifies_each_shape() -> None:
    """Area / box area: circle pi/4, square 1, triangle 1/2 (large shapes, little aliasing)."""
    s = make_shape_scenes(60, size=64, objects=(1, 1), object_size=(30, 40), seed=2)
    expected = {1: math.pi / 4, 2: 1.0, 3: 0.5}
    for mask, boxes, labels in zip(s.masks, s.boxes, s.labels, strict=True):
        (x1, y1, x2, y2), lab = boxes[0].long().tolist(), int(labels[0])
        ratio = float((mask == lab).sum()) / ((x2 - x1) * (y2 - y1))
        assert ratio == pytest.approx(expected[lab], abs=0.06)


def test_detection_preset_never_overlaps_and_segmentation_preset_can() -> None:
    det = detection_scenes(80, seed=0)
    assert det.images.shape[-1] == 64
    for b in det.boxes:
        iou = box_iou(b, b)
        assert torch.allclose(iou, torch.eye(len(b)))
    seg = segmentation_scenes(200, seed=0)
    overlaps = sum(int((box_iou(b, b) > 0).sum() - len(b)) for b in seg.boxes)
    assert overlaps > 0


def test_shape_classes_are_balanced_and_background_dominates() -> None:
    s = segmentation_scenes(300, seed=4)
    counts = torch.bincount(torch.cat(s.labels), minlength=4)[1:]
    assert counts.min() > 0.25 * counts.sum()
    frac_bg = float((s.masks == 0).float().mean())
    assert 0.6 < frac_bg < 0.95


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n=0"),
        ({"n": 2, "object_size": (20, 40), "size": 32}, "object_size"),
        ({"n": 2, "objects": (3, 1)}, "objects"),
        ({"n": 2, "object_size": (2, 5)}, "object_size"),
        ({"n": 2, "noise": -1.0}, "noise"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_shape_scenes(**kwargs)
