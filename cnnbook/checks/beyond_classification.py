"""Checks for the section 14.13 exercises (detection: IoU and NMS; segmentation: mean IoU, the
U-Net decoder step; upsampling).

Every check runs fixed edge cases first (disjoint, touching and nested boxes, non-square boxes
and maps, an IoU tie exactly at the NMS threshold, a class that appears only in the
prediction, a class absent from both maps, skip maps whose channel count differs from the
decoder's), then random cases, so an answer gets the same verdict on every seed. References
are ``torchvision.ops.box_iou`` and ``torchvision.ops.nms`` where torchvision has them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    FAMILY_IOU,
    FAMILY_NMS,
    Context,
    Family,
    as_tensor,
    backward,
    call,
    checker,
    deeper_hint,
    expect_answers,
    expect_equal,
    expect_module,
    expect_number,
    expect_tensor,
    fail,
    fmt_shape,
    forbidden,
)

FAMILY_SEGMENTATION_IOU = Family(
    name="segmentation IoU",
    does="computes the per-class overlaps for you",
    task="write the mean IoU yourself",
    scope="cnnbook's mean_iou, iou_per_class and confusion_matrix, torchmetrics' jaccard_index "
    "and confusion matrices, scikit-learn's jaccard_score and confusion_matrix",
    python=(
        (r"cnnbook\.(?!checks)[\w.]+", r"^(\w*iou\w*|confusion_matrix)$"),
        (r"torchmetrics(\..+)?", r"jaccard|confusion_matrix"),
        (r"sklearn\.metrics(\..+)?", r"^(jaccard_score|confusion_matrix)$"),
    ),
)


def _tvops() -> Any:
    import torchvision.ops  # imported on first use: importing torchvision takes a moment

    return torchvision.ops


def random_boxes(ctx: Context, n: int, size: float = 20.0) -> torch.Tensor:
    """``n`` random ``(x1, y1, x2, y2)`` boxes inside a ``size`` x ``size`` image."""
    xy = ctx.rand(n, 2) * size * 0.6  # corners in [0, 0.6 size), sides in [1, 0.4 size)
    wh = ctx.rand(n, 2) * (size * 0.4 - 1.0) + 1.0
    return torch.cat([xy, xy + wh], dim=1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(N, M)`` of xyxy boxes (continuous coordinates)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area = lambda t: (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _ref_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float, variant: str = "") -> list[int]:
    """Greedy NMS as ``torchvision.ops.nms``, or as one known mistake (``variant``) does it."""
    order = list(range(len(scores))) if variant == "unsorted" else scores.argsort(descending=True).tolist()
    iou = _iou(boxes, boxes)
    over = (lambda v: v >= thr) if variant == "at_least" else (lambda v: v > thr)
    if variant == "best_only":  # one pass: only the top box suppresses anything
        top = order[:1]
        return top + [j for j in order[1:] if not over(iou[top[0], j])]
    keep: list[int] = []
    removed: set[int] = set()
    for pos, i in enumerate(order):
        if variant == "all_higher":
            if not any(over(iou[i, j]) for j in order[:pos]):
                keep.append(i)
            continue
        if i in removed:
            continue
        keep.append(i)
        removed.update(
            j for j in order if j != i and (not over(iou[i, j]) if variant == "inverted" else over(iou[i, j]))
        )
    return keep


def _nms_cases(ctx: Context) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)
    # IoUs exactly 0.5 (box 0 and 1, box 1 and 2) and 0.25 (box 0 and 2), exact in binary
    tie = t([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 2.5]])
    chain = t([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])  # A-B and B-C overlap, A-C barely
    two = t([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 36], [21, 20, 31, 36]])  # two objects
    cases = [
        (tie, t([0.9, 0.8, 0.7]), 0.5),  # ties AT the threshold: kept ("greater than")
        (chain, t([0.9, 0.8, 0.7]), 0.3),  # B goes, C stays: a removed box removes nothing
        (tie, t([0.9, 0.8, 0.7]), 0.25),
        (chain[:2], t([0.5, 0.9]), 0.3),  # the best box is listed last
        (two, t([0.9, 0.8, 0.7, 0.6]), 0.5),  # each object keeps its own best box
        (t([[1, 2, 5, 9]]), t([0.3]), 0.5),  # a single box
        (torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), 0.5),  # none
    ]
    for _ in range(4):
        # a few objects, each with several jittered detections (what NMS is for)
        bases = random_boxes(ctx, ctx.randint(2, 3), 40.0)
        boxes = torch.cat([base + (ctx.rand(ctx.randint(2, 4), 4) - 0.5) * 6 for base in bases])
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        cases.append((boxes, ctx.rand(len(boxes)), float(ctx.choice([0.3, 0.5, 0.7]))))
    return cases


def _as_indices(got: Any, n: int, what: str) -> list[int]:
    if isinstance(got, torch.Tensor):
        if got.dtype == torch.bool:
            fail(
                f"{what} returned a boolean mask of shape {tuple(got.shape)}; return the INDICES "
                f"of the kept boxes (a mask cannot say which box is best)."
            )
        if got.is_floating_point():
            empty = (
                " (torch.tensor([]) of an empty list is float32 unless you pass dtype=torch.long)"
                if got.numel() == 0
                else ""
            )
            fail(
                f"{what} returned a {got.dtype} tensor{empty}; indices must be integers "
                f"(torch.long), or they cannot index the boxes: "
                f"torch.tensor(keep, dtype=torch.long)."
            )
        if got.ndim != 1:
            fail(f"{what} should return a 1-D tensor of indices, got shape {tuple(got.shape)}.")
        got = got.tolist()
    if not isinstance(got, (list, tuple)) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in got
    ):
        fail(
            f"{what} should return a 1-D tensor of kept indices (torch.long), got "
            f"{type(got).__name__}: {got!r:.80}."
        )
    if any(i < 0 or i >= n for i in got):
        fail(f"{what} returned {list(got)}, but only indices 0..{n - 1} exist.")
    return list(got)


@checker(
    "non-maximum suppression",
    requirement="greedy NMS: keep the best remaining box, remove the remaining boxes whose IoU with "
    "it is GREATER than the threshold (a tie stays), repeat; a removed box removes nothing; return "
    "the kept indices (torch.long) by decreasing score; no torchvision or cnnbook NMS or IoU",
)
def check_nms(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(boxes (N, 4), scores (N,), iou_threshold)`` -> kept indices, best first."""
    tv = _tvops()
    for boxes, scores, thr in _nms_cases(ctx):
        what = f"nms(boxes {tuple(boxes.shape)}, scores, iou_threshold={thr})"
        with forbidden(
            FAMILY_NMS, FAMILY_IOU, why="write the suppression loop yourself, on top of your own pairwise_iou"
        ):
            got = call(fn, boxes.clone(), scores.clone(), thr, describe=what)
        got = _as_indices(got, len(boxes), what)
        ref = tv.nms(boxes, scores, thr).tolist()
        if sorted(got) == sorted(ref) and got != ref:
            fail(
                f"{what}: you kept the right boxes {sorted(ref)} but return them in the wrong "
                f"order; list them by decreasing score: {ref}."
            )
        with deeper_hint(
            "Loop over scores.argsort(descending=True).tolist(); skip a box already removed; "
            "otherwise append it to keep and mark removed |= iou[i] > iou_threshold."
        ):
            expect_equal(
                got,
                ref,
                what,
                wrong={
                    "Remove a box only when its IoU is GREATER THAN the threshold: a box whose IoU "
                    "equals the threshold stays (you used >=).": _ref_nms(boxes, scores, thr, "at_least"),
                    "You visited the boxes in input order; visit them by DECREASING score so each "
                    "cluster keeps its best box.": _ref_nms(boxes, scores, thr, "unsorted"),
                    "A box suppressed earlier must not suppress others: compare each candidate only "
                    "with the boxes you KEPT.": _ref_nms(boxes, scores, thr, "all_higher"),
                    "Only the top box suppressed anything: repeat with the best box that is left, "
                    "until no box is left.": _ref_nms(boxes, scores, thr, "best_only"),
                    "The comparison is inverted: remove the boxes that overlap the kept box by MORE "
                    "than the threshold, keep the others.": _ref_nms(boxes, scores, thr, "inverted"),
                },
                hint="Greedy NMS: take the best remaining box, keep it, drop the remaining boxes whose "
                "IoU with it is greater than the threshold, repeat.",
            )
    return (
        "your NMS keeps exactly the boxes torchvision.ops.nms keeps, in the same order, ties "
        "at the threshold and empty inputs included."
    )


# ---------------------------------------------------------------- mean IoU


def _miou(pred: torch.Tensor, target: torch.Tensor, k: int, mode: str = "") -> float:
    """Mean IoU over the classes present in pred or target, or what one mistake computes."""
    if mode == "per_image":
        return sum(_miou(p, t, k) for p, t in zip(pred, target, strict=True)) / len(pred)
    if mode == "accuracy":
        return (pred == target).double().mean().item()
    scores: list[float] = []
    for c in range(k):
        p, t = pred == c, target == c
        inter, union = (p & t).sum().item(), (p | t).sum().item()
        if mode == "dice":
            size = p.sum().item() + t.sum().item()
            if size:
                scores.append(2 * inter / size)
        elif mode == "target_only":
            if t.any():
                scores.append(inter / union)
        elif mode == "pred_only":
            if p.any():
                scores.append(inter / union)
        elif mode in ("absent_zero", "absent_one"):
            scores.append(inter / union if union else float(mode == "absent_one"))
        elif union:
            scores.append(inter / union)
    return sum(scores) / len(scores)


def _miou_cases(ctx: Context) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    t = lambda rows: torch.tensor(rows, dtype=torch.long)
    # Two 3x5 images, 4 classes: class 2 appears only in the prediction, class 3 nowhere.
    target = t(
        [
            [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]],
            [[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
        ]
    )
    pred = t(
        [
            [[0, 0, 1, 1, 2], [0, 2, 1, 1, 1], [0, 0, 0, 0, 0]],
            [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]],
        ]
    )
    perfect = t([[[0, 2, 2], [0, 0, 2]]])  # a perfect prediction; class 1 absent from both
    lazy_target = t([[[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]])  # an object the model misses
    cases = [
        (pred, target, 4),
        (perfect.clone(), perfect, 3),
        (torch.zeros_like(lazy_target), lazy_target, 2),
    ]
    for _ in range(4):
        k = ctx.randint(3, 5)
        shape = (ctx.randint(2, 3), ctx.randint(4, 7), ctx.randint(4, 7))
        tgt = torch.randint(0, k - 2, shape, generator=ctx.gen)  # classes k-2, k-1 not in target
        noise = torch.randint(0, k - 1, shape, generator=ctx.gen)  # k-2 only in the prediction
        prd = torch.where(ctx.rand(*shape) < 0.7, tgt, noise)
        cases.append((prd, tgt, k))
    return cases


@checker(
    "mean IoU for segmentation",
    requirement="per class c, |pred==c AND target==c| / |pred==c OR target==c| over all pixels of "
    "the batch, averaged over the classes present in pred or target; a Python float; no "
    "library IoU or confusion matrix",
)
def check_mean_iou(ctx: Context, fn: Callable[..., float]) -> str:
    """Check ``fn(pred (N, H, W), target (N, H, W), num_classes)`` -> mean IoU (a float)."""
    for pred, target, k in _miou_cases(ctx):
        what = f"mean_iou(pred {tuple(pred.shape)}, target, num_classes={k})"
        with forbidden(FAMILY_SEGMENTATION_IOU):
            got = call(fn, pred.clone(), target.clone(), k, describe=what)
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                fail(
                    f"{what} should return one number (a float), got a tensor of shape "
                    f"{tuple(got.shape)}; average the per-class IoUs."
                )
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            fail(f"{what} should return a float, got {type(got).__name__}.")
        with deeper_hint(
            "p, t = pred == c, target == c; union = (p | t).sum(); skip c when union == 0, "
            "else append ((p & t).sum() / union).item(); return sum(ious) / len(ious)."
        ):
            expect_equal(
                got,
                _miou(pred, target, k),
                what,
                rel=1e-6,
                wrong={
                    "That is pixel accuracy (correct pixels / all pixels); IoU is computed per class "
                    "and then averaged.": _miou(pred, target, k, "accuracy"),
                    "A class that appears only in the PREDICTION counts too (its IoU is 0): average "
                    "over the classes present in pred or target, not only those in the target.": _miou(
                        pred, target, k, "target_only"
                    ),
                    "A class that appears only in the TARGET counts too (its IoU is 0: the model "
                    "missed it): average over the classes present in pred or target, not only those "
                    "the model predicted.": _miou(pred, target, k, "pred_only"),
                    "A class that appears in neither pred nor target has no IoU; leave it out of the "
                    "mean instead of counting it as 0.": _miou(pred, target, k, "absent_zero"),
                    "A class absent from both must be left out, not counted as a perfect 1.": _miou(
                        pred, target, k, "absent_one"
                    ),
                    "You averaged per image; count the pixels of the whole batch together, then take "
                    "one IoU per class.": _miou(pred, target, k, "per_image"),
                    "That is the Dice score 2|P∩T| / (|P| + |T|); IoU divides by the union |P∪T|.": _miou(
                        pred, target, k, "dice"
                    ),
                },
                hint="For each class c: |pred==c AND target==c| / |pred==c OR target==c| over all "
                "pixels of the batch; average over the classes whose union is not empty.",
            )
    return "your mean IoU counts classes seen only in the prediction and leaves out classes absent from both."


MIOU_BUG_MIN_PIXELS = 2
"""The fewest pixels on which ``mean_iou_buggy`` of the 14.13 find-the-bug exercise (it skips the
classes absent from the target) can disagree with the definition: on one pixel the prediction is
either right (every IoU 1) or wrong (every IoU 0), with or without the skipped class."""


def _label_map(value: Any, what: str) -> torch.Tensor:
    """``value`` (a tensor or nested lists) as an integer tensor ``(N, H, W)``, or a failure."""
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        fail(f"{what} should be a tensor of class ids (N, H, W), got {type(value).__name__}.")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        fail(
            f"{what} has dtype {t.dtype}; a label map holds whole class ids: build it with "
            f"torch.tensor([[[0, 1]]]) (integers) or convert it with .long()."
        )
    if t.ndim != 3:
        fail(
            f"{what} has shape {tuple(t.shape)}; mean_iou takes batches of label maps (N, H, W): "
            f"one image of one row of two pixels is torch.tensor([[[a, b]]])."
        )
    return t.long()


@checker(
    "the smallest case that shows the bug",
    requirement="smallest_case = (pred, target, num_classes): integer label maps (N, H, W) of the "
    "same shape, class ids 0 .. num_classes - 1, on which mean_iou_buggy disagrees with the "
    "definition, with the fewest pixels that can show it",
)
def check_miou_bug_case(ctx: Context, case: Any) -> str:
    """Check a counterexample ``(pred, target, num_classes)`` for the 14.13 ``mean_iou_buggy``."""
    del ctx  # a fixed answer: the same verdict on every seed
    if not isinstance(case, (tuple, list)) or len(case) != 3:
        fail(
            f"give smallest_case = (pred, target, num_classes), a tuple of three, got "
            f"{type(case).__name__}{f' of length {len(case)}' if isinstance(case, (tuple, list)) else ''}."
        )
    pred, target = _label_map(case[0], "pred"), _label_map(case[1], "target")
    k = case[2]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        fail(f"num_classes is a whole number of classes (an int, at least 1), got {k!r}.")
    if pred.shape != target.shape:
        fail(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
    if target.numel() == 0:
        fail("your maps have no pixels: an empty map has no mean IoU to get wrong.")
    labels = torch.cat([pred.flatten(), target.flatten()])
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        fail(
            f"your maps hold the class ids {sorted(set(labels.tolist()))}, but with num_classes={k} "
            f"only 0 .. {k - 1} exist: raise num_classes or change the labels."
        )
    right, buggy = _miou(pred, target, k), _miou(pred, target, k, "target_only")
    n = target.numel()
    if math.isclose(right, buggy, abs_tol=1e-9):
        fail(
            f"on your case (pred {pred.tolist()}, target {target.tolist()}) mean_iou_buggy gives "
            f"{buggy:.4g}, which is right: this case does not show the bug. Compare the classes "
            f"the buggy loop averages with the classes the definition averages.",
            hint2="The buggy loop keeps class c only when `t.any()`, that is when c occurs in the "
            "TARGET. Which classes does the definition count that this test leaves out?",
        )
    if n > MIOU_BUG_MIN_PIXELS:
        fail(
            f"your case shows the bug (mean_iou_buggy gives {buggy:.4g}, the definition "
            f"{right:.4g}), but with {n} pixels; fewer pixels show it too. Remove pixels (and "
            f"images) while the two answers still differ.",
            hint2="On a single pixel the prediction is either right (every IoU is 1) or wrong "
            "(every IoU is 0), whichever classes are averaged. What is the next smallest size?",
        )
    return (
        f"{n} pixels are the fewest that show the bug: mean_iou_buggy gives {buggy:.4g}, the "
        f"definition {right:.4g}."
    )


# ---------------------------------------------------------------- the U-Net decoder step


class _RefUpBlock(nn.Module):
    """The reference decoder step; ``mistake`` switches one known mistake on."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, mistake: str = "") -> None:
        super().__init__()
        self.mistake = mistake
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv1 = nn.Conv2d(skip_channels + out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        x = torch.cat([up, skip] if self.mistake == "swapped" else [skip, up], dim=1)
        for conv, bn, last in ((self.conv1, self.bn1, False), (self.conv2, self.bn2, True)):
            if self.mistake == "relu_before_bn":
                x = bn(F.relu(conv(x)))
            else:
                x = bn(conv(x))
                x = x if (last and self.mistake == "no_last_relu") else F.relu(x)
        return x

    def layers(self) -> list[nn.Module]:
        return [self.up, self.conv1, self.bn1, self.conv2, self.bn2]


_KINDS = (nn.ConvTranspose2d, nn.Conv2d, nn.BatchNorm2d)


def _called_layers(
    block: nn.Module, x: torch.Tensor, skip: torch.Tensor, what: str
) -> tuple[torch.Tensor, list[nn.Module]]:
    """Run ``block`` once (eval mode, no gradients) and list its conv/BN layers in call order."""
    called: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda m, _i, _o: called.append(m))
        for m in block.modules()
        if isinstance(m, _KINDS)
    ]
    was = block.training
    try:
        block.eval()
        with torch.no_grad():
            out = call(block, x.clone(), skip.clone(), describe=what)
    finally:
        block.train(was)
        for h in handles:
            h.remove()
    return out, called


def _diagnose_up_block(block: nn.Module, cin: int, cskip: int, cout: int) -> str:
    """A hint naming the structural mistake, if ``block``'s layers show a known one."""
    ups = [m for m in block.modules() if isinstance(m, nn.ConvTranspose2d)]
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if not ups:
        return (
            "Upsample with nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, "
            "stride=2): it learns its upsampling (nn.Upsample does not)."
        )
    up = ups[0]
    if up.kernel_size != (2, 2) or up.stride != (2, 2) or up.padding != (0, 0):
        return (
            f"Your ConvTranspose2d has kernel {up.kernel_size}, stride {up.stride}, padding "
            f"{up.padding}: use kernel 2, stride 2, no padding, which exactly doubles H and W "
            f"(kernel 3, stride 2, padding 1 gives 2H - 1)."
        )
    if convs:
        first = convs[0].in_channels
        if first == 2 * cout and cskip != cout:
            return (
                f"The first 3x3 conv takes 2 * out_channels = {2 * cout} channels, but the "
                f"concatenation has skip_channels + out_channels = {cskip + cout}: the skip "
                f"need not have out_channels channels."
            )
        if first == cout:
            return (
                f"The first 3x3 conv takes out_channels = {cout} channels, so the skip is not "
                f"concatenated (added, or dropped): torch.cat([skip, up], dim=1) gives "
                f"skip_channels + out_channels = {cskip + cout} channels."
            )
    return ""


def _copy_into_reference(
    called: list[nn.Module], ref: _RefUpBlock, cin: int, cskip: int, cout: int, block: nn.Module
) -> None:
    kinds = [sum(isinstance(m, k) for m in called) for k in _KINDS]
    if kinds != [1, 2, 2]:
        hint = _diagnose_up_block(block, cin, cskip, cout)
        fail(
            f"the forward pass should run one ConvTranspose2d, then two 3x3 Conv2d each followed "
            f"by BatchNorm2d (and ReLU); yours ran {kinds[0]} ConvTranspose2d, {kinds[1]} Conv2d "
            f"and {kinds[2]} BatchNorm2d. {hint}".rstrip()
        )
    mine: list[nn.Module] = [next(m for m in called if isinstance(m, nn.ConvTranspose2d))]
    convs = [m for m in called if isinstance(m, nn.Conv2d)]
    bns = [m for m in called if isinstance(m, nn.BatchNorm2d)]
    mine += [convs[0], bns[0], convs[1], bns[1]]
    names = [
        "the ConvTranspose2d",
        "the first 3x3 conv",
        "the first BatchNorm2d",
        "the second 3x3 conv",
        "the second BatchNorm2d",
    ]
    for src, dst, name in zip(mine, ref.layers(), names, strict=True):
        got, want = src.state_dict(), dst.state_dict()
        if isinstance(src, nn.Conv2d) and src.kernel_size != (3, 3):
            fail(f"{name} has kernel {src.kernel_size}; use 3x3 convolutions with padding 1.")
        if set(got) != set(want):
            extra = "bias" in got and "bias" not in want
            fail(
                f"{name} has parameters {sorted(got)}, expected {sorted(want)}. "
                + (
                    "The 3x3 convs take bias=False: the BatchNorm after them has its own shift."
                    if extra
                    else "The ConvTranspose2d keeps its bias (the default)."
                )
            )
        for key in want:
            if got[key].shape != want[key].shape:
                hint = _diagnose_up_block(block, cin, cskip, cout)
                fail(
                    f"{name}'s {key} has shape {tuple(got[key].shape)}, expected "
                    f"{tuple(want[key].shape)}. {hint}".rstrip()
                )
        dst.load_state_dict(got)


def _run_block(
    block: nn.Module, x: torch.Tensor, skip: torch.Tensor, train: bool, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    was = block.training
    block.train(train)
    x, skip = x.clone().requires_grad_(True), skip.clone().requires_grad_(True)
    try:
        out = as_tensor(call(block, x, skip, describe=what), f"{what}'s output")
        weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
        backward((out * weight).sum(), what)
    finally:
        block.train(was)
    zeros = torch.zeros_like
    return (
        out.detach(),
        (x.grad if x.grad is not None else zeros(x)).detach(),
        (skip.grad if skip.grad is not None else zeros(skip)).detach(),
    )


def _mistaken_output(
    ref: _RefUpBlock,
    channels: tuple[int, int, int],
    mistake: str,
    x: torch.Tensor,
    skip: torch.Tensor,
    train: bool,
) -> torch.Tensor:
    """What the reference computes with ``mistake`` switched on, with the same weights."""
    m = _RefUpBlock(*channels, mistake)
    m.load_state_dict(ref.state_dict())
    return _run_block(m, x, skip, train, "mistake")[0]


_UP_MISTAKES = {
    "Concatenate the skip FIRST and the upsampled map second, torch.cat([skip, up], dim=1), as "
    "the exercise asks (so the weights line up with cnnbook's UNet).": "swapped",
    "Apply BatchNorm before ReLU: conv -> BatchNorm -> ReLU.": "relu_before_bn",
    "The second conv also needs its ReLU: conv -> BN -> ReLU, twice.": "no_last_relu",
}


@checker(
    "U-Net decoder step",
    requirement="ConvTranspose2d(in, out, 2, stride=2) with bias; cat([skip, up], dim=1); two 3x3 "
    "convs (padding 1, no bias) each followed by BatchNorm2d then ReLU; skip channels may differ from out",
)
def check_up_block(ctx: Context, block_class: Callable[..., nn.Module]) -> str:
    """Check ``block_class(in, skip, out)``: ``forward(x, skip)`` upsamples, concatenates, convolves."""
    configs = [
        (6, 3, 4, 2, 3, 5),  # skip channels != out channels, non-square, batch 2
        (8, 4, 4, 1, 4, 4),  # the classic U-Net case: skip channels == out channels
        (5, 2, 3, 3, 5, 2),
    ]
    configs.append(
        (
            ctx.randint(2, 8),
            ctx.randint(1, 6),
            ctx.randint(2, 6),
            ctx.randint(1, 3),
            ctx.randint(2, 5),
            ctx.randint(2, 5),
        )
    )
    for cin, cskip, cout, n, h, w in configs:
        name = f"UpBlock({cin}, {cskip}, {cout})"
        block = expect_module(call(block_class, cin, cskip, cout, describe=f"({cin}, {cskip}, {cout})"), name)
        block.float()
        x, skip = (
            ctx.randn(n, cin, h, w, dtype=torch.float32),
            ctx.randn(n, cskip, 2 * h, 2 * w, dtype=torch.float32),
        )
        what = f"{name}(x {tuple(x.shape)}, skip {tuple(skip.shape)})"
        try:
            out, called = _called_layers(block, x, skip, what)
        except AssertionError as exc:
            hint = _diagnose_up_block(block, cin, cskip, cout)
            raise type(exc)(f"{exc} {hint}".rstrip()) from None
        out = as_tensor(out, f"{what}'s output")
        if tuple(out.shape) != (n, cout, 2 * h, 2 * w):
            hint = _diagnose_up_block(block, cin, cskip, cout)
            fail(f"{what}: expected shape {(n, cout, 2 * h, 2 * w)}, got {fmt_shape(out)}. {hint}".rstrip())
        ref = _RefUpBlock(cin, cskip, cout)
        _copy_into_reference(called, ref, cin, cskip, cout, block)
        for train in (False, True):
            mode = "train" if train else "eval"
            r_out, r_gx, r_gs = _run_block(ref, x, skip, train, "the reference")
            g_out, g_gx, g_gs = _run_block(block, x, skip, train, what)
            wrong = {
                hint: functools.partial(_mistaken_output, ref, (cin, cskip, cout), mistake, x, skip, train)
                for hint, mistake in _UP_MISTAKES.items()
            }
            if float(g_gs.abs().sum()) == 0.0:
                fail(
                    f"{what}: the output does not depend on `skip` at all: concatenate it with "
                    f"the upsampled map."
                )
            expect_tensor(g_out, r_out, f"{what} ({mode} mode)", wrong=wrong)
            expect_tensor(g_gx, r_gx, f"the gradient with respect to x ({mode} mode)")
            expect_tensor(g_gs, r_gs, f"the gradient with respect to skip ({mode} mode)")
    return (
        "your decoder step upsamples, concatenates the skip and convolves exactly like "
        "cnnbook's U-Net, also when the skip has a different channel count."
    )


# ---------------------------------------------------------------- predict, then check


IOU_PAIRS: dict[str, tuple[tuple[float, float, float, float], tuple[float, float, float, float]]] = {
    "a": ((0, 0, 4, 4), (2, 0, 6, 4)),  # half of each box overlaps
    "b": ((0, 0, 4, 4), (4, 0, 8, 4)),  # the boxes only touch
    "c": ((0, 0, 4, 4), (1, 1, 3, 3)),  # one inside the other
    "d": ((0, 0, 4, 2), (0, 0, 2, 4)),  # a wide and a tall box crossing
    "e": ((0, 0, 10, 10), (1, 1, 11, 11)),  # the same box shifted by one pixel diagonally
}
"""The box pairs of the 14.13 predict-then-check exercise, ``(x1, y1, x2, y2)`` each."""


def _pair_iou(a: tuple[float, ...], b: tuple[float, ...], mode: str = "") -> float:
    p = 1.0 if mode == "plus_one" else 0.0
    w = min(a[2], b[2]) - max(a[0], b[0]) + p
    h = min(a[3], b[3]) - max(a[1], b[1]) + p
    inter = max(w, 0.0) * max(h, 0.0)
    area_a = (a[2] - a[0] + p) * (a[3] - a[1] + p)
    area_b = (b[2] - b[0] + p) * (b[3] - b[1] + p)
    if mode == "no_subtract":
        return inter / (area_a + area_b)
    if mode == "over_smaller":
        return inter / min(area_a, area_b)
    return inter / (area_a + area_b - inter)


@checker("predicted IoUs", requirement="five IoUs worked out on paper, each within 0.005")
def check_iou_predictions(ctx: Context, predicted: Any) -> str:
    """Compare predicted IoUs of :data:`IOU_PAIRS` with ``torchvision.ops.box_iou``."""
    del ctx  # fixed pairs: the same verdict on every seed
    what = "predicted_iou"
    predicted = expect_answers(predicted, list(IOU_PAIRS), what)
    tv = _tvops()
    wrong_count = 0
    lines = []
    for key, (a, b) in IOU_PAIRS.items():
        guess = expect_number(predicted[key], f"{what}[{key!r}]")
        true = float(
            tv.box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))
        )
        if math.isclose(guess, true, abs_tol=0.005):
            continue
        wrong_count += 1
        hint = "IoU = intersection / (area A + area B - intersection)."
        for mode, why in (
            ("no_subtract", "You counted the overlap twice: the union is area A + area B - intersection."),
            ("over_smaller", "You divided by the smaller box's area: divide by the union."),
            ("plus_one", "Coordinates are continuous: a box's width is x2 - x1, without + 1."),
        ):
            if math.isclose(guess, _pair_iou(a, b, mode), abs_tol=0.005) and not math.isclose(
                _pair_iou(a, b, mode), true, abs_tol=0.005
            ):
                hint = why
        if key == "b" and guess > 0:
            hint = "Boxes that only share an edge have an intersection of width 0, so IoU 0."
        lines.append(f"pair {key!r} A={a}, B={b}: you predicted {guess:.3f}, the IoU is {true:.3f}. {hint}")
    if wrong_count:
        fail(f"{wrong_count} of {len(IOU_PAIRS)} predictions are off:\n" + "\n".join(lines))
    return f"all {len(IOU_PAIRS)} predicted IoUs match torchvision.ops.box_iou."


TRANSPOSED_LAYERS: dict[str, dict[str, int]] = {
    "a": {"n": 8, "kernel_size": 2, "stride": 2, "padding": 0, "output_padding": 0},
    "b": {"n": 8, "kernel_size": 4, "stride": 2, "padding": 1, "output_padding": 0},
    "c": {"n": 8, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 0},
    "d": {"n": 8, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    "e": {"n": 5, "kernel_size": 3, "stride": 1, "padding": 1, "output_padding": 0},
}
"""The layers of the 14.13 predict-then-check exercise: input length ``n`` and the settings of
``nn.ConvTranspose2d``."""


@checker(
    "predicted output sizes",
    requirement="five whole numbers from n_out = (n - 1) s - 2p + k + output_padding",
)
def check_transposed_predictions(ctx: Context, predicted: Any) -> str:
    """Compare predicted output lengths of :data:`TRANSPOSED_LAYERS` with ``nn.ConvTranspose2d``."""
    del ctx
    what = "predicted_size"
    predicted = expect_answers(predicted, list(TRANSPOSED_LAYERS), what)
    lines = []
    for key, cfg in TRANSPOSED_LAYERS.items():
        guess = predicted[key]
        if isinstance(guess, bool) or not isinstance(guess, int):
            fail(f"{what}[{key!r}]: a size is a whole number of pixels (an int), got {guess!r}.")
        n, k, s, p, op = (cfg[x] for x in ("n", "kernel_size", "stride", "padding", "output_padding"))
        layer = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op)
        with torch.no_grad():
            true = int(layer(torch.zeros(1, 1, n, n)).shape[-1])
        if guess == true:
            continue
        hint = "n_out = (n - 1) * s - 2p + k + output_padding."
        if guess == (n + 2 * p - k) // s + 1:
            hint = "That is the ordinary convolution's formula; the transposed one runs it backwards."
        elif guess == n * s - 2 * p + k + op:
            hint = "The n inputs are placed s apart, so they span (n - 1) * s, not n * s."
        elif guess == (n - 1) * s + 2 * p + k + op:
            hint = "Padding is removed from the output of a transposed convolution: - 2p."
        elif guess == (n - 1) * s - 2 * p + k and op:
            hint = "output_padding adds that many pixels on one side."
        lines.append(f"layer {key!r} {cfg}: you predicted {guess}, nn.ConvTranspose2d gives {true}. {hint}")
    if lines:
        fail(f"{len(lines)} of {len(TRANSPOSED_LAYERS)} predictions are off:\n" + "\n".join(lines))
    return f"all {len(TRANSPOSED_LAYERS)} predicted sizes match nn.ConvTranspose2d."
