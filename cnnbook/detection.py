"""A tiny single-stage grid detector in the YOLO style, with box IoU, NMS and AP (section 14.13).

The detector's backbone downsamples the image by ``stride``; every cell of the resulting
``S x S`` grid predicts one box: an objectness logit, the box centre as an offset inside the
cell, the box width and height on a log scale relative to the cell size, and class logits.
The cell that contains a ground-truth box's centre is responsible for it.

Per cell the raw output channels are::

    0: objectness logit       1-2: centre offset logits (sigmoid -> [0, 1] inside the cell)
    3-4: log(w / stride), log(h / stride)        5..: class logits (object classes only)

Boxes are ``(x1, y1, x2, y2)`` in pixels everywhere, as in ``torchvision.ops``. :func:`box_iou`
and :func:`nms` are written out here for teaching and tested against ``torchvision.ops``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.models.layers import ConvBNAct

BOX_CHANNELS = 5  # objectness, dx, dy, log w, log h


def _conv_bn_relu(in_channels: int, out_channels: int) -> ConvBNAct:
    return ConvBNAct(in_channels, out_channels, 3, activation=functools.partial(nn.ReLU, inplace=True))


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (K, 4) as (x1, y1, x2, y2), got {tuple(boxes.shape)}.")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(K, 4)`` boxes in ``(x1, y1, x2, y2)`` form, shape ``(K,)``."""
    _check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Pairwise intersection over union, :math:`|A \cap B| / (|A| + |B| - |A \cap B|)`.

    Args:
        a: Boxes ``(N, 4)`` as ``(x1, y1, x2, y2)``.
        b: Boxes ``(M, 4)``.

    Returns:
        IoU matrix ``(N, M)`` with values in ``[0, 1]``.
    """
    _check_boxes(a, "a")
    _check_boxes(b, "b")
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Repeatedly keep the highest-scoring remaining box and discard every remaining box whose
    IoU with it exceeds ``iou_threshold``.

    Args:
        boxes: ``(K, 4)`` boxes.
        scores: ``(K,)`` scores.
        iou_threshold: Boxes overlapping a kept box by more than this are removed.

    Returns:
        int64 indices of the kept boxes, highest score first (as ``torchvision.ops.nms``).
    """
    _check_boxes(boxes, "boxes")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores {tuple(scores.shape)} must have one entry per box ({boxes.shape[0]}).")
    order = scores.argsort(descending=True)
    iou = box_iou(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS run separately per class (boxes of different classes never suppress each other).

    Args:
        boxes: ``(K, 4)`` boxes.
        scores: ``(K,)`` scores.
        labels: ``(K,)`` class ids.
        iou_threshold: As in :func:`nms`.

    Returns:
        int64 indices of the kept boxes, highest score first (as
        ``torchvision.ops.batched_nms``).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    # Shift each class into its own region so boxes of different classes cannot overlap.
    offsets = labels.to(boxes) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


@dataclass(frozen=True)
class GridTargets:
    """Training targets on an ``S x S`` grid.

    Attributes:
        objectness: 1.0 in cells responsible for a box, else 0.0; ``(N, S, S)``.
        boxes: Regression targets ``(dx, dy, log w/stride, log h/stride)``; ``(N, 4, S, S)``
            (zeros where there is no object).
        classes: Object class index ``0..C-1`` (box label minus one), -1 where no object;
            ``(N, S, S)`` int64.
        dropped: Boxes that lost their cell to a larger box with its centre in the same cell.
    """

    objectness: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    dropped: int


def encode_targets(
    boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], image_size: int, stride: int
) -> GridTargets:
    """Assign every ground-truth box to the grid cell holding its centre.

    Args:
        boxes: One ``(K_i, 4)`` tensor per image.
        labels: One ``(K_i,)`` tensor per image with ids ``>= 1`` (0 is background).
        image_size: Image height and width in pixels.
        stride: Cell size in pixels; ``image_size`` must be a multiple of it.

    Returns:
        :class:`GridTargets`. When two centres share a cell the larger box wins.
    """
    if image_size % stride:
        raise ValueError(f"image_size={image_size} must be a multiple of stride={stride}.")
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} box tensors but {len(labels)} label tensors.")
    n, s = len(boxes), image_size // stride
    obj = torch.zeros(n, s, s)
    reg = torch.zeros(n, 4, s, s)
    cls = torch.full((n, s, s), -1, dtype=torch.int64)
    dropped = 0
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        _check_boxes(b, f"boxes[{i}]")
        if b.numel() and int(lab.min()) < 1:
            raise ValueError(f"labels[{i}] must be >= 1; id 0 is reserved for background.")
        for j in box_area(b).argsort(descending=True).tolist():  # larger boxes claim first
            x1, y1, x2, y2 = b[j].tolist()
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            gx, gy = min(int(cx // stride), s - 1), min(int(cy // stride), s - 1)
            if obj[i, gy, gx]:
                dropped += 1
                continue
            obj[i, gy, gx] = 1.0
            reg[i, :, gy, gx] = torch.tensor(
                [cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride)]
            )
            cls[i, gy, gx] = int(lab[j]) - 1
    return GridTargets(obj, reg, cls, dropped)


class GridDetector(nn.Module):
    """A tiny YOLO-style detector: conv backbone to a stride-``2**len(widths)`` grid, 1x1 head.

    Args:
        num_classes: Object classes (background not counted).
        in_channels: Image channels.
        widths: Channels of the backbone stages; each stage is ``convs_per_stage`` 3x3
            conv-BN-ReLU layers then a 2x2 max-pool.
        convs_per_stage: Convolutions per stage.
    """

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        convs_per_stage: int = 1,
    ) -> None:
        super().__init__()
        if convs_per_stage < 1:
            raise ValueError(f"convs_per_stage={convs_per_stage} must be >= 1.")
        layers: list[nn.Module] = []
        prev = in_channels
        for w in widths:
            for _ in range(convs_per_stage):
                layers.append(_conv_bn_relu(prev, w))
                prev = w
            layers.append(nn.MaxPool2d(2))
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Sequential(_conv_bn_relu(prev, prev), nn.Conv2d(prev, BOX_CHANNELS + num_classes, 1))
        self.num_classes = num_classes
        self.stride = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw grid predictions.

        Args:
            x: Images ``(N, C_in, H, W)`` with H and W multiples of :attr:`stride`.

        Returns:
            ``(N, 5 + num_classes, H / stride, W / stride)`` (channel layout in the module
            docstring).
        """
        if x.ndim != 4 or x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ValueError(
                f"GridDetector expects (N, C, H, W) with H and W multiples of "
                f"{self.stride}, got {tuple(x.shape)}."
            )
        return self.head(self.backbone(x))


def detection_loss(
    raw: torch.Tensor, targets: GridTargets, box_weight: float = 5.0, noobj_weight: float = 0.5
) -> torch.Tensor:
    """YOLO-style sum of objectness, box and class losses, averaged over images.

    Objectness: binary cross-entropy in every cell (cells without objects weighted by
    ``noobj_weight``). Box: squared error of the sigmoid offsets and log sizes, in responsible
    cells only, weighted by ``box_weight``. Class: cross-entropy in responsible cells.

    Args:
        raw: Detector output ``(N, 5 + C, S, S)``.
        targets: Targets on the same grid (tensors on the same device as ``raw``).
        box_weight: Weight of the box term.
        noobj_weight: Weight of the objectness term in empty cells.

    Returns:
        Scalar loss.
    """
    if raw.shape[-2:] != targets.objectness.shape[-2:]:
        raise ValueError(
            f"prediction grid {tuple(raw.shape[-2:])} differs from target grid "
            f"{tuple(targets.objectness.shape[-2:])}; check image_size and stride."
        )
    n = raw.shape[0]
    obj_t = targets.objectness
    pos = obj_t > 0
    weights = torch.where(pos, 1.0, noobj_weight)
    obj_loss = F.binary_cross_entropy_with_logits(raw[:, 0], obj_t, weight=weights, reduction="sum")
    pred_box = torch.cat([raw[:, 1:3].sigmoid(), raw[:, 3:5]], dim=1).permute(0, 2, 3, 1)[pos]
    true_box = targets.boxes.permute(0, 2, 3, 1)[pos]
    box_loss = F.mse_loss(pred_box, true_box, reduction="sum")
    cls_loss = F.cross_entropy(
        raw[:, BOX_CHANNELS:].permute(0, 2, 3, 1)[pos], targets.classes[pos], reduction="sum"
    )
    return (obj_loss + box_weight * box_loss + cls_loss) / n


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)`` (ids >= 1)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def decode_predictions(
    raw: torch.Tensor, stride: int, score_threshold: float = 0.5, iou_threshold: float | None = 0.5
) -> list[Detections]:
    """Turn raw grid outputs into boxes, scores and labels, then apply per-class NMS.

    The score of a cell is ``sigmoid(objectness) * max softmax class probability``.

    Args:
        raw: Detector output ``(N, 5 + C, S, S)``.
        stride: Cell size in pixels.
        score_threshold: Keep cells scoring at least this.
        iou_threshold: NMS threshold; ``None`` skips NMS.

    Returns:
        One :class:`Detections` per image (on the CPU), highest score first.
    """
    raw = raw.detach().float().cpu()
    n, _, s, _ = raw.shape
    grid_y, grid_x = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    cx = (grid_x + raw[:, 1].sigmoid()) * stride
    cy = (grid_y + raw[:, 2].sigmoid()) * stride
    w = raw[:, 3].clamp(max=10).exp() * stride
    h = raw[:, 4].clamp(max=10).exp() * stride
    all_boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    probs, cls = raw[:, BOX_CHANNELS:].softmax(1).max(1)
    all_scores = raw[:, 0].sigmoid() * probs
    out = []
    for i in range(n):
        keep = all_scores[i] >= score_threshold
        boxes, scores, labels = all_boxes[i][keep], all_scores[i][keep], cls[i][keep] + 1
        order = (
            batched_nms(boxes, scores, labels, iou_threshold)
            if iou_threshold is not None
            else scores.argsort(descending=True)
        )
        out.append(Detections(boxes[order], scores[order], labels[order]))
    return out


def average_precision(
    detections: Sequence[Detections],
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    label: int,
    iou_threshold: float = 0.5,
) -> float:
    """Average precision of one class (all-point interpolation, as in PASCAL VOC 2010+).

    Detections of class ``label`` from all images are ranked by score; each is a true positive
    if it overlaps a not-yet-matched ground-truth box of that class by at least
    ``iou_threshold``, else a false positive. AP is the area under the precision-recall curve
    after making precision non-increasing in recall.

    Args:
        detections: One :class:`Detections` per image.
        gt_boxes: One ``(K_i, 4)`` tensor per image.
        gt_labels: One ``(K_i,)`` tensor per image.
        label: The class id to score.
        iou_threshold: Minimum IoU of a match.

    Returns:
        AP in ``[0, 1]``; NaN when the class has no ground-truth box.
    """
    if not len(detections) == len(gt_boxes) == len(gt_labels):
        raise ValueError("detections, gt_boxes and gt_labels need one entry per image.")
    n_gt = sum(int((lab == label).sum()) for lab in gt_labels)
    if n_gt == 0:
        return float("nan")
    ranked = []  # (score, image index, box)
    for i, det in enumerate(detections):
        sel = det.labels == label
        ranked += [(float(sc), i, bx) for sc, bx in zip(det.scores[sel], det.boxes[sel], strict=True)]
    ranked.sort(key=lambda t: -t[0])
    matched = [torch.zeros(int((lab == label).sum()), dtype=torch.bool) for lab in gt_labels]
    hits = []
    for _, i, bx in ranked:
        gts = gt_boxes[i][gt_labels[i] == label]
        if len(gts) == 0:
            hits.append(False)
            continue
        iou = box_iou(bx[None], gts)[0]
        iou[matched[i]] = -1.0
        j = int(iou.argmax())
        hit = bool(iou[j] >= iou_threshold)
        if hit:
            matched[i][j] = True
        hits.append(hit)
    tp = torch.tensor(hits, dtype=torch.float64).cumsum(0)
    precision = tp / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    recall = tp / n_gt
    # pad so the curve starts at recall 0 and ends at the last recall reached
    precision = torch.cat(
        [torch.zeros(1, dtype=torch.float64), precision, torch.zeros(1, dtype=torch.float64)]
    )
    recall = torch.cat(
        [
            torch.zeros(1, dtype=torch.float64),
            recall,
            recall[-1:] if len(hits) else torch.zeros(1, dtype=torch.float64),
        ]
    )
    precision = precision.flip(0).cummax(0).values.flip(0)  # non-increasing envelope
    return float(((recall[1:] - recall[:-1]) * precision[1:]).sum())


def detection_metrics(
    detections: Sequence[Detections],
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    num_classes: int,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Summary figures of a detector on a set of images.

    Args:
        detections: One :class:`Detections` per image.
        gt_boxes: One ``(K_i, 4)`` tensor per image.
        gt_labels: One ``(K_i,)`` tensor per image (ids ``1..num_classes``).
        num_classes: Number of object classes.
        iou_threshold: Minimum IoU for a match.

    Returns:
        ``mAP`` (mean AP over classes with ground truth), ``precision`` and ``recall`` of
        class-correct matches, and ``mean_iou`` of the best-overlapping detection for every
        ground-truth box (0 where there is none; any class).
    """
    aps = [
        average_precision(detections, gt_boxes, gt_labels, c, iou_threshold)
        for c in range(1, num_classes + 1)
    ]
    aps_t = torch.tensor(aps, dtype=torch.float64)
    tp = n_det = n_gt = 0
    best_ious = []
    for det, gb, gl in zip(detections, gt_boxes, gt_labels, strict=True):
        n_det += len(det.boxes)
        n_gt += len(gb)
        if len(gb) == 0:
            continue
        if len(det.boxes) == 0:
            best_ious += [0.0] * len(gb)
            continue
        iou = box_iou(det.boxes, gb)  # (D, G)
        best_ious += iou.max(0).values.tolist()
        same = det.labels[:, None] == gl[None, :]
        taken = torch.zeros(len(gb), dtype=torch.bool)
        for d in range(len(det.boxes)):  # detections are sorted by score
            cand = torch.where(same[d] & ~taken, iou[d], torch.tensor(-1.0))
            j = int(cand.argmax())
            if cand[j] >= iou_threshold:
                taken[j] = True
                tp += 1
    return {
        "mAP": float(aps_t.nanmean()),
        "precision": tp / n_det if n_det else 0.0,
        "recall": tp / n_gt if n_gt else 0.0,
        "mean_iou": float(torch.tensor(best_ious).mean()) if best_ious else 0.0,
    }
