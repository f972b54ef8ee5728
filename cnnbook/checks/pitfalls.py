"""Checks for the section 14.16 exercises (flatten size, frozen batch norm, class weights).

Every check runs fixed edge cases first (non-square and odd-sized inputs, batch norm inside
the feature extractor, batch-norm layers nested inside sub-modules and of several kinds, a
class absent from the labels, ...) and adds random cases, so an answer gets the same verdict
on every seed. Frozen batch norm means what :func:`cnnbook.modules.freeze_batchnorm` does:
eval mode and no gradient for the layer's scale and shift.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from cnnbook.checks.core import (
    Context,
    Family,
    call,
    checker,
    expect_equal,
    expect_module,
    expect_tensor,
    fail,
    fixed,
    forbidden,
    preserved_state,
)

_BN = nn.modules.batchnorm._BatchNorm
READY_WEIGHTS = Family(
    name="class weights",
    does="computes the class weights for you",
    task="compute the weights yourself",
    scope="every ready-made version (cnnbook's balanced_class_weights, scikit-learn's compute_class_weight)",
    python=(
        (r"cnnbook\.[\w.]+", r"^balanced_class_weights$"),
        (r"sklearn\.utils(\.[\w.]+)?", r"^compute_class_weight$"),
    ),
)


# ------------------------------------------------------------------ Exercise 1: flatten size


def _fixed_features() -> list[tuple[nn.Sequential, tuple[int, int, int], bool | str]]:
    """(features, input shape, mode) for the fixed edge cases.

    The mode is ``True`` (train), ``False`` (eval) or ``"mixed"``: train mode with its batch norm
    frozen in eval mode, as after fine-tuning with frozen statistics, so an answer that restores
    the mode of the top module only (``features.train(was_training)``) wakes it.
    """
    return fixed(0, _fixed_feature_list)


def _fixed_feature_list() -> list[tuple[nn.Sequential, tuple[int, int, int], bool | str]]:
    return [
        # non-square input, a stride-2 conv on an odd size, a pool on an odd size, batch norm
        (
            nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, (3, 5), padding=1),
                nn.ReLU(),
            ),
            (3, 37, 29),
            True,
        ),
        # the same kind of model already in eval mode: it must stay there
        (
            nn.Sequential(nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(3)),
            (1, 31, 40),
            False,
        ),
        # a single conv, square input: the output's C*H*W, not the input's
        (nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(2)), (2, 28, 28), True),
        # train mode with a frozen (eval-mode) batch norm inside: every module keeps its mode
        (
            nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.AvgPool2d(2)),
            (3, 12, 15),
            "mixed",
        ),
    ]


def _set_mode(features: nn.Module, mode: bool | str) -> None:
    features.train(mode is not False)
    if mode == "mixed":
        for m in features.modules():
            if isinstance(m, _BN):
                m.eval()


def _random_features(ctx: Context) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """A random conv/pool stack and an input shape it accepts (drawn again until it does)."""
    while True:
        c = ctx.randint(1, 3)
        layers: list[nn.Module] = []
        prev = c
        for _ in range(ctx.randint(1, 3)):
            out, k = ctx.choice([4, 8, 16]), ctx.choice([3, 5])
            layers += [
                nn.Conv2d(prev, out, k, padding=ctx.choice([0, k // 2]), stride=ctx.choice([1, 2])),
                nn.ReLU(),
            ]
            if ctx.randint(0, 1):
                layers.append(nn.BatchNorm2d(out))
            if ctx.randint(0, 1):
                layers.append(nn.MaxPool2d(2))
            prev = out
        features, shape = nn.Sequential(*layers), (c, ctx.randint(28, 40), ctx.randint(28, 40))
        try:
            with torch.no_grad():
                features.eval()(torch.zeros(1, *shape))
        except RuntimeError:  # the input became too small somewhere: draw again
            continue
        return features.train(), shape


@checker(
    "flatten size",
    requirement="an int, the C x H x W after features for any input shape, with features left exactly as "
    "it was (every layer's mode, its weights and running statistics, its gradients) and no "
    "gradient recorded",
)
def check_flatten_size(ctx: Context, fn: Callable[..., int]) -> str:
    """Check ``fn(features, input_shape (C, H, W))`` = features per sample after flattening."""
    cases: list[tuple[nn.Sequential, tuple[int, int, int], bool | str]] = _fixed_features()
    cases += [(*_random_features(ctx), True) for _ in range(2)]
    for features, shape, mode in cases:
        _set_mode(features, mode)
        what = f"flatten_size(features, input_shape={shape}) for\n{features}\n"
        state = copy.deepcopy(features.state_dict())
        modes = [m.training for m in features.modules()]
        recorded: list[bool] = []
        spy = features.register_forward_hook(
            lambda _m, _i, out, seen=recorded: seen.append(out.requires_grad)
        )
        try:
            with preserved_state(what="flatten_size"):
                got = call(fn, features, shape, describe=what)
        finally:
            spy.remove()
        if any(recorded):
            fail(
                f"{what}: your dummy pass recorded gradients (its output has a grad_fn, and autograd "
                f"kept every intermediate map for a backward pass that never comes); the exercise "
                f"says no gradients are recorded.",
                hint2="wrap the dummy pass in `with torch.no_grad():` (or torch.inference_mode()); "
                "the grad mode comes back by itself when the block ends.",
            )
        for key, value in features.state_dict().items():
            if not torch.equal(value, state[key]):
                fail(
                    f"{what}: your dummy pass changed {key}: a forward pass in train mode updates "
                    f"batch-norm running statistics. Run it in eval mode (and put the model "
                    f"back in the mode it had afterwards)."
                )
        if [m.training for m in features.modules()] != modes:
            if mode == "mixed":
                fail(
                    f"{what}: the model was in train mode with its batch norm frozen in eval mode, "
                    f"and your code woke the batch norm: model.train() sets EVERY sub-module. "
                    f"Remember each module's mode ({{m: m.training for m in model.modules()}}) and "
                    f"restore them one by one."
                )
            fail(
                f"{what}: the model's train/eval mode changed (it was in "
                f"{'train' if mode else 'eval'} mode); remember it before model.eval() and "
                f"restore it afterwards."
            )
        with torch.no_grad():
            out = features.eval()(torch.zeros(1, *shape))
        _set_mode(features, mode)
        if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Integral):
            shown = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
            fail(
                f"{what}: the flatten size is a count of features and nn.Linear needs an int; got "
                f"{shown!r} ({type(got).__name__}). Convert with int(...) (e.g. out[0].numel())."
            )
        c, h, w = shape
        expect_equal(
            got,
            out[0].numel(),
            what,
            wrong={
                "That includes the batch dimension: count the features of ONE sample "
                "(out.shape[1:]), which is what nn.Linear sees per row.": 2 * out[0].numel(),
                "That is the channel count only; flattening multiplies channels by height "
                "and width.": out.shape[1],
                "That is height x width only; multiply by the number of output channels too.": out.shape[2]
                * out.shape[3],
                "That is the size of the INPUT (C * H * W); the convolutions and poolings change it: "
                "run the dummy input through `features` and count its output.": c * h * w,
            },
            hint="Run a dummy batch through the features and multiply the output's C * H * W.",
        )
    return "a dummy pass gives the flatten size for any input, and the model is left as it was."


# ------------------------------------------------------------------ Exercise 2: frozen batch norm


class _Block(nn.Module):
    """Nested batch norm of several kinds: a BatchNorm2d used twice (one shared instance), one
    without affine parameters, a SyncBatchNorm and a BatchNorm3d (on a one-frame "video")."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.inner = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, affine=False), nn.ReLU())
        self.sync = nn.SyncBatchNorm(4)
        self.video = nn.BatchNorm3d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner(torch.relu(self.bn(self.conv(x)))) + x
        h = self.video(self.sync(self.bn(h)).unsqueeze(2)).squeeze(2)  # self.bn a second time
        return h


def _bn_model() -> nn.Sequential:
    """Batch norm at the top level, nested two levels deep (one without affine parameters, one
    shared instance used twice, a SyncBatchNorm and a BatchNorm3d) and a BatchNorm1d in the
    head; dropout and an already frozen conv to watch the other layers."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        _Block(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 6),
        nn.BatchNorm1d(6),
        nn.Linear(6, 3),
    )
    model[0].requires_grad_(False)  # frozen before: it must stay frozen, the rest trainable
    return model.train()


FREEZE_REQUIREMENT = (
    "every batch-norm layer of every kind and depth in eval mode with requires_grad=False on its "
    "weight and bias, every other layer as it was"
)


@checker("frozen batch norm", requirement=FREEZE_REQUIREMENT)
def check_freeze_batchnorm(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(model)`` freezes every batch-norm layer (eval mode, no grads), nothing else."""
    model = fixed(ctx.randint(0, 10_000), _bn_model)  # the caller's global RNG is left alone
    with torch.no_grad():  # running statistics as a pretrained model has them, not the defaults
        for m in model.modules():
            if isinstance(m, _BN):
                cast(torch.Tensor, m.running_mean).copy_(ctx.randn(m.num_features) * 0.5)
                cast(torch.Tensor, m.running_var).copy_(ctx.rand(m.num_features) + 0.5)
    before = copy.deepcopy(model.state_dict())
    requires = {name: p.requires_grad for name, p in model.named_parameters()}
    # The caller's gradients, grad mode, weights and running statistics must survive; the
    # answer may change requires_grad, modes and (a pre-hook that keeps them frozen) hooks.
    with preserved_state(
        model,
        what="freeze_batchnorm",
        reveal=True,
        flags=False,
        modes=False,
        hooks=False,
        weights=True,
        requirement=FREEZE_REQUIREMENT,
        hint2="freezing is two settings per batch-norm layer, module.eval() and requires_grad=False on "
        "its parameters; no forward pass, no reset_running_stats(), no zero_grad().",
    ):
        got = call(fn, model, describe="a train-mode model with batch-norm layers at several depths")
    if got is None:
        fail("freeze_batchnorm returned None: change the model in place and `return model`.")
    got = expect_module(got, "freeze_batchnorm(model)")
    if got is not model:
        fail("freeze_batchnorm should change the model in place and return it (not a copy).")
    bns = {name: m for name, m in model.named_modules() if isinstance(m, _BN)}
    awake = [name for name, m in bns.items() if m.training]
    if awake:
        top = [name for name in bns if "." not in name]
        if all(name not in top for name in awake) and any(isinstance(bns[n], nn.BatchNorm2d) for n in awake):
            fail(
                f"the nested batch-norm layers {awake} are still in training mode: "
                f"`model.children()` lists only the top level; walk `model.modules()`, which "
                f"reaches layers inside sub-modules too.",
                hint2="for m in model.modules(): if isinstance(m, nn.modules.batchnorm._BatchNorm): "
                "m.eval(), then switch off requires_grad on m.parameters().",
            )
        if all(not isinstance(bns[n], nn.BatchNorm2d) for n in awake):
            kinds = sorted({type(bns[n]).__name__ for n in awake})
            fail(
                f"{awake} ({', '.join(kinds)}) still in training mode: freeze every kind of batch "
                f"norm (BatchNorm1d, 2d, 3d and SyncBatchNorm all derive from "
                f"`nn.modules.batchnorm._BatchNorm`), not only BatchNorm2d.",
                hint2="test isinstance(m, nn.modules.batchnorm._BatchNorm) instead of "
                "isinstance(m, nn.BatchNorm2d); SyncBatchNorm derives from the same base class.",
            )
        fail(
            f"the batch-norm layers {awake} are still in training mode: call .eval() on every "
            f"batch-norm layer so it uses (and stops updating) its running statistics."
        )
    if not model.training or not model[3].training:
        fail(
            "you put the whole model in eval mode (dropout too); only the batch-norm layers "
            "should be frozen, the rest keeps training."
        )
    if any(
        m.training is False
        for name, m in model.named_modules()
        if not isinstance(m, _BN) and not any(name.startswith(b + ".") for b in bns)
    ):
        fail("a layer that is not batch norm was put in eval mode; freeze only the batch-norm layers.")
    still = [f"{name}.{pn}" for name, m in bns.items() for pn, p in m.named_parameters() if p.requires_grad]
    if still:
        fail(
            f"batch-norm weight and bias still require gradients ({', '.join(still[:3])}); "
            f"set requires_grad = False on them too, so the optimiser does not move gamma and "
            f"beta."
        )
    bn_params = {f"{name}.{pn}" for name, m in bns.items() for pn, _ in m.named_parameters()}
    changed = [
        name
        for name, p in model.named_parameters()
        if name not in bn_params and p.requires_grad != requires[name]
    ]
    if changed:
        fail(
            f"`requires_grad` changed on layers that are not batch norm ({', '.join(changed[:3])});"
            f" leave every other layer as it was."
        )
    x = ctx.randn(4, 3, 9, 7, dtype=torch.float32) * 3 + 2
    model(x)
    for key, value in model.state_dict().items():
        if ("running" in key or "num_batches" in key) and not torch.equal(value, before[key]):
            fail(f"a training-mode forward pass changed {key}; the batch-norm layers must stay in eval mode.")
    return (
        "every batch-norm layer, nested ones too, is frozen (running statistics and affine "
        "parameters) while the rest trains."
    )


# ------------------------------------------------------------------ Exercise 3: class weights


def _weight_cases(ctx: Context) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(3)
    cases = [
        (torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2, 2]), 4),  # the last class is absent
        (torch.tensor([3, 0, 3, 3, 0, 1, 3, 3, 1, 3, 3, 0])[torch.randperm(12, generator=g)], 5),
        # class 2 absent in the middle, class 4 absent at the end, labels unsorted
        (torch.tensor([1, 0, 1, 1, 0, 1]), 2),  # two classes, all present
    ]
    for _ in range(2):
        k = ctx.randint(2, 6)
        probs = ctx.rand(k) ** 3 + 0.02
        labels = torch.multinomial(
            probs / probs.sum(), ctx.randint(50, 300), replacement=True, generator=ctx.gen
        )
        labels[:k] = torch.arange(k)  # every class occurs at least once
        cases.append((labels, k))
    return cases


@checker(
    "balanced class weights",
    requirement="weight N / (K * count) for each of the K = num_classes classes, 0 for a class with no "
    "sample",
)
def check_class_weights(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(labels (N,), num_classes)`` = N / (K * count_c), 0 for absent classes."""
    for labels, k in _weight_cases(ctx):
        what = f"class_weights(labels={labels.tolist() if len(labels) <= 12 else '...'}, num_classes={k})"
        before = labels.clone()
        with forbidden(READY_WEIGHTS):
            got = call(fn, labels, k, describe=what)
        if not torch.equal(labels, before):
            fail(f"{what} changed the labels it was given.")
        counts = torch.bincount(labels, minlength=k).double()
        n = len(labels)
        present = counts > 0
        ref = torch.where(present, n / (k * counts.clamp(min=1)), torch.zeros_like(counts))
        k_present = int(present.sum())
        wrong = {
            "Those are the class frequencies; weights must be LARGER for rare classes: use "
            "N / (K * count).": counts / n,
            "The inverse counts 1 / count have the right shape but the wrong scale; multiply by "
            "N / K so a balanced dataset gets weight 1 for every class.": torch.where(
                present, 1 / counts.clamp(min=1), torch.zeros_like(counts)
            ),
            "You normalised the weights to sum to 1; the convention is N / (K * count), which "
            "averages to about 1 per sample.": ref / ref.sum(),
            "K is `num_classes`, not the number of classes that occur in the labels.": torch.where(
                present, n / (k_present * counts.clamp(min=1)), torch.zeros_like(counts)
            ),
        }
        if not bool(present.all()):
            wrong[
                "A class with no sample got an infinite (or NaN) weight: give it weight 0 (it "
                "has no loss terms to weight)."
            ] = n / (k * counts)
            last = int(labels.max()) + 1
            if last < k:
                wrong[
                    f"`torch.bincount` without `minlength=num_classes` stops at the largest "
                    f"label ({last - 1}), so the classes above it are missing."
                ] = n / (k * torch.bincount(labels).double())
        t = got if not isinstance(got, torch.Tensor) else got.detach()
        if (
            isinstance(t, torch.Tensor)
            and t.shape != ref.shape
            and not bool(present.all())
            and t.numel() == int(labels.max()) + 1
        ):
            fail(
                f"{what}: expected shape {tuple(ref.shape)}, got {tuple(t.shape)}: "
                f"`torch.bincount` without `minlength=num_classes` stops at the largest label "
                f"({int(labels.max())}), so the classes above it are missing."
            )
        if (
            isinstance(t, torch.Tensor)
            and t.shape == ref.shape
            and not torch.isfinite(t).all()
            and not bool(present.all())
        ):
            fail(
                f"{what}: a class with no sample got weight {t[~present].tolist()}; give it "
                f"weight 0 (it has no loss terms to weight; inf or NaN would break sums and "
                f"plots)."
            )
        expect_tensor(
            got, ref, what, wrong=wrong, shape_hint="One weight per class: shape (num_classes,).", atol=1e-6
        )
        if isinstance(got, torch.Tensor) and not got.is_floating_point():
            fail(f"{what} has dtype {got.dtype}; nn.CrossEntropyLoss(weight=...) needs a float tensor.")
    return "your weights match N / (K * count), sklearn's 'balanced', with 0 for absent classes."
