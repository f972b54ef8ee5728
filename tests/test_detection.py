"""cnnbook.detection: IoU and NMS against torchvision.ops, target round trip, AP by hand."""

from __future__ import annotations

import pytest
import torch
import torchvision.ops as tvops

from cnnbook.detection import (
    Detections,
    GridDetector,
    average_precision,
    batched_nms,
    box_area,
    box_iou,
    decode_predictions,
    detection_loss,
    detection_metrics,
    encode_targets,
    nms,
)
from cnnbook.synthetic import detection_scenes


def _random_boxes(n: int, seed: int, scale: float = 50.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale / 3 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_box_iou_matches_torchvision() -> None:
    a, b = _random_boxes(30, 0), _random_boxes(20, 1)
    torch.testing.assert_close(box_iou(a, b), tvops.box_iou(a, b))
    assert box_iou(a, a).diagonal().allclose(torch.ones(30))


def test_box_iou_simple_case_and_bad_shape() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0]]))
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        box_iou(torch.zeros(3), b)


def test_box_area_matches_torchvision() -> None:
    boxes = _random_boxes(40, 3)
    torch.testing.assert_close(box_area(boxes), tvops.box_area(boxes))
    assert box_area(boxes.double()).dtype == torch.float64


def test_box_area_by_hand_and_degenerate_boxes() -> None:
    boxes = torch.tensor(
        [[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [4.0, 4.0, 2.0, 6.0], [4.0, 4.0, 2.0, 1.0]]
    )
    # zero width gives 0; inverted sides count as empty, where torchvision multiplies them
    torch.testing.assert_close(box_area(boxes), torch.tensor([6.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(tvops.box_area(boxes), torch.tensor([6.0, 0.0, -4.0, 6.0]))
    assert box_area(torch.zeros(0, 4)).shape == (0,)


def test_box_area_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"boxes must have shape \(K, 4\).*got \(4,\)"):
        box_area(torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"got \(2, 5\)"):
        box_area(torch.zeros(2, 5))


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_torchvision(threshold: float, seed: int) -> None:
    boxes = _random_boxes(80, seed)
    scores = torch.rand(80, generator=torch.Generator().manual_seed(seed + 10))
    assert torch.equal(nms(boxes, scores, threshold), tvops.nms(boxes, scores, threshold))


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_nms_matches_torchvision(seed: int) -> None:
    boxes = _random_boxes(60, seed)
    g = torch.Generator().manual_seed(seed)
    scores, labels = torch.rand(60, generator=g), torch.randint(1, 4, (60,), generator=g)
    assert torch.equal(batched_nms(boxes, scores, labels, 0.4), tvops.batched_nms(boxes, scores, labels, 0.4))


def test_nms_edge_cases() -> None:
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0
    dup = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert nms(dup, torch.tensor([0.5, 0.9, 0.1]), 0.5).tolist() == [1, 2]
    with pytest.raises(ValueError, match="one entry per box"):
        nms(dup, torch.zeros(2), 0.5)


def _perfect_logits(targets, num_classes: int) -> torch.Tensor:
    eps = 1e-4
    obj = targets.objectness
    n, s, _ = obj.shape
    raw = torch.zeros(n, 5 + num_classes, s, s)
    raw[:, 0] = torch.where(obj > 0, 20.0, -20.0)
    raw[:, 1:3] = torch.logit(targets.boxes[:, :2].clamp(eps, 1 - eps))
    raw[:, 3:5] = targets.boxes[:, 2:]
    onehot = torch.nn.functional.one_hot(targets.classes.clamp(min=0), num_classes)
    raw[:, 5:] = 20.0 * onehot.permute(0, 3, 1, 2)
    return raw


def test_encode_then_decode_recovers_the_boxes() -> None:
    scenes = detection_scenes(20, seed=5)
    targets = encode_targets(scenes.boxes, scenes.labels, image_size=64, stride=8)
    assert targets.dropped == 0
    assert int(targets.objectness.sum()) == sum(len(b) for b in scenes.boxes)
    dets = decode_predictions(_perfect_logits(targets, 3), stride=8, score_threshold=0.5)
    for det, boxes, labels in zip(dets, scenes.boxes, scenes.labels, strict=True):
        order = (det.boxes[:, 0].round() * 1000 + det.boxes[:, 1]).argsort()
        ref = (boxes[:, 0] * 1000 + boxes[:, 1]).argsort()
        torch.testing.assert_close(det.boxes[order], boxes[ref], atol=2e-3, rtol=0)
        assert torch.equal(det.labels[order], labels[ref])
    m = detection_metrics(dets, scenes.boxes, scenes.labels, num_classes=3)
    assert m["mAP"] == pytest.approx(1.0)
    assert m["recall"] == 1.0
    assert m["precision"] == 1.0
    assert m["mean_iou"] == pytest.approx(1.0, abs=1e-3)


def test_centres_in_one_cell_keep_the_larger_box() -> None:
    boxes = [torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 8.0, 8.0]])]
    t = encode_targets(boxes, [torch.tensor([1, 2])], image_size=16, stride=8)
    assert t.dropped == 1
    assert int(t.objectness.sum()) == 1
    assert t.classes[0, 0, 0] == 1  # label 2 (the larger box) -> class index 1
    torch.testing.assert_close(t.boxes[0, :, 0, 0], torch.tensor([0.5, 0.5, 0.0, 0.0]))


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="multiple of stride"):
        encode_targets([], [], image_size=30, stride=8)
    with pytest.raises(ValueError, match="reserved for background"):
        encode_targets([torch.tensor([[0.0, 0, 4, 4]])], [torch.tensor([0])], 16, 8)


def test_loss_is_near_zero_for_perfect_logits_and_large_for_random() -> None:
    scenes = detection_scenes(8, seed=1)
    targets = encode_targets(scenes.boxes, scenes.labels, image_size=64, stride=8)
    assert float(detection_loss(_perfect_logits(targets, 3), targets)) < 1e-2
    assert float(detection_loss(torch.randn(8, 8, 8, 8), targets)) > 1.0
    with pytest.raises(ValueError, match="grid"):
        detection_loss(torch.randn(8, 8, 4, 4), targets)


def test_detector_output_grid_and_training_step() -> None:
    torch.manual_seed(0)
    net = GridDetector(num_classes=3, widths=(8, 16, 16))
    scenes = detection_scenes(8, seed=2)
    raw = net(scenes.images)
    assert net.stride == 8
    assert raw.shape == (8, 8, 8, 8)
    targets = encode_targets(scenes.boxes, scenes.labels, 64, net.stride)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = detection_loss(net(scenes.images), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.randn(1, 3, 60, 64))


def _det(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), torch.tensor(labels, dtype=torch.int64)
    )


def test_average_precision_by_hand() -> None:
    gt_boxes = [torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[20.0, 20, 30, 30]])]
    gt_labels = [torch.tensor([1]), torch.tensor([1])]
    dets = [
        _det([[0, 0, 10, 10]], [0.9], [1]),
        _det([[50, 50, 60, 60], [21, 21, 30, 30]], [0.8, 0.7], [1, 1]),
    ]
    # ranks: TP (P=1, R=.5), FP (P=.5, R=.5), TP (P=2/3, R=1) -> AP = .5*1 + .5*2/3
    assert average_precision(dets, gt_boxes, gt_labels, 1) == pytest.approx(0.5 + 1 / 3)
    # a duplicate of an already matched box is a false positive
    dup = [_det([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1]), _det([], [], [])]
    assert average_precision(dup, gt_boxes, gt_labels, 1) == pytest.approx(0.5)
    assert average_precision(dets, gt_boxes, gt_labels, 2) != average_precision(
        dets, gt_boxes, gt_labels, 2
    )  # NaN: no ground truth of class 2
    none = [_det([], [], []), _det([], [], [])]
    assert average_precision(none, gt_boxes, gt_labels, 1) == 0.0
    m = detection_metrics(dets, gt_boxes, gt_labels, num_classes=1)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0
