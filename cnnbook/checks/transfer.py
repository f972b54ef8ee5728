"""Checks for the section 14.9 exercises (transfer learning: freezing, learning rates, inputs).

The checks use an untrained ``torchvision.models.resnet18`` (``weights=None``): which weights
it holds does not matter for freezing and optimiser set-up, and nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnbook.checks.core import Context, call, checker, expect_module, expect_tensor, fail, forbid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STEPS = "write the scaling and normalisation steps yourself to see what they do."
TRANSFORMS = {
    "torchvision.transforms.ToTensor": _STEPS, "torchvision.transforms.Normalize": _STEPS,
    "torchvision.transforms.functional.to_tensor": _STEPS,
    "torchvision.transforms.functional.normalize": _STEPS,
    "torchvision.transforms.v2.Normalize": _STEPS,
    "torchvision.transforms.v2.functional.normalize": _STEPS,
}


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None)


def _trainable(model: nn.Module) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


@checker("feature extractor")
def check_feature_extractor(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(model, num_classes)`` freezes the backbone and adds a trainable head."""
    for classes in (5, ctx.randint(2, 40)):
        model = _resnet18()
        what = f"feature_extractor(resnet18, num_classes={classes})"
        out = expect_module(call(fn, model, classes, describe=what), what)
        fc = getattr(out, "fc", None)
        if not isinstance(fc, nn.Linear) or fc.out_features != classes or fc.in_features != 512:
            fail(f"{what}: model.fc should be a new nn.Linear(512, {classes}) "
                 f"(in_features = model.fc.in_features), got {fc}.")
        trainable = _trainable(out)
        head = 512 * classes + classes
        if not trainable:
            fail(f"{what}: nothing is trainable. You froze after replacing fc, so the new head was "
                 f"frozen too: freeze first, then create the new layer (new layers require "
                 f"gradients by default).")
        if sum(trainable.values()) > head:
            extra = sorted({n.rsplit(".", 2)[0] for n in trainable if not n.startswith("fc.")})
            fail(f"{what}: {sum(trainable.values()):,} parameters are trainable, expected only "
                 f"the head's {head:,}. Still trainable: {extra[:6]}... Set requires_grad = False "
                 f"on every backbone parameter.")
        if set(trainable) != {"fc.weight", "fc.bias"}:
            fail(f"{what}: the trainable parameters are {sorted(trainable)}; expected fc.weight "
                 f"and fc.bias only.")
        x = ctx.randn(2, 3, 64, 64, dtype=torch.float32)
        out.eval()
        logits = call(out, x, describe="a batch of 2 images")
        expect_tensor(logits, torch.zeros(2, classes), f"{what}(x).shape", atol=float("inf"),
                      shape_hint="The model should return (N, num_classes) logits.")
        logits.sum().backward()
        if any(p.grad is not None for n, p in out.named_parameters() if not n.startswith("fc.")):
            fail(f"{what}: a backbone parameter received a gradient.")
    return "only the new head trains: 2,565 of 11.2M parameters for 5 classes."


def _group_ids(groups: Any, what: str) -> list[tuple[set[int], float]]:
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        fail(f"{what} should return a list of dicts like {{'params': [...], 'lr': 1e-4}}, got "
             f"{type(groups).__name__}.")
    out = []
    for g in groups:
        if "params" not in g or "lr" not in g:
            fail(f"{what}: every group needs 'params' and 'lr' keys, got keys {sorted(g)}.")
        out.append(({id(p) for p in g["params"]}, float(g["lr"])))
    return out


@checker("discriminative learning rates")
def check_param_groups(ctx: Context, fn: Callable[..., list[dict]]) -> str:
    """Check ``fn(model, backbone_lr, head_lr)`` -> optimiser groups for a partly frozen model."""
    model = _resnet18()
    for name, p in model.named_parameters():
        if name.startswith(("conv1", "bn1", "layer1", "layer2")):
            p.requires_grad_(False)
    model.fc = nn.Linear(512, 5)
    backbone_lr, head_lr = 10.0 ** -ctx.randint(4, 5), 10.0 ** -ctx.randint(2, 3)
    what = f"param_groups(model, backbone_lr={backbone_lr:g}, head_lr={head_lr:g})"
    groups = _group_ids(call(fn, model, backbone_lr, head_lr, describe=what), what)
    named = dict(model.named_parameters())
    head = {id(p) for n, p in named.items() if n.startswith("fc.")}
    body = {id(p) for n, p in named.items() if p.requires_grad and not n.startswith("fc.")}
    frozen = {id(p) for p in named.values() if not p.requires_grad}
    seen: list[int] = [i for ids, _ in groups for i in ids]
    if len(seen) != len(set(seen)):
        fail(f"{what}: some parameters appear in two groups (the optimiser would refuse them); "
             f"the head's parameters belong only to the head group.")
    if frozen & set(seen):
        fail(f"{what}: {len(frozen & set(seen))} frozen parameters were handed to the optimiser; "
             f"keep only parameters with requires_grad=True.")
    by_lr: dict[float, set[int]] = {}
    for ids, lr in groups:
        by_lr.setdefault(lr, set()).update(ids)
    if by_lr.get(head_lr) != head:
        fail(f"{what}: the group with lr={head_lr:g} should hold exactly the new fc layer's 2 "
             f"tensors, got {len(by_lr.get(head_lr, set()))} tensors.")
    if by_lr.get(backbone_lr) != body:
        fail(f"{what}: the group with lr={backbone_lr:g} should hold the {len(body)} trainable "
             f"backbone tensors (layer3, layer4), got {len(by_lr.get(backbone_lr, set()))}.")
    torch.optim.Adam([{"params": [named[n] for n in named if id(named[n]) in ids], "lr": lr}
                      for ids, lr in groups])
    return "two groups: small learning rate for the unfrozen backbone, larger for the new head."


def _ref_normalize(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)


@checker("ImageNet preprocessing")
def check_imagenet_normalize(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(image uint8 (H, W, 3))`` -> float (3, H, W) tensor normalised for ImageNet."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    for _ in range(4):
        h, w = ctx.randint(4, 12), ctx.randint(4, 12)
        image = (ctx.rand(h, w, 3) * 256).clamp(max=255).to(torch.uint8).numpy()
        what = f"imagenet_normalize(uint8 image of shape {image.shape})"
        with forbid(fn, TRANSFORMS):
            got = call(fn, image.copy(), describe=what)
        ref = _ref_normalize(image)
        raw = torch.from_numpy(image).permute(2, 0, 1).double()
        expect_tensor(got, ref, what, wrong={
            "You skipped the division by 255: ToTensor maps pixels to [0, 1] before "
            "normalising.": (raw - mean) / std,
            "You swapped mean and std.": (raw / 255 - std) / mean,
            "You scaled to [0, 1] but did not normalise with the ImageNet mean and std.": raw / 255,
            "The channels are reversed (BGR): the ImageNet statistics are in RGB order.":
                (raw.flip(0) / 255 - mean) / std,
        }, shape_hint="Return channels first: (3, H, W), as PyTorch models expect.", atol=1e-4)
        if isinstance(got, torch.Tensor) and not got.is_floating_point():
            fail(f"{what} should be a float tensor.")
    return "your preprocessing matches ToTensor() + Normalize(ImageNet mean, std)."
