"""Wrong-answer corpus for the 14.9 exercises (transfer learning)."""

from __future__ import annotations

import numpy as np
import pytest
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


def norm_transforms_v2(image):
    """The v2 pipeline, imported inside the body (so the first run already imports it)."""
    from torchvision.transforms import v2

    pipeline = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(checks.IMAGENET_MEAN, checks.IMAGENET_STD),
        ]
    )
    return pipeline(image)


def norm_v2_functional(image):
    """Layout by hand, then v2's functional normalize on a plain tensor."""
    from torchvision.transforms.v2 import functional as F2

    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return F2.normalize(x, list(checks.IMAGENET_MEAN), list(checks.IMAGENET_STD))


def norm_v2_kernel(image):
    """v2's image kernel, called directly."""
    import torchvision.transforms.v2.functional as F2

    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return F2.normalize_image(x, mean=list(checks.IMAGENET_MEAN), std=list(checks.IMAGENET_STD))


def norm_to_tensor_then_by_hand(image):
    """to_tensor does the scaling; only the normalisation is written out."""
    import torchvision.transforms.functional as TF

    return (TF.to_tensor(image) - MEAN) / STD


def norm_pil_route(image):
    """Through PIL: pil_to_tensor (allowed) and convert_image_dtype (the scaling, not allowed)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    x = TF.convert_image_dtype(TF.pil_to_tensor(Image.fromarray(image)), torch.float32)
    return (x - MEAN) / STD


def norm_private_helper(image):
    """The private tensor helper underneath transforms.functional.normalize."""
    from torchvision.transforms import _functional_tensor as FT

    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return FT.normalize(x, list(checks.IMAGENET_MEAN), list(checks.IMAGENET_STD))


def norm_to_dtype_scale(image):
    """v2's to_dtype with scale=True does the division by 255."""
    from torchvision.transforms.v2 import functional as F2

    x = F2.to_dtype(F2.to_image(image), torch.float32, scale=True)
    return (x - MEAN) / STD


def norm_weights_preset(image):
    """The pretrained weights' own preprocessing, resized to the image's size."""
    from torchvision.models import ResNet18_Weights

    h, w = image.shape[:2]
    preset = ResNet18_Weights.DEFAULT.transforms(crop_size=(h, w), resize_size=(h, w))
    return preset(torch.from_numpy(image).permute(2, 0, 1))


def norm_batch_norm(image):
    """F.batch_norm with the ImageNet statistics as running statistics and eps=0."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return torch.nn.functional.batch_norm(x[None], MEAN.flatten(), STD.flatten() ** 2, eps=0.0)[0]


def norm_cnnbook_helper(image):
    from cnnbook.normalization import normalize

    return normalize(torch.from_numpy(image).permute(2, 0, 1), checks.IMAGENET_MEAN, checks.IMAGENET_STD)


def norm_catches_the_error(image):
    """Tries Normalize first and falls back to the hand-written version when it is refused."""
    import torchvision.transforms.functional as TF

    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    try:
        return TF.normalize(x, checks.IMAGENET_MEAN, checks.IMAGENET_STD)
    except Exception:
        return (x - MEAN) / STD


def norm_v2_layout_only(image):
    """Right: v2's to_image only moves the channels (uint8 stays uint8); the steps are by hand."""
    from torchvision.transforms.v2 import functional as F2

    x = F2.to_image(image).float() / 255
    return (x - MEAN) / STD


def norm_v2_to_image_transform(image):
    """Right: the v2.ToImage transform and pil_to_tensor are layout only."""
    from torchvision.transforms import v2

    x = torch.as_tensor(v2.ToImage()(image), dtype=torch.float64) / 255
    return (x - MEAN.double()) / STD.double()


def norm_through_pil(image):
    """Right: PIL only holds the pixels; the arithmetic is NumPy's."""
    from PIL import Image

    x = np.asarray(Image.fromarray(image).convert("RGB"), dtype=np.float32) / 255
    x = (x - np.array(checks.IMAGENET_MEAN, dtype=np.float32)) / np.array(
        checks.IMAGENET_STD, dtype=np.float32
    )
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def norm_half_precision(image):
    """Right: float16 is a float dtype; its rounding is far below any mistake."""
    x = torch.from_numpy(image).permute(2, 0, 1).half() / 255
    return (x - MEAN.half()) / STD.half()


def norm_float64_in_place_safe(image):
    """Right: float64, in-place operations on its own new tensor only."""
    x = torch.tensor(image, dtype=torch.float64).permute(2, 0, 1).contiguous()
    x.div_(255).sub_(MEAN.double()).div_(STD.double())
    return x


def test_imagenet_normalize_accepts_right_answers() -> None:
    for right in (
        norm_reference,
        norm_numpy_first,
        norm_v2_layout_only,
        norm_v2_to_image_transform,
        norm_through_pil,
        norm_half_precision,
        norm_float64_in_place_safe,
    ):
        accepted(checks.check_imagenet_normalize, right)


def test_imagenet_normalize_rejects_mistakes() -> None:
    rejected(checks.check_imagenet_normalize, norm_no_division, hint="division by 255")
    rejected(checks.check_imagenet_normalize, norm_swapped, hint="swapped mean and std")
    rejected(checks.check_imagenet_normalize, norm_reshape, hint="permute")
    rejected(checks.check_imagenet_normalize, norm_own_statistics, hint="image's own mean")
    rejected(checks.check_imagenet_normalize, norm_bgr, hint="BGR")
    rejected(checks.check_imagenet_normalize, norm_channels_last, hint="channels first")


@pytest.mark.parametrize(
    ("wrong", "reached"),
    [
        (norm_with_torchvision, "transforms.transforms.Normalize"),
        (norm_transforms_v2, "v2._misc.ToDtype"),
        (norm_v2_functional, "v2.functional._misc.normalize"),
        (norm_v2_kernel, "normalize_image"),
        (norm_to_tensor_then_by_hand, "transforms.functional.to_tensor"),
        (norm_pil_route, "convert_image_dtype"),
        (norm_private_helper, "_functional_tensor.normalize"),
        (norm_to_dtype_scale, "to_dtype"),
        (norm_weights_preset, "ImageClassification"),
        (norm_batch_norm, "batch_norm"),
        (norm_cnnbook_helper, "cnnbook.normalization.normalize"),
        (norm_catches_the_error, "transforms.functional.normalize"),
    ],
)
def test_imagenet_normalize_rejects_ready_made_steps(wrong, reached: str) -> None:
    rejected(
        checks.check_imagenet_normalize,
        wrong,
        hint=f"calls `[^`]*{reached}[^`]*`.*scaling and normalisation steps yourself.*off limits",
        requirement="written yourself",
    )


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


def unfreeze_resets_head(model, k, head_lr, decay):
    """Re-initialises the head "for the new phase": the weights the caller trained are lost."""
    model.fc.reset_parameters()
    return unfreeze_reference(model, k, head_lr, decay)


def unfreeze_with_cnnbook_helpers(model, k, head_lr, decay):
    """cnnbook's own freeze/unfreeze, imported inside the body."""
    from cnnbook.pretrained import freeze, unfreeze

    freeze(model)
    stages = {"stem": ["conv1", "bn1"]} | {s: [s] for s in STAGES[:4]}
    unfreeze(model, ["fc"] + [n for s in STAGES[:k] for n in stages[s]])
    groups = [{"params": list(model.fc.parameters()), "lr": head_lr}]
    for i, s in enumerate(STAGES[:k], start=1):
        params = [p for n in stages[s] for p in getattr(model, n).parameters()]
        groups.append({"params": params, "lr": head_lr / decay**i})
    return groups


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
    rejected(
        checks.check_unfreeze_last,
        unfreeze_with_cnnbook_helpers,
        hint="calls `cnnbook.pretrained.freeze`.*write the plain PyTorch yourself",
    )
    side_effects = {
        unfreeze_calls_train: "put `bn1` \\(BatchNorm2d\\).* in train mode although it was in eval mode",
        unfreeze_saves_top_mode_only: "must stay frozen",
        unfreeze_zero_grad: "wiped the gradients",
        unfreeze_no_grad_left_off: "left off globally",
        unfreeze_resets_head: "changed the model's weights or buffers \\(`fc.weight`",
    }
    for wrong, hint in side_effects.items():
        rejected(
            checks.check_unfreeze_last, wrong, hint=hint, requirement="nothing else of the model changed"
        )
