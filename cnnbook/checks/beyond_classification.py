"""Checks for the section 14.13 exercises (detection: IoU and NMS; segmentation; upsampling)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cnnbook import geometry
from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_equal,
    expect_tensor,
    fail,
    forbid,
)

_OURS = "that is cnnbook's own answer; write yours."
_TV = "torchvision computes it for you; write it yourself."
BOX_LIBRARY = {
    "torchvision.ops.box_iou": _TV, "torchvision.ops.boxes.box_iou": _TV,
    "torchvision.ops.generalized_box_iou": _TV, "torchvision.ops.nms": _TV,
    "torchvision.ops.batched_nms": _TV, "torchvision.ops.boxes.nms": _TV,
    "torchvision.ops.boxes.batched_nms": _TV, "torch.ops.torchvision.nms": _TV,
    "cnnbook.detection.box_iou": _OURS, "cnnbook.detection.nms": _OURS,
    "cnnbook.detection.batched_nms": _OURS,
}


def random_boxes(ctx: Context, n: int, size: float = 20.0) -> torch.Tensor:
    """``n`` random ``(x1, y1, x2, y2)`` boxes inside a ``size`` x ``size`` image."""
    xy = ctx.rand(n, 2) * size * 0.6  # corners in [0, 0.6 size), sides in [1, 0.4 size)
    wh = ctx.rand(n, 2) * (size * 0.4 - 1.0) + 1.0
    return torch.cat([xy, xy + wh], dim=1)


def _iou(a: torch.Tensor, b: torch.Tensor, plus_one: float = 0.0, clamp: bool = True,
         subtract: bool = True) -> torch.Tensor:
    area = lambda t: (t[:, 2] - t[:, 0] + plus_one) * (t[:, 3] - t[:, 1] + plus_one)  # noqa: E731
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = rb - lt + plus_one
    wh = wh.clamp(min=0) if clamp else wh
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - (inter if subtract else 0)
    return inter / union


@checker("box IoU")
def check_box_iou(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(a (N, 4), b (M, 4))`` -> pairwise IoU ``(N, M)`` for xyxy boxes."""
    for _ in range(5):
        n, m = ctx.randint(1, 5), ctx.randint(1, 5)
        a, b = random_boxes(ctx, n), random_boxes(ctx, m)
        b[0] = torch.tensor([30.0, 30.0, 35.0, 35.0], dtype=b.dtype)  # disjoint from every box of a
        what = f"box_iou(a {tuple(a.shape)}, b {tuple(b.shape)})"
        with forbid(fn, BOX_LIBRARY):
            got = call(fn, a.clone(), b.clone(), describe=what)
        expect_tensor(got, _iou(a, b), what, wrong={
            "Disjoint boxes must have IoU 0: clamp the intersection's width and height at 0 "
            "(two negative sides would multiply to a positive area).": _iou(a, b, clamp=False),
            "Boxes here are continuous coordinates: width = x2 - x1, without the old +1 pixel "
            "convention.": _iou(a, b, plus_one=1.0),
            "The union is area_a + area_b - intersection (you counted the overlap twice).":
                _iou(a, b, subtract=False),
        }, shape_hint="Return every pair: shape (N, M), row i for box a[i], column j for b[j].")
    return "your IoU matches torchvision.ops.box_iou, disjoint boxes included."


def _ref_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float,
             variant: str = "") -> list[int]:
    order = list(range(len(scores))) if variant == "unsorted" else scores.argsort(
        descending=True).tolist()
    keep: list[int] = []
    removed: set[int] = set()
    iou = _iou(boxes, boxes)
    for pos, i in enumerate(order):
        if variant == "all_higher":
            if any(iou[i, j] > thr for j in order[:pos]):
                continue
            keep.append(i)
            continue
        if i in removed:
            continue
        keep.append(i)
        removed.update(j for j in order if iou[i, j] > thr and j != i)
    return keep


@checker("non-maximum suppression")
def check_nms(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(boxes (N, 4), scores (N,), iou_threshold)`` -> kept indices, best first."""
    chain = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], dtype=torch.float64)
    cases = [  # a chain A-B-C (B overlaps both, A and C barely) and a best box listed last
        (chain, torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64), 0.3),
        (chain[:2], torch.tensor([0.5, 0.9], dtype=torch.float64), 0.3),
    ]
    for _ in range(4):
        # a few objects, each with several jittered detections (what NMS is for)
        bases = random_boxes(ctx, ctx.randint(2, 3), 40.0)
        boxes = torch.cat([base + (ctx.rand(ctx.randint(2, 4), 4) - 0.5) * 6 for base in bases])
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        cases.append((boxes, ctx.rand(len(boxes)), float(ctx.choice([0.3, 0.5, 0.7]))))
    for boxes, scores, thr in cases:
        what = f"nms(boxes {tuple(boxes.shape)}, scores, iou_threshold={thr})"
        with forbid(fn, BOX_LIBRARY):
            got = call(fn, boxes.clone(), scores.clone(), thr, describe=what)
        if isinstance(got, torch.Tensor):
            got = got.tolist()
        if not isinstance(got, list):
            fail(f"{what} should return a tensor (or list) of kept indices, got {type(got).__name__}.")
        ref = _ref_nms(boxes, scores, thr)
        if sorted(got) == sorted(ref) and got != ref:
            fail(f"{what}: you kept the right boxes {sorted(ref)} but return them in the wrong "
                 f"order; list them by decreasing score: {ref}.")
        expect_equal(got, ref, what, wrong={
            "You visited the boxes in input order; visit them by DECREASING score so each "
            "cluster keeps its best box.": _ref_nms(boxes, scores, thr, "unsorted"),
            "A box suppressed earlier must not suppress others: compare each candidate only "
            "with the boxes you KEPT.": _ref_nms(boxes, scores, thr, "all_higher"),
        }, hint="Greedy NMS: take the best remaining box, keep it, drop the remaining boxes whose "
                "IoU with it exceeds the threshold, repeat.")
    return "your NMS keeps exactly the boxes torchvision.ops.nms keeps, in the same order."


@checker("mean IoU for segmentation")
def check_mean_iou(ctx: Context, fn: Callable[..., float]) -> str:
    """Check ``fn(pred (N, H, W), target (N, H, W), num_classes)`` -> mean IoU over present classes."""
    for _ in range(5):
        k = ctx.randint(3, 5)
        target = torch.randint(0, k - 1, (2, 6, 6), generator=ctx.gen)  # class k-1 never appears
        noise = torch.randint(0, k - 1, target.shape, generator=ctx.gen)
        pred = torch.where(ctx.rand(*target.shape) < 0.7, target, noise)
        what = f"mean_iou(pred {tuple(pred.shape)}, target, num_classes={k})"
        with forbid(fn, {"cnnbook.segmentation.mean_iou": _OURS,
                         "cnnbook.segmentation.iou_per_class": _OURS,
                         "torchmetrics.functional.jaccard_index": "write it yourself."}):
            got = call(fn, pred.clone(), target.clone(), k, describe=what)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        ious, zero_absent = [], []
        for c in range(k):
            inter = ((pred == c) & (target == c)).sum().item()
            union = ((pred == c) | (target == c)).sum().item()
            if union:
                ious.append(inter / union)
            zero_absent.append(inter / union if union else 0.0)
        ref = sum(ious) / len(ious)
        expect_equal(got, ref, what, rel=1e-6, wrong={
            "That is pixel accuracy (correct pixels / all pixels); IoU is computed per class "
            "and then averaged.": (pred == target).double().mean().item(),
            "A class that appears in neither pred nor target has no IoU; leave it out of the "
            "mean instead of counting it as 0.": sum(zero_absent) / k,
            "A class absent from both must be left out, not counted as a perfect 1.":
                (sum(ious) + 1.0) / (len(ious) + 1),
        }, hint="For each class c: |pred==c AND target==c| / |pred==c OR target==c|; average "
                "over the classes whose union is not empty.")
    return "your mean IoU averages per-class IoU over the classes that occur."


@checker("transposed convolution output size")
def check_transposed_out_size(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(n, k, s, p, output_padding)`` against ``nn.ConvTranspose2d``."""
    cases = [(16, 4, 2, 1, 0), (16, 3, 2, 1, 1), (7, 2, 2, 0, 0)]
    while len(cases) < 20:
        n, k, s = ctx.randint(1, 20), ctx.randint(1, 5), ctx.randint(1, 3)
        p, op = ctx.randint(0, 2), ctx.randint(0, max(0, s - 1))
        if (n - 1) * s - 2 * p + k + op >= 1:
            cases.append((n, k, s, p, op))
    for n, k, s, p, op in cases:
        what = f"transposed_out_size(n={n}, k={k}, s={s}, p={p}, output_padding={op})"
        with forbid(fn, {"torch.nn.ConvTranspose2d": "use the formula.",
                         "torch.nn.functional.conv_transpose2d": "use the formula.",
                         "cnnbook.geometry.transposed_conv_output_size": _OURS}):
            got = call(fn, n, k, s, p, op, describe=what)
        ref = geometry.transposed_conv_output_size(n, k, s, p, op)
        expect_equal(got, ref, what, wrong={
            "That is the ordinary conv formula; a transposed conv runs it backwards: "
            "(n - 1) * s - 2p + k + output_padding.": (n + 2 * p - k) // s + 1,
            "Padding is REMOVED from both sides of a transposed conv's output: - 2p.":
                (n - 1) * s + 2 * p + k + op,
            "You forgot output_padding.": (n - 1) * s - 2 * p + k,
        }, hint="n_out = (n - 1) * s - 2p + k + output_padding.")
    return "your formula matches nn.ConvTranspose2d on 20 configurations."
