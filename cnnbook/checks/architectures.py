"""Checks for the section 14.6 exercises (landmark architectures: VGG blocks, ResNet blocks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cnnbook.checks.core import (
    CheckFailed,
    Context,
    call,
    checker,
    count_params,
    expect_equal,
    expect_module,
    expect_tensor,
    fail,
    forbid,
    modules_of,
)

VGG_WIDTHS = (64, 128, 256, 512, 512)


def _reference_vgg_block(c_in: int, c_out: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2, 2))


@checker("VGG block")
def check_vgg_block(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(in_channels, out_channels, num_convs)`` builds a VGG block."""
    for c_in, c_out, n in [(3, 64, 2), (64, 128, 2), *[(ctx.randint(1, 8), ctx.randint(2, 12),
                                                         ctx.randint(1, 4)) for _ in range(4)]]:
        what = f"make_vgg_block({c_in}, {c_out}, {n})"
        block = expect_module(call(fn, c_in, c_out, n, describe=what), what)
        convs = modules_of(block, nn.Conv2d)
        if len(convs) != n:
            fail(f"{what} has {len(convs)} conv layers; expected num_convs = {n}.")
        chans = [(c.in_channels, c.out_channels) for c in convs]
        expected = [(c_in if i == 0 else c_out, c_out) for i in range(n)]
        if chans != expected:
            fail(f"{what}: conv channels are {chans}, expected {expected}. Only the FIRST conv "
                 f"takes in_channels; the rest go from out_channels to out_channels.")
        if any(c.kernel_size != (3, 3) or c.padding != (1, 1) for c in convs):
            fail(f"{what}: VGG uses 3x3 kernels with padding 1 (size-preserving), got "
                 f"{[(c.kernel_size, c.padding) for c in convs]}.")
        if len(modules_of(block, nn.ReLU)) != n:
            fail(f"{what}: found {len(modules_of(block, nn.ReLU))} ReLUs; put one after every conv.")
        if not modules_of(block, nn.MaxPool2d):
            fail(f"{what}: the block should end with a 2x2 max pool (stride 2).")
        ref = _reference_vgg_block(c_in, c_out, n)
        if count_params(block) != count_params(ref):
            fail(f"{what} has {count_params(block):,} parameters, expected {count_params(ref):,}: "
                 f"only 3x3 convs (with bias), ReLUs and one max pool.")
        size = 2 * ctx.randint(2, 6)
        x = ctx.randn(2, c_in, size, size, dtype=torch.float32)
        ref.load_state_dict({k2: v for (k2, _), v in zip(ref.state_dict().items(),
                                                          block.state_dict().values(), strict=True)})
        with torch.no_grad():
            expect_tensor(call(block, x, describe=f"x {tuple(x.shape)}"), ref(x), f"{what}(x)",
                          shape_hint="Convs keep the size, the pool halves it: (N, out, H/2, W/2).")
    return "your VGG blocks have the right layers and match the reference output."


def vgg_param_counts(convs_per_block: Sequence[int], num_classes: int) -> tuple[int, int]:
    """(feature params, classifier params) of a 224px VGG with the given block depths."""
    feats, prev = 0, 3
    for n, width in zip(convs_per_block, VGG_WIDTHS, strict=True):
        for _ in range(n):
            feats += 9 * prev * width + width
            prev = width
    clf = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * num_classes + num_classes)
    return feats, clf


@checker("VGG parameter count")
def check_vgg_params(ctx: Context, fn: Callable[..., tuple[int, int]]) -> str:
    """Check ``fn(convs_per_block, num_classes)`` -> (features, classifier) parameter counts."""
    cases = [((2, 2, 3, 3, 3), 1000), ((1, 1, 2, 2, 2), 1000)]
    cases += [(tuple(ctx.randint(1, 4) for _ in range(5)), ctx.randint(2, 200)) for _ in range(5)]
    by_hand = "count from the shapes; building the model would do it for you."
    for cfg, classes in cases:
        what = f"vgg_params({cfg}, num_classes={classes})"
        with forbid(fn, {"torch.nn.Conv2d": by_hand, "torch.nn.Linear": by_hand,
                         "torchvision.models.vgg16": by_hand, "cnnbook.models.VGG": by_hand}):
            got = call(fn, cfg, classes, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (feature_params, classifier_params), got {got!r}.")
        feats, clf = vgg_param_counts(cfg, classes)
        nb_feats = feats - sum(n * w for n, w in zip(cfg, VGG_WIDTHS, strict=True))
        first_in = feats - 9 * 3 * 64 + 9 * 64 * 64
        expect_equal(got[0], feats, f"{what}[0] (conv layers)", wrong={
            "You left out the conv biases (one per filter).": nb_feats,
            "The first conv takes the 3 RGB channels, not 64.": first_in,
        }, hint="Each 3x3 conv from c_in to c_out has 9*c_in*c_out + c_out parameters; the "
                "first conv of a block takes the previous block's width.")
        expect_equal(got[1], clf, f"{what}[1] (classifier)", wrong={
            "You left out the Linear biases.": clf - 4096 - 4096 - classes,
            "The first FC layer sees the flattened 512 x 7 x 7 = 25,088 features, not 512.":
                clf - 512 * 48 * 4096,
        }, hint="Classifier: 25,088 -> 4096 -> 4096 -> num_classes, each Linear with bias.")
    return "right: VGG-16 has 14.7M conv parameters and 123.6M in the classifier (138.4M total)."


class _RefBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor, variant: str = "") -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if variant == "relu_before_add":
            return torch.relu(out) + self.shortcut(x)
        if variant == "no_skip":
            return torch.relu(out)
        out = out + self.shortcut(x)
        return out if variant == "no_final_relu" else torch.relu(out)


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


@checker("ResNet basic block")
def check_basic_block(ctx: Context, cls: Callable[..., nn.Module]) -> str:
    """Check ``cls(in_channels, out_channels, stride)`` is the chapter's residual BasicBlock."""
    for c_in, c_out, stride in [(8, 8, 1), (8, 16, 2), (4, 4, 2), (6, 10, 1)]:
        what = f"BasicBlock({c_in}, {c_out}, stride={stride})"
        block = expect_module(call(cls, c_in, c_out, stride, describe=what), what)
        ref = _RefBasicBlock(c_in, c_out, stride)
        needs_projection = stride != 1 or c_in != c_out
        if count_params(block) != count_params(ref):
            extra = count_params(block) - count_params(ref)
            proj = c_in * c_out + 2 * c_out
            if needs_projection and extra == -proj:
                fail(f"{what} has no projection shortcut. When the stride is not 1 or the channel "
                     f"count changes, x cannot be added to F(x) as is: use a 1x1 conv with that "
                     f"stride (no bias) followed by BatchNorm2d.")
            if not needs_projection and extra == proj:
                fail(f"{what} has a projection shortcut although shapes already match; use the "
                     f"identity (an empty nn.Sequential()) there.")
            fail(f"{what} has {count_params(block):,} parameters, expected {count_params(ref):,} "
                 f"(two 3x3 convs without bias, two BatchNorm2d"
                 f"{', and a 1x1 conv + BatchNorm2d shortcut' if needs_projection else ''}).")
        try:
            block.load_state_dict(ref.state_dict())
        except RuntimeError as exc:
            fail(f"{what}: its parameters could not be matched to the chapter's names (conv1, bn1, "
                 f"conv2, bn2, shortcut): {str(exc).splitlines()[0]}")
        _randomise_bn(ref, ctx.gen)
        block.load_state_dict(ref.state_dict())
        size = 2 * ctx.randint(3, 6)
        x = ctx.randn(4, c_in, size, size, dtype=torch.float32)
        for mode in ("eval", "train"):
            block.train(mode == "train")
            ref.train(mode == "train")
            with torch.no_grad():
                try:
                    got = call(block, x.clone(), describe=f"x {tuple(x.shape)} in {mode} mode")
                except CheckFailed as exc:
                    fail(f"{exc} -- the two branches must have the same shape before the addition.")
                expected = ref(x)
                wrong = {
                    "The ReLU must come AFTER the addition: y = ReLU(F(x) + shortcut(x)).":
                        ref(x, "relu_before_add"),
                    "You forgot the final ReLU after the addition.": ref(x, "no_final_relu"),
                    "The skip connection is missing: add shortcut(x) to the residual branch.":
                        ref(x, "no_skip"),
                }
            expect_tensor(got, expected, f"{what}(x) in {mode} mode", wrong=wrong,
                          shape_hint=f"Expected (N, out_channels, H/stride, W/stride) = "
                                     f"{tuple(expected.shape)}.", atol=1e-4, rtol=1e-4)
    return "your BasicBlock matches the chapter's (identity and projection shortcuts, train and eval)."


@checker("silenced residual block")
def check_silence(ctx: Context, fn: Callable[..., nn.Module],
                  block_cls: Callable[..., nn.Module]) -> str:
    """Check ``fn(block)`` zeroes ``bn2`` in place so the residual branch outputs 0."""
    for c_in, c_out, stride in [(6, 6, 1), (4, 8, 2)]:
        block = expect_module(call(block_cls, c_in, c_out, stride), "BasicBlock")
        x = ctx.rand(3, c_in, 8, 8, dtype=torch.float32)
        got = call(fn, block, describe=f"BasicBlock({c_in}, {c_out}, stride={stride})")
        if got is not block:
            fail("silence should modify the block in place and return that same block.")
        bn2 = getattr(block, "bn2", None)
        if not isinstance(bn2, nn.BatchNorm2d):
            fail("the block has no bn2 BatchNorm2d; name the layers as in the chapter.")
        if bn2.weight.abs().max() > 0 or bn2.bias.abs().max() > 0:
            fail("bn2.weight and bn2.bias must both be zero; with only the weight zeroed the "
                 "branch still adds the shift beta.")
        if bn2.weight.requires_grad is False:
            fail("keep bn2 trainable (zero the values, do not freeze them).")
        block.eval()
        with torch.no_grad():
            shortcut = getattr(block, "shortcut", nn.Identity())(x)
            expect_tensor(block(x), torch.relu(shortcut), "the silenced block's output",
                          atol=1e-6)
    return "a silenced block outputs ReLU(shortcut(x)): the identity on non-negative inputs."
