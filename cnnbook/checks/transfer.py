"""Checks for the section 14.9 exercises (transfer learning: freezing, learning rates, inputs).

The checks build small ResNet-shaped networks with torchvision's layer names (``conv1``,
``bn1``, ``layer1`` ... ``layer4`` made of blocks ``layerN.0.conv1`` ..., ``fc``), so an answer
written for torchvision's ResNet-18 works on them unchanged. Which weights a network holds does
not matter for freezing and optimiser set-up, so nothing is downloaded. Every check runs its
fixed edge cases first (a head whose width is not 512, backbone layers whose names contain
``"fc"`` or ``"conv1"``, a model that arrives with everything trainable), so a given answer
gets the same verdict on every seed; random cases add to them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from cnnbook.checks.core import (
    CNNBOOK_MODULES,
    FAMILY_NORM,
    Context,
    Family,
    call,
    checker,
    expect_int,
    expect_tensor,
    fail,
    forbidden,
    preserved_state,
)
from cnnbook.modules import batchnorm_layers, count_parameters
from cnnbook.pretrained import IMAGENET_MEAN, IMAGENET_STD, RESNET_STAGES

#: What Exercise 3 asks the student to write: every ready-made way of scaling pixels to
#: [0, 1] or normalising them with a mean and std, found by what it is (a member of
#: torchvision.transforms, v1 or v2, public or private, whatever name it is called by), not by
#: a list of its public names. Layout helpers (ToImage, to_image, PILToTensor, pil_to_tensor)
#: only move the channels and keep uint8, so they stay allowed.
PIXEL_STEPS = Family(
    name="image scaling and normalisation",
    does="scales or normalises the pixels for you",
    task="write the scaling and normalisation steps yourself",
    scope="every ready-made version of those steps (torchvision's ToTensor, ToDtype, "
    "ConvertImageDtype and Normalize in transforms v1 and v2, as classes, as functions and the "
    "helpers underneath; a pretrained model's transforms(); torchvision's FrozenBatchNorm2d; "
    "cnnbook's normalize)",
    python=(
        (
            r"torchvision\.transforms(\..+)?",
            r"(?i)^(to_?tensor|_?normali[sz]e\w*|\w*dtype\w*|ImageClassification)$",
        ),
        (r"torchvision\.ops(\..+)?", r"^FrozenBatchNorm2d$"),
        (CNNBOOK_MODULES, r"^(normali[sz]e|normalization_affine)$"),
    ),
)
HELPERS = Family(
    name="cnnbook's freezing helpers",
    does="is cnnbook's own helper for freezing and parameter groups",
    task="write the plain PyTorch yourself",
    scope="cnnbook.pretrained's freeze, unfreeze, train_only, param_groups and progressive_schedule",
    python=((CNNBOOK_MODULES, r"^(freeze|unfreeze|train_only|param_groups|progressive_schedule)$"),),
)
#: ResNet stages from the output back to the input (the stem is ``conv1`` + ``bn1``), from the
#: one stage map of torchvision-named ResNets in :mod:`cnnbook.pretrained`.
STAGES_FROM_TOP: tuple[str, ...] = tuple(reversed(RESNET_STAGES))
_STAGE_OF_MODULE = {module: stage for stage, modules in RESNET_STAGES.items() for module in modules}


# ------------------------------------------------------------------------------ test networks


class _SqueezeExcite(nn.Module):
    """Channel attention with two small linear layers named ``fc1``/``fc2`` (as in SE-ResNets)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c, max(1, c // 2))
        self.fc2 = nn.Linear(max(1, c // 2), c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class _Block(nn.Module):
    """A BasicBlock with torchvision's names (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample``)."""

    def __init__(self, cin: int, cout: int, stride: int, se: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = _SqueezeExcite(cout) if se else None
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.se is not None:
            out = self.se(out)
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(nn.Module):
    """A small ResNet with torchvision's module names and a head of ``widths[-1]`` inputs.

    Args:
        widths: Channels of ``layer1`` ... ``layer4``.
        num_classes: Outputs of ``fc``.
        se: Add a squeeze-and-excitation unit (``layerN.0.se.fc1``/``fc2``) to every block.
    """

    # set with setattr in __init__ (declared here for the type checker)
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self, widths: tuple[int, ...] = (8, 12, 16, 24), num_classes: int = 10, se: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        cin = widths[0]
        for i, w in enumerate(widths):
            setattr(self, f"layer{i + 1}", nn.Sequential(_Block(cin, w, 1 if i == 0 else 2, se)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def stage_of(name: str) -> str:
    """The ResNet stage a parameter name belongs to: ``"stem"``, ``"layer1"`` ... or ``"fc"``."""
    top = name.split(".", 1)[0]
    return _STAGE_OF_MODULE.get(top, top)


def _short_list(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ------------------------------------------------------------------------------ Exercises 1-2


@functools.cache
def _trainable_after(case: str) -> int:
    """Run one of Exercise 1's three snippets on torchvision's ResNet-18 and count."""
    from torchvision.models import resnet18

    with torch.device("meta"):  # shapes only: counting needs no memory and no initialisation
        model = resnet18(weights=None)
    if case == "a":
        for p in model.parameters():
            p.requires_grad = False
        model.fc = nn.Linear(512, 10, device="meta")
    elif case == "b":
        model.fc = nn.Linear(512, 10, device="meta")
        for p in model.parameters():
            p.requires_grad = False
    else:
        model.requires_grad = False  # an attribute, not requires_grad_()
        model.fc = nn.Linear(512, 10, device="meta")
    return count_parameters(model, trainable_only=True)


@checker(
    "what trains",
    requirement="predict, for each snippet, how many scalar parameters have requires_grad=True",
)
def check_trainable_prediction(ctx: Context, predicted: Any) -> str:
    """Check the predicted trainable-parameter counts of Exercise 1's snippets a, b and c.

    The truth is computed by running the three snippets on torchvision's ResNet-18 (random
    weights). Each known mistake gets a message that names it without giving the number.
    """
    del ctx  # nothing random: the snippets are fixed
    if not isinstance(predicted, Mapping) or set(predicted) != {"a", "b", "c"}:
        keys = sorted(predicted) if isinstance(predicted, Mapping) else type(predicted).__name__
        fail(f"predicted_trainable should be a dict with the keys 'a', 'b' and 'c', got {keys}.")
    got = {k: expect_int(predicted[k], f"predicted_trainable[{k!r}]") for k in "abc"}
    truth = {k: _trainable_after(k) for k in "abc"}
    total = truth["c"]  # nothing frozen in c
    head, old_head = 512 * 10 + 10, 512 * 1000 + 1000
    hints = {
        "a": {
            old_head: "that is the old 1000-class head; the new fc has 10 outputs.",
            512 * 10: "nn.Linear has a bias too: one per output.",
            0: "the loop freezes what exists when it runs; a layer created afterwards requires "
            "gradients by default.",
            total: "the loop did freeze the backbone before the new head arrived.",
        },
        "b": {
            head: "the loop runs after the new head is installed, so it visits the new head's "
            "parameters too.",
        },
        "c": {
            head: "look closely at `model.requires_grad = False`: is requires_grad a setting of "
            "nn.Module, or only of each parameter? (Compare with requires_grad_(False).)",
            0: "look closely at `model.requires_grad = False`: is requires_grad a setting of "
            "nn.Module, or only of each parameter? (Compare with requires_grad_(False).)",
            total + old_head - head: "the old 1000-class head is gone: the new fc has 10 outputs.",
        },
    }
    for k in "abc":
        if got[k] != truth[k]:
            hint = hints[k].get(got[k], "count again which parameters exist when the freezing line runs.")
            fail(
                f"snippet {k}: you predicted {got[k]:,} trainable parameters, which is not right: {hint}",
                hint2="list which parameters exist when the freezing line runs, and which are "
                "created after it; then add up the ones left with requires_grad=True.",
            )
    return (
        f"a trains {truth['a']:,} (only the new head), b trains nothing, c trains all "
        f"{truth['c']:,}: an attribute named requires_grad on a module freezes nothing."
    )


@checker(
    "a frozen backbone in training mode",
    requirement="predict what one training-mode forward pass changes in a fully frozen ResNet-18",
)
def check_frozen_bn_prediction(
    ctx: Context, bn_layers_changed: Any, parameters_changed: Any, eval_output_changed: Any
) -> str:
    """Check Exercise 2's three predictions against a run of the colleague's code.

    The truth comes from torchvision's ResNet-18 (random weights), frozen with
    ``requires_grad = False`` and run once in training mode under ``torch.no_grad()``.
    """
    from torchvision.models import resnet18

    n_bn = expect_int(bn_layers_changed, "bn_layers_changed")
    n_params = expect_int(parameters_changed, "parameters_changed")
    if not isinstance(eval_output_changed, (bool, np.bool_)):
        fail(
            f"eval_output_changed should be True or False, got {eval_output_changed!r} "
            f"({type(eval_output_changed).__name__})."
        )
    model = resnet18(weights=None)
    for p in model.parameters():
        p.requires_grad = False
    means = [cast(torch.Tensor, bn.running_mean) for bn in batchnorm_layers(model)]
    stats = [m.clone() for m in means]
    params = [p.clone() for p in model.parameters()]
    val = ctx.randn(2, 3, 32, 32, dtype=torch.float32)
    batch = 2 + 3 * ctx.randn(4, 3, 32, 32, dtype=torch.float32)
    with torch.no_grad():
        before = model.eval()(val)
        model.train()(batch)
        after = model.eval()(val)
    truth_bn = sum(not torch.equal(s, m) for s, m in zip(stats, means, strict=True))
    truth_params = sum(not torch.equal(a, p) for a, p in zip(params, model.parameters(), strict=True))
    truth_eval = not torch.allclose(before, after)
    if n_bn != truth_bn:
        fail(
            f"bn_layers_changed = {n_bn} is not right. requires_grad=False stops gradients, "
            "but a batch-norm layer does not learn its running statistics by gradient: in "
            "training mode, what does every forward pass do to them?"
            if n_bn < truth_bn
            else f"bn_layers_changed = {n_bn}: ResNet-18 has only {len(means)} batch-norm layers.",
            hint2="print bn.training and bn.momentum for one layer after model.train(): a layer in "
            "training mode blends each batch's mean into running_mean with that momentum.",
        )
    if n_params != truth_params:
        fail(
            f"parameters_changed = {n_params} is not right: no optimiser step runs, and "
            "running statistics are buffers, not parameters.",
            hint2="compare [n for n, _ in model.named_parameters()] with "
            "[n for n, _ in model.named_buffers()].",
        )
    if bool(eval_output_changed) != truth_eval:
        fail(
            "eval_output_changed is not right: in eval mode batch norm normalises with its "
            "running statistics. Did those change?",
            hint2="in eval mode, y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.",
        )
    return (
        f"all {truth_bn} batch-norm layers moved their running statistics, no parameter "
        "changed, and the eval-mode features changed with them."
    )


# ------------------------------------------------------------------------------ groups


def _lr_map(groups: Any, model: nn.Module, what: str) -> dict[str, float]:
    """Parameter name -> learning rate from a student's list of optimiser groups."""
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        fail(
            f"{what} should return a list of dicts like {{'params': [...], 'lr': 1e-4}}, got "
            f"{type(groups).__name__}."
        )
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, float] = {}
    for g in groups:
        if "params" not in g or "lr" not in g:
            fail(f"{what}: every group needs 'params' and 'lr' keys, got keys {sorted(g)}.")
        params = g["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        try:
            lr = float(g["lr"])
        except (TypeError, ValueError):
            fail(f"{what}: a group's 'lr' is {g['lr']!r}, not a number.")
        for p in params:
            if id(p) not in names:
                fail(f"{what}: a group holds a {type(p).__name__} that is not a parameter of the model.")
            if names[id(p)] in out:
                fail(
                    f"{what}: {names[id(p)]} appears in two groups (the optimiser would "
                    f"refuse it); put every parameter in exactly one group."
                )
            out[names[id(p)]] = lr
    return out


def _same_map(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return set(a) == set(b) and all(math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)


def _expect_lr_map(
    got: dict[str, float],
    expected: dict[str, float],
    model: nn.Module,
    what: str,
    wrong: Mapping[str, dict[str, float]],
) -> None:
    if _same_map(got, expected):
        return
    for hint, value in wrong.items():
        if _same_map(got, value):
            fail(f"{what}: {hint}")
    frozen = [n for n in got if not dict(model.named_parameters())[n].requires_grad]
    if frozen:
        fail(
            f"{what}: {len(frozen)} frozen parameters were handed to the optimiser "
            f"({_short_list(frozen)}); keep only parameters with requires_grad=True."
        )
    missing = [n for n in expected if n not in got]
    if missing:
        fail(f"{what}: {len(missing)} trainable parameters are in no group ({_short_list(missing)}).")
    extra = [n for n in got if n not in expected]
    if extra:
        fail(f"{what}: these parameters should not be in any group: {_short_list(extra)}.")
    bad = [n for n in expected if not math.isclose(got[n], expected[n], rel_tol=1e-9)]
    fail(
        f"{what}: wrong learning rate for {len(bad)} parameters, e.g. {bad[0]} has lr "
        f"{got[bad[0]]:g}, expected {expected[bad[0]]:g}."
    )


# ------------------------------------------------------------------------------ Exercise 3


def _ref_normalize(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD, dtype=torch.float64
    ).view(3, 1, 1)


NORMALIZE_REQUIREMENT = (
    "RGB uint8 (H, W, 3) -> float (3, H, W): /255, then (x - ImageNet mean) / ImageNet std per "
    "channel, written yourself (no ready-made scaling or normalising function) and without "
    "changing the image"
)


def _tolerance(got: Any) -> float:
    """Absolute tolerance for a normalised image: 1e-4, or a few steps of a half-precision dtype."""
    if isinstance(got, torch.Tensor) and got.is_floating_point():
        return max(1e-4, 16 * torch.finfo(got.dtype).eps)
    return 1e-4


@checker(
    "ImageNet preprocessing",
    requirement=NORMALIZE_REQUIREMENT,
)
def check_imagenet_normalize(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(image uint8 (H, W, 3))`` -> float (3, H, W) tensor normalised for ImageNet.

    Fixed cases: non-square images both ways (5 x 7 and 7 x 4) and a 1 x 1 image; then random
    sizes.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    sizes = [(5, 7), (7, 4), (1, 1), (ctx.randint(2, 12), ctx.randint(2, 12))]
    for h, w in sizes:
        image = (ctx.rand(h, w, 3) * 256).clamp(max=255).to(torch.uint8).numpy()
        what = f"imagenet_normalize(uint8 image of shape {image.shape})"
        given = image.copy()
        with forbidden(
            PIXEL_STEPS,
            FAMILY_NORM,
            why=PIXEL_STEPS.task,
            hint2="three steps of plain arithmetic: torch.from_numpy(image).permute(2, 0, 1).float() "
            "/ 255, then subtract the mean and divide by the std, each viewed as (3, 1, 1).",
        ):
            got = call(fn, given, describe=what)
        if not np.array_equal(given, image):
            fail(f"{what} changed the input image in place; work on a copy.")
        ref = _ref_normalize(image)
        raw = torch.from_numpy(image).permute(2, 0, 1).double()
        own = raw / 255

        def own_stats(own: torch.Tensor = own) -> torch.Tensor:
            flat = own.flatten(1)
            return (own - flat.mean(1).view(3, 1, 1)) / flat.std(1).view(3, 1, 1)

        expect_tensor(
            got,
            ref,
            what,
            wrong={
                "You skipped the division by 255: ToTensor maps pixels to [0, 1] before normalising.": (
                    raw - mean
                )
                / std,
                "You swapped mean and std.": (own - std) / mean,
                "You scaled to [0, 1] but did not normalise with the ImageNet mean and std.": own,
                "The channels are reversed (BGR): the ImageNet statistics are in RGB order.": (
                    raw.flip(0) / 255 - mean
                )
                / std,
                "You used reshape/view to go from (H, W, 3) to (3, H, W): that keeps the memory "
                "order and mixes pixels and channels; use permute(2, 0, 1).": (
                    torch.from_numpy(image.copy()).reshape(3, h, w).double() / 255 - mean
                )
                / std,
                "You normalised with the image's own mean and std; a pretrained network expects "
                "the fixed ImageNet statistics it was trained with.": own_stats,
            },
            shape_hint="Return channels first: (3, H, W), as PyTorch models expect.",
            atol=_tolerance(got),
        )
        if not got.is_floating_point():
            fail(f"{what} should be a float tensor, got {got.dtype}.")
    return "your preprocessing matches ToTensor() + Normalize(ImageNet mean, std)."


# ------------------------------------------------------------------------------ Exercise 4


def unfreeze_map(
    model: nn.Module, k: int, head_lr: float, decay: float, *, variant: str = ""
) -> dict[str, float]:
    """The reference answer to Exercise 4 as ``name -> lr``; ``variant`` reproduces a mistake.

    The head ``fc`` trains at ``head_lr``; the ``i``-th stage from the top (``layer4`` is 1,
    the stem ``conv1`` + ``bn1`` is 5) trains at ``head_lr / decay**i`` when ``i <= k``.

    Variants: ``"substring"`` (stem found with ``"conv1" in name or "bn1" in name``, tested
    before the layer names), ``"exponent"`` (``decay**(i - 1)``), ``"bottom"`` (the first
    ``k`` stages from the input instead of the last).
    """
    order = list(STAGES_FROM_TOP[::-1]) if variant == "bottom" else list(STAGES_FROM_TOP)
    rank = {s: i + 1 for i, s in enumerate(order)}
    if variant == "bottom":
        rank = {s: len(order) - i for i, s in enumerate(order)}  # lr still by depth from the top
    chosen = set(order[:k])
    out = {}
    for n, _ in model.named_parameters():
        stage = stage_of(n)
        if variant == "substring" and ("conv1" in n or "bn1" in n):
            stage = "stem"
        if stage == "fc":
            out[n] = head_lr
        elif stage in chosen:
            i = rank[stage] - (1 if variant == "exponent" else 0)
            out[n] = head_lr / decay**i
    return out


UNFREEZE_REQUIREMENT = (
    "exactly fc and the last k stages trainable, head_lr / decay**i for stage i, no frozen "
    "parameter in a group; nothing else of the model changed (modes, gradients, grad mode)"
)


@checker("progressive unfreezing", requirement=UNFREEZE_REQUIREMENT)
def check_unfreeze_last(ctx: Context, fn: Callable[..., list[dict]]) -> str:
    """Check ``fn(model, k, head_lr, decay)``: trainable head + last ``k`` stages, layer-wise rates.

    Fixed cases, each on a model left in the state of an earlier phase: k = 2 on a model whose
    parameters are all trainable, k = 0 (head only) and k = 5 (everything, stem included) on
    a fully frozen one, k = 3 with decay 2.6; then a random case.
    """
    cases = [
        (2, "all trainable", 1e-3, 10.0),
        (0, "all frozen", 1e-3, 10.0),
        (5, "all frozen", 2e-3, 10.0),
        (3, "all frozen", 1e-2, 2.6),
        (
            ctx.randint(1, 5),
            ctx.choice(["all trainable", "all frozen"]),
            10.0 ** -ctx.randint(2, 4),
            ctx.choice([2.0, 2.6, 10.0]),
        ),
    ]
    for k, state, head_lr, decay in cases:
        model = TinyResNet()
        model.requires_grad_(state == "all trainable")
        what = f"unfreeze_last(model ({state}), k={k}, head_lr={head_lr:g}, decay={decay:g})"
        with (
            forbidden(HELPERS),
            preserved_state(
                model,
                what=what,
                reveal=True,
                flags=False,
                weights=True,
                requirement=UNFREEZE_REQUIREMENT,
                hint2="touch only p.requires_grad (requires_grad_) and build the groups; no "
                "model.train()/eval(), zero_grad() or grad-mode switch.",
            ),
        ):
            got = call(fn, model, k, head_lr, decay, describe=what)
        expected = unfreeze_map(model, k, head_lr, decay)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if trainable != set(expected):
            if trainable > set(expected) and state == "all trainable":
                fail(
                    f"{what}: {len(trainable - set(expected))} parameters outside the last {k} "
                    f"stages are still trainable ({_short_list(sorted(trainable - set(expected)))}"
                    f"). The model may come from an earlier phase with more layers unfrozen: "
                    f"freeze everything first, then unfreeze the head and the last k stages."
                )
            wrong_sets = {
                "`'conv1' in name or 'bn1' in name` also matches layer1.0.conv1, layer3.0.bn1 "
                "and every block's first conv: find the stem with name.startswith(('conv1.', "
                "'bn1.')).": unfreeze_map(model, k, head_lr, decay, variant="substring"),
                f"you unfroze the first {k} stages from the input; progressive unfreezing "
                f"starts at the output (layer4 first, the stem last).": unfreeze_map(
                    model, k, head_lr, decay, variant="bottom"
                ),
            }
            for hint, value in wrong_sets.items():
                if trainable == set(value):
                    fail(f"{what}: {hint}")
            missing, extra = set(expected) - trainable, trainable - set(expected)
            fail(
                f"{what}: the trainable parameters are wrong: "
                + (f"should train but frozen: {_short_list(sorted(missing))}; " if missing else "")
                + (f"should be frozen but train: {_short_list(sorted(extra))}." if extra else "")
            )
        got_map = _lr_map(got, model, what)
        _expect_lr_map(
            got_map,
            expected,
            model,
            what,
            wrong={
                "`'conv1' in name or 'bn1' in name` also matches layer1.0.conv1, layer3.0.bn1 and "
                "every block's first conv: find the stem with "
                "name.startswith(('conv1.', 'bn1.')).": unfreeze_map(
                    model, k, head_lr, decay, variant="substring"
                ),
                "the exponent is off by one: layer4 (the first stage below the head) already "
                "trains decay times slower than the head, at head_lr / decay; stage i from the top "
                "at head_lr / decay**i.": unfreeze_map(model, k, head_lr, decay, variant="exponent"),
                f"you unfroze the first {k} stages from the input; progressive unfreezing starts "
                f"at the output (layer4 first, the stem last).": unfreeze_map(
                    model, k, head_lr, decay, variant="bottom"
                ),
            },
        )
        try:
            torch.optim.SGD(got)
        except Exception as exc:  # report the optimiser's complaint
            fail(f"{what}: torch.optim.SGD refused the groups: {type(exc).__name__}: {exc}")
    return "the head and the last k stages train, each stage decay times slower than the one above."
