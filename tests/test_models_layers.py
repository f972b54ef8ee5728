"""cnnbook.models.layers: ConvBNAct, TensorFlow "SAME" padding and stochastic depth."""

from __future__ import annotations

import pytest
import torch

from cnnbook.models.layers import ConvBNAct, SamePad2d, StochasticDepth, tf_same_padding


@pytest.mark.parametrize(
    ("size", "k", "s", "expected"),
    [
        (224, 3, 2, (0, 1)),
        (56, 5, 2, (1, 2)),
        (225, 3, 2, (1, 1)),
        (14, 5, 1, (2, 2)),
        (7, 1, 1, (0, 0)),
    ],
)
def test_tf_same_padding(size: int, k: int, s: int, expected: tuple[int, int]) -> None:
    assert tf_same_padding(size, k, s) == expected
    before, after = expected
    assert (size + before + after - k) // s + 1 == -(-size // s)  # output is ceil(size / s)


def test_same_pad_moves_odd_pixel_to_bottom_right() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = SamePad2d(3, 2)(x)
    assert y.shape == (1, 1, 5, 5)
    torch.testing.assert_close(y[..., :4, :4], x)
    assert y[..., 4, :].abs().sum() == 0
    assert y[..., :, 4].abs().sum() == 0


def test_tf_same_and_symmetric_differ_only_for_even_strided_inputs() -> None:
    torch.manual_seed(0)
    sym = ConvBNAct(3, 4, 3, stride=2, activation=None).eval()
    tf = ConvBNAct(3, 4, 3, stride=2, activation=None, padding="tf_same").eval()
    tf.load_state_dict(sym.state_dict())
    even, odd = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 9, 9)
    assert sym(even).shape == tf(even).shape == (1, 4, 4, 4)
    assert not torch.allclose(sym(even), tf(even))
    torch.testing.assert_close(sym(odd), tf(odd))


def test_conv_bn_act_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="odd"):
        ConvBNAct(3, 4, kernel_size=2)
    with pytest.raises(ValueError, match="padding"):
        ConvBNAct(3, 4, padding="valid")  # type: ignore[arg-type]


def test_stochastic_depth_equals_torchvision_without_importing_it() -> None:
    import subprocess
    import sys

    from torchvision.ops import StochasticDepth as TVStochasticDepth

    x = torch.randn(64, 3, 4, 4)
    for p in (0.0, 0.3, 1.0):
        ours, ref = StochasticDepth(p).train(), TVStochasticDepth(p, "row").train()
        torch.manual_seed(5)
        a = ours(x)
        torch.manual_seed(5)
        torch.testing.assert_close(a, ref(x))
        assert torch.equal(ours.eval()(x), x)
    with pytest.raises(ValueError, match="drop probability"):
        StochasticDepth(1.5)
    code = "import sys, cnnbook.models, cnnbook.checks.basic_cnn; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_conv_bn_relu_is_the_one_conv_bn_act_block() -> None:
    from cnnbook.segmentation import conv_bn_relu, double_conv

    block = conv_bn_relu(3, 8, kernel_size=3, dilation=2)
    assert isinstance(block, ConvBNAct)
    assert block.conv.dilation == (2, 2)
    assert all(isinstance(b, ConvBNAct) for b in double_conv(3, 4))
    ref = ConvBNAct(3, 8, 3, dilation=2)
    ref.load_state_dict(block.state_dict())
    x = torch.randn(2, 3, 9, 7)
    torch.testing.assert_close(block.eval()(x), ref.eval()(x))
