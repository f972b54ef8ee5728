"""Wrong-answer corpus for the 14.10 exercises (visualising learned features)."""

from __future__ import annotations

import numpy as np
import torch
from corpus_tools import accepted, rejected

from cnnbook.checks import visualizing as checks

# ---------------------------------------------------------------- Exercise 1: what the hook kept


def test_hook_prediction_right_answers_pass() -> None:
    accepted(checks.check_hook_prediction, 0.0)
    accepted(checks.check_hook_prediction, 0)
    accepted(checks.check_hook_prediction, torch.tensor(0.0))


def test_hook_prediction_mistakes_are_named() -> None:
    check = checks.check_hook_prediction
    rejected(check, -2.0, hint="shares the SAME memory")  # batch norm's own minimum
    rejected(check, -0.5, hint="in-place ReLU")
    rejected(check, 0.5, hint="exactly 0 and none below")
    rejected(check, None, hint="still None")
    rejected(check, False, hint="should be a number")
    rejected(check, "0", hint="should be a number")


def test_hook_fix_right_answers_pass() -> None:
    accepted(checks.check_hook_fix, "a")
    accepted(checks.check_hook_fix, " A ")


def test_hook_fix_mistakes_are_named() -> None:
    check = checks.check_hook_fix
    rejected(check, "b", hint="very tensor")
    rejected(check, "c", hint=r"\.data")
    rejected(check, "d", hint="no_grad")
    rejected(check, "e", hint="one of the letters")
    rejected(check, 1, hint="one of the letters")
    rejected(check, None, hint="still None")


# ---------------------------------------------------------------- Exercise 2: Grad-CAM


def cam_reference(model, image, target_class, layer_name):
    store = {}
    layer = dict(model.named_modules())[layer_name]
    handle = layer.register_forward_hook(lambda _m, _i, out: store.update(act=out))
    try:
        logits = model(image)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, target_class], store["act"])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * store["act"]).sum(dim=1))[0].detach()
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


def cam_backward_hooks(model, image, target_class, layer_name):
    """The chapter's approach (forward + full backward hook), made safe with try/finally."""
    acts, grads = {}, {}
    module = model.get_submodule(layer_name)
    fh = module.register_forward_hook(lambda _m, _i, out: acts.update(v=out))
    bh = module.register_full_backward_hook(lambda _m, _gi, go: grads.update(v=go[0]))
    try:
        output = model(image)
        model.zero_grad()
        output[0, target_class].backward()
    finally:
        fh.remove()
        bh.remove()
    weights = grads["v"].mean(dim=[2, 3], keepdim=True)
    cam = torch.relu((weights * acts["v"]).sum(dim=1, keepdim=True)).squeeze().detach()
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


def _variant(name):
    def answer(model, image, target_class, layer_name):
        return checks.reference_grad_cam(model, image, target_class, layer_name, name)

    answer.__name__ = f"cam_{name}"
    return answer


cam_no_relu = _variant("no_relu")
cam_activation_weights = _variant("act_weights")
cam_all_logits = _variant("all_classes")
cam_unscaled = _variant("no_norm")
cam_max_only = _variant("max_only")


def cam_getattr(model, image, target_class, layer_name):
    store = {}
    handle = getattr(model, layer_name).register_forward_hook(lambda _m, _i, out: store.update(act=out))
    try:
        logits = model(image)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, target_class], store["act"])
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["act"]).sum(dim=1))[0].detach()
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


def cam_hooks_removed_at_the_end(model, image, target_class, layer_name):
    """Hooks removed after the computation, with no finally: a raising forward leaves them."""
    store = {}
    fh = model.get_submodule(layer_name).register_forward_hook(lambda _m, _i, out: store.update(act=out))
    logits = model(image)
    (grad,) = torch.autograd.grad(logits[0, target_class], store["act"])
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["act"]).sum(dim=1))[0].detach()
    cam = cam - cam.min()
    fh.remove()
    return cam / (cam.max() + 1e-8)


def cam_upsampled(model, image, target_class, layer_name):
    cam = cam_reference(model, image, target_class, layer_name)
    return torch.nn.functional.interpolate(cam[None, None], size=image.shape[-2:], mode="bilinear")[0, 0]


def cam_backward_keeps_caller_grads(model, image, target_class, layer_name):
    """backward() is fine when the caller's .grad is put back exactly."""
    saved = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    try:
        return cam_backward_hooks_no_zero_grad(model, image, target_class, layer_name)
    finally:
        for n, p in model.named_parameters():
            p.grad = saved[n]


def cam_float64_extra_kwarg(model, image, target_class, layer_name, upsample=False):
    cam = cam_reference(model, image.double().float(), target_class, layer_name)
    return cam.double()


def cam_backward_hooks_no_zero_grad(model, image, target_class, layer_name):
    """backward() without zero_grad: it adds to the caller's accumulated .grad."""
    acts, grads = {}, {}
    module = model.get_submodule(layer_name)
    fh = module.register_forward_hook(lambda _m, _i, out: acts.update(v=out))
    bh = module.register_full_backward_hook(lambda _m, _gi, go: grads.update(v=go[0]))
    try:
        model(image)[0, target_class].backward()
    finally:
        fh.remove()
        bh.remove()
    cam = torch.relu((grads["v"].mean(dim=(2, 3), keepdim=True) * acts["v"]).sum(dim=1))[0].detach()
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


def cam_attached(model, image, target_class, layer_name):
    """Forgets to detach: the map still hangs on the graph."""
    store = {}
    handle = model.get_submodule(layer_name).register_forward_hook(lambda _m, _i, out: store.update(act=out))
    try:
        logits = model(image)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits[0, target_class], store["act"], retain_graph=True)
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * store["act"]).sum(dim=1))[0]
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-8)


def cam_leaves_eval(model, image, target_class, layer_name):
    model.eval()
    return cam_reference(model, image, target_class, layer_name)


def cam_restores_top_only(model, image, target_class, layer_name):
    was = model.training
    model.eval()
    try:
        return cam_reference(model, image, target_class, layer_name)
    finally:
        model.train(was)  # wakes a layer that was frozen in eval mode inside


def test_grad_cam_accepts_right_answers() -> None:
    accepted(checks.check_grad_cam, cam_reference)
    accepted(checks.check_grad_cam, cam_backward_keeps_caller_grads)
    accepted(checks.check_grad_cam, cam_float64_extra_kwarg)


def test_grad_cam_rejects_side_effects_on_the_caller() -> None:
    req = "caller's gradients"
    rejected(checks.check_grad_cam, cam_backward_hooks, hint="(wiped|changed) the gradients", requirement=req)
    check = checks.check_grad_cam
    rejected(check, cam_backward_hooks_no_zero_grad, hint="changed the gradients", requirement=req)
    rejected(checks.check_grad_cam, cam_attached, hint="detached", requirement="returned detached")
    rejected(checks.check_grad_cam, cam_leaves_eval, hint="left the model in eval mode", requirement="modes")
    rejected(checks.check_grad_cam, cam_restores_top_only, hint="own mode", requirement="modes")


def test_grad_cam_rejects_mistakes() -> None:
    rejected(checks.check_grad_cam, cam_no_relu, hint="ReLU is missing")
    rejected(checks.check_grad_cam, cam_activation_weights, hint="mean ACTIVATION")
    rejected(checks.check_grad_cam, cam_all_logits, hint="sum of all logits")
    rejected(checks.check_grad_cam, cam_unscaled, hint="not scaled")
    rejected(checks.check_grad_cam, cam_max_only, hint="without subtracting the min")
    rejected(checks.check_grad_cam, cam_getattr, hint="nested layer")
    rejected(checks.check_grad_cam, cam_hooks_removed_at_the_end, hint="also when the forward pass raises")
    rejected(checks.check_grad_cam, cam_upsampled, hint="without upsampling")


# ---------------------------------------------------------------- Exercise 3: left-half share


def share_reference(cam):
    total = cam.sum()
    return float(cam[:, : cam.shape[1] // 2].sum() / total) if total > 0 else 0.0


def share_tensor_result(cam):
    return cam[:, : cam.shape[-1] // 2].sum() / cam.sum()


def share_rows(cam):
    return float(cam[: cam.shape[0] // 2].sum() / cam.sum())


def share_right_half(cam):
    return float(cam[:, cam.shape[1] // 2 :].sum() / cam.sum())


def share_middle_column_left(cam):
    return float(cam[:, : (cam.shape[1] + 1) // 2].sum() / cam.sum())


def share_not_divided(cam):
    return float(cam[:, : cam.shape[1] // 2].sum())


def test_left_share_accepts_right_answers() -> None:
    accepted(checks.check_left_share, share_reference)
    accepted(checks.check_left_share, share_tensor_result)


def test_left_share_rejects_mistakes() -> None:
    rejected(checks.check_left_share, share_rows, hint="ROWS")
    rejected(checks.check_left_share, share_right_half, hint="right half")
    rejected(checks.check_left_share, share_middle_column_left, hint="middle column")
    rejected(checks.check_left_share, share_not_divided, hint="without dividing")


# ---------------------------------------------------------------- Exercise 4: filters for display


def filters_reference(w):
    flat = w.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1, 1) - lo
    return (w - lo) / span.clamp_min(1e-12)


def filters_amin_epsilon(w):
    """Right: a small epsilon in the denominator keeps a constant filter at 0."""
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    return (w - lo) / (hi - lo + 1e-8)


def filters_make_grid_guard(w):
    """Right: torchvision make_grid's guard, max(max - min, 1e-5), written per filter."""
    out = torch.empty_like(w)
    for i, f in enumerate(w):
        lo, hi = float(f.min()), float(f.max())
        out[i] = (f - lo) / max(hi - lo, 1e-5)
    return out


def filters_where_float32(w):
    """Right: torch.where on a float32 copy (another dtype)."""
    x = w.float()
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo), torch.zeros_like(x))


def filters_unguarded(w):
    """The formula alone: a dead filter gives 0 / 0 = NaN."""
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    return (w - lo) / (hi - lo)


def filters_constant_grey(w):
    """A constant filter shown as mid-grey instead of zeros."""
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(hi > lo, (w - lo) / (hi - lo), torch.full_like(w, 0.5))


def filters_colleague(w):
    """The colleague's per-channel version, copied."""
    lo, hi = w.amin(dim=(2, 3), keepdim=True), w.amax(dim=(2, 3), keepdim=True)
    return (w - lo) / (hi - lo).clamp_min(1e-12)


def filters_global(w):
    return (w - w.min()) / (w.max() - w.min())


def filters_per_channel(w):
    lo, hi = w.amin(dim=(2, 3), keepdim=True), w.amax(dim=(2, 3), keepdim=True)
    return (w - lo) / (hi - lo)


def filters_divide_by_max(w):
    return w / w.amax(dim=(1, 2, 3), keepdim=True)


def filters_in_place(w):
    lo, hi = w.amin(dim=(1, 2, 3), keepdim=True), w.amax(dim=(1, 2, 3), keepdim=True)
    return w.sub_(lo).div_((hi - lo).clamp_min(1e-12))


def test_normalize_filters_accepts_right_answers() -> None:
    for right in (filters_reference, filters_amin_epsilon, filters_make_grid_guard, filters_where_float32):
        accepted(checks.check_normalize_filters, right)


def test_normalize_filters_rejects_mistakes() -> None:
    c = checks.check_normalize_filters
    for wrong, hint in [
        (filters_global, "all filters together"),
        (filters_per_channel, "each channel"),
        (filters_colleague, "each channel"),
        (filters_divide_by_max, "without subtracting the min"),
        (filters_in_place, "in place"),
        (filters_unguarded, "constant.*max - min = 0.*zeros"),
        (filters_constant_grey, "constant filter should come out all zeros"),
    ]:
        rejected(c, wrong, hint=hint)
    rejected(c, filters_unguarded, hint="nan", requirement="a constant filter all zeros")


def test_colleague_function_is_the_per_channel_bug() -> None:
    w = torch.randn(4, 1, 3, 5)  # one input channel: the colleague's test case, where it is right
    torch.testing.assert_close(checks.colleague_normalize_filters(w), filters_reference(w))
    w = torch.randn(4, 3, 3, 5)
    assert not torch.allclose(checks.colleague_normalize_filters(w), filters_reference(w))
    torch.testing.assert_close(checks.reference_normalize_filters(w), filters_reference(w))


# ---------------------------------------------------------------- Exercise 4: the smallest bug input


def test_filter_bug_input_accepts_two_values_in_two_channels() -> None:
    for right in (
        torch.tensor([[[[0.0]], [[1.0]]]]),
        torch.tensor([[[[-3.0]], [[5.0]]]], dtype=torch.float64),
        torch.tensor([[[[2]], [[7]]]]),  # integers are weights too
        np.array([[[[0.5]], [[0.25]]]], dtype=np.float32),
    ):
        accepted(checks.check_filter_bug_input, right)


def test_filter_bug_input_rejects_inputs_that_miss_the_point() -> None:
    c = checks.check_filter_bug_input
    for wrong, hint in [
        (torch.tensor([[[[1.0]]]]), "one input channel"),  # a single value: both give 0
        (torch.randn(3, 1, 5, 5), "one input channel"),  # the colleague's own test
        (torch.tensor([[[[1.0, 2.0]]]]), "one input channel"),
        (torch.tensor([[[[1.0]], [[1.0]]]]), "both functions give the same result"),  # constant
        (torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]]), "both functions give the same result"),
        (torch.tensor([[[[0.0]], [[1.0]], [[2.0]]]]), "smaller one exists"),
        (torch.randn(2, 3, 3, 3), "smaller one exists"),
        (torch.tensor([[[0.0]], [[1.0]]]), "4 non-empty dimensions"),
        (torch.empty(1, 2, 0, 1), "4 non-empty dimensions"),
        (torch.tensor([[[[float("nan")]], [[1.0]]]]), "NaN or inf"),
        (None, "still None"),
        ("(1, 2, 1, 1)", "tensor of filter weights"),
    ]:
        rejected(c, wrong, hint=hint, requirement="as few values as possible")


# ---------------------------------------------------------------- Exercise 5: activation maximisation


def unit_reference(model, layer_name, channel, row, col, start, steps, lr):
    store = {}
    handle = model.get_submodule(layer_name).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    x = start.detach().clone()
    try:
        for _ in range(steps):
            x.requires_grad_(True)
            model(x)
            (grad,) = torch.autograd.grad(store["out"][0, channel, row, col], x)
            x = (x + lr * grad).detach()
    finally:
        handle.remove()
    return x


def unit_frozen_params_and_backward(model, layer_name, channel, row, col, start, steps, lr):
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    store = {}
    handle = dict(model.named_modules())[layer_name].register_forward_hook(
        lambda _m, _i, out: store.update(out=out)
    )
    image = start.clone().requires_grad_(True)
    try:
        for _ in range(steps):
            image.grad = None
            model(image)
            store["out"][0, channel, row, col].backward()
            with torch.no_grad():
                image += lr * image.grad
    finally:
        handle.remove()
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    return image.detach()


def unit_descent(model, layer_name, channel, row, col, start, steps, lr):
    return checks.reference_maximize_unit(model, layer_name, channel, row, col, start, steps, lr, "descent")


def unit_channel_mean(model, layer_name, channel, row, col, start, steps, lr):
    return checks.reference_maximize_unit(
        model, layer_name, channel, row, col, start, steps, lr, "channel_mean"
    )


def unit_grad_accumulates(model, layer_name, channel, row, col, start, steps, lr):
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    store = {}
    handle = model.get_submodule(layer_name).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    image = start.clone().requires_grad_(True)
    try:
        for _ in range(steps):
            model(image)
            store["out"][0, channel, row, col].backward()  # image.grad is never reset
            with torch.no_grad():
                image += lr * image.grad
    finally:
        handle.remove()
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
    return image.detach()


def unit_row_col_swapped(model, layer_name, channel, row, col, start, steps, lr):
    return unit_reference(model, layer_name, channel, col, row, start, steps, lr)


def unit_backward_fills_param_grads(model, layer_name, channel, row, col, start, steps, lr):
    store = {}
    handle = model.get_submodule(layer_name).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    image = start.clone().requires_grad_(True)
    try:
        for _ in range(steps):
            image.grad = None
            model(image)
            store["out"][0, channel, row, col].backward()
            with torch.no_grad():
                image += lr * image.grad
    finally:
        handle.remove()
    return image.detach()


def unit_changes_start(model, layer_name, channel, row, col, start, steps, lr):
    result = unit_reference(model, layer_name, channel, row, col, start, steps, lr)
    start.copy_(result)
    return start


def unit_hook_left_behind(model, layer_name, channel, row, col, start, steps, lr):
    store = {}
    model.get_submodule(layer_name).register_forward_hook(lambda _m, _i, out: store.update(out=out))
    x = start.detach().clone()
    for _ in range(steps):
        x.requires_grad_(True)
        model(x)
        (grad,) = torch.autograd.grad(store["out"][0, channel, row, col], x)
        x = (x + lr * grad).detach()
    return x


def unit_params_left_frozen(model, layer_name, channel, row, col, start, steps, lr):
    for p in model.parameters():
        p.requires_grad_(False)
    return unit_reference(model, layer_name, channel, row, col, start, steps, lr)


def test_maximize_unit_accepts_right_answers() -> None:
    accepted(checks.check_maximize_unit, unit_reference)
    accepted(checks.check_maximize_unit, unit_frozen_params_and_backward)


def test_maximize_unit_rejects_mistakes() -> None:
    rejected(checks.check_maximize_unit, unit_descent, hint="against the gradient")
    rejected(checks.check_maximize_unit, unit_channel_mean, hint="mean of the whole channel")
    rejected(checks.check_maximize_unit, unit_grad_accumulates, hint="accumulates")
    rejected(checks.check_maximize_unit, unit_row_col_swapped, hint="swapped")
    rejected(
        checks.check_maximize_unit,
        unit_backward_fills_param_grads,
        hint="changed the gradients the caller had accumulated",
        requirement=r"\.grad included",
    )
    rejected(checks.check_maximize_unit, unit_changes_start, hint="changed `start` in place")
    rejected(checks.check_maximize_unit, unit_hook_left_behind, hint="hook\\(s\\) registered")
    rejected(checks.check_maximize_unit, unit_params_left_frozen, hint="requires_grad")


def unit_attached(model, layer_name, channel, row, col, start, steps, lr):
    return unit_reference(model, layer_name, channel, row, col, start, steps, lr).requires_grad_(True) * 1


def unit_zero_grad_after_backward(model, layer_name, channel, row, col, start, steps, lr):
    """Cleans up with zero_grad(): that wipes what the caller had accumulated."""
    out = unit_backward_fills_param_grads(model, layer_name, channel, row, col, start, steps, lr)
    model.zero_grad()
    return out


def unit_eval_top_only(model, layer_name, channel, row, col, start, steps, lr):
    was = model.training
    model.eval()
    out = unit_reference(model, layer_name, channel, row, col, start, steps, lr)
    model.train(was)
    return out


def unit_inference_safe_extra_kwarg(model, layer_name, channel, row, col, start, steps, lr, verbose=False):
    out = unit_reference(model, layer_name, channel, row, col, start.double().float(), steps, lr)
    with torch.inference_mode():
        return out.clone()


def test_maximize_unit_side_effects_on_the_caller() -> None:
    check = checks.check_maximize_unit
    rejected(check, unit_attached, hint="detached", requirement="returned detached")
    rejected(check, unit_zero_grad_after_backward, hint="wiped the gradients", requirement=r"\.grad included")
    rejected(check, unit_eval_top_only, hint="own mode", requirement="model")
    accepted(check, unit_inference_safe_extra_kwarg)
