"""Checks for the section 14.14 exercises (vision transformers: patches, embedding, cost)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnbook.checks.convolution import CONV_LIBRARY
from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_equal,
    expect_tensor,
    fail,
    forbid,
)

_OURS = "that is cnnbook's own answer; write yours."
PATCH_LIBRARY = {
    "torch.nn.functional.unfold": "F.unfold cuts the patches for you; use reshape and permute.",
    "torch.nn.Unfold": "nn.Unfold cuts the patches for you; use reshape and permute.",
    "cnnbook.vit.PatchEmbedding": _OURS,
}


def _ref_patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.unfold(x, p, stride=p).transpose(1, 2)


@checker("patchify")
def check_patchify(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), p)`` -> ``(N, HW/p^2, C*p*p)`` row-major patches."""
    for _ in range(5):
        n, c, p = ctx.randint(1, 2), ctx.randint(1, 3), ctx.choice([2, 3, 4])
        gh, gw = ctx.randint(1, 4), ctx.randint(2, 4)
        x = ctx.randn(n, c, gh * p, gw * p)
        what = f"patchify(x {tuple(x.shape)}, p={p})"
        with forbid(fn, PATCH_LIBRARY):
            got = call(fn, x.clone(), p, describe=what)
        grid = x.reshape(n, c, gh, p, gw, p)
        expect_tensor(got, _ref_patchify(x, p), what, wrong={
            "Each patch is flattened as (p, p, C) (channels last); flatten it as (C, p, p), the "
            "order of a Conv2d weight, so the embedding equals the patch conv.":
                grid.permute(0, 2, 4, 3, 5, 1).reshape(n, gh * gw, -1),
            "The patches are listed column by column; list them row by row (left to right, then "
            "top to bottom), like reading text.":
                grid.permute(0, 4, 2, 1, 3, 5).reshape(n, gh * gw, -1),
            "You reshaped without permuting, which mixes rows of different patches: split H "
            "and W into (grid, p) and move the two grid axes in front before flattening.":
                x.reshape(n, gh * gw, -1),
        }, shape_hint=f"There are (H/p)(W/p) = {gh * gw} patches of C*p*p = {c * p * p} values: "
                      f"({n}, {gh * gw}, {c * p * p}).")
    return "your patches match F.unfold's: row-major order, each flattened as (C, p, p)."


@checker("patch embedding")
def check_patch_embed(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, weight (D, C, p, p), bias (D,))`` equals the strided patch convolution."""
    for _ in range(4):
        n, c, p, d = ctx.randint(1, 2), ctx.randint(1, 3), ctx.choice([2, 4]), ctx.randint(3, 8)
        x = ctx.randn(n, c, p * ctx.randint(1, 3), p * ctx.randint(1, 3))
        weight, bias = ctx.randn(d, c, p, p), ctx.randn(d)
        what = f"patch_embed(x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias)"
        with forbid(fn, CONV_LIBRARY):
            got = call(fn, x.clone(), weight.clone(), bias.clone(), describe=what)
        ref = F.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)
        expect_tensor(got, ref, what, wrong={
            "You forgot the bias.": ref - bias,
            "Tokens must be (N, num_patches, D): transpose the (N, D, num_patches) result.":
                ref.transpose(1, 2),
        }, shape_hint="One D-dimensional token per patch: (N, num_patches, D).")
    return "a ViT's patch embedding is exactly a conv with kernel = stride = patch size."


@checker("attention cost")
def check_attention_cost(ctx: Context, fn: Callable[..., tuple[int, int]]) -> str:
    """Check ``fn(image_size, patch_size)`` -> (tokens, attention-matrix entries)."""
    cases = [(224, 16), (32, 4)] + [(ctx.choice([2, 4, 8]) * ctx.randint(2, 20),) for _ in range(5)]
    for case in cases:
        if len(case) == 1:
            p = ctx.choice([2, 4, 8])
            case = (p * ctx.randint(2, 30), p)
        size, p = case
        what = f"attention_cost(image_size={size}, patch_size={p})"
        got = call(fn, size, p, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (tokens, attention_entries), got {got!r}.")
        tokens = (size // p) ** 2
        expect_equal(got[0], tokens, f"{what}[0] (tokens)", wrong={
            "That is the number of patches along ONE side; the image has (size/p)^2 patches.":
                size // p,
            "Divide by the patch size, not its area, along each side: (size / p)^2.":
                size * size // p,
        }, hint="tokens = (image_size / patch_size)^2.")
        expect_equal(got[1], tokens**2, f"{what}[1] (attention entries)", wrong={
            "Every token attends to every token: the attention matrix is tokens x tokens.": tokens,
        }, hint="Self-attention compares all pairs of tokens: tokens^2 entries (per head and layer).")
    return "right: 224 px with 16 px patches gives 196 tokens and 38,416 attention entries per head."
