"""Wrong-answer corpus for the 14.9 exercises (transfer learning)."""

from __future__ import annotations

import numpy as np
import torch
from corpus_tools import accepted, rejected

from cnnbook.checks import transfer as checks

# ---------------------------------------------------------------- Exercise 1: what trains (prediction)

HEAD = 512 * 10 + 10
ALL_BUT_OLD_HEAD = 11_689_512 - (512 * 1000 + 1000) + HEAD
RIGHT = {"a": HEAD, "b": 0, "c": ALL_BUT_OLD_HEAD}


def test_trainable_prediction_accepts_right_answers() -> None:
    accepted(checks.check_trainable_prediction, RIGHT)
    accepted(checks.check_trainable_prediction, {"a": np.int64(HEAD), "b": 0, "c": ALL_BUT_OLD_HEAD})


def test_trainable_prediction_rejects_mistakes() -> None:
    check = checks.check_trainable_prediction
    rejected(check, {**RIGHT, "a": 512 * 10}, hint="bias")
    rejected(check, {**RIGHT, "a": 512 * 1000 + 1000}, hint="old 1000-class head")
    rejected(check, {**RIGHT, "a": 0}, hint="created afterwards requires gradients")
    rejected(check, {**RIGHT, "b": HEAD}, hint="after the new head is installed")
    rejected(check, {**RIGHT, "c": HEAD}, hint="requires_grad_\\(False\\)")
    rejected(check, {**RIGHT, "c": 11_689_512}, hint="old 1000-class head is gone")
    rejected(check, {**RIGHT, "a": float(HEAD)}, hint="should be an int")
    rejected(check, {**RIGHT, "b": False}, hint="should be an int")
    rejected(check, [HEAD, 0, ALL_BUT_OLD_HEAD], hint="dict with the keys")
    rejected(check, {"a": HEAD, "b": 0}, hint="dict with the keys")


# ---------------------------------------------------------------- Exercise 2: frozen BN (prediction)


def test_frozen_bn_prediction_accepts_right_answers() -> None:
    accepted(checks.check_frozen_bn_prediction, 20, 0, True)
    accepted(checks.check_frozen_bn_prediction, np.int64(20), 0, np.bool_(True))


def test_frozen_bn_prediction_rejects_mistakes() -> None:
    check = checks.check_frozen_bn_prediction
    rejected(check, 0, 0, False, hint="running statistics")
    rejected(check, 0, 0, True, hint="running statistics")
    rejected(check, 21, 0, True, hint="only 20 batch-norm layers")
    rejected(check, 20, 20, True, hint="buffers, not parameters")
    rejected(check, 20, 0, False, hint="eval mode batch norm normalises")
    rejected(check, 20.0, 0, True, hint="should be an int")
    rejected(check, 20, 0, 1, hint="True or False")
    rejected(check, 20, 0, "yes", hint="True or False")


# ---------------------------------------------------------------- Exercise 3: ImageNet inputs

MEAN = torch.tensor(checks.IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(checks.IMAGENET_STD).view(3, 1, 1)


def norm_reference(image):
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    return (x - MEAN) / STD


def norm_numpy_first(image):
    x = (image.astype(np.float64) / 255.0 - np.array(checks.IMAGENET_MEAN)) / np.array(checks.IMAGENET_STD)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def norm_no_division(image):
    return (torch.from_numpy(image).permute(2, 0, 1).float() - MEAN) / STD


def norm_swapped(image):
    return (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - STD) / MEAN


def norm_reshape(image):
    x = torch.from_numpy(image).reshape(3, *image.shape[:2]).float() / 255
    return (x - MEAN) / STD


def norm_own_statistics(image):
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return (x - x.mean(dim=(1, 2), keepdim=True)) / x.std(dim=(1, 2), keepdim=True)


def norm_bgr(image):
    return norm_reference(np.ascontiguousarray(image[..., ::-1]))


def norm_channels_last(image):
    return norm_reference(image).permute(1, 2, 0)


def norm_with_torchvision(image):
    from torchvision import transforms

    return transforms.Normalize(checks.IMAGENET_MEAN, checks.IMAGENET_STD)(transforms.ToTensor()(image))


def test_imagenet_normalize_accepts_right_answers() -> None:
    accepted(checks.check_imagenet_normalize, norm_reference)
    accepted(checks.check_imagenet_normalize, norm_numpy_first)


def test_imagenet_normalize_rejects_mistakes() -> None:
    rejected(checks.check_imagenet_normalize, norm_no_division, hint="division by 255")
    rejected(checks.check_imagenet_normalize, norm_swapped, hint="swapped mean and std")
    rejected(checks.check_imagenet_normalize, norm_reshape, hint="permute")
    rejected(checks.check_imagenet_normalize, norm_own_statistics, hint="image's own mean")
    rejected(checks.check_imagenet_normalize, norm_bgr, hint="BGR")
    rejected(checks.check_imagenet_normalize, norm_channels_last, hint="channels first")
    rejected(checks.check_imagenet_normalize, norm_with_torchvision, hint="steps yourself")


# ---------------------------------------------------------------- Exercise 4: progressive unfreezing

STAGES = ("layer4", "layer3", "layer2", "layer1", "stem")


def unfreeze_reference(model, k, head_lr, decay):
    def stage(name):
        return "stem" if name.startswith(("conv1.", "bn1.")) else name.split(".")[0]

    rate = {"fc": head_lr} | {s: head_lr / decay ** (i + 1) for i, s in enumerate(STAGES[:k])}
    groups = {}
    for name, p in model.named_parameters():
        p.requires_grad = stage(name) in rate
        if p.requires_grad:
            groups.setdefault(stage(name), []).append(p)
    return [{"params": ps, "lr": rate[s]} for s, ps in groups.items()]


def unfreeze_by_modules(model, k, head_lr, decay):
    model.requires_grad_(False)
    stages = [[model.layer4], [model.layer3], [model.layer2], [model.layer1], [model.conv1, model.bn1]]
    groups = [{"params": list(model.fc.parameters()), "lr": head_lr}]
    model.fc.requires_grad_(True)
    for i, modules in enumerate(stages[:k], start=1):
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups.append({"params": params, "lr": head_lr * decay**-i})
    return groups


def unfreeze_substring_stem(model, k, head_lr, decay):
    def stage(name):
        if "conv1" in name or "bn1" in name:
            return "stem"
        return name.split(".")[0]

    rate = {"fc": head_lr} | {s: head_lr / decay ** (i + 1) for i, s in enumerate(STAGES[:k])}
    groups = {}
    for name, p in model.named_parameters():
        p.requires_grad = stage(name) in rate
        if p.requires_grad:
            groups.setdefault(stage(name), []).append(p)
    return [{"params": ps, "lr": rate[s]} for s, ps in groups.items()]


def unfreeze_exponent_off_by_one(model, k, head_lr, decay):
    model.requires_grad_(False)
    groups = [{"params": list(model.fc.parameters()), "lr": head_lr}]
    model.fc.requires_grad_(True)
    mods = {
        "layer4": [model.layer4],
        "layer3": [model.layer3],
        "layer2": [model.layer2],
        "layer1": [model.layer1],
        "stem": [model.conv1, model.bn1],
    }
    for i, s in enumerate(STAGES[:k]):
        params = [p for m in mods[s] for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups.append({"params": params, "lr": head_lr / decay**i})
    return groups


def unfreeze_from_the_input(model, k, head_lr, decay):
    model.requires_grad_(False)
    groups = [{"params": list(model.fc.parameters()), "lr": head_lr}]
    model.fc.requires_grad_(True)
    bottom_up = [[model.conv1, model.bn1], [model.layer1], [model.layer2], [model.layer3], [model.layer4]]
    for i, modules in enumerate(bottom_up[:k]):
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups.append({"params": params, "lr": head_lr / decay ** (5 - i)})
    return groups


def unfreeze_without_freezing_first(model, k, head_lr, decay):
    groups = [{"params": list(model.fc.parameters()), "lr": head_lr}]
    model.fc.requires_grad_(True)
    mods = {
        "layer4": [model.layer4],
        "layer3": [model.layer3],
        "layer2": [model.layer2],
        "layer1": [model.layer1],
        "stem": [model.conv1, model.bn1],
    }
    for i, s in enumerate(STAGES[:k], start=1):
        params = [p for m in mods[s] for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        groups.append({"params": params, "lr": head_lr / decay**i})
    return groups


def unfreeze_groups_with_frozen(model, k, head_lr, decay):
    unfreeze_reference(model, k, head_lr, decay)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    groups = unfreeze_reference(model, k, head_lr, decay)
    if frozen:
        groups.append({"params": frozen, "lr": 0.0})
    return groups


def unfreeze_calls_train(model, k, head_lr, decay):
    """Puts the model in train mode "to be safe": wakes the batch norms the caller froze."""
    model.train()
    return unfreeze_reference(model, k, head_lr, decay)


def unfreeze_saves_top_mode_only(model, k, head_lr, decay):
    """Restores the top module's mode after .eval(), not each submodule's own mode."""
    was = model.training
    model.eval()
    groups = unfreeze_reference(model, k, head_lr, decay)
    model.train(was)
    return groups


def unfreeze_zero_grad(model, k, head_lr, decay):
    """Clears the gradients as if starting a phase: the caller's accumulated ones are lost."""
    model.zero_grad()
    return unfreeze_reference(model, k, head_lr, decay)


def unfreeze_no_grad_left_off(model, k, head_lr, decay):
    """Switches gradients off globally "since nothing is computed" and never switches them back."""
    torch.set_grad_enabled(False)
    return unfreeze_reference(model, k, head_lr, decay)


def unfreeze_under_no_grad(model, k, head_lr, decay):
    """Right: requires_grad may be set inside torch.no_grad(), which restores the mode itself."""
    with torch.no_grad():
        return unfreeze_reference(model, k, head_lr, decay)


def unfreeze_with_generator_groups(model, k, head_lr, decay, verbose=False):
    """Right: an extra harmless keyword argument."""
    return unfreeze_reference(model, k, head_lr, decay)


def test_unfreeze_last_accepts_right_answers() -> None:
    accepted(checks.check_unfreeze_last, unfreeze_reference)
    accepted(checks.check_unfreeze_last, unfreeze_by_modules)
    accepted(checks.check_unfreeze_last, unfreeze_under_no_grad)
    accepted(checks.check_unfreeze_last, unfreeze_with_generator_groups)


def test_unfreeze_last_rejects_mistakes() -> None:
    rejected(checks.check_unfreeze_last, unfreeze_substring_stem, hint="'conv1' in name")
    rejected(checks.check_unfreeze_last, unfreeze_exponent_off_by_one, hint="off by one")
    rejected(checks.check_unfreeze_last, unfreeze_from_the_input, hint="first \\d stages from the input")
    rejected(checks.check_unfreeze_last, unfreeze_without_freezing_first, hint="freeze everything first")
    rejected(checks.check_unfreeze_last, unfreeze_groups_with_frozen, hint="frozen parameters")
    side_effects = {
        unfreeze_calls_train: "`bn1` \\(BatchNorm2d, was in eval mode\\)",
        unfreeze_saves_top_mode_only: "must stay frozen",
        unfreeze_zero_grad: "wiped the gradients",
        unfreeze_no_grad_left_off: "left gradients off globally",
    }
    for wrong, hint in side_effects.items():
        rejected(
            checks.check_unfreeze_last, wrong, hint=hint, requirement="nothing else of the model changed"
        )
