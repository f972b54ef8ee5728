"""Checks for the section 14.5 exercises (building a basic CNN).

The checks that run the student's network (``build_cnn``'s model, ``FixedCNN``) also run one
forward pass from a revealing state (:func:`cnnbook.checks.core.preserved_state` with
``reveal=True``): a forward pass must leave the caller's train/eval modes, accumulated
gradients and weights as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cnnbook import models
from cnnbook.checks.core import (
    CheckFailed,
    Context,
    call,
    checker,
    deeper_hint,
    expect_equal,
    expect_int,
    expect_module,
    expect_same_module,
    expect_tensor,
    fail,
    modules_of,
    preserved_state,
)
from cnnbook.modules import count_parameters
from cnnbook.summary import macs_by_module

# The chapter's SimpleCNN without dropout: the reference the checks compare against.
SimpleCNN = functools.partial(models.SimpleCNN, dropout=0.0)


# the question of exercise 1: SimpleCNN at twice the image side
PREDICT_SIZE = 64


def _simple_cnn_figures(image_size: int) -> tuple[int, int]:
    """(parameters, conv1 + conv2 MACs for one image) of the chapter's SimpleCNN."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = models.SimpleCNN(10, 3, image_size)
    macs = macs_by_module(model, (1, 3, image_size, image_size))
    return count_parameters(model), macs["conv1"] + macs["conv2"]


@checker(
    "SimpleCNN at 64x64: predictions",
    requirement="params_64: the number of parameters of SimpleCNN(image_size=64), and conv_macs_64: "
    "the multiply-accumulates of conv1 + conv2 for one 64x64 image, both whole numbers (ints)",
)
def check_size_predictions(ctx: Context, params_64: Any, conv_macs_64: Any) -> str:
    """Check the predicted parameter count and conv MACs of SimpleCNN on 64x64 images."""
    params_32, macs_32 = _simple_cnn_figures(32)
    params, macs = _simple_cnn_figures(PREDICT_SIZE)
    conv_params = 3 * 3 * 3 * 32 + 32 + 3 * 3 * 32 * 64 + 64
    fc1_32 = 64 * 8 * 8 * 256 + 256
    with deeper_hint(
        "write the four layers' counts side by side for 32x32 and 64x64: conv1 and conv2 are "
        "unchanged; after two 2x2 pools a 64x64 image is 16x16, so fc1 has 64 * 16 * 16 inputs."
    ):
        expect_equal(
            expect_int(params_64, "params_64"),
            params,
            "params_64 (parameters of SimpleCNN for 64x64 images)",
            wrong={
                "the parameters are not independent of the image size: fc1 sees the flattened "
                "64 x (size/4) x (size/4) map, which grows with the image.": params_32,
                "fc1's inputs grow with the AREA of the final map (16x16 instead of 8x8: 4x), not "
                "with its side (2x).": params_32 - fc1_32 + 2 * (fc1_32 - 256) + 256,
                "the convolutions keep their parameters whatever the image size (the same 3x3 "
                "filters slide over more positions); only fc1 grows.": params + 3 * conv_params,
                "you left out the biases (one per conv filter and per Linear unit).": params
                - (32 + 64 + 256 + 10),
            },
            hint="Add up conv1 + conv2 + fc1 + fc2 (weights and biases), with fc1 fed by 64 x 16 x 16 "
            "features.",
        )
    with deeper_hint(
        "conv1's output is 64x64 and conv2's is 32x32 (after one pool); the MACs of a conv are "
        "(kH * kW * C_in) * C_out * H_out * W_out: add the two layers."
    ):
        expect_equal(
            expect_int(conv_macs_64, "conv_macs_64"),
            macs,
            "conv_macs_64 (conv1 + conv2 multiply-accumulates for one 64x64 image)",
            wrong={
                "a convolution applies every weight once per OUTPUT PIXEL: 4x the pixels, 4x the "
                "MACs, although its parameters stay the same.": macs_32,
                "the number of pixels grows with the area: doubling the side gives 4x, not 2x.": 2 * macs_32,
                "you counted the convolutions' parameters, not their multiply-accumulates "
                "(weights x output pixels).": conv_params,
            },
            hint=f"Count weights x output pixels for conv1 (64x64) and conv2 (32x32); the 32x32 "
            f"network's figure is {macs_32:,}.",
        )
    return (
        f"{params:,} parameters (only fc1 grew, 4x) and {macs:,} conv MACs (4x): parameters follow "
        "the layer shapes, compute follows the pixels."
    )


def _cnn(c_in: int, classes: int, size: int, widths: Sequence[int], variant: str = "") -> nn.Sequential:
    """The reference CNN of exercise 2, or one known mistake (``variant``) with the same weights."""
    layers: list[nn.Module] = []
    prev = c_in
    for i, w in enumerate(widths):
        stride = 2 if variant == "strided_conv" else 1
        conv = nn.Conv2d(prev, w, 3, stride=stride, padding=1)
        relu = (
            []
            if variant in ("relu_on_logits", "no_relu") or (variant == "first_relu_only" and i > 0)
            else [nn.ReLU()]
        )
        pool = {"strided_conv": [], "avg_pool": [nn.AvgPool2d(2)]}.get(variant, [nn.MaxPool2d(2)])
        layers += [*pool, conv, *relu] if variant == "pool_first" else [conv, *relu, *pool]
        prev = w
    side = size // 2 ** len(widths)
    tail: list[nn.Module] = [nn.ReLU()] if variant == "relu_on_logits" else []
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * side * side, classes), *tail)


_reference_cnn = _cnn

CNN_MISTAKES = {
    "avg_pool": "Your network averages where it should take the maximum: use nn.MaxPool2d(2), "
    "not nn.AvgPool2d.",
    "first_relu_only": "Only the first conv is followed by a ReLU; every block needs its own "
    "ReLU after its conv.",
    "strided_conv": "You downsample with a stride-2 convolution instead of a stride-1 conv "
    "followed by nn.MaxPool2d(2).",
    "relu_on_logits": "The ReLU sits on the logits instead of after each conv: the convs are "
    "then one linear map, and logits must be allowed to be negative.",
    "no_relu": "There is no ReLU at all: without a nonlinearity after every conv the convs "
    "collapse into one linear map.",
    "pool_first": "Each block pools before it convolves; the order is conv -> ReLU -> pool.",
}


def _param_shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.parameters()]


_FORWARD_RULE = (
    "a forward pass leaves the caller's state alone: the train/eval mode of every layer, the "
    "gradients accumulated on the weights, and the weights themselves"
)
_FORWARD_HINT2 = (
    "forward should only compute: no self.train()/self.eval(), no zero_grad(), no backward(), no "
    "in-place change of a weight; switching modes is the caller's job (model.train() before "
    "training, model.eval() before evaluating)."
)


def _forward_leaves_state(model: nn.Module, x: torch.Tensor, what: str) -> None:
    """Run ``model(x)`` from a revealing state: modes mixed, gradients accumulated, grad mode on."""
    with (
        deeper_hint(_FORWARD_HINT2),
        preserved_state(model, what=f"{what}'s forward pass", reveal=True, weights=True),
    ):
        call(model, x, describe=f"an input of shape {tuple(x.shape)}")


@checker(
    "build_cnn",
    requirement="one block per entry of widths: a 3x3 Conv2d from the previous width that keeps the "
    "size (with a bias) -> ReLU -> MaxPool2d(2); then Flatten and a single Linear to num_classes, "
    "sized from image_size; " + _FORWARD_RULE,
)
def check_build_cnn(ctx: Context, fn: Callable[..., nn.Module]) -> str:
    """Check ``fn(in_channels, num_classes, image_size, widths)`` builds the described CNN.

    Fixed cases (one to three blocks, one input channel, final sides 7, 3 and 1) always run;
    random ones add to them. The student's weights are copied into the reference, and both are
    compared by outputs and input gradients on batches of 3. One more forward pass runs from a
    revealing state (:func:`_forward_leaves_state`).
    """
    cases = [(3, 10, 16, [8, 16]), (1, 10, 28, [4, 6]), (2, 5, 24, [4, 6, 8]), (3, 4, 2, [5])]
    for _ in range(1):
        n = ctx.randint(1, 3)
        cases.append(
            (
                ctx.randint(1, 3),
                ctx.randint(2, 12),
                2**n * ctx.randint(1, 5),
                [ctx.choice([3, 4, 8]) for _ in range(n)],
            )
        )
    for c_in, classes, size, widths in cases:
        what = f"build_cnn(in_channels={c_in}, num_classes={classes}, image_size={size}, widths={widths})"
        with preserved_state(what="build_cnn"):
            model = expect_module(call(fn, c_in, classes, size, list(widths), describe=what), what)
        with deeper_hint(
            "print(model) and model(torch.zeros(1, in_channels, image_size, image_size)).shape for "
            "this case: each conv keeps the side (padding=1), each pool halves it, so the Linear "
            "sees widths[-1] * (image_size // 2**len(widths))**2 features."
        ):
            _structure(model, what, c_in, classes, size, widths)
        # side effects first: a forward that changes a weight in place would break the backward
        # pass of the behaviour comparison below
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        _forward_leaves_state(model, ctx.randn(2, c_in, size, size).to(dtype), what)
        inputs = [ctx.randn(3, c_in, size, size)]
        wrong = {
            hint: functools.partial(_cnn, c_in, classes, size, widths, variant)
            for variant, hint in CNN_MISTAKES.items()
        }
        try:
            with deeper_hint(
                "build the layers in the order they run (conv, ReLU, pool per block) and compare "
                "print(model) with the description line by line: the kind of pool, where the ReLUs "
                "sit, and nothing after the Linear."
            ):
                expect_same_module(model, _cnn(c_in, classes, size, widths), inputs, what, wrong=wrong)
        except CheckFailed as exc:
            if "wrong values" in str(exc) and not any(h in str(exc) for h in CNN_MISTAKES.values()):
                fail(
                    f"{exc} Each block is Conv2d(3x3, padding 1) -> ReLU -> MaxPool2d(2), then "
                    f"Flatten and one Linear.",
                    hint2=exc.hint2,
                )
            raise
    return (
        "build_cnn computes the same outputs and gradients as conv -> ReLU -> max-pool blocks for every "
        "case, and its forward pass leaves the caller's modes, gradients and weights alone."
    )


def _structure(
    model: nn.Module, what: str, c_in: int, classes: int, size: int, widths: Sequence[int]
) -> None:
    """Fail with a plain message when the layers' kinds or sizes are not the described ones."""
    convs = modules_of(model, nn.Conv2d)
    linears = modules_of(model, nn.Linear)
    if [c.out_channels for c in convs] != list(widths):
        fail(
            f"{what}: the conv layers have {[c.out_channels for c in convs]} output "
            f"channels; expected one conv per entry of widths: {list(widths)}."
        )
    if [c.in_channels for c in convs] != [c_in, *widths[:-1]]:
        fail(
            f"{what}: the convs take {[c.in_channels for c in convs]} input channels; the "
            f"first takes in_channels, each later one the previous width: "
            f"{[c_in, *widths[:-1]]}."
        )
    if any(c.kernel_size != (3, 3) for c in convs):
        fail(f"{what}: every conv should be 3x3; got {[c.kernel_size for c in convs]}.")
    if len(linears) != 1:
        fail(f"{what}: expected exactly one nn.Linear (to num_classes), found {len(linears)}.")
    side = size // 2 ** len(widths)
    if linears[0].in_features != widths[-1] * side * side:
        fail(
            f"{what}: the Linear layer expects {linears[0].in_features} features, but after "
            f"{len(widths)} 2x2 pools a {size}x{size} input becomes {widths[-1]} x {side} x "
            f"{side} = {widths[-1] * side * side} features."
        )
    ref = _cnn(c_in, classes, size, widths)
    if _param_shapes(model) != _param_shapes(ref):
        fail(
            f"{what}: parameter shapes {_param_shapes(model)}, expected {_param_shapes(ref)} "
            f"(each conv with a bias, created in the order the layers run)."
        )


@checker(
    "fixed CNN",
    requirement="FixedCNN is SimpleCNN without dropout: the same layer names and sizes (conv1, conv2, "
    "pool, fc1 with 64 * 8 * 8 inputs, fc2), raw logits for any batch size; " + _FORWARD_RULE,
)
def check_fixed_cnn(ctx: Context, cls: Callable[..., nn.Module]) -> str:
    """Check the debugged ``cls(num_classes)`` behaves exactly like ``SimpleCNN`` (no dropout)."""
    model = expect_module(call(cls, 10, describe="num_classes=10"), "FixedCNN(10)")
    ref = SimpleCNN(10)
    try:
        model.load_state_dict(ref.state_dict(), strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
        fc1 = getattr(model, "fc1", None)
        if isinstance(fc1, nn.Linear) and fc1.in_features == 64 * 7 * 7:
            fail(
                "fc1 was resized to 64*7*7 inputs to fit the unpadded conv2; the bug is conv2's "
                "missing padding=1 (SimpleCNN keeps 64*8*8 = 4096 features).",
                hint2="with padding=1 a 3x3 conv keeps 16x16 at 16x16, so the second pool gives "
                "8x8 and fc1's 64 * 8 * 8 inputs fit as designed.",
            )
        fail(
            f"FixedCNN's layers do not match SimpleCNN's (keep the names conv1, conv2, fc1, fc2): {first}",
            hint2="compare print(FixedCNN()) with print(SimpleCNN()): fix the bugs inside the layers "
            "you were given; do not rename, add or resize layers.",
        )
    model.eval()
    ref.eval()
    for n in (1, 5, 16):
        x = ctx.randn(n, 3, 32, 32, dtype=torch.float32)
        with torch.no_grad():
            try:
                got = call(model, x, describe=f"a batch of {n} images")
            except CheckFailed as exc:
                fail(
                    f"{exc} -- Trace the shapes: with padding=1 both convs keep the size "
                    f"(32 -> 32, then 16 -> 16), so after two pools fc1 receives 64x8x8 = 4096 "
                    f"features per image; flatten with x.flatten(1) so the batch size is never "
                    f"hard-coded.",
                    hint2="print x.shape after every line of forward for a batch of 5 images.",
                )
            expected = ref(x)
        probs = (
            isinstance(got, torch.Tensor)
            and got.shape == expected.shape
            and bool(torch.allclose(got.sum(1), torch.ones(n), atol=1e-4) and (got >= 0).all())
        )
        if probs:
            fail(
                "FixedCNN returns probabilities (rows sum to 1). Return raw logits: "
                "nn.CrossEntropyLoss applies log-softmax itself, and a softmax before it "
                "squashes the gradients.",
                hint2="the last line of forward should be return self.fc2(x), with no activation.",
            )
        with deeper_hint(
            "print(x.shape) after every line of forward for a batch of 5 images, and compare each "
            "line with SimpleCNN's forward (cnnbook.models.SimpleCNN)."
        ):
            expect_tensor(
                got,
                expected,
                f"FixedCNN(10)(x of shape {tuple(x.shape)})",
                wrong={
                    "FixedCNN returns log-probabilities (log_softmax); return the raw logits, "
                    "nn.CrossEntropyLoss applies log-softmax itself.": torch.log_softmax(expected, 1)
                },
                shape_hint=f"One row of {10} logits per image: flatten with "
                f"x.flatten(1) (keep the batch axis) so the batch size cannot "
                f"change.",
                atol=1e-4,
                rtol=1e-4,
            )
        if n == 1:  # a forward that changes a weight shows here, before it spoils the comparison
            model.load_state_dict(ref.state_dict())
            _forward_leaves_state(model, x, "FixedCNN")
            model.eval()
    return (
        "FixedCNN loads SimpleCNN's weights and gives identical logits for batches of 1, 5 and 16, "
        "and its forward pass leaves the caller's modes, gradients and weights alone."
    )
