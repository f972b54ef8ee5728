"""Checks for the section 14.10 exercises (visualising features: hooks, Grad-CAM, filters)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_tensor,
    fail,
    forbid,
)

_OURS = "that is cnnbook's own answer; write yours."
_WHOLE = "it does the whole exercise; write the hooks yourself."
HOOK_LIBRARY = {
    "cnnbook.interpret.feature_maps": _OURS, "cnnbook.interpret.capture_outputs": _OURS,
    "cnnbook.interpret.layer_output": _OURS, "cnnbook.interpret.grad_cam": _OURS,
    "torchvision.models.feature_extraction.create_feature_extractor": _WHOLE,
    "pytorch_grad_cam.GradCAM": _WHOLE,
}


def tiny_cnn(classes: int = 4) -> nn.Sequential:
    """A small random CNN with named layers (``conv1 ... fc``) for hook and Grad-CAM checks."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 6, 3, padding=1), relu1=nn.ReLU(), pool=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 8, 3, padding=1), relu2=nn.ReLU(),
        gap=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, classes)))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
               for m in model.modules())


@checker("feature maps with a forward hook")
def check_get_feature_maps(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(model, x, layer_name)`` returns that layer's output and removes its hook."""
    model = tiny_cnn().eval()
    for name in ("conv1", "pool", "relu2", "conv2"):
        x = ctx.randn(2, 3, 2 * ctx.randint(3, 6), 2 * ctx.randint(3, 6), dtype=torch.float32)
        what = f"get_feature_maps(model, x {tuple(x.shape)}, {name!r})"
        before = _hook_count(model)
        with forbid(fn, HOOK_LIBRARY):
            got = call(fn, model, x, name, describe=what)
        if _hook_count(model) > before:
            fail(f"{what} left a hook on the model: keep the handle returned by "
                 f"register_forward_hook and call handle.remove() (in a finally: block), or "
                 f"every later forward pass will run it again.")
        ref = None
        out = x
        for layer_name, layer in model.named_children():
            out = layer(out)
            if layer_name == name:
                ref = out.detach()
                break
        assert ref is not None
        expect_tensor(got, ref, what, wrong={
            "That is the model's final output; the hook must store the output of the named layer.":
                model(x).detach(),
        }, shape_hint="Return the output the hooked layer produced (N, C_l, H_l, W_l).")
        if got.requires_grad:
            fail(f"{what} still requires grad: store output.detach() (or run under torch.no_grad()) "
                 f"so the feature maps do not keep the graph alive.")
    return "the hook captures the named layer's output and is removed afterwards."


def reference_grad_cam(model: nn.Module, x: torch.Tensor, target_class: int, layer: str,
                       variant: str = "") -> torch.Tensor:
    """The chapter's Grad-CAM at the layer's resolution, min-max scaled; ``variant`` names a
    common mistake to reproduce it."""
    store: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]

    def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        store["a"] = out

    handle = module.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    score = logits.sum() if variant == "all_classes" else logits[0, target_class]
    grad = torch.autograd.grad(score, store["a"])[0]
    acts = store["a"].detach()
    weights = acts.mean(dim=(2, 3), keepdim=True) if variant == "act_weights" else grad.mean(
        dim=(2, 3), keepdim=True)
    cam = (weights * acts).sum(dim=1)[0]
    if variant != "no_relu":
        cam = torch.relu(cam)
    if variant == "no_norm":
        return cam
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


@checker("Grad-CAM")
def check_grad_cam(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(model, image (1, C, H, W), target_class, layer_name)`` -> (H_l, W_l) in [0, 1]."""
    done = 0
    while done < 4:
        model = tiny_cnn().eval()
        x = ctx.randn(1, 3, 2 * ctx.randint(4, 7), 2 * ctx.randint(4, 7), dtype=torch.float32)
        target, layer = ctx.randint(0, 3), ctx.choice(["conv2", "relu2"])
        ref = reference_grad_cam(model, x, target, layer)
        if ref.max() < 0.5:  # degenerate map (all zero): draw another model
            continue
        done += 1
        what = f"grad_cam(model, x {tuple(x.shape)}, target_class={target}, target_layer={layer!r})"
        before = _hook_count(model)
        with forbid(fn, HOOK_LIBRARY):
            got = call(fn, model, x.clone(), target, layer, describe=what)
        if _hook_count(model) > before:
            fail(f"{what} left hooks on the model; remove them with handle.remove().")
        if isinstance(got, torch.Tensor):
            got = got.detach()
            if got.ndim == 4 and got.shape[:2] == (1, 1):
                got = got[0, 0]
            elif got.ndim == 3 and got.shape[0] == 1:
                got = got[0]
        expect_tensor(got, ref, what, wrong={
            "The ReLU is missing: keep only the positive evidence for the class.":
                reference_grad_cam(model, x, target, layer, "no_relu"),
            "You weighted the channels by their mean ACTIVATION; Grad-CAM weights them by the "
            "mean GRADIENT of the class score.":
                reference_grad_cam(model, x, target, layer, "act_weights"),
            "You back-propagated the sum of all logits; use the target class's score only.":
                reference_grad_cam(model, x, target, layer, "all_classes"),
            "The map is not normalised: subtract its min and divide by the max so it lies in "
            "[0, 1].": reference_grad_cam(model, x, target, layer, "no_norm"),
        }, shape_hint="Return the map at the layer's resolution, (H_l, W_l), without upsampling.",
            atol=1e-4, rtol=1e-3)
    return "your Grad-CAM matches the reference on random CNNs, classes and layers."


@checker("filter normalisation for display")
def check_normalize_filters(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(w (C_out, C_in, k, k))`` min-max scales each filter to [0, 1] separately."""
    for _ in range(4):
        w = ctx.randn(ctx.randint(2, 8), 3, ctx.choice([3, 5, 7]), ctx.choice([3, 5, 7]))
        w = w * ctx.rand(w.shape[0], 1, 1, 1) * 5  # filters of very different contrast
        what = f"normalize_filters(w of shape {tuple(w.shape)})"
        got = call(fn, w.clone(), describe=what)
        flat = w.flatten(1)
        lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
        ref = (w - lo) / (hi - lo)
        expect_tensor(got, ref, what, wrong={
            "You scaled all filters together (global min and max); scale each filter by its "
            "own min and max so low-contrast filters stay visible.":
                (w - w.min()) / (w.max() - w.min()),
            "You scaled each channel of each filter separately, which distorts the filter's "
            "colours; use one min and max per filter (over its C_in x k x k values).":
                (w - w.amin((2, 3), keepdim=True)) / (w.amax((2, 3), keepdim=True) -
                                                      w.amin((2, 3), keepdim=True)),
        }, shape_hint="Keep the shape (C_out, C_in, k, k).")
    return "each filter now spans [0, 1] on its own scale."


@checker("left-half share of a heat map")
def check_left_share(ctx: Context, fn: Callable[..., float]) -> str:
    """Check ``fn(cam (H, W))`` = heat in the left ``W // 2`` columns / total heat."""
    for _ in range(5):
        h, w = ctx.randint(2, 9), ctx.randint(2, 9)
        cam = ctx.rand(h, w) * (ctx.rand(h, w) > 0.3)
        what = f"left_share(cam of shape {tuple(cam.shape)})"
        got = call(fn, cam.clone(), describe=what)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, float):
            fail(f"{what} should return a float, got {type(got).__name__}.")
        ref = float(cam[:, : w // 2].sum() / cam.sum())
        if abs(got - ref) > 1e-6:
            swapped = float(cam[: h // 2].sum() / cam.sum())
            right_half = float(cam[:, w // 2:].sum() / cam.sum())
            hint = ("you took the top half of the ROWS; the left half is the first W // 2 "
                    "COLUMNS (cam[:, :W // 2])." if abs(got - swapped) < 1e-6 else
                    "you measured the right half." if abs(got - right_half) < 1e-6 else
                    "divide the heat in cam[:, :W // 2] by the total heat cam.sum().")
            fail(f"{what}: expected {ref:.4f}, got {got:.4f}; {hint}")
    return "left_share divides the left half's heat by the total."
