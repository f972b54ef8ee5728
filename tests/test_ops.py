"""From-scratch convolution and pooling equal torch.nn.functional on random shapes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnbook import ops


def _random_conv_case(rng: random.Random) -> dict:
    groups = rng.choice([1, 1, 2, 3])
    c_in = groups * rng.randint(1, 3)
    c_out = groups * rng.randint(1, 3)
    kh, kw = rng.randint(1, 4), rng.randint(1, 4)
    d = (rng.randint(1, 2), rng.randint(1, 2))
    p = (rng.randint(0, 2), rng.randint(0, 2))
    s = (rng.randint(1, 3), rng.randint(1, 3))
    h = rng.randint(d[0] * (kh - 1) + 1, 12)
    w = rng.randint(d[1] * (kw - 1) + 1, 12)
    x = torch.randn(rng.randint(1, 3), c_in, h, w, dtype=torch.float64)
    weight = torch.randn(c_out, c_in // groups, kh, kw, dtype=torch.float64)
    bias = torch.randn(c_out, dtype=torch.float64) if rng.random() < 0.7 else None
    return dict(x=x, weight=weight, bias=bias, stride=s, padding=p, dilation=d, groups=groups)


@pytest.mark.parametrize("impl", [ops.conv2d_loops, ops.conv2d_unfold])
def test_conv2d_matches_functional(impl) -> None:
    rng = random.Random(0)
    for _ in range(150):
        case = _random_conv_case(rng)
        torch.testing.assert_close(impl(**case), F.conv2d(**case), rtol=1e-10, atol=1e-10)


def test_conv2d_float32_tolerance_on_larger_input() -> None:
    x, w, b = torch.randn(2, 16, 32, 32), torch.randn(8, 16, 3, 3), torch.randn(8)
    torch.testing.assert_close(
        ops.conv2d_unfold(x, w, b, padding=1), F.conv2d(x, w, b, padding=1), rtol=1e-4, atol=1e-4
    )


def test_depthwise_is_groups_equal_channels() -> None:
    x, w = torch.randn(1, 4, 9, 9), torch.randn(4, 1, 3, 3)
    torch.testing.assert_close(ops.conv2d_loops(x, w, groups=4), F.conv2d(x, w, groups=4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(x=torch.randn(3, 8, 8), weight=torch.randn(1, 3, 3, 3)), "add a batch dimension"),
        (dict(x=torch.randn(1, 3, 8, 8), weight=torch.randn(1, 4, 3, 3)), "Channel mismatch"),
        (dict(x=torch.randn(1, 3, 4, 4), weight=torch.randn(1, 3, 7, 7)), "larger than the padded"),
        (dict(x=torch.randn(1, 3, 8, 8), weight=torch.randn(1, 3, 3, 3), stride=0), "stride"),
        (dict(x=torch.randn(1, 3, 8, 8), weight=torch.randn(1, 3, 3, 3), dilation=-1), "dilation"),
        (dict(x=torch.randn(1, 4, 8, 8), weight=torch.randn(3, 2, 3, 3), groups=2), "divide"),
        (dict(x=torch.randn(1, 3, 8, 8), weight=torch.randn(2, 3, 3, 3), bias=torch.randn(3)), "bias"),
    ],
)
@pytest.mark.parametrize("impl", [ops.conv2d_loops, ops.conv2d_unfold])
def test_bad_conv_input_is_a_clear_value_error(impl, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        impl(**kwargs)


def test_1d_correlation_and_convolution_match_numpy() -> None:
    rng = np.random.default_rng(0)
    sig, ker = rng.normal(size=50), rng.normal(size=5)
    t_sig, t_ker = torch.from_numpy(sig), torch.from_numpy(ker)
    np.testing.assert_allclose(
        ops.convolve1d(t_sig, t_ker).numpy(), np.convolve(sig, ker, mode="valid"), rtol=1e-12
    )
    np.testing.assert_allclose(
        ops.correlate1d(t_sig, t_ker).numpy(), np.correlate(sig, ker, mode="valid"), rtol=1e-12
    )
    with pytest.raises(ValueError, match="longer"):
        ops.correlate1d(t_ker, t_sig)


def test_convolve2d_is_correlation_with_flipped_kernel() -> None:
    from scipy.signal import convolve2d as sp_convolve2d

    img, k = torch.randn(10, 12, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    np.testing.assert_allclose(
        ops.convolve2d(img, k).numpy(), sp_convolve2d(img.numpy(), k.numpy(), mode="valid"), rtol=1e-10
    )
    asym = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert not torch.allclose(
        ops.convolve2d(img.float(), asym), ops.conv2d_unfold(img.float()[None, None], asym[None, None])[0, 0]
    )


@pytest.mark.parametrize(("pool", "ref"), [(ops.max_pool2d, F.max_pool2d), (ops.avg_pool2d, F.avg_pool2d)])
def test_pooling_matches_functional(pool, ref) -> None:
    rng = random.Random(1)
    for _ in range(200):
        k = (rng.randint(1, 4), rng.randint(1, 4))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
        x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), rng.randint(k[0], 11), rng.randint(k[1], 11))
        torch.testing.assert_close(pool(x, k, s, p), ref(x, k, s, p))
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(pool(x, 2), ref(x, 2))  # stride defaults to the window


def test_pooling_errors_and_gap() -> None:
    with pytest.raises(ValueError, match="padding"):
        ops.max_pool2d(torch.randn(1, 1, 8, 8), 2, 2, padding=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ops.avg_pool2d(torch.randn(8, 8), 2)
    x = torch.randn(2, 512, 7, 7)
    torch.testing.assert_close(ops.global_avg_pool2d(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
