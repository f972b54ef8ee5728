"""cnnbook.vit: patch embedding = flatten + linear, attention = nn.MultiheadAttention,
parameter count by formula, and what circular shifts do to CNN and ViT features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.models import resnet_cifar
from cnnbook.vit import (
    PatchEmbedding,
    SelfAttention,
    ViT,
    shift_equivariance_error,
    shift_equivariance_map,
    with_circular_padding,
)


def test_patch_embedding_is_flatten_then_linear() -> None:
    torch.manual_seed(0)
    emb = PatchEmbedding(3, 10, patch_size=4)
    x = torch.randn(2, 3, 16, 12)
    tokens = emb(x)
    assert tokens.shape == (2, (16 // 4) * (12 // 4), 10)
    patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (N, P, C*4*4)
    expected = patches @ emb.proj.weight.reshape(10, -1).T + emb.proj.bias
    torch.testing.assert_close(tokens, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        emb(torch.randn(1, 3, 10, 12))


def test_self_attention_equals_nn_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = SelfAttention(16, heads=4)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.out.weight)
        ref.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(3, 7, 16)
    out_ref, weights_ref = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(ours(x, keep_attention=True), out_ref, rtol=1e-5, atol=1e-5)
    assert ours.last_attention is not None
    torch.testing.assert_close(ours.last_attention, weights_ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours.last_attention.sum(-1), torch.ones(3, 4, 7))
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention(10, heads=4)


def _expected_params(c: int, p: int, d: int, depth: int, hidden: int, tokens: int, classes: int) -> int:
    embed = c * p * p * d + d
    block = 2 * (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    return embed + d + tokens * d + depth * block + 2 * d + d * classes + classes


def test_vit_shapes_and_parameter_count() -> None:
    vit = ViT(image_size=32, patch_size=4, dim=48, depth=3, heads=4, mlp_ratio=2.0)
    x = torch.randn(2, 3, 32, 32)
    assert vit(x).shape == (2, 10)
    assert vit.tokens(x).shape == (2, 1 + 64, 48)
    assert vit.patch_grid(x).shape == (2, 48, 8, 8)
    n = sum(p.numel() for p in vit.parameters())
    assert n == _expected_params(3, 4, 48, 3, 96, 65, 10)
    no_cls = ViT(
        image_size=32, patch_size=8, dim=32, depth=1, heads=2, class_token=False, position_embedding=False
    )
    assert no_cls(x).shape == (2, 10)
    assert no_cls.patch_grid(x).shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="32x32"):
        vit(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="multiple"):
        ViT(image_size=30, patch_size=4)


def test_patch_grid_follows_the_token_order() -> None:
    """Patch token k sits at grid row k // side, column k % side (raster order)."""
    vit = ViT(image_size=16, patch_size=4, dim=8, depth=1, heads=2).eval()
    x = torch.randn(1, 3, 16, 16)
    tokens, grid = vit.tokens(x)[:, 1:], vit.patch_grid(x)
    torch.testing.assert_close(grid[0, :, 2, 3], tokens[0, 2 * 4 + 3])


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_circular_conv_features_follow_any_shift(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    conv = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(8, 8, 5, padding=2, padding_mode="circular"),
    )
    for shift in [(1, 0), (3, -5), (7, 2)]:
        assert shift_equivariance_error(conv, images, shift, shift) < 1e-5
    # zero padding breaks it only where the padding enters: the border and the wrap seam
    zero = nn.Conv2d(3, 8, 3, padding=1)
    err_map = shift_equivariance_map(zero, images, (0, 5), (0, 5))
    assert err_map[:, 7:31].max() < 1e-5  # away from the edges and the seam
    assert err_map[:, 0].min() > 1e-2
    assert err_map[:, 31].min() > 1e-2


def test_strided_conv_follows_only_stride_multiple_shifts(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 4, stride=4)  # the ViT patch embedding is exactly this
    assert shift_equivariance_error(conv, images, (4, 8), (1, 2)) < 1e-5
    assert shift_equivariance_error(conv, images, (2, 0), (0, 0)) > 0.3
    assert shift_equivariance_error(conv, images, (2, 0), (1, 0)) > 0.3


def test_vit_tokens_follow_patch_shifts_only_without_position_embeddings(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    plain = ViT(patch_size=4, dim=32, depth=2, heads=4, position_embedding=False).eval()
    with_pos = ViT(patch_size=4, dim=32, depth=2, heads=4).eval()
    with torch.no_grad():
        with_pos.pos_embed.normal_(0.0, 1.0)  # as large as a trained model's
    assert shift_equivariance_error(plain.patch_grid, images, (4, -8), (1, -2)) < 1e-4
    assert shift_equivariance_error(plain.patch_grid, images, (2, 0), (0, 0)) > 0.1
    assert shift_equivariance_error(with_pos.patch_grid, images, (4, -8), (1, -2)) > 0.1
    # the class-token prediction is then shift-invariant without position embeddings
    torch.testing.assert_close(
        plain(torch.roll(images, (8, 4), (-2, -1))), plain(images), rtol=1e-4, atol=1e-4
    )


def test_equivariance_probe_rejects_non_maps(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(N, D, h, w\)"):
        shift_equivariance_error(lambda x: x.mean((2, 3)), images, (1, 1), (1, 1))


def test_circular_resnet_features_follow_stride_multiple_shifts(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = resnet_cifar(8, width=8).eval()  # stem + 3 stages; forward_features has stride 4
    circ = with_circular_padding(net)
    assert net.stem.conv.padding_mode == "zeros"
    assert circ.stem.conv.padding_mode == "circular"
    torch.testing.assert_close(circ.fc.weight, net.fc.weight)
    assert shift_equivariance_error(circ.forward_features, images, (4, -8), (1, -2)) < 1e-5
    assert shift_equivariance_error(circ.stem, images, (3, 1), (3, 1)) < 1e-5
    assert shift_equivariance_error(net.forward_features, images, (4, -8), (1, -2)) > 1e-3
    assert shift_equivariance_error(circ.forward_features, images, (1, 0), (0, 0)) > 0.05
