"""Wrong-answer corpus for the 14.13 exercises: NMS, mean IoU, the U-Net decoder step and the
predict-then-check IoUs and transposed-convolution sizes.

Each answer is written the way a student would write it. Correct answers (the reference and
other valid spellings) must pass on every seed; each mistake must fail on every seed with a
message that names it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks import beyond_classification as checks
from tests.corpus.corpus_tools import accepted, rejected

# ---------------------------------------------------------------- the IoU the NMS answers use


def box_iou(a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_iou_loops_float32(a, b):
    out = torch.zeros(len(a), len(b))  # float32, filled pair by pair
    for i, (ax1, ay1, ax2, ay2) in enumerate(a.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(b.tolist()):
            w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            h = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = w * h
            out[i, j] = inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter)
    return out


# ---------------------------------------------------------------- Exercise 2: NMS


def nms(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    iou = box_iou(boxes, boxes)
    alive = torch.ones(len(scores), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if not alive[i]:
            continue
        keep.append(i)
        alive &= iou[i] <= iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def nms_while_loop_list(boxes, scores, iou_threshold):
    remaining = scores.argsort(descending=True)
    keep = []
    while len(remaining):
        best = int(remaining[0])
        keep.append(best)
        rest = remaining[1:]
        remaining = rest[box_iou(boxes[best : best + 1], boxes[rest])[0] <= iou_threshold]
    return keep


def nms_suppresses_at_threshold(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    iou = box_iou(boxes, boxes)
    alive = torch.ones(len(scores), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if alive[i]:
            keep.append(i)
            alive &= iou[i] < iou_threshold  # removes boxes AT the threshold too
    return torch.tensor(keep, dtype=torch.long)


def nms_input_order(boxes, scores, iou_threshold):
    iou = box_iou(boxes, boxes)
    alive = torch.ones(len(scores), dtype=torch.bool)
    keep = []
    for i in range(len(boxes)):
        if alive[i]:
            keep.append(i)
            alive &= iou[i] <= iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def nms_removed_boxes_still_suppress(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True).tolist()
    iou = box_iou(boxes, boxes)
    keep = [i for pos, i in enumerate(order) if all(iou[i, j] <= iou_threshold for j in order[:pos])]
    return torch.tensor(keep, dtype=torch.long)


def nms_only_the_best_box_suppresses(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    if len(order) == 0:
        return torch.zeros(0, dtype=torch.long)
    iou = box_iou(boxes, boxes)[order[0]]
    return torch.cat([order[:1], order[1:][iou[order[1:]] <= iou_threshold]])


def nms_float_indices(boxes, scores, iou_threshold):
    return nms(boxes, scores, iou_threshold).float()


def nms_returns_a_mask(boxes, scores, iou_threshold):
    mask = torch.zeros(len(boxes), dtype=torch.bool)
    mask[nms(boxes, scores, iou_threshold)] = True
    return mask


def nms_crashes_without_boxes(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    iou = box_iou(boxes, boxes)
    alive = torch.ones(len(scores), dtype=torch.bool)
    keep = []
    for i in order:
        if alive[i]:
            keep.append(i)
            alive &= iou[i] <= iou_threshold
    return torch.stack(keep)


def nms_torchvision(boxes, scores, iou_threshold):
    import torchvision.ops

    return torchvision.ops.nms(boxes, scores, iou_threshold)


def nms_torch_ops(boxes, scores, iou_threshold):
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def nms_batched_one_class(boxes, scores, iou_threshold):
    from torchvision.ops import batched_nms

    return batched_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.long), iou_threshold)


def nms_with_torchvision_iou(boxes, scores, iou_threshold):
    from torchvision.ops import box_iou as tv_iou

    iou = tv_iou(boxes, boxes)
    removed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if not removed[i]:
            keep.append(i)
            removed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def nms_with_private_inter_union(boxes, scores, iou_threshold):
    from torchvision.ops.boxes import _box_inter_union

    inter, union = _box_inter_union(boxes, boxes)
    iou = inter / union
    removed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if not removed[i]:
            keep.append(i)
            removed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def nms_with_cnnbook(boxes, scores, iou_threshold):
    from cnnbook import detection

    return detection.nms(boxes, scores, iou_threshold)


def nms_float32_inference_mode(boxes, scores, iou_threshold):
    with torch.inference_mode():
        return nms(boxes.float(), scores.float(), iou_threshold)


def nms_extra_kwarg(boxes, scores, iou_threshold, max_keep=None):
    return nms(boxes, scores, iou_threshold)[:max_keep]


def test_nms_correct_answers_pass() -> None:
    accepted(checks.check_nms, nms)
    accepted(checks.check_nms, nms_while_loop_list)
    accepted(checks.check_nms, nms_float32_inference_mode)
    accepted(checks.check_nms, nms_extra_kwarg)


@pytest.mark.parametrize(
    "answer",
    [
        nms_torchvision,
        nms_torch_ops,
        nms_batched_one_class,
        nms_with_torchvision_iou,
        nms_with_private_inter_union,
        nms_with_cnnbook,
    ],
)
def test_nms_library_routes_are_refused(answer) -> None:
    rejected(
        checks.check_nms,
        answer,
        hint="off limits|suppression loop yourself",
        requirement="no torchvision or cnnbook NMS or IoU",
    )


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (nms_suppresses_at_threshold, "GREATER THAN the threshold"),
        (nms_input_order, "DECREASING score"),
        (nms_removed_boxes_still_suppress, "KEPT"),
        (nms_only_the_best_box_suppresses, "Only the top box"),
        (nms_float_indices, "integers"),
        (nms_returns_a_mask, "boolean mask"),
        (nms_crashes_without_boxes, r"raised RuntimeError on nms\(boxes \(0, 4\)"),
    ],
)
def test_nms_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_nms, answer, hint=hint)


# ---------------------------------------------------------------- Exercise 3: mean IoU


def mean_iou(pred, target, num_classes):
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        union = (p | t).sum().item()
        if union:
            ious.append((p & t).sum().item() / union)
    return sum(ious) / len(ious)


def mean_iou_confusion_matrix(pred, target, num_classes):
    cm = (
        torch.bincount(target.flatten() * num_classes + pred.flatten(), minlength=num_classes**2)
        .reshape(num_classes, num_classes)
        .double()
    )
    inter = cm.diag()
    union = cm.sum(0) + cm.sum(1) - inter
    return (inter / union).nanmean()  # 0/0 = NaN for a class absent from both: skipped


def mean_iou_classes_from_unique(pred, target, num_classes):
    present = torch.unique(torch.cat([pred.flatten(), target.flatten()]))
    return sum(
        ((pred == c) & (target == c)).sum().item() / ((pred == c) | (target == c)).sum().item()
        for c in present.tolist()
    ) / len(present)


def miou_target_classes_only(pred, target, num_classes):
    classes = torch.unique(target).tolist()
    return sum(
        ((pred == c) & (target == c)).sum().item() / ((pred == c) | (target == c)).sum().item()
        for c in classes
    ) / len(classes)


def miou_absent_classes_count_zero(pred, target, num_classes):
    ious = []
    for c in range(num_classes):
        union = ((pred == c) | (target == c)).sum().item()
        ious.append(((pred == c) & (target == c)).sum().item() / union if union else 0.0)
    return sum(ious) / num_classes


def miou_absent_classes_count_one(pred, target, num_classes):
    ious = []
    for c in range(num_classes):
        union = ((pred == c) | (target == c)).sum().item()
        ious.append(((pred == c) & (target == c)).sum().item() / union if union else 1.0)
    return sum(ious) / num_classes


def miou_pixel_accuracy(pred, target, num_classes):
    return (pred == target).float().mean().item()


def miou_per_image_then_averaged(pred, target, num_classes):
    return sum(mean_iou(p[None], t[None], num_classes) for p, t in zip(pred, target, strict=True)) / len(pred)


def miou_dice_instead(pred, target, num_classes):
    scores = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        if (p | t).any():
            scores.append(2 * (p & t).sum().item() / (p.sum().item() + t.sum().item()))
    return sum(scores) / len(scores)


def miou_returns_the_per_class_tensor(pred, target, num_classes):
    return torch.tensor(
        [
            ((pred == c) & (target == c)).sum().item() / max(1, ((pred == c) | (target == c)).sum().item())
            for c in range(num_classes)
        ]
    )


def miou_sklearn_jaccard(pred, target, num_classes):
    from sklearn.metrics import jaccard_score

    return float(jaccard_score(target.flatten(), pred.flatten(), average="macro"))


def miou_cnnbook(pred, target, num_classes):
    from cnnbook.segmentation import mean_iou as ours

    return float(ours(pred, target, num_classes))


def miou_cnnbook_per_class(pred, target, num_classes):
    from cnnbook import segmentation

    ious = segmentation.iou_per_class(pred, target, num_classes)
    return ious[~ious.isnan()].mean().item()


@pytest.mark.parametrize("answer", [miou_cnnbook, miou_cnnbook_per_class])
def test_mean_iou_library_routes_are_refused(answer) -> None:
    rejected(
        checks.check_mean_iou, answer, hint="off limits", requirement="no library IoU or confusion matrix"
    )


def test_mean_iou_sklearn_is_refused() -> None:
    pytest.importorskip("sklearn")
    rejected(checks.check_mean_iou, miou_sklearn_jaccard, hint="off limits")


def test_mean_iou_correct_answers_pass() -> None:
    accepted(checks.check_mean_iou, mean_iou)
    accepted(checks.check_mean_iou, mean_iou_confusion_matrix)
    accepted(checks.check_mean_iou, mean_iou_classes_from_unique)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (miou_target_classes_only, "only in the PREDICTION"),
        (miou_absent_classes_count_zero, "counting it as 0"),
        (miou_absent_classes_count_one, "perfect 1"),
        (miou_pixel_accuracy, "pixel accuracy"),
        (miou_per_image_then_averaged, "per image"),
        (miou_dice_instead, "Dice"),
        (miou_returns_the_per_class_tensor, "one number"),
    ],
)
def test_mean_iou_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_mean_iou, answer, hint=hint)


# ---------------------------------------------------------------- Exercise 5: the U-Net decoder step


def _cbr(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class UpBlock(nn.Module):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = nn.Sequential(
            *_cbr(skip_channels + out_channels, out_channels), *_cbr(out_channels, out_channels)
        )

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UpBlockFunctionalReLU(nn.Module):
    """Layers declared in another order, padding="same", ReLU from torch.nn.functional."""

    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.bn_b = nn.BatchNorm2d(out_channels)
        self.conv_b = nn.Conv2d(out_channels, out_channels, 3, padding="same", bias=False)
        self.bn_a = nn.BatchNorm2d(out_channels)
        self.conv_a = nn.Conv2d(skip_channels + out_channels, out_channels, 3, padding="same", bias=False)
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, 2, 2)

    def forward(self, x, skip):
        x = torch.cat((skip, self.upsample(x)), 1)
        x = F.relu(self.bn_a(self.conv_a(x)))
        return F.relu(self.bn_b(self.conv_b(x)))


class UpBlockSharedReLU(UpBlock):
    """One nn.ReLU module reused after both convolutions."""

    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        relu = nn.ReLU(inplace=True)
        self.conv = nn.Sequential(self.conv[0], self.conv[1], relu, self.conv[3], self.conv[4], relu)


class UpBlockConvTakesTwiceOut(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.conv = nn.Sequential(*_cbr(2 * out_channels, out_channels), *_cbr(out_channels, out_channels))


class UpBlockAddsTheSkip(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.conv = nn.Sequential(*_cbr(out_channels, out_channels), *_cbr(out_channels, out_channels))

    def forward(self, x, skip):
        return self.conv(self.up(x) + skip)


class UpBlockIgnoresTheSkip(UpBlockAddsTheSkip):
    def forward(self, x, skip):
        return self.conv(self.up(x))


class UpBlockSkipLast(UpBlock):
    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UpBlockNearestUpsample(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(in_channels, out_channels, 1))


class UpBlockKernel3Transposed(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1)


class UpBlockReLUBeforeBN(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        c = self.conv
        self.conv = nn.Sequential(c[0], c[2], c[1], c[3], c[5], c[4])


class UpBlockNoReLUAtTheEnd(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.conv = self.conv[:5]


class UpBlockConvWithBias(UpBlock):
    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__(in_channels, skip_channels, out_channels)
        self.conv[0] = nn.Conv2d(skip_channels + out_channels, out_channels, 3, padding=1)


def test_up_block_correct_answers_pass() -> None:
    accepted(checks.check_up_block, UpBlock)
    accepted(checks.check_up_block, UpBlockFunctionalReLU)
    accepted(checks.check_up_block, UpBlockSharedReLU)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (UpBlockConvTakesTwiceOut, "2 \\* out_channels"),
        (UpBlockAddsTheSkip, "not concatenated"),
        (UpBlockIgnoresTheSkip, "not concatenated"),
        (UpBlockSkipLast, "skip FIRST"),
        (UpBlockNearestUpsample, "ConvTranspose2d\\(in_channels, out_channels, kernel_size=2"),
        (UpBlockKernel3Transposed, "kernel 2, stride 2"),
        (UpBlockReLUBeforeBN, "BatchNorm before ReLU"),
        (UpBlockNoReLUAtTheEnd, "second conv also needs its ReLU"),
        (UpBlockConvWithBias, "bias=False"),
    ],
)
def test_up_block_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_up_block, answer, hint=hint)


# ---------------------------------------------------------------- predict, then check: IoU and sizes

RIGHT_IOU = {"a": 1 / 3, "b": 0, "c": 0.25, "d": 1 / 3, "e": 81 / 119}


def test_iou_predictions_accept_right_numbers_in_any_spelling() -> None:
    from fractions import Fraction

    accepted(checks.check_iou_predictions, RIGHT_IOU)
    accepted(checks.check_iou_predictions, {**RIGHT_IOU, "a": Fraction(1, 3), "e": 0.681, "b": 0.0})
    accepted(checks.check_iou_predictions, {k: torch.tensor(float(v)) for k, v in RIGHT_IOU.items()})


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ({**RIGHT_IOU, "a": 8 / 32}, r"pair 'a'.*counted the overlap twice"),  # union without - intersection
        ({**RIGHT_IOU, "c": 1.0}, r"pair 'c'.*divide by the union"),  # over the smaller box
        ({**RIGHT_IOU, "b": 0.1}, r"pair 'b'.*only share an edge"),  # touching counted as overlap
        ({**RIGHT_IOU, "e": (10 * 10) / (11 * 11 + 11 * 11 - 100)}, r"pair 'e'.*without \+ 1"),
        ({**RIGHT_IOU, "d": 0.6}, r"pair 'd'.*intersection / \(area A"),
        ({k: v for k, v in RIGHT_IOU.items() if k != "e"}, r"missing \['e'\]"),
        ({**RIGHT_IOU, "a": "1/3"}, r"should be a number"),
        ({**RIGHT_IOU, "a": ...}, r"replace every \.\.\."),
        ([1 / 3, 0, 0.25, 1 / 3, 0.68], r"give a dict"),
    ],
)
def test_iou_predictions_reject_mistakes(answer, hint) -> None:
    rejected(checks.check_iou_predictions, answer, hint=hint)


RIGHT_SIZES = {"a": 16, "b": 16, "c": 15, "d": 16, "e": 5}


def test_transposed_predictions_accept_the_sizes() -> None:
    accepted(checks.check_transposed_predictions, RIGHT_SIZES)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (
            {**RIGHT_SIZES, "c": 16},
            r"layer 'c'.*nn\.ConvTranspose2d gives 15",
        ),  # assumes every s=2 layer doubles
        ({**RIGHT_SIZES, "a": 4}, r"ordinary convolution"),  # the forward conv formula
        ({**RIGHT_SIZES, "b": 18}, r"span \(n - 1\) \* s"),  # n * s - 2p + k
        ({**RIGHT_SIZES, "b": 20}, r"Padding is removed"),  # + 2p
        ({**RIGHT_SIZES, "d": 15}, r"output_padding adds"),  # forgot output_padding
        ({**RIGHT_SIZES, "c": 15.0}, r"whole number"),  # a float for a size
        ({**RIGHT_SIZES, "e": True}, r"whole number"),
    ],
)
def test_transposed_predictions_reject_mistakes(answer, hint) -> None:
    rejected(checks.check_transposed_predictions, answer, hint=hint)


def test_find_the_bug_nms_is_rejected_and_the_fix_accepted() -> None:
    def pairwise_iou(a, b):
        top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
        bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        return inter / (area_a[:, None] + area_b[None, :] - inter)

    def nms_buggy(boxes, scores, iou_threshold):  # the exercise's two bugs
        order = scores.argsort(descending=True).tolist()
        iou = pairwise_iou(boxes, boxes)
        removed = torch.zeros(len(boxes), dtype=torch.bool)
        for i in order:
            removed |= (iou[i] >= iou_threshold) & (torch.arange(len(boxes)) != i)
        return torch.tensor([i for i in order if not removed[i]], dtype=torch.long)

    def nms_only_tie_fixed(boxes, scores, iou_threshold):
        order = scores.argsort(descending=True).tolist()
        iou = pairwise_iou(boxes, boxes)
        removed = torch.zeros(len(boxes), dtype=torch.bool)
        for i in order:
            removed |= (iou[i] > iou_threshold) & (torch.arange(len(boxes)) != i)
        return torch.tensor([i for i in order if not removed[i]], dtype=torch.long)

    def nms_fixed(boxes, scores, iou_threshold):
        iou = pairwise_iou(boxes, boxes)
        removed = torch.zeros(len(boxes), dtype=torch.bool)
        keep = []
        for i in scores.argsort(descending=True).tolist():
            if removed[i]:
                continue
            keep.append(i)
            removed |= iou[i] > iou_threshold
        return torch.tensor(keep, dtype=torch.long)

    accepted(checks.check_nms, nms_fixed)
    rejected(checks.check_nms, nms_buggy, hint=r"nms")
    rejected(checks.check_nms, nms_only_tie_fixed, hint=r"nms")


# ---------------------------------------- Exercise 3: the smallest case that shows the bug


def _maps(pred, target):
    return torch.tensor(pred), torch.tensor(target)


def mean_iou_buggy(pred, target, num_classes):  # the exercise's buggy version
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        if t.any():
            ious.append((p & t).sum().item() / (p | t).sum().item())
    return sum(ious) / len(ious)


def test_no_single_pixel_shows_the_bug() -> None:
    """The check's minimum (2 pixels) is the true minimum: every 1-pixel case agrees."""
    for k in (1, 2, 3, 4):
        for p in range(k):
            for t in range(k):
                pred, target = _maps([[[p]]], [[[t]]])
                assert mean_iou_buggy(pred, target, k) == mean_iou(pred, target, k)
    pred, target = _maps([[[0, 1]]], [[[0, 0]]])
    assert mean_iou_buggy(pred, target, 2) != mean_iou(pred, target, 2)
    assert checks.MIOU_BUG_MIN_PIXELS == 2


def test_bug_case_accepts_two_pixel_cases() -> None:
    accepted(checks.check_miou_bug_case, (*_maps([[[0, 1]]], [[[0, 0]]]), 2))
    accepted(checks.check_miou_bug_case, (*_maps([[[2], [1]]], [[[1], [1]]]), 3))  # a column, class 2 extra
    accepted(checks.check_miou_bug_case, (*_maps([[[1]], [[0]]], [[[1]], [[1]]]), 2))  # two 1x1 images
    accepted(checks.check_miou_bug_case, ([[[0, 1]]], [[[0, 0]]], 2))  # nested lists
    accepted(
        checks.check_miou_bug_case, [torch.tensor([[[0, 1]]], dtype=torch.int32), torch.tensor([[[0, 0]]]), 5]
    )


_REQ = "fewest pixels|smallest_case"


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ((*_maps([[[0, 0, 1, 1]]], [[[0, 0, 0, 1]]]), 2), r"does not show the bug"),  # all classes in target
        ((*_maps([[[1]]], [[[0]]]), 2), r"does not show the bug"),  # one wrong pixel: both 0
        ((*_maps([[[0]]], [[[0]]]), 2), r"does not show the bug"),  # one right pixel: both 1
        ((*_maps([[[0, 1, 0]]], [[[0, 0, 0]]]), 2), r"with 3 pixels; fewer pixels"),  # shows it, too big
        ((*_maps([[[0, 1], [0, 0]]], [[[0, 0], [0, 0]]]), 2), r"with 4 pixels; fewer pixels"),
        ((*_maps([[0, 1]], [[0, 0]]), 2), r"\(N, H, W\)"),  # a 2-D map, no batch axis
        ((torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[0.0, 0.0]]]), 2), r"whole class ids"),  # floats
        ((*_maps([[[0, 2]]], [[[0, 0]]]), 2), r"only 0 \.\. 1 exist"),  # label out of range
        ((*_maps([[[0, 1]]], [[[0, 0, 0]]]), 2), r"same shape"),
        ((*_maps([[[0, 1]]], [[[0, 0]]]), 2.0), r"an int"),
        (_maps([[[0, 1]]], [[[0, 0]]]), r"tuple of three"),  # num_classes forgotten
    ],
)
def test_bug_case_rejects_mistakes(case, hint) -> None:
    rejected(checks.check_miou_bug_case, case, hint=hint, requirement=_REQ)


def test_the_buggy_mean_iou_itself_is_rejected_and_the_fix_accepted() -> None:
    rejected(
        checks.check_mean_iou,
        mean_iou_buggy,
        hint="only in the PREDICTION",
        requirement="present in pred or target",
    )

    def fixed(pred, target, num_classes):
        ious = []
        for c in range(num_classes):
            p, t = pred == c, target == c
            if (p | t).any():
                ious.append((p & t).sum().item() / (p | t).sum().item())
        return sum(ious) / len(ious)

    def fixed_with_pred_any_only(pred, target, num_classes):  # swapped the test to the prediction
        ious = []
        for c in range(num_classes):
            p, t = pred == c, target == c
            if p.any():
                ious.append((p & t).sum().item() / (p | t).sum().item())
        return sum(ious) / len(ious)

    accepted(checks.check_mean_iou, fixed)
    rejected(
        checks.check_mean_iou,
        fixed_with_pred_any_only,
        hint=r"mean_iou",
        requirement="present in pred or target",
    )
