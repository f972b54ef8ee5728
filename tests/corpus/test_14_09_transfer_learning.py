"""Wrong-answer corpus for the 14.9 exercises (transfer learning)."""

from __future__ import annotations

import numpy as np
import torch
from corpus_tools import accepted, rejected
from torch import nn

from cnnbook.checks import transfer as checks

# ---------------------------------------------------------------- Exercise 1: feature extractor


def fe_reference(model, num_classes):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fe_requires_grad_(model, num_classes):
    model.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fe_freeze_all_but_fc_after(model, num_classes):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("fc.")
    return model


def fe_freeze_after_replacing(model, num_classes):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    for p in model.parameters():
        p.requires_grad = False
    return model


def fe_no_freeze(model, num_classes):
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fe_module_attribute(model, num_classes):
    model.requires_grad = False  # sets an attribute on the module; no parameter changes
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fe_hard_coded_512(model, num_classes):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(512, num_classes)
    return model


def fe_conv_layers_only(model, num_classes):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def fe_no_bias(model, num_classes):
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes, bias=False)
    return model


def fe_top_level_children_only(model, num_classes):
    for child in model.children():
        for p in child.parameters(recurse=False):
            p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def test_feature_extractor_accepts_right_answers() -> None:
    accepted(checks.check_feature_extractor, fe_reference)
    accepted(checks.check_feature_extractor, fe_requires_grad_)
    accepted(checks.check_feature_extractor, fe_freeze_all_but_fc_after)


def test_feature_extractor_rejects_mistakes() -> None:
    rejected(checks.check_feature_extractor, fe_freeze_after_replacing, hint="freeze first")
    rejected(checks.check_feature_extractor, fe_no_freeze, hint="every backbone parameter is still")
    rejected(checks.check_feature_extractor, fe_module_attribute, hint="only\\s+sets an attribute")
    rejected(checks.check_feature_extractor, fe_hard_coded_512, hint="hard-coding 512")
    rejected(checks.check_feature_extractor, fe_conv_layers_only, hint="batch-norm weights")
    rejected(checks.check_feature_extractor, fe_no_bias, hint="no bias")
    rejected(checks.check_feature_extractor, fe_top_level_children_only, hint="nested layers included")


# ---------------------------------------------------------------- Exercise 2: parameter groups


def pg_reference(model, backbone_lr, head_lr):
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc.")]
    return [{"params": backbone, "lr": backbone_lr}, {"params": list(model.fc.parameters()), "lr": head_lr}]


def pg_by_identity(model, backbone_lr, head_lr):
    head = {id(p) for p in model.fc.parameters()}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    return [{"params": model.fc.parameters(), "lr": head_lr}, {"params": body, "lr": backbone_lr}]


def pg_chapter_substring(model, backbone_lr, head_lr):
    pretrained = [p for n, p in model.named_parameters() if p.requires_grad and "fc" not in n]
    new = [p for n, p in model.named_parameters() if p.requires_grad and "fc" in n]
    return [{"params": pretrained, "lr": backbone_lr}, {"params": new, "lr": head_lr}]


def pg_frozen_included(model, backbone_lr, head_lr):
    body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    return [{"params": body, "lr": backbone_lr}, {"params": list(model.fc.parameters()), "lr": head_lr}]


def pg_head_twice(model, backbone_lr, head_lr):
    body = [p for p in model.parameters() if p.requires_grad]
    return [{"params": body, "lr": backbone_lr}, {"params": list(model.fc.parameters()), "lr": head_lr}]


def pg_swapped(model, backbone_lr, head_lr):
    return pg_reference(model, head_lr, backbone_lr)


def pg_parameters_not_groups(model, backbone_lr, head_lr):
    return model.parameters()


def test_param_groups_accepts_right_answers() -> None:
    accepted(checks.check_param_groups, pg_reference)
    accepted(checks.check_param_groups, pg_by_identity)


def test_param_groups_rejects_mistakes() -> None:
    rejected(checks.check_param_groups, pg_chapter_substring, hint="'fc' in name")
    rejected(checks.check_param_groups, pg_frozen_included, hint="frozen parameters")
    rejected(checks.check_param_groups, pg_head_twice, hint="two groups")
    rejected(checks.check_param_groups, pg_swapped, hint="swapped")
    rejected(checks.check_param_groups, pg_parameters_not_groups, hint="list of dicts")


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


def test_unfreeze_last_accepts_right_answers() -> None:
    accepted(checks.check_unfreeze_last, unfreeze_reference)
    accepted(checks.check_unfreeze_last, unfreeze_by_modules)


def test_unfreeze_last_rejects_mistakes() -> None:
    rejected(checks.check_unfreeze_last, unfreeze_substring_stem, hint="'conv1' in name")
    rejected(checks.check_unfreeze_last, unfreeze_exponent_off_by_one, hint="off by one")
    rejected(checks.check_unfreeze_last, unfreeze_from_the_input, hint="first \\d stages from the input")
    rejected(checks.check_unfreeze_last, unfreeze_without_freezing_first, hint="freeze everything first")
    rejected(checks.check_unfreeze_last, unfreeze_groups_with_frozen, hint="frozen parameters")
