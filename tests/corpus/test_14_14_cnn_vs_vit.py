"""Wrong-answer corpus for the 14.14 exercises: patchify, the patch embedding, attention cost.

Each answer is written the way a student would write it. Correct answers (the reference and
other valid spellings) must pass on every seed; each mistake must fail on every seed with a
message that names it.
"""

from __future__ import annotations

import pytest
import torch

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


def test_patchify_correct_answers_pass() -> None:
    accepted(checks.check_patchify, patchify)
    accepted(checks.check_patchify, patchify_with_unfold_method)
    accepted(checks.check_patchify, patchify_loops)


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


# ---------------------------------------------------------------- Exercise 2: patch embedding


def patch_embed(x, weight, bias):
    return patchify(x, weight.shape[-1]) @ weight.flatten(1).T + bias


def patch_embed_einsum(x, weight, bias):
    patches = patchify(x, weight.shape[-1])
    return torch.einsum("npk,dk->npd", patches, weight.reshape(weight.shape[0], -1)) + bias


def patch_embed_linear(x, weight, bias):
    return torch.nn.functional.linear(patchify(x, weight.shape[-1]), weight.flatten(1), bias)


def embed_forgets_bias(x, weight, bias):
    return patchify(x, weight.shape[-1]) @ weight.flatten(1).T


def embed_tokens_transposed(x, weight, bias):
    return (patchify(x, weight.shape[-1]) @ weight.flatten(1).T + bias).transpose(1, 2)


def embed_weight_flattened_channels_last(x, weight, bias):
    return patchify(x, weight.shape[-1]) @ weight.permute(0, 2, 3, 1).flatten(1).T + bias


def embed_weight_not_transposed(x, weight, bias):
    return patchify(x, weight.shape[-1]) @ weight.flatten(1) + bias


def embed_with_conv2d(x, weight, bias):
    p = weight.shape[-1]
    return torch.nn.functional.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)


def test_patch_embed_correct_answers_pass() -> None:
    accepted(checks.check_patch_embed, patch_embed)
    accepted(checks.check_patch_embed, patch_embed_einsum)
    accepted(checks.check_patch_embed, patch_embed_linear)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (embed_forgets_bias, "forgot the bias"),
        (embed_tokens_transposed, "transpose the \\(N, D, num_patches\\)"),
        (embed_weight_flattened_channels_last, "different orders"),
        (embed_weight_not_transposed, "TRANSPOSED flattened weight|raised RuntimeError"),
        (embed_with_conv2d, "conv2d"),
    ],
)
def test_patch_embed_mistakes_are_named(answer, hint) -> None:
    rejected(checks.check_patch_embed, answer, hint=hint)


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


def test_attention_cost_correct_answers_pass() -> None:
    accepted(checks.check_attention_cost, attention_cost)
    accepted(checks.check_attention_cost, attention_cost_float_division)


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
