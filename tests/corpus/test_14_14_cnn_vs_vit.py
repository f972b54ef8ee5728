"""Wrong-answer corpus for the 14.14 exercises: patchify, the patch embedding, attention cost.

Each answer is written the way a student would write it. Correct answers (the reference and
other valid spellings) must pass on every seed; each mistake must fail on every seed with a
message that names it.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cnnbook.checks import vit as checks
from tests.corpus.corpus_tools import accepted, rejected

# ---------------------------------------------------------------- Exercise 1: patchify


def patchify(x, p):
    n, c, h, w = x.shape
    grid = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(n, (h // p) * (w // p), c * p * p)


def patchify_with_unfold_method(x, p):
    patches = x.unfold(2, p, p).unfold(3, p, p)  # (N, C, gh, gw, p, p): Tensor.unfold, not F.unfold
    n, c, gh, gw = patches.shape[:4]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(n, gh * gw, c * p * p)


def patchify_loops(x, p):
    n, c, h, w = x.shape
    patches = [
        x[:, :, i : i + p, j : j + p].reshape(n, -1)  # (N, C*p*p), (C, p, p) order
        for i in range(0, h, p)
        for j in range(0, w, p)
    ]
    return torch.stack(patches, dim=1)


def patchify_channels_last(x, p):
    n, c, h, w = x.shape
    grid = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return grid.reshape(n, -1, c * p * p)


def patchify_column_by_column(x, p):
    n, c, h, w = x.shape
    grid = x.reshape(n, c, h // p, p, w // p, p).permute(0, 4, 2, 1, 3, 5)
    return grid.reshape(n, -1, c * p * p)


def patchify_reshape_without_permute(x, p):
    n, c, h, w = x.shape
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def patchify_square_images_only(x, p):
    n, c, h, _ = x.shape
    g = h // p
    grid = x.reshape(n, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(n, g * g, c * p * p)


def patchify_batch_of_one(x, p):
    _, c, h, w = x.shape
    grid = x[0].reshape(c, h // p, p, w // p, p).permute(1, 3, 0, 2, 4)
    return grid.reshape(1, (h // p) * (w // p), c * p * p)


def patchify_hard_coded_patch_size(x, p):
    return patchify(x, 4)


def patchify_with_f_unfold(x, p):
    return torch.nn.functional.unfold(x, p, stride=p).transpose(1, 2)


def patchify_with_nn_unfold(x, p):
    return torch.nn.Unfold(p, stride=p)(x).transpose(1, 2)


def patchify_with_aten_im2col(x, p):
    return torch.ops.aten.im2col(x, [p, p], [1, 1], [0, 0], [p, p]).transpose(1, 2)


def patchify_with_one_hot_conv(x, p):
    c = x.shape[1]
    eye = torch.eye(c * p * p, dtype=x.dtype).reshape(c * p * p, c, p, p)
    return F.conv2d(x, eye, stride=p).flatten(2).transpose(1, 2)


def patchify_inference_mode_float32(x, p):
    with torch.inference_mode():
        return patchify(x.float(), p)


def test_patchify_correct_answers_pass() -> None:
    accepted(checks.check_patchify, patchify)
    accepted(checks.check_patchify, patchify_with_unfold_method)
    accepted(checks.check_patchify, patchify_loops)
    accepted(checks.check_patchify, patchify_inference_mode_float32)


@pytest.mark.parametrize(
    "answer",
    [patchify_with_f_unfold, patchify_with_nn_unfold, patchify_with_aten_im2col, patchify_with_one_hot_conv],
)
def test_patchify_library_routes_are_refused(answer) -> None:
    rejected(checks.check_patchify, answer, hint="off limits", requirement="reshape and permute")


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (patchify_channels_last, r"\(p, p, C\)"),
        (patchify_column_by_column, "column by column"),
        (patchify_reshape_without_permute, "without permuting"),
        (patchify_square_images_only, "square images only"),
        (patchify_batch_of_one, "batch of one"),
        (patchify_hard_coded_patch_size, "4x4 patches"),
        (patchify_with_f_unfold, "F.unfold"),
    ],
)
def test_patchify_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_patchify, answer, hint=hint)


# ---------------------------------------------------------------- Exercise 3: attention cost


def attention_cost(image_size, patch_size):
    tokens = (image_size // patch_size) ** 2
    return tokens, tokens**2


def attention_cost_float_division(image_size, patch_size):
    tokens = round((image_size / patch_size) ** 2)
    return tokens, tokens * tokens


def cost_one_side_only(image_size, patch_size):
    side = image_size // patch_size
    return side, side**2


def cost_divides_by_patch_side_once(image_size, patch_size):
    tokens = image_size * image_size // patch_size
    return tokens, tokens**2


def cost_counts_class_token(image_size, patch_size):
    tokens = (image_size // patch_size) ** 2 + 1
    return tokens, tokens**2


def cost_entries_not_squared(image_size, patch_size):
    tokens = (image_size // patch_size) ** 2
    return tokens, tokens


def cost_unordered_pairs(image_size, patch_size):
    tokens = (image_size // patch_size) ** 2
    return tokens, tokens * (tokens - 1) // 2


def cost_hard_coded_example(image_size, patch_size):
    return 196, 38416


def attention_cost_numpy_ints(image_size, patch_size):
    import numpy as np

    tokens = np.int64(image_size // patch_size) ** 2
    return tokens, tokens**2


def cost_float_tokens(image_size, patch_size):
    tokens = (image_size / patch_size) ** 2
    return tokens, tokens**2


def cost_tensor_counts(image_size, patch_size):
    tokens = torch.tensor(image_size // patch_size) ** 2
    return tokens, tokens**2


def test_attention_cost_correct_answers_pass() -> None:
    accepted(checks.check_attention_cost, attention_cost)
    accepted(checks.check_attention_cost, attention_cost_float_division)
    accepted(checks.check_attention_cost, attention_cost_numpy_ints)


@pytest.mark.parametrize("answer", [cost_float_tokens, cost_tensor_counts])
def test_attention_cost_counts_must_be_ints(answer) -> None:
    rejected(checks.check_attention_cost, answer, hint=r"\bint\b", requirement="as ints")


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (cost_one_side_only, "ONE side"),
        (cost_divides_by_patch_side_once, "not its area"),
        (cost_counts_class_token, "without the class token"),
        (cost_entries_not_squared, "tokens x tokens"),
        (cost_unordered_pairs, "both directions"),
        (cost_hard_coded_example, "224 px / 16 px example"),
    ],
)
def test_attention_cost_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_attention_cost, answer, hint=hint)


# ---------------------------------------------------------------- Exercise 2: predict ViT-B/16 sizes

RIGHT = {"tokens": 197, "attention_shape": (8, 12, 197, 197), "embed_params": 590_592}


def test_vit_predictions_accept_the_sizes() -> None:
    accepted(checks.check_vit_predictions, RIGHT)
    accepted(checks.check_vit_predictions, {**RIGHT, "attention_shape": [8, 12, 197, 197]})
    accepted(checks.check_vit_predictions, {**RIGHT, "attention_shape": torch.Size([8, 12, 197, 197])})


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ({**RIGHT, "tokens": 196}, r"class token is a token too"),
        ({**RIGHT, "tokens": 197.0}, r"whole number"),
        ({**RIGHT, "attention_shape": (8, 197, 197)}, r"Each head has its own"),
        ({**RIGHT, "attention_shape": (8, 12, 197, 64)}, r"12 heads of 64"),
        ({**RIGHT, "attention_shape": (8, 12, 196, 196)}, r"class token attends"),
        ({**RIGHT, "attention_shape": (8, 197, 768)}, r"one T x T matrix per head"),
        ({**RIGHT, "embed_params": 589_824}, r"forgot the bias"),
        ({**RIGHT, "embed_params": 197_376}, r"all 3 colour channels"),
        ({**RIGHT, "embed_params": 196 * 590_592}, r"shared by all 196 patches"),
        ({**RIGHT, "embed_params": 590_592.0}, r"whole number"),
        ({"tokens": 197, "attention_shape": (8, 12, 197, 197)}, r"give a dict with the keys"),
        ({**RIGHT, "tokens": ...}, r"replace every"),
    ],
)
def test_vit_predictions_reject_mistakes(answer, hint) -> None:
    rejected(checks.check_vit_predictions, answer, hint=hint)


# ---------------------------------------------------------------- Exercise 3: find the bug in attention


def _heads(m, n, t, h):
    return m.reshape(n, t, h, -1).transpose(1, 2)


def attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(dim=-1)
    return F.linear((weights @ v).transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_einsum_float64(x, qkv_weight, qkv_bias, out_weight, out_bias, heads, dropout=0.0):
    x64 = x.double()
    n, t, d = x.shape
    qkv = x64 @ qkv_weight.double().T + qkv_bias.double()
    q, k, v = (_heads(m, n, t, heads) for m in qkv.chunk(3, dim=-1))
    weights = torch.softmax(torch.einsum("nhqd,nhkd->nhqk", q, k) * (d // heads) ** -0.5, dim=-1)
    mixed = torch.einsum("nhqk,nhkd->nqhd", weights, v).reshape(n, t, d)
    return (mixed @ out_weight.double().T + out_bias.double()).float()


def attention_buggy(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):  # the exercise's code
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(dim=-2)
    return F.linear((weights @ v).transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_only_softmax_fixed(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(dim=-1)
    return F.linear((weights @ v).transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_only_scale_fixed(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(dim=-2)
    return F.linear((weights @ v).transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_heads_reshaped_directly(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (m.reshape(n, heads, t, -1) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(dim=-1)
    return F.linear((weights @ v).transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_without_output_projection(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    weights = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(dim=-1)
    return (weights @ v).transpose(1, 2).reshape(n, t, d)


def attention_with_the_fused_kernel(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    mixed = F.scaled_dot_product_attention(q, k, v)
    return F.linear(mixed.transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_with_mha(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    from torch import nn

    mha = nn.MultiheadAttention(x.shape[-1], heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(qkv_weight)
        mha.in_proj_bias.copy_(qkv_bias)
        mha.out_proj.weight.copy_(out_weight)
        mha.out_proj.bias.copy_(out_bias)
    return mha(x, x, x, need_weights=False)[0]


def attention_with_aten_sdpa(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    n, t, d = x.shape
    q, k, v = (_heads(m, n, t, heads) for m in F.linear(x, qkv_weight, qkv_bias).split(d, dim=-1))
    mixed = torch.ops.aten.scaled_dot_product_attention(q, k, v)
    return F.linear(mixed.transpose(1, 2).reshape(n, t, d), out_weight, out_bias)


def attention_with_mha_forward(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    xt = x.transpose(0, 1)
    out, _ = F.multi_head_attention_forward(
        xt,
        xt,
        xt,
        x.shape[-1],
        heads,
        qkv_weight,
        qkv_bias,
        None,
        None,
        False,
        0.0,
        out_weight,
        out_bias,
        need_weights=False,
    )
    return out.transpose(0, 1)


def attention_with_mha_fast_path(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    from torch import nn

    mha = nn.MultiheadAttention.__new__(nn.MultiheadAttention)  # skip __init__, as a dodge would
    nn.Module.__init__(mha)
    mha.embed_dim, mha.num_heads, mha.batch_first, mha.dropout = x.shape[-1], heads, True, 0.0
    mha._qkv_same_embed_dim, mha.kdim, mha.vdim, mha.head_dim = (
        True,
        x.shape[-1],
        x.shape[-1],
        x.shape[-1] // heads,
    )
    mha.in_proj_weight, mha.in_proj_bias = nn.Parameter(qkv_weight), nn.Parameter(qkv_bias)
    mha.q_proj_weight = mha.k_proj_weight = mha.v_proj_weight = None
    mha.bias_k = mha.bias_v = None
    mha.add_zero_attn = False
    mha.out_proj = nn.Linear(x.shape[-1], x.shape[-1])
    mha.out_proj.weight, mha.out_proj.bias = nn.Parameter(out_weight), nn.Parameter(out_bias)
    mha.eval()
    with torch.inference_mode():
        return mha(x, x, x, need_weights=False)[0].clone()


def attention_with_cnnbook(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    from cnnbook.vit import SelfAttention

    layer = SelfAttention(x.shape[-1], heads)
    with torch.no_grad():
        layer.qkv.weight.copy_(qkv_weight)
        layer.qkv.bias.copy_(qkv_bias)
        layer.out.weight.copy_(out_weight)
        layer.out.bias.copy_(out_bias)
    return layer(x)


def attention_inference_mode(x, qkv_weight, qkv_bias, out_weight, out_bias, heads):
    with torch.inference_mode():
        return attention(x, qkv_weight, qkv_bias, out_weight, out_bias, heads).clone()


def test_attention_correct_answers_pass() -> None:
    accepted(checks.check_attention, attention)
    accepted(checks.check_attention, attention_einsum_float64)
    accepted(checks.check_attention, attention_inference_mode)


@pytest.mark.parametrize(
    "answer",
    [
        attention_with_the_fused_kernel,
        attention_with_aten_sdpa,
        attention_with_mha,
        attention_with_mha_forward,
        attention_with_mha_fast_path,
        attention_with_cnnbook,
    ],
)
def test_attention_library_routes_are_refused(answer) -> None:
    rejected(
        checks.check_attention,
        answer,
        hint="off limits",
        requirement="without F.scaled_dot_product_attention",
    )


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (attention_buggy, r"Both bugs"),
        (attention_only_softmax_fixed, r"1 / sqrt\(d_h\), the width of ONE head"),
        (attention_only_scale_fixed, r"softmax must run over the keys"),
        (attention_heads_reshaped_directly, r"Split the heads"),
        (attention_without_output_projection, r"output projection"),
        (attention_with_the_fused_kernel, r"scaled_dot_product_attention"),
        (attention_with_mha, r"MultiheadAttention"),
    ],
)
def test_attention_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_attention, answer, hint=hint)
