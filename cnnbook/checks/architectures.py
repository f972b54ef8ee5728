"""Checks for the section 14.6 exercises (landmark architectures: VGG blocks, ResNet blocks)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    CheckFailed,
    Context,
    call,
    checker,
    count_by_hand,
    expect_equal,
    expect_int,
    expect_module,
    expect_option,
    expect_same_module,
    expect_tensor,
    fail,
    forbidden,
    modules_of,
    preserved_state,
    randomise_bn,
)
from cnnbook.modules import count_parameters

VGG_WIDTHS = (64, 128, 256, 512, 512)

COUNT_BY_HAND = count_by_hand((r"cnnbook\.checks\.architectures", r"^vgg_param_counts$"))
"""Building any layer, cnnbook's counting helpers and this module's reference count."""


def _vgg_block(c_in: int, c_out: int, n: int, variant: str = "") -> nn.Sequential:
    """The reference VGG block, or one known mistake (``variant``) with the same parameters."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(
            nn.Conv2d(
                c_in if i == 0 else c_out,
                c_out,
                3,
                padding=1,
                stride=2 if variant == "strided_last_conv" and i == n - 1 else 1,
            )
        )
        if variant != "one_relu" or i == n - 1:
            layers.append(nn.ReLU())
    pool = {"avg_pool": [nn.AvgPool2d(2, 2)], "strided_last_conv": []}.get(variant, [nn.MaxPool2d(2, 2)])
    return nn.Sequential(*layers, *pool)


_reference_vgg_block = _vgg_block

VGG_MISTAKES = {
    "avg_pool": "The block averages where VGG takes the maximum: end with nn.MaxPool2d(2, 2).",
    "one_relu": "Only the last conv is followed by a ReLU; VGG puts one after EVERY conv "
    "(a reused nn.ReLU() module is fine).",
    "strided_last_conv": "The last conv has stride 2 instead of a stride-1 conv followed by "
    "nn.MaxPool2d(2, 2).",
}


@checker(
    "VGG block",
    requirement="num_convs x (3x3 Conv2d, padding 1, with bias -> ReLU), then MaxPool2d(2, 2); only "
    "the first conv takes in_channels",
)
def check_vgg_block(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(in_channels, out_channels, num_convs)`` builds a VGG block.

    Fixed cases always run (one conv, equal and different channel counts, non-square inputs
    with odd sides); the student's weights are copied into the reference and outputs and input
    gradients compared in train and eval mode.
    """
    cases = [(3, 8, 2, (7, 10)), (4, 4, 1, (6, 6)), (2, 5, 3, (9, 4))]
    cases += [
        (ctx.randint(1, 6), ctx.randint(2, 8), ctx.randint(1, 3), (ctx.randint(2, 9), ctx.randint(2, 9)))
        for _ in range(1)
    ]
    for c_in, c_out, n, (h, w) in cases:
        what = f"make_vgg_block({c_in}, {c_out}, {n})"
        block = expect_module(call(fn, c_in, c_out, n, describe=what), what)
        convs = modules_of(block, nn.Conv2d)
        if len(convs) != n:
            fail(f"{what} has {len(convs)} conv layers; expected num_convs = {n}.")
        chans = [(c.in_channels, c.out_channels) for c in convs]
        expected = [(c_in if i == 0 else c_out, c_out) for i in range(n)]
        if chans != expected:
            fail(
                f"{what}: conv channels are {chans}, expected {expected}. Only the FIRST conv "
                f"takes in_channels; the rest go from out_channels to out_channels."
            )
        if any(c.kernel_size != (3, 3) for c in convs):
            fail(f"{what}: VGG uses 3x3 kernels, got {[c.kernel_size for c in convs]}.")
        ref = _vgg_block(c_in, c_out, n)
        if count_parameters(block) != count_parameters(ref):
            fail(
                f"{what} has {count_parameters(block):,} parameters, expected {count_parameters(ref):,}: "
                f"only 3x3 convs (with bias), ReLUs and one max pool."
            )
        x = ctx.randn(2, c_in, h, w)
        ref_shape = (2, c_out, h // 2, w // 2)
        try:
            expect_same_module(
                block,
                ref,
                [x],
                what,
                wrong={
                    hint: functools.partial(_vgg_block, c_in, c_out, n, variant)
                    for variant, hint in VGG_MISTAKES.items()
                },
            )
        except CheckFailed as exc:
            if "expected shape" in str(exc):
                fail(
                    f"{exc} The convs keep the size (3x3, padding 1) and the 2x2 pool halves it "
                    f"(rounding down): an input of {h}x{w} gives {ref_shape}."
                )
            raise
    return "your VGG blocks compute the same outputs and gradients as the reference."


def vgg_param_counts(convs_per_block: Sequence[int], num_classes: int) -> tuple[int, int]:
    """(feature params, classifier params) of a 224px VGG with the given block depths."""
    feats, prev = 0, 3
    for n, width in zip(convs_per_block, VGG_WIDTHS, strict=True):
        for _ in range(n):
            feats += 9 * prev * width + width
            prev = width
    clf = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * num_classes + num_classes)
    return feats, clf


@checker(
    "VGG parameter count",
    requirement="(conv params, classifier params) as two ints counted from the shapes, biases "
    "included, without building any layer or model",
)
def check_vgg_params(ctx: Context, fn: Callable[..., tuple[int, int]], classifier_share: Any = None) -> str:
    """Check ``fn(convs_per_block, num_classes)`` -> (features, classifier) parameter counts.

    Then, if given, the student's prediction ``classifier_share`` (one of the letters of
    :data:`SHARE_OPTIONS`) of VGG-16's share of parameters in its three fully connected layers.
    """
    cases: list[tuple[tuple[int, ...], int]] = [((2, 2, 3, 3, 3), 1000), ((1, 1, 2, 2, 2), 1000)]
    cases += [(tuple(ctx.randint(1, 4) for _ in range(5)), ctx.randint(2, 200)) for _ in range(5)]
    for cfg, classes in cases:
        what = f"vgg_params({cfg}, num_classes={classes})"
        with forbidden(
            *COUNT_BY_HAND,
            why="count the parameters from the layer shapes yourself",
            hint2="no layer is needed: a 3x3 conv from c_in to c_out holds 3 * 3 * c_in * c_out "
            "weights plus c_out biases, a Linear(a, b) a * b + b; add these numbers up.",
        ):
            got = call(fn, cfg, classes, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (feature_params, classifier_params), got {got!r}.")
        got = (expect_int(got[0], f"{what}[0] (features)"), expect_int(got[1], f"{what}[1] (classifier)"))
        feats, clf = vgg_param_counts(cfg, classes)
        nb_feats = feats - sum(n * w for n, w in zip(cfg, VGG_WIDTHS, strict=True))
        first_in = feats - 9 * 3 * 64 + 9 * 64 * 64
        expect_equal(
            got[0],
            feats,
            f"{what}[0] (conv layers)",
            wrong={
                "You left out the conv biases (one per filter).": nb_feats,
                "The first conv takes the 3 RGB channels, not 64.": first_in,
            },
            hint="Each 3x3 conv from c_in to c_out has 9*c_in*c_out + c_out parameters; the "
            "first conv of a block takes the previous block's width.",
        )
        expect_equal(
            got[1],
            clf,
            f"{what}[1] (classifier)",
            wrong={
                "You left out the Linear biases.": clf - 4096 - 4096 - classes,
                "The first FC layer sees the flattened 512 x 7 x 7 = 25,088 features, not 512.": clf
                - 512 * 48 * 4096,
            },
            hint="Classifier: 25,088 -> 4096 -> 4096 -> num_classes, each Linear with bias.",
        )
    if classifier_share is None:
        return "right: VGG-16 has 14.7M conv parameters and 123.6M in the classifier (138.4M total)."
    return _check_share_prediction(classifier_share)


SHARE_OPTIONS = {"a": "about 10%", "b": "about 35%", "c": "about 60%", "d": "about 90%"}
SHARE_REQUIREMENT = (
    "classifier_share: the letter (a, b, c or d) of the share of VGG-16's parameters in its three "
    "fully connected layers, as your count gives it"
)


def _check_share_prediction(classifier_share: Any) -> str:
    conv, fc = vgg_param_counts((2, 2, 3, 3, 3), 1000)
    share = fc / (conv + fc)
    first_fc = 512 * 7 * 7 * 4096
    letter = expect_option(classifier_share, "classifier_share", SHARE_OPTIONS)
    if letter != "d":
        fail(
            f"your prediction was ({letter}), {SHARE_OPTIONS[letter]}, but your own count gives "
            f"{share:.0%}: {fc:,} of {conv + fc:,} parameters sit in the three fully connected "
            f"layers. Thirteen convolutions are a lot of layers, yet each 3x3 filter is shared "
            f"by every position of its map; the first fully connected layer connects every one "
            f"of the 512 x 7 x 7 = 25,088 flattened features to every one of 4,096 units.",
            requirement=SHARE_REQUIREMENT,
            hint2=f"that one layer holds 25,088 x 4,096 = {first_fc:,} weights, "
            f"{first_fc / conv:.0f} times all the convolutions together ({conv:,}).",
        )
    return (
        f"the counts are right, and so was your prediction: {share:.0%} of VGG-16's parameters "
        f"({fc / 1e6:.1f}M of {(conv + fc) / 1e6:.1f}M) sit in the classifier, "
        f"{first_fc / 1e6:.1f}M in its first layer alone."
    )


def _vgg16_gap_params(classes: int = 1000) -> int:
    conv, _ = vgg_param_counts((2, 2, 3, 3, 3), classes)
    return conv + (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * classes + classes)


@checker(
    "VGG-16 with global average pooling",
    requirement="params_gap: VGG-16's total parameter count (an int, 13 convs and 3 fully connected "
    "layers, biases included) when the first fully connected layer sees the 512 channel averages",
)
def check_vgg_gap(ctx: Context, params_gap: Any) -> str:
    """Check the total parameters of VGG-16 whose first FC layer follows global average pooling."""
    want = _vgg16_gap_params()
    conv, fc = vgg_param_counts((2, 2, 3, 3, 3), 1000)
    got = expect_int(params_gap, "params_gap")
    try:
        expect_equal(
            got,
            want,
            "params_gap",
            wrong={
                "That is VGG-16 as it is: the averaging itself has no parameters, but it changes "
                "what the first fully connected layer sees (512 inputs, not 25,088).": conv + fc,
                "That counts only the convolutions: the three fully connected layers are still there, "
                "the first one with 512 inputs.": conv,
                "That counts only the three fully connected layers; params_gap is the whole "
                "network, the 13 convolutions included.": want - conv,
                "The first fully connected layer is not removed: it stays, with 512 inputs instead "
                "of 25,088.": conv + fc - (512 * 7 * 7 * 4096 + 4096),
                "You left out a bias: the first fully connected layer keeps its 4,096 biases.": want - 4096,
                "The average is over the 7 x 7 positions, one number per channel: 512 inputs, not "
                "512 x 7 = 3,584.": want + 512 * 6 * 4096,
            },
            hint="Only the first fully connected layer changes: Linear(512, 4096) instead of "
            "Linear(25088, 4096); everything else is what your vgg_params counts.",
        )
    except CheckFailed as exc:
        raise CheckFailed(
            str(exc),
            hint2="the 13 convolutions are vgg_params((2, 2, 3, 3, 3))[0]; add the three Linear "
            "layers 512 -> 4096 -> 4096 -> 1000, each with a * b weights and b biases.",
        ) from None
    return (
        f"{want:,} parameters, {(conv + fc) / want:.1f}x fewer than VGG-16's {conv + fc:,}, "
        "with every convolution unchanged: the size came from flattening the map."
    )


class _RefBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor, variant: str = "") -> torch.Tensor:
        if variant == "stride_on_conv2":
            out = torch.relu(self.bn1(F.conv2d(x, self.conv1.weight, padding=1)))
            out = self.bn2(F.conv2d(out, self.conv2.weight, stride=self.stride, padding=1))
        else:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
        return _finish(out, self.shortcut(x), variant)


class _RefBottleneck(nn.Module):
    """The original (v1) bottleneck: the stride sits on the first 1x1 convolution."""

    expansion = 4

    def __init__(self, c_in: int, mid: int, stride: int = 1) -> None:
        super().__init__()
        c_out = 4 * mid
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, mid, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor, variant: str = "") -> torch.Tensor:
        s3 = self.stride if variant == "stride_on_3x3" else 1
        s1 = 1 if variant == "stride_on_3x3" else self.stride
        out = torch.relu(self.bn1(F.conv2d(x, self.conv1.weight, stride=s1)))
        out = torch.relu(self.bn2(F.conv2d(out, self.conv2.weight, stride=s3, padding=1)))
        out = self.bn3(self.conv3(out))
        return _finish(out, self.shortcut(x), variant)


def _finish(out: torch.Tensor, shortcut: torch.Tensor, variant: str) -> torch.Tensor:
    """``ReLU(out + shortcut)``, or a known mistake in how the two branches are joined."""
    if variant == "relu_before_add":
        return torch.relu(out) + shortcut
    if variant == "no_skip":
        return torch.relu(out)
    out = out + shortcut
    return out if variant == "no_final_relu" else torch.relu(out)


_JOIN_MISTAKES = {
    "relu_before_add": "The ReLU must come AFTER the addition: y = ReLU(F(x) + shortcut(x)).",
    "no_final_relu": "You forgot the final ReLU after the addition.",
    "no_skip": "The skip connection is missing: add shortcut(x) to the residual branch.",
}


def _expect_own_layers(block: nn.Module, what: str) -> None:
    """Fail when one layer instance sits at two places of the block (e.g. ``bn2 = bn1``)."""
    names: dict[int, list[str]] = {}
    for name, module in block.named_modules(remove_duplicate=False):
        if name and any(True for _ in module.parameters(recurse=False)):
            names.setdefault(id(module), []).append(name)
    shared = [n for n in names.values() if len(n) > 1]
    if shared:
        kind = type(block.get_submodule(shared[0][0])).__name__
        fail(
            f"{what}: {' and '.join(shared[0])} are the same {kind} instance, so they share one "
            "set of weights (and, for batch norm, one set of running statistics). Each layer of "
            "the block needs its own instance: create a new module for each place.",
            hint2="nn.BatchNorm2d(c) written twice gives two layers; assigning one object to two "
            "attributes gives one layer used twice.",
        )


def _check_residual(
    ctx: Context,
    block: nn.Module,
    ref: _RefBasicBlock | _RefBottleneck,
    what: str,
    names: str,
    mistakes: dict[str, str],
    sizes: Sequence[tuple[int, int]],
) -> None:
    """Load ``ref``'s (randomised) weights into ``block`` by name; compare outputs in both modes."""
    try:
        block.load_state_dict(ref.state_dict())
    except RuntimeError as exc:
        fail(
            f"{what}: its parameters could not be matched to the exercise's names ({names}): "
            f"{str(exc).splitlines()[0]}"
        )
    randomise_bn(ref, ctx.gen)
    state = {k: v.clone() for k, v in ref.state_dict().items()}

    def run_ref(x: torch.Tensor, variant: str = "") -> torch.Tensor:
        ref.load_state_dict(state)  # train mode updates running statistics: start afresh
        return ref(x, variant)

    for h, w in sizes:
        x = ctx.randn(4, ref.conv1.in_channels, h, w, dtype=torch.float32)
        for mode in ("eval", "train"):
            block.load_state_dict(state)
            block.train(mode == "train")
            ref.train(mode == "train")
            with torch.no_grad():
                try:
                    got = call(block, x.clone(), describe=f"x {tuple(x.shape)} in {mode} mode")
                except CheckFailed as exc:
                    fail(f"{exc} -- the two branches must have the same shape before the addition.")
                expected = run_ref(x)
                wrong = {hint: functools.partial(run_ref, x, variant) for variant, hint in mistakes.items()}
            expect_tensor(
                got,
                expected,
                f"{what}(x of shape {tuple(x.shape)}) in {mode} mode",
                wrong=wrong,
                atol=1e-4,
                rtol=1e-4,
                shape_hint=f"Expected (N, out_channels, ceil(H/stride), ceil(W/stride)) "
                f"= {tuple(expected.shape)}.",
            )


def _shortcut_hints(
    block: nn.Module, ref: nn.Module, what: str, c_out: int, needs_projection: bool, c_in: int
) -> None:
    extra = count_parameters(block) - count_parameters(ref)
    proj = c_in * c_out + 2 * c_out
    if extra == 0:
        return
    if needs_projection and extra == -proj:
        fail(
            f"{what} has no projection shortcut. When the stride is not 1 or the channel "
            f"count changes, x cannot be added to F(x) as is: use a 1x1 conv with that "
            f"stride (no bias) followed by BatchNorm2d."
        )
    if (
        needs_projection
        and extra == -2 * c_out
        and not modules_of(getattr(block, "shortcut", nn.Identity()), nn.BatchNorm2d)
    ):
        fail(f"{what}: the projection shortcut has no BatchNorm2d after its 1x1 conv.")
    if not needs_projection and extra == proj:
        fail(
            f"{what} has a projection shortcut although shapes already match; use the "
            f"identity (an empty nn.Sequential()) there."
        )
    fail(
        f"{what} has {count_parameters(block):,} parameters, expected {count_parameters(ref):,} "
        f"(convs without bias, one BatchNorm2d after each"
        f"{', and a 1x1 conv + BatchNorm2d shortcut' if needs_projection else ''})."
    )


@checker(
    "ResNet basic block",
    requirement="ReLU(bn2(conv2(ReLU(bn1(conv1(x))))) + shortcut(x)), stride on conv1, projection "
    "shortcut only when shapes differ, each layer its own instance",
)
def check_basic_block(ctx: Context, cls: Callable[..., nn.Module]) -> str:
    """Check ``cls(in_channels, out_channels, stride)`` is the chapter's residual BasicBlock.

    Identity and projection shortcuts, stride 1 and 2, non-square inputs with odd sides; weights
    and randomised batch-norm statistics are loaded by name; train and eval mode.
    """
    for c_in, c_out, stride in [(8, 8, 1), (8, 16, 2), (4, 4, 2), (6, 10, 1)]:
        what = f"BasicBlock({c_in}, {c_out}, stride={stride})"
        block = expect_module(call(cls, c_in, c_out, stride, describe=what), what)
        _expect_own_layers(block, what)
        ref = _RefBasicBlock(c_in, c_out, stride)
        _shortcut_hints(block, ref, what, c_out, stride != 1 or c_in != c_out, c_in)
        mistakes = dict(_JOIN_MISTAKES)
        if stride != 1:
            mistakes["stride_on_conv2"] = "The stride belongs on conv1 (the first 3x3 conv), not on conv2."
        _check_residual(
            ctx,
            block,
            ref,
            what,
            "conv1, bn1, conv2, bn2, shortcut",
            mistakes,
            [(7, 10), (2 * ctx.randint(2, 4), 2 * ctx.randint(2, 4) + 1)],
        )
    return "your BasicBlock matches the chapter's (identity and projection shortcuts, train and eval)."


@checker(
    "ResNet bottleneck block (v1)",
    requirement="1x1 (block's stride) -> 3x3 -> 1x1 to 4 * mid, BN after each, ReLU(F(x) + "
    "shortcut(x)), each layer its own instance",
)
def check_bottleneck_block(ctx: Context, cls: Callable[..., nn.Module]) -> str:
    """Check ``cls(in_channels, mid_channels, stride)`` is the original (v1) Bottleneck.

    ``conv1`` 1x1 with the block's stride, ``conv2`` 3x3, ``conv3`` 1x1 to ``4 * mid``; fixed
    cases cover identity and projection shortcuts (by channels and by stride) and odd sides.
    """
    for c_in, mid, stride in [(16, 4, 1), (8, 4, 1), (16, 4, 2), (6, 2, 2)]:
        what = f"Bottleneck({c_in}, {mid}, stride={stride})"
        block = expect_module(call(cls, c_in, mid, stride, describe=what), what)
        _expect_own_layers(block, what)
        ref = _RefBottleneck(c_in, mid, stride)
        c_out = 4 * mid
        convs = modules_of(block, nn.Conv2d)
        if (
            convs
            and max(c.out_channels for c in convs) not in (c_out,)
            and count_parameters(block) != count_parameters(ref)
        ):
            fail(
                f"{what}: the block should output 4 * mid_channels = {c_out} channels (expansion "
                f"4); its convs output {[c.out_channels for c in convs]}."
            )
        _shortcut_hints(block, ref, what, c_out, stride != 1 or c_in != c_out, c_in)
        mistakes = dict(_JOIN_MISTAKES)
        if stride != 1:
            mistakes["stride_on_3x3"] = (
                "That is the v1.5 block (stride on the 3x3 conv, as in torchvision and the "
                "notebook); this exercise asks for the original v1 block, stride on conv1 (1x1)."
            )
        _check_residual(
            ctx,
            block,
            ref,
            what,
            "conv1, bn1, conv2, bn2, conv3, bn3, shortcut",
            mistakes,
            [(7, 10), (2 * ctx.randint(2, 4), 2 * ctx.randint(2, 4) + 1)],
        )
    return "your v1 Bottleneck matches the reference (both shortcuts, stride on the first 1x1 conv)."


@checker(
    "silenced residual block",
    requirement="bn2's weight and bias zeroed in place, the same block returned, nothing else "
    "changed (bn1, modes, requires_grad, grad mode)",
)
def check_silence(ctx: Context, fn: Callable[..., nn.Module], block_cls: Callable[..., nn.Module]) -> str:
    """Check ``fn(block)`` zeroes ``bn2`` in place so the residual branch outputs 0."""
    for c_in, c_out, stride, train in [(6, 6, 1, True), (4, 8, 2, False)]:
        block = expect_module(call(block_cls, c_in, c_out, stride), "BasicBlock")
        block.train(train)
        randomise_bn(block, ctx.gen)
        x = ctx.rand(3, c_in, 8, 7, dtype=torch.float32)
        bn1 = getattr(block, "bn1", None)
        bn1_before = [t.clone() for t in bn1.parameters()] if isinstance(bn1, nn.Module) else []
        with preserved_state(block, what="silence"):
            got = call(fn, block, describe=f"BasicBlock({c_in}, {c_out}, stride={stride})")
        if got is not block:
            fail("silence should modify the block in place and return that same block.")
        bn2 = getattr(block, "bn2", None)
        if not isinstance(bn2, nn.BatchNorm2d):
            fail("the block has no bn2 BatchNorm2d; name the layers as in the chapter.")
        if (
            isinstance(bn1, nn.Module)
            and bn1_before
            and any(not torch.equal(a, b) for a, b in zip(bn1_before, bn1.parameters(), strict=True))
        ):
            fail(
                "silence changed bn1; the branch ends with bn2, so zero bn2's weight and bias "
                "and leave bn1 alone."
            )
        if bn2.weight.abs().max() > 0 or bn2.bias.abs().max() > 0:
            fail(
                "bn2.weight and bn2.bias must both be zero; with only the weight zeroed the "
                "branch still adds the shift beta."
            )
        block.eval()
        with torch.no_grad():
            shortcut = getattr(block, "shortcut", nn.Identity())(x)
            expect_tensor(block(x), torch.relu(shortcut), "the silenced block's output", atol=1e-6)
    return "a silenced block outputs ReLU(shortcut(x)): the identity on non-negative inputs."
