"""Every exercise checker accepts the reference answer and rejects realistic wrong answers.

Each wrong answer is a mistake a student is likely to make; the test also asserts that the
hint names that mistake (a checker that only says "wrong" would pass a weaker test).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnbook.checks import CheckFailed, core
from cnnbook.checks import architectures as c06
from cnnbook.checks import basic_cnn as c05
from cnnbook.checks import batchnorm as c11
from cnnbook.checks import beyond_classification as c13
from cnnbook.checks import convolution as c01
from cnnbook.checks import depthwise as c08
from cnnbook.checks import modern_design as c12
from cnnbook.checks import one_by_one as c07
from cnnbook.checks import pipeline as c15
from cnnbook.checks import pitfalls as c16
from cnnbook.checks import pooling as c04
from cnnbook.checks import receptive_fields as c03
from cnnbook.checks import stride_padding as c02
from cnnbook.checks import transfer as c09
from cnnbook.checks import visualizing as c10
from cnnbook.checks import vit as c14


def passes(check, *answers) -> None:
    result = check(*answers, seed=1)
    assert result, result.message
    assert result.passed, result.message
    assert result.message.startswith("✅")


def fails(check, *answers, match: str) -> str:
    with pytest.raises(CheckFailed, match=match) as info:
        check(*answers, seed=1)
    return str(info.value)


# ---------------------------------------------------------------- framework (core)


def test_not_implemented_is_reported_as_such(capsys) -> None:
    def correlate2d(image, kernel):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="not implemented yet"):
        c01.check_correlate2d(correlate2d)
    assert "⏳ correlate2d" in capsys.readouterr().out


def test_not_implemented_helper_is_named() -> None:
    def helper(image, kernel):
        raise NotImplementedError()

    def conv2d_im2col(x, weight, bias):
        return helper(x, weight)

    with pytest.raises(NotImplementedError, match="helper \\(called by conv2d_im2col\\)"):
        c01.check_conv2d_im2col(conv2d_im2col)


def test_failure_can_return_instead_of_raise(capsys) -> None:
    result = c01.check_correlate2d(lambda image, kernel: image, seed=3, raise_on_fail=False)
    assert not result
    assert result.seed == 3
    assert capsys.readouterr().out.startswith("❌")


def test_student_exception_becomes_a_hint() -> None:
    def correlate2d(image, kernel):
        return image @ kernel

    fails(c01.check_correlate2d, correlate2d, match="correlate2d raised RuntimeError on image")


def test_constant_answer_fails() -> None:
    fails(c01.check_correlate2d, lambda image, kernel: torch.zeros(3, 3), match="expected shape")


def test_seed_reproduces_inputs_and_no_seed_draws_fresh_ones() -> None:
    def spy_run(seed):
        seen = []

        def shift(image, dy, dx):
            seen.append(image.clone())
            return ref_shift(image, dy, dx)

        c01.check_shift(shift, seed=seed)
        return seen

    first, again, other = spy_run(5), spy_run(5), spy_run(None)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_check_leaves_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    c01.check_shift(ref_shift)
    assert torch.equal(torch.rand(3), expected)


def test_forbidden_shortcut_found_in_source_through_alias() -> None:
    from torch.nn.functional import conv2d as c

    def correlate2d(image, kernel):
        return c(image[None, None], kernel[None, None])[0, 0]

    fails(c01.check_correlate2d, correlate2d, match="calls `torch.ops.aten.convolution`.*off limits")


def test_forbidden_shortcut_caught_at_run_time_through_helper() -> None:
    helper = {"conv": F.conv2d}  # hidden from the source scan

    def correlate2d(image, kernel):
        return helper["conv"](image[None, None], kernel[None, None])[0, 0]

    helper["conv"] = lambda *a: F.conv2d(*a)  # looks the patched function up at call time
    fails(c01.check_correlate2d, correlate2d, match="calls `torch.ops.aten.convolution`.*off limits")


def test_forbid_restores_the_library() -> None:
    original = F.conv2d
    with core.forbid(lambda: None, {"torch.nn.functional.conv2d": "no"}):
        assert F.conv2d is not original
    assert F.conv2d is original


def test_own_function_with_a_library_name_is_allowed() -> None:
    def conv2d(image, kernel):  # the student's own function, named like torch's
        kh, kw = kernel.shape
        cols = image.unfold(0, kh, 1).unfold(1, kw, 1)
        return (cols * kernel).sum(dim=(-2, -1))

    passes(c01.check_correlate2d, conv2d)


def test_expect_equal_names_known_mistake() -> None:
    with pytest.raises(CheckFailed, match="off by one"):
        core.expect_equal(5, 6, "size", wrong={"off by one": 5})
    assert core.expect_equal(2.0000001, 2.0, "x", rel=1e-6) == 2.0000001


def test_expect_tensor_rejects_numpy_and_none() -> None:
    with pytest.raises(CheckFailed, match="NumPy"):
        core.expect_tensor(torch.ones(2).numpy(), torch.ones(2), "x")
    with pytest.raises(CheckFailed, match="forget to `return`"):
        core.expect_tensor(None, torch.ones(2), "x")


# ---------------------------------------------------------------- 14.1


def ref_correlate2d(image, kernel):
    kh, kw = kernel.shape
    out = image.new_zeros(image.shape[0] - kh + 1, image.shape[1] - kw + 1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = (image[i : i + kh, j : j + kw] * kernel).sum()
    return out


def test_14_01_correlate2d() -> None:
    passes(c01.check_correlate2d, ref_correlate2d)
    fails(c01.check_correlate2d, lambda im, k: ref_correlate2d(im, k.flip(0, 1)), match="flipped the kernel")

    def off_by_one(image, kernel):  # loops stop one position early
        return ref_correlate2d(image, kernel)[:-1, :-1]

    fails(c01.check_correlate2d, off_by_one, match="H - kH \\+ 1")
    fails(
        c01.check_correlate2d,
        lambda im, k: F.conv2d(im[None, None], k[None, None])[0, 0],
        match="computes a convolution for you",
    )


def test_14_01_flip_prediction() -> None:
    passes(c01.check_flip_prediction, {"identity", "box blur", "gaussian", "laplacian", "sharpen"})
    fails(c01.check_flip_prediction, set(c01.FLIP_CHOICES), match="Sobel kernel is its negative")
    fails(c01.check_flip_prediction, "identity", match="must be a set")


def test_14_01_layer_predictions() -> None:
    passes(c01.check_layer_predictions, (7, 5, 3, 2), 217, (4, 7, 8, 11), (4, 30, 88))
    fails(c01.check_layer_predictions, (7, 5, 3, 2), 210, (4, 7, 8, 11), (4, 30, 88), match="biases")


def test_14_01_conv2d_im2col() -> None:
    def im2col(x, w, b):
        out = w.reshape(w.shape[0], -1) @ F.unfold(x, w.shape[2:]) + b[:, None]
        return out.reshape(x.shape[0], w.shape[0], x.shape[2] - w.shape[2] + 1, x.shape[3] - w.shape[3] + 1)

    passes(c01.check_conv2d_im2col, im2col)
    fails(c01.check_conv2d_im2col, c01.conv2d_im2col_broken, match="both bugs")


def ref_shift(image, dy, dx):
    out = torch.zeros_like(image)
    out[dy:, dx:] = image[: image.shape[0] - dy, : image.shape[1] - dx]
    return out


def test_14_01_shift() -> None:
    passes(c01.check_shift, ref_shift)
    fails(c01.check_shift, lambda im, dy, dx: torch.roll(im, (dy, dx), (0, 1)), match="wraps")
    fails(c01.check_shift, lambda im, dy, dx: ref_shift(im, dx, dy), match="swapped")


# ---------------------------------------------------------------- 14.2


def test_14_02_conv_out_size() -> None:
    def ref(n, k, s=1, p=0, d=1):
        return (n + 2 * p - d * (k - 1) - 1) // s + 1

    passes(c02.check_conv_out_size, ref)
    fails(
        c02.check_conv_out_size,
        lambda n, k, s=1, p=0, d=1: (n + 2 * p - k) // s + 1,
        match="ignored the dilation",
    )
    fails(
        c02.check_conv_out_size,
        lambda n, k, s=1, p=0, d=1: (n + 2 * p - d * (k - 1) - 1) // s,
        match="forgot the \\+ 1",
    )
    fails(
        c02.check_conv_out_size,
        lambda n, k, s=1, p=0, d=1: (n + 2 * p - d * (k - 1) - 1) / s + 1,
        match="instead of `/`",
    )
    fails(c02.check_conv_out_size, lambda n, k, s=1, p=0, d=1: 30, match="expected")

    def by_running(n, k, s=1, p=0, d=1):
        return torch.nn.Conv2d(1, 1, k, s, p, d)(torch.zeros(1, 1, n, n)).shape[-1]

    fails(c02.check_conv_out_size, by_running, match="from the formula")


def test_14_02_same_padding() -> None:
    passes(c02.check_same_padding, lambda k, d=1: d * (k - 1) // 2)
    fails(c02.check_same_padding, lambda k, d=1: k // 2, match="dilated kernel spans")
    fails(c02.check_same_padding, lambda k, d=1: d * (k - 1), match="TOTAL padding")


def test_14_02_dilate_kernel() -> None:
    def ref(w, d):
        out = w.new_zeros(*w.shape[:-2], d * (w.shape[-2] - 1) + 1, d * (w.shape[-1] - 1) + 1)
        out[..., ::d, ::d] = w
        return out

    passes(c02.check_dilate_kernel, ref)

    def d_zeros(w, d):
        return ref(w, d + 1)

    fails(c02.check_dilate_kernel, d_zeros, match="d - 1 zeros")


def test_14_02_strided_from_dense() -> None:
    passes(c02.check_strided_from_dense, lambda x, w, s, p: F.conv2d(x, w, padding=p)[..., ::s, ::s])
    fails(
        c02.check_strided_from_dense,
        lambda x, w, s, p: F.conv2d(x, w, padding=p)[..., 1::s, 1::s],
        match="index 1",
    )
    fails(
        c02.check_strided_from_dense, lambda x, w, s, p: F.conv2d(x, w, stride=s, padding=p), match="stride="
    )
    fails(
        c02.check_strided_from_dense,
        lambda x, w, s, p: torch.nn.functional.conv2d(x, w, None, s, p),
        match="stride=",
    )


# ---------------------------------------------------------------- 14.3


def ref_receptive_field(layers):
    rf, jump, out = 1, 1, []
    for k, s in layers:
        rf += (k - 1) * jump
        jump *= s
        out.append(rf)
    return out


def test_14_03_receptive_field() -> None:
    passes(c03.check_receptive_field, ref_receptive_field)

    def including_own_stride(layers):
        rf, jump, out = 1, 1, []
        for k, s in layers:
            jump *= s
            rf += (k - 1) * jump
            out.append(rf)
        return out

    fails(c03.check_receptive_field, including_own_stride, match="INCLUDING the current layer")
    fails(
        c03.check_receptive_field,
        lambda layers: ref_receptive_field([(k, 1) for k, _ in layers]),
        match="ignored the strides",
    )
    fails(c03.check_receptive_field, lambda layers: ref_receptive_field(layers)[-1], match="after EACH")


def test_14_03_kernel_choice() -> None:
    c = c03.KERNEL_CHANNELS
    weights = {key: sum(k * k for k, _ in layers) * c * c for key, layers in c03.KERNEL_OPTIONS.items()}
    pixels = {"A": 49, "B": 49, "C": 9, "D": 49}
    passes(c03.check_kernel_choice, "B", weights, pixels)
    fails(c03.check_kernel_choice, "C", weights, pixels, match="only 9 of the 49")
    fails(c03.check_kernel_choice, "B", weights, {**pixels, "C": 49}, match="never reach the output")
    fails(c03.check_kernel_choice, "B", {**weights, "B": 9 * c * c}, pixels, match="one layer")


def test_14_03_kernel_designs_are_what_the_exercise_says() -> None:
    from cnnbook.geometry import module_receptive_field

    for option in c03.KERNEL_OPTIONS:  # every design spans 7 pixels at stride 1, "same" padding
        model = c03.kernel_design(option, channels=2)
        assert module_receptive_field(model)[-1].rf == 7
        assert model(torch.zeros(1, 2, 9, 9)).shape == (1, 2, 9, 9)
    assert [c03.pixels_reaching(c03.kernel_design(o, channels=1)) for o in "ABCD"] == [49, 49, 9, 49]


def ref_rf_by_gradient(model, size):
    x = torch.ones(1, 1, size, size, requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    return int(rows.max() - rows.min() + 1)


def test_14_03_rf_by_gradient() -> None:
    passes(c03.check_rf_by_gradient, ref_rf_by_gradient)

    def whole_output(model, size):
        x = torch.ones(1, 1, size, size, requires_grad=True)
        model(x).sum().backward()
        rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
        return int(rows.max() - rows.min() + 1)

    fails(c03.check_rf_by_gradient, whole_output, match="ALL outputs")

    from cnnbook import geometry

    fails(
        c03.check_rf_by_gradient,
        lambda m, s: geometry.receptive_field_by_gradient(m, s, 1),
        match="cnnbook's own answer",
    )


# ---------------------------------------------------------------- 14.4


def ref_max_pool2d(x, kernel_size, stride=None, padding=0):
    stride = kernel_size if stride is None else stride
    xp = F.pad(x, (padding,) * 4, value=float("-inf"))
    return xp.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride).amax(dim=(-2, -1))


def test_14_04_max_pool2d() -> None:
    passes(c04.check_max_pool2d, ref_max_pool2d)

    def zero_padding(x, kernel_size, stride=None, padding=0):
        return ref_max_pool2d(F.pad(x, (padding,) * 4), kernel_size, stride)

    fails(c04.check_max_pool2d, zero_padding, match="-inf")

    def stride_one(x, kernel_size, stride=None, padding=0):
        return ref_max_pool2d(x, kernel_size, 1 if stride is None else stride, padding)

    fails(c04.check_max_pool2d, stride_one, match="defaults to the kernel size")
    fails(
        c04.check_max_pool2d,
        lambda x, k, s=None, padding=0: F.max_pool2d(x, k, s, padding),
        match="that pools for you.*off limits",
    )
    fails(
        c04.check_max_pool2d,
        lambda x, k, s=None, padding=0: torch.nn.MaxPool2d(k, s, padding)(x),
        match="that pools for you.*off limits",
    )


def test_14_04_head_predictions() -> None:
    passes(c04.check_head_predictions, 25_089_000, 513_000, 51_201_000, 513_000)
    fails(c04.check_head_predictions, 25_089_000, 513_000, 51_201_000, 51_201_000, match="ONE number")


def test_14_04_unchanged_prediction() -> None:
    right = {"no pooling": 0, "max pool 2x2": 8, "max pool 2x2, twice": 12, "avg pool 2x2": 8}
    passes(c04.check_unchanged_prediction, right)
    fails(c04.check_unchanged_prediction, {**right, "max pool 2x2, twice": 8}, match="4x4 window")


# ---------------------------------------------------------------- 14.5


def test_14_05_reference_is_the_library_simple_cnn() -> None:
    from cnnbook.models import SimpleCNN

    lib, ref = SimpleCNN(7, 2, 20).eval(), c05.SimpleCNN(7, 2, 20)
    ref.load_state_dict(lib.state_dict())
    x = torch.randn(3, 2, 20, 20)
    torch.testing.assert_close(ref(x), lib(x))


def test_14_05_size_predictions() -> None:
    passes(c05.check_size_predictions, 4_216_522, 22_413_312)
    fails(c05.check_size_predictions, 1_070_794, 22_413_312, match="grows with the image")
    fails(c05.check_size_predictions, 4_216_522, 5_603_328, match="OUTPUT PIXEL")


def ref_build_cnn(in_channels, num_classes, image_size, widths, relu=True, pools=None):
    layers, prev = [], in_channels
    for w in widths:
        layers += [torch.nn.Conv2d(prev, w, 3, padding=1)] + ([torch.nn.ReLU()] if relu else [])
        layers += [torch.nn.MaxPool2d(2)]
        prev = w
    side = image_size // 2 ** (len(widths) if pools is None else pools)
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(prev * side * side, num_classes))


def test_14_05_build_cnn() -> None:
    passes(c05.check_build_cnn, ref_build_cnn)
    fails(c05.check_build_cnn, lambda *a: ref_build_cnn(*a, pools=1), match="the Linear layer expects")
    fails(c05.check_build_cnn, lambda *a: ref_build_cnn(*a, relu=False), match="no ReLU")
    fails(c05.check_build_cnn, lambda c, n, s, w: ref_build_cnn(c, n, s, w[:1]), match="one conv per entry")


class _Broken(torch.nn.Module):
    def __init__(self, num_classes=10, softmax=False, view=False):
        super().__init__()
        self.softmax, self.view = softmax, view
        self.conv1 = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2, 2)
        self.fc1 = torch.nn.Linear(64 * 8 * 8, 256)
        self.fc2 = torch.nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 64 * 8 * 8) if self.view else x.flatten(1)
        x = self.fc2(F.relu(self.fc1(x)))
        return F.softmax(x, dim=1) if self.softmax else x


def test_14_05_fixed_cnn() -> None:
    passes(c05.check_fixed_cnn, _Broken)
    fails(c05.check_fixed_cnn, lambda n: _Broken(n, softmax=True), match="logits")

    class NoPad(_Broken):
        def __init__(self, n):
            super().__init__(n)
            self.conv2 = torch.nn.Conv2d(32, 64, 3)

    fails(c05.check_fixed_cnn, NoPad, match="64x8x8")


def test_14_01_to_14_05_failures_offer_a_second_hint() -> None:
    c = c03.KERNEL_CHANNELS
    weights = {"A": 49 * c * c, "B": 27 * c * c, "C": 9 * c * c, "D": 34 * c * c}
    wrong = [
        (c01.check_shift, (lambda im, dy, dx: torch.roll(im, (dy, dx), (0, 1)),)),
        (c01.check_layer_predictions, ((7, 5, 3, 2), 210, (4, 7, 8, 11), (4, 30, 88))),
        (c02.check_conv_out_size, (lambda n, k, s, p, d: (n + 2 * p - k) // s + 1,)),
        (c02.check_padding_counterexample, ((3, 2),)),
        (c03.check_kernel_choice, ("C", weights, {"A": 49, "B": 49, "C": 9, "D": 49})),
        (c04.check_max_pool2d, (lambda x, k, s=None, p=0: x.unfold(2, k, k).unfold(3, k, k).mean((-2, -1)),)),
        (c05.check_size_predictions, (1_070_794, 22_413_312)),
    ]
    for check, answers in wrong:
        result = check(*answers, seed=0, raise_on_fail=False, hints=2)
        assert not result
        assert "A further hint:" in result.message, result.message


# ---------------------------------------------------------------- 14.6


def test_14_06_vgg_block() -> None:
    from cnnbook.models import make_vgg_block

    passes(c06.check_vgg_block, make_vgg_block)

    def all_from_input(c_in, c_out, n):
        layers = []
        for _ in range(n):
            layers += [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers, torch.nn.MaxPool2d(2))

    fails(c06.check_vgg_block, all_from_input, match="Only the FIRST conv")

    def no_padding(c_in, c_out, n):
        block = make_vgg_block(c_in, c_out, n)
        for m in block.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.padding = (0, 0)
        return block

    fails(c06.check_vgg_block, no_padding, match="padding 1")


def test_14_06_vgg_params_agree_with_the_library() -> None:
    from cnnbook.models import vgg16

    feats, clf = c06.vgg_param_counts((2, 2, 3, 3, 3), 1000)
    assert feats + clf == sum(p.numel() for p in vgg16().parameters()) == 138_357_544


def test_14_06_vgg_params() -> None:
    def count(cfg, n):
        conv, prev = 0, 3
        for depth, width in zip(cfg, c06.VGG_WIDTHS, strict=True):
            conv += sum(9 * (prev if i == 0 else width) * width + width for i in range(depth))
            prev = width
        return conv, (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * n + n)

    passes(c06.check_vgg_params, count)
    fails(
        c06.check_vgg_params,
        lambda cfg, n: (count(cfg, n)[0], count(cfg, n)[1] - 8192 - n),
        match="Linear biases",
    )
    fails(c06.check_vgg_params, c06.vgg_param_counts, match="counts the parameters for you")
    fails(c06.check_vgg_params, lambda cfg, n: (1, 2), match="9\\*c_in\\*c_out")


def test_14_06_basic_block() -> None:
    passes(c06.check_basic_block, c06._RefBasicBlock)

    class ReluBeforeAdd(c06._RefBasicBlock):
        def forward(self, x):
            return super().forward(x, "relu_before_add")

    class NoFinalRelu(c06._RefBasicBlock):
        def forward(self, x):
            return super().forward(x, "no_final_relu")

    class NoProjection(c06._RefBasicBlock):
        def __init__(self, c_in, c_out, stride=1):
            super().__init__(c_in, c_out, stride)
            self.shortcut = torch.nn.Sequential()

    fails(c06.check_basic_block, ReluBeforeAdd, match="AFTER the addition")
    fails(c06.check_basic_block, NoFinalRelu, match="final ReLU")
    fails(c06.check_basic_block, NoProjection, match="no projection shortcut")


def test_14_06_silence() -> None:
    def silence(block):
        with torch.no_grad():
            block.bn2.weight.zero_()
            block.bn2.bias.zero_()
        return block

    def weight_only(block):
        with torch.no_grad():
            block.bn2.weight.zero_()
            block.bn2.bias.fill_(0.5)
        return block

    passes(c06.check_silence, silence, c06._RefBasicBlock)
    fails(c06.check_silence, weight_only, c06._RefBasicBlock, match="shift beta")
    fails(
        c06.check_silence, lambda b: silence(c06._RefBasicBlock(6, 6)), c06._RefBasicBlock, match="in place"
    )


# ---------------------------------------------------------------- 14.7


def test_14_07_merge_pointwise() -> None:
    def merge(first, second, keep_first_bias=True):
        w1, w2 = first.weight.flatten(1), second.weight.flatten(1)
        b1 = first.bias if first.bias is not None and keep_first_bias else torch.zeros(w1.shape[0])
        b2 = second.bias if second.bias is not None else torch.zeros(w2.shape[0])
        conv = torch.nn.Conv2d(w1.shape[1], w2.shape[0], 1)
        with torch.no_grad():
            conv.weight.copy_((w2 @ w1)[:, :, None, None])
            conv.bias.copy_(w2 @ b1 + b2)
        return conv

    passes(c07.check_merge_pointwise, merge)
    fails(
        c07.check_merge_pointwise,
        lambda a, b: merge(a, b, keep_first_bias=False),
        match="ignores first's bias",
    )
    fails(c07.check_merge_pointwise, lambda a, b: torch.nn.Sequential(a, b), match="ONE nn.Conv2d")


def test_14_07_bottleneck_params() -> None:
    passes(c07.check_bottleneck_params, lambda c, m, k=3: (c * c * k * k, c * m + m * m * k * k))
    fails(
        c07.check_bottleneck_params, lambda c, m, k=3: (c * c * k * k, m * m * k * k), match="1x1 reduction"
    )
    fails(
        c07.check_bottleneck_params, lambda c, m, k=3: (c * c * k * k, c * m + c * m * k * k), match="REDUCED"
    )


def test_14_07_where_merge_holds() -> None:
    passes(c07.check_where_merge_holds, lambda first, x: (first(x) >= 0).all(1))
    fails(c07.check_where_merge_holds, lambda first, x: (first(x) > 0).all(1), match="exactly 0")
    fails(c07.check_where_merge_holds, lambda first, x: (x >= 0).all(1), match="not on x")


def test_14_07_bottleneck_prediction_and_follow_up() -> None:
    def count(c, m, k=3):
        return c * c * k * k, c * m + m * m * k * k

    passes(c07.check_bottleneck_params, count, "c")
    fails(c07.check_bottleneck_params, count, "d", match="1x1 reduction itself costs")
    passes(c07.check_bottleneck_k1, 158)
    fails(c07.check_bottleneck_k1, 159, match="first width")


def test_14_07_linear_to_conv1x1() -> None:
    def convert(linear, copy_bias=True):
        conv = torch.nn.Conv2d(linear.in_features, linear.out_features, 1)
        with torch.no_grad():
            conv.weight.copy_(linear.weight[:, :, None, None])
            if copy_bias:
                conv.bias.copy_(linear.bias)
        return conv

    passes(c07.check_linear_to_conv1x1, convert)
    fails(c07.check_linear_to_conv1x1, lambda lin: convert(lin, copy_bias=False), match="bias")
    fails(
        c07.check_linear_to_conv1x1,
        lambda lin: torch.nn.Conv2d(lin.in_features, lin.out_features, 1),
        match="wrong values",
    )


# ---------------------------------------------------------------- 14.8


def test_14_08_separable_params() -> None:
    passes(c08.check_separable_params, lambda ci, co, k: (ci * co * k * k, ci * k * k + ci * co))
    fails(
        c08.check_separable_params,
        lambda ci, co, k: (ci * co * k * k, ci * co * k * k + ci * co),
        match="ONE k x k filter",
    )
    fails(
        c08.check_separable_params,
        lambda ci, co, k: (ci * co * k * k, co * k * k + ci * co),
        match="INPUT channels",
    )


def test_14_08_separable_predictions() -> None:
    def count(ci, co, k):
        return ci * co * k * k, ci * k * k + ci * co

    passes(c08.check_separable_params, count, "b", "d")
    fails(c08.check_separable_params, count, "a", "d", match="C_in cancels")
    fails(c08.check_separable_params, count, "b", "none", match="the 1x1 layer")


def test_14_08_separable_to_standard() -> None:
    passes(c08.check_separable_to_standard, lambda d, p: p * d.transpose(0, 1))
    fails(
        c08.check_separable_to_standard,
        lambda d, p: d.transpose(0, 1).expand(p.shape[0], -1, -1, -1),
        match="pointwise weights are missing",
    )


def test_14_08_separable_block() -> None:
    from cnnbook.models.mobile import DepthwiseSeparableConv

    passes(c08.check_separable_block, c08._RefSeparable)

    class NoGroups(c08._RefSeparable):
        def __init__(self, ci, co, stride=1):
            super().__init__(ci, co, stride)
            self.depthwise = torch.nn.Conv2d(ci, ci, 3, stride, 1, bias=False)

    class StridedPointwise(c08._RefSeparable):
        def __init__(self, ci, co, stride=1):
            super().__init__(ci, co, 1)
            self.pointwise = torch.nn.Conv2d(ci, co, 1, stride, bias=False)

    fails(c08.check_separable_block, NoGroups, match="groups=in_channels")
    fails(c08.check_separable_block, StridedPointwise, match="stride belongs on the depthwise")
    assert DepthwiseSeparableConv  # the library block exists (its layout differs: see 14.8 notebook)


def test_14_08_min_channels() -> None:
    def ref(k, target):
        if target >= k * k:
            return None
        c = 1
        while c * k * k < target * (c + k * k):
            c += 1
        return c

    passes(c08.check_min_channels, ref)
    fails(c08.check_min_channels, lambda k, t: ref(k, t) and ref(k, t) + 1, match="exact tie|wrong")


# ---------------------------------------------------------------- 14.9


def test_14_09_predictions() -> None:
    head, total = 512 * 10 + 10, 11_689_512 - 513_000 + 512 * 10 + 10
    passes(c09.check_trainable_prediction, {"a": head, "b": 0, "c": total})
    fails(c09.check_trainable_prediction, {"a": head, "b": head, "c": total}, match="after the new head")
    passes(c09.check_frozen_bn_prediction, 20, 0, True)
    fails(c09.check_frozen_bn_prediction, 0, 0, False, match="running statistics")


def test_14_09_imagenet_normalize() -> None:
    mean = torch.tensor(c09.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(c09.IMAGENET_STD).view(3, 1, 1)

    def right(image, scale=255.0):
        return (torch.from_numpy(image).permute(2, 0, 1).float() / scale - mean) / std

    passes(c09.check_imagenet_normalize, right)
    fails(c09.check_imagenet_normalize, lambda im: right(im, 1.0), match="division by 255")
    fails(c09.check_imagenet_normalize, lambda im: right(im).permute(1, 2, 0), match="channels first")

    from torchvision import transforms

    def with_torchvision(image):
        return transforms.Normalize(c09.IMAGENET_MEAN, c09.IMAGENET_STD)(transforms.ToTensor()(image))

    fails(c09.check_imagenet_normalize, with_torchvision, match="steps yourself")


# ---------------------------------------------------------------- 14.10


def test_14_10_grad_cam() -> None:
    passes(c10.check_grad_cam, c10.reference_grad_cam)
    for variant, match in [
        ("no_relu", "ReLU is missing"),
        ("act_weights", "mean GRADIENT"),
        ("all_classes", "sum of all logits"),
        ("no_norm", "not scaled"),
        ("max_only", "without subtracting the min"),
    ]:
        fails(
            c10.check_grad_cam,
            lambda m, x, c, n, v=variant: c10.reference_grad_cam(m, x, c, n, v),
            match=match,
        )


def test_14_10_grad_cam_reference_agrees_with_library() -> None:
    from cnnbook import interpret

    torch.manual_seed(0)
    model, x = c10.positive_cam_model(4, 1), torch.randn(1, 3, 12, 14)
    for layer in ("relu2", "layer1.0.conv2", "layer1.0"):
        ref = c10.reference_grad_cam(model, x, 1, layer)
        raw = interpret.grad_cam(model, x, layer, 1, upsample=False)[0]
        assert raw.max() > 0
        torch.testing.assert_close(ref, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-5, rtol=1e-4)
    assert c10.reference_grad_cam(model, x, 1, "relu2").min() == 0  # min-max scaled
    assert c10.reference_grad_cam(model, x, 1, "relu2", "max_only").min() > 0.05  # positive map


def test_14_10_left_share() -> None:
    passes(c10.check_left_share, lambda cam: float(cam[:, : cam.shape[1] // 2].sum() / cam.sum()))
    fails(
        c10.check_left_share, lambda cam: float(cam[: cam.shape[0] // 2].sum() / cam.sum()), match="COLUMNS"
    )


def test_14_10_normalize_filters() -> None:
    def right(w, guard=True):
        flat = w.flatten(1)
        lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
        return (w - lo) / ((hi - lo).clamp_min(1e-12) if guard else hi - lo)

    passes(c10.check_normalize_filters, right)
    fails(c10.check_normalize_filters, lambda w: (w - w.min()) / (w.max() - w.min()), match="own min")
    fails(c10.check_normalize_filters, lambda w: right(w, guard=False), match="constant")
    fails(c10.check_normalize_filters, c10.colleague_normalize_filters, match="each channel")


def test_14_10_filter_bug_input() -> None:
    passes(c10.check_filter_bug_input, torch.tensor([[[[0.0]], [[1.0]]]]))
    fails(c10.check_filter_bug_input, torch.randn(2, 1, 3, 3), match="one input channel")
    fails(c10.check_filter_bug_input, torch.randn(1, 3, 2, 2), match="smaller one exists")


# ---------------------------------------------------------------- 14.11


def test_14_11_batch_norm_backward() -> None:
    def right(x, gamma, dy, eps=1e-5):
        xr = x.clone().requires_grad_(True)
        y = (xr - xr.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
            xr.var((0, 2, 3), unbiased=False, keepdim=True) + eps
        )
        x_hat = y.detach()
        (dx,) = torch.autograd.grad(y * gamma.view(1, -1, 1, 1), xr, dy)
        return dx, (dy * x_hat).sum((0, 2, 3)), dy.sum((0, 2, 3))

    fails(c11.check_batch_norm_backward, right, match="autograd")


def test_14_11_update_running() -> None:
    def right(rm, rv, x, m=0.1, unbiased=True, swap=False):
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=unbiased)
        if swap:
            return m * rm + (1 - m) * mean, m * rv + (1 - m) * var
        return (1 - m) * rm + m * mean, (1 - m) * rv + m * var

    passes(c11.check_update_running, right)
    fails(
        c11.check_update_running,
        lambda rm, rv, x, m=0.1: right(rm, rv, x, m, unbiased=False),
        match="UNBIASED",
    )
    fails(
        c11.check_update_running,
        lambda rm, rv, x, m=0.1: right(rm, rv, x, m, swap=True),
        match="weight of the NEW batch",
    )


def test_14_11_fold_bn_before_conv() -> None:
    from cnnbook.norm import fold_bn_into_conv

    fails(
        c11.check_fold_bn_before_conv,
        lambda bn, conv: fold_bn_into_conv(conv, bn),
        match="fold_bn_into_conv.*off limits",
    )
    fails(c11.check_fold_bn_before_conv, lambda bn, conv: conv, match="wrong values")


# ---------------------------------------------------------------- 14.12


def test_14_12_squeeze_excite() -> None:
    passes(c12.check_squeeze_excite, c12._se)
    fails(c12.check_squeeze_excite, lambda *a: c12._se(*a, pool="max"), match="MEAN")
    fails(c12.check_squeeze_excite, lambda *a: c12._se(*a, gate="softmax"), match="sigmoid per")
    fails(c12.check_squeeze_excite, lambda *a: c12._se(*a, apply=False), match="gate alone")


def test_14_12_squeeze_excite_agrees_with_library() -> None:
    from cnnbook.models.mobile import SqueezeExcitation

    se = SqueezeExcitation(8, 2)  # ReLU inside, sigmoid gate (the defaults)
    convs = [m for m in se.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(2, 8, 5, 5)
    (w1, b1), (w2, b2) = [(c.weight.flatten(1), c.bias) for c in convs]
    torch.testing.assert_close(c12._se(x, w1, b1, w2, b2), se(x), atol=1e-5, rtol=1e-4)


def test_14_12_compound_scale() -> None:
    def right(phi, a=1.2, b=1.1, g=1.15):
        d, w, r = a**phi, b**phi, g**phi
        return d, w, r, d * w**2 * r**2

    passes(c12.check_compound_scale, right)
    fails(
        c12.check_compound_scale,
        lambda phi, a=1.2, b=1.1, g=1.15: (*right(phi, a, b, g)[:3], a**phi * b**phi * g**phi),
        match="TWICE",
    )
    fails(
        c12.check_compound_scale,
        lambda phi, a=1.2, b=1.1, g=1.15: (a * phi, b * phi, g * phi, 1.0),
        match="POWERS",
    )


def test_14_12_round_filters_agrees_with_library() -> None:
    from cnnbook.scaling import round_filters

    passes(c12.check_round_filters, c12._round_filters)
    for case in c12._WIDTH_CASES:
        assert c12._round_filters(*case) == round_filters(*case)
    fails(c12.check_round_filters, round_filters, match="round_filters.*off limits")


# ---------------------------------------------------------------- 14.13


def test_14_13_nms_reference_agrees_with_torchvision() -> None:
    from torchvision.ops import nms

    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        boxes = torch.rand(10, 2, generator=gen) * 20
        boxes = torch.cat([boxes, boxes + torch.rand(10, 2, generator=gen) * 15 + 1], 1)
        scores = torch.rand(10, generator=gen)
        assert c13._ref_nms(boxes, scores, 0.4) == nms(boxes, scores, 0.4).tolist()


def test_14_13_nms() -> None:
    def as_long(keep):
        return torch.tensor(keep, dtype=torch.long)

    passes(c13.check_nms, lambda b, s, t: as_long(c13._ref_nms(b, s, t)))
    fails(c13.check_nms, lambda b, s, t: as_long(c13._ref_nms(b, s, t, "unsorted")), match="DECREASING score")
    fails(c13.check_nms, lambda b, s, t: as_long(c13._ref_nms(b, s, t, "all_higher")), match="KEPT")
    fails(c13.check_nms, lambda b, s, t: as_long(c13._ref_nms(b, s, t, "at_least")), match="GREATER THAN")
    fails(c13.check_nms, lambda b, s, t: as_long(sorted(c13._ref_nms(b, s, t))), match="wrong order")
    fails(c13.check_nms, lambda b, s, t: torch.tensor(c13._ref_nms(b, s, t)), match="empty list is float32")


def test_14_13_mean_iou() -> None:
    from cnnbook.segmentation import mean_iou

    def right(pred, target, k):
        ious = [
            ((pred == c) & (target == c)).sum().item() / ((pred == c) | (target == c)).sum().item()
            for c in range(k)
            if ((pred == c) | (target == c)).any()
        ]
        return sum(ious) / len(ious)

    passes(c13.check_mean_iou, right)
    fails(c13.check_mean_iou, lambda p, t, k: (p == t).double().mean().item(), match="pixel accuracy")
    fails(
        c13.check_mean_iou, lambda p, t, k: c13._miou(p, t, k, "target_only"), match="only in the PREDICTION"
    )
    fails(c13.check_mean_iou, lambda p, t, k: float(mean_iou(p, t, k)), match="cnnbook's own")


def test_14_13_up_block() -> None:
    from cnnbook.segmentation import UNet

    passes(c13.check_up_block, c13._RefUpBlock)
    fails(c13.check_up_block, lambda i, s, o: c13._RefUpBlock(i, s, o, "swapped"), match="skip FIRST")
    # the reference step is cnnbook's UNet decoder step: same weights, same output
    unet = UNet(3, 2, widths=(4, 6)).eval()
    step = c13._RefUpBlock(6, 4, 4).eval()
    step.up.load_state_dict(unet.up[0].state_dict())
    for mine, theirs in (
        (step.conv1, unet.decoder[0][0][0]),
        (step.bn1, unet.decoder[0][0][1]),
        (step.conv2, unet.decoder[0][1][0]),
        (step.bn2, unet.decoder[0][1][1]),
    ):
        mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 6, 10)
    skip = unet.encoder[0](x)
    torch.testing.assert_close(unet.head(step(unet.encoder[1](unet.pool(skip)), skip)), unet(x))


# ---------------------------------------------------------------- 14.14


def _patchify(x, p, order=(0, 2, 4, 1, 3, 5)):
    n, c, h, w = x.shape
    grid = x.reshape(n, c, h // p, p, w // p, p).permute(*order)
    return grid.reshape(n, (h // p) * (w // p), c * p * p)


def test_14_14_patchify() -> None:
    passes(c14.check_patchify, _patchify)
    fails(c14.check_patchify, lambda x, p: _patchify(x, p, (0, 2, 4, 3, 5, 1)), match="\\(C, p, p\\)")
    fails(c14.check_patchify, lambda x, p: _patchify(x, p, (0, 4, 2, 1, 3, 5)), match="column by column")
    fails(c14.check_patchify, lambda x, p: F.unfold(x, p, stride=p).transpose(1, 2), match="F.unfold")
    fails(c14.check_patchify, lambda x, p: _patchify(x[:1], p), match="batch of one")


def test_14_14_vit_predictions() -> None:
    passes(
        c14.check_vit_predictions,
        {"tokens": 197, "attention_shape": (8, 12, 197, 197), "embed_params": 590_592},
    )
    fails(
        c14.check_vit_predictions,
        {"tokens": 196, "attention_shape": (8, 12, 196, 196), "embed_params": 590_592},
        match="class token",
    )


def test_14_14_attention_cost() -> None:
    passes(c14.check_attention_cost, lambda s, p: ((s // p) ** 2, (s // p) ** 4))
    fails(c14.check_attention_cost, lambda s, p: ((s // p) ** 2, (s // p) ** 2), match="tokens x tokens")
    fails(c14.check_attention_cost, lambda s, p: (s // p, (s // p) ** 2), match="ONE side")


# ---------------------------------------------------------------- 14.15
# (the full wrong-answer corpus is tests/corpus/test_14_15_training_pipeline.py)


def _split(labels, fraction, seed, stratify=True):
    gen = torch.Generator().manual_seed(seed)
    if not stratify:
        perm = torch.randperm(len(labels), generator=gen)
        return perm[round(fraction * len(labels)) :], perm[: round(fraction * len(labels))]
    val = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        val.append(idx[torch.randperm(len(idx), generator=gen)[: round(fraction * len(idx))]])
    val = torch.cat(val)
    return torch.tensor(sorted(set(range(len(labels))) - set(val.tolist()))), val


def test_14_15_stratified_split() -> None:
    passes(c15.check_stratified_split, _split)
    fails(c15.check_stratified_split, lambda y, f, s: _split(y, f, s, stratify=False), match="not stratified")
    fails(
        c15.check_stratified_split,
        lambda y, f, s: (torch.arange(len(y)), _split(y, f, s)[1]),
        match="BOTH parts",
    )


def _choose(candidates, score, on="val"):
    chosen = max(candidates, key=lambda c: score(c, on))
    return chosen, score(chosen, "test")


def test_14_15_honest_selection() -> None:
    passes(c15.check_honest_selection, _choose)
    fails(c15.check_honest_selection, lambda c, s: _choose(c, s, on="test"), match="best on test")
    fails(
        c15.check_honest_selection,
        lambda c, s: (_choose(c, s)[0], s(_choose(c, s)[0], "val")),
        match="test set was scored|never scored",
    )


def _evaluate(model, loader, criterion, eval_mode=True, grad_off_globally=False, restore=True):
    modes = [(m, m.training) for m in model.modules()]
    if eval_mode:
        model.eval()
    if grad_off_globally:
        torch.set_grad_enabled(False)
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            total += criterion(out, y).item() * x.size(0)
            correct += (out.argmax(1) == y).sum().item()
            count += x.size(0)
    if restore:
        for m, was in modes:
            m.train(was)
    return total / count, correct / count


def test_14_15_evaluate() -> None:
    passes(c15.check_evaluate, _evaluate)
    fails(c15.check_evaluate, lambda *a: _evaluate(*a, eval_mode=False), match="model.eval")
    fails(c15.check_evaluate, lambda *a: _evaluate(*a, grad_off_globally=True), match="left off globally")
    fails(c15.check_evaluate, lambda *a: _evaluate(*a, restore=False), match="modes they had before")
    assert torch.is_grad_enabled()


def test_14_15_transforms() -> None:
    from torchvision import transforms as T

    def make(train, augment_val=False, normalize=True, flip=True, vflip=False):
        aug = [T.RandomCrop(32, padding=4)] + ([T.RandomHorizontalFlip()] if flip else [])
        aug += [T.RandomVerticalFlip()] if vflip else []
        norm = [T.Normalize(c15.CIFAR10_MEAN, c15.CIFAR10_STD)] if normalize else []
        return T.Compose([*(aug if train or augment_val else []), T.ToTensor(), *norm])

    passes(c15.check_transforms, make)
    fails(c15.check_transforms, lambda t: make(t, augment_val=True), match="must not be augmented")
    fails(c15.check_transforms, lambda t: make(t, normalize=False), match="does not normalise")
    fails(c15.check_transforms, lambda t: make(t, flip=False), match="RandomHorizontalFlip")
    fails(c15.check_transforms, lambda t: make(t, vflip=True), match="upside down")


# ---------------------------------------------------------------- 14.16


def test_14_16_flatten_size() -> None:
    def right(features, shape, batch=1):
        was = [(m, m.training) for m in features.modules()]
        features.eval()  # a train-mode pass would update batch-norm running statistics
        with torch.no_grad():
            out = features(torch.zeros(batch, *shape))
        for m, mode in was:
            m.train(mode)
        return out[0].numel() if batch == 1 else out.numel()

    def with_batch(features, shape):
        return right(features, shape, batch=2)

    passes(c16.check_flatten_size, right)
    fails(c16.check_flatten_size, with_batch, match="batch dimension")
    fails(c16.check_flatten_size, lambda f, s: s[0] * s[1] * s[2], match="expected")


def test_14_16_freeze_batchnorm() -> None:
    def right(model, whole=False, grads=True):
        if whole:
            model.eval()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
                if grads:
                    for p in m.parameters():
                        p.requires_grad = False
        return model

    passes(c16.check_freeze_batchnorm, right)
    fails(c16.check_freeze_batchnorm, lambda m: right(m, whole=True), match="whole model")
    fails(c16.check_freeze_batchnorm, lambda m: right(m, grads=False), match="require gradients")

    def grads_only(model):
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for p in m.parameters():
                    p.requires_grad = False
        return model

    fails(c16.check_freeze_batchnorm, grads_only, match="still in training mode")

    def children_only(model):
        for m in model.children():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
                m.requires_grad_(False)
        return model

    fails(c16.check_freeze_batchnorm, children_only, match="nested batch-norm")


def test_14_16_class_weights() -> None:
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    def right(labels, k):
        counts = torch.bincount(labels, minlength=k).float()
        return torch.where(counts > 0, len(labels) / (k * counts.clamp(min=1)), 0.0)

    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    sk = compute_class_weight("balanced", classes=np.arange(3), y=labels.numpy())
    torch.testing.assert_close(right(labels, 3), torch.tensor(sk, dtype=torch.float32))
    passes(c16.check_class_weights, right)
    fails(
        c16.check_class_weights,
        lambda y, k: torch.where(
            torch.bincount(y, minlength=k) > 0, 1 / torch.bincount(y, minlength=k).float(), 0.0
        ),
        match="N / K",
    )
    fails(
        c16.check_class_weights,
        lambda y, k: torch.bincount(y, minlength=k).float() / len(y),
        match="LARGER for rare",
    )
    fails(
        c16.check_class_weights, lambda y, k: len(y) / (k * torch.bincount(y).float()), match="minlength"
    )  # a class absent from the labels


def test_forbidden_import_inside_the_answer_is_caught_as_text() -> None:
    def correlate2d(image, kernel):
        from scipy.signal import correlate2d as c

        return torch.from_numpy(c(image.numpy(), kernel.numpy(), mode="valid"))

    fails(c01.check_correlate2d, correlate2d, match="scipy.signal.correlate2d|every convolution")
