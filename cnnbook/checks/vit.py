"""Checks for the section 14.14 exercises (vision transformers: patches, embedding, cost).

Every check runs fixed edge cases first (non-square images, batches larger than one, several
channels, patch sizes that are not powers of two, image sides not divisible by 4), then random
cases, so an answer gets the same verdict on every seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnbook.checks.core import (
    CONV_LIBRARY,
    CheckFailed,
    Context,
    call,
    checker,
    expect_equal,
    expect_tensor,
    fail,
    forbid,
    tensors_close,
)

_OURS = "that is cnnbook's own answer; write yours."
PATCH_LIBRARY = {
    "torch.nn.functional.unfold": "F.unfold cuts the patches for you; use reshape and permute.",
    "torch.nn.Unfold": "nn.Unfold cuts the patches for you; use reshape and permute.",
    "cnnbook.vit.PatchEmbedding": _OURS,
}


def _ref_patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.unfold(x, p, stride=p).transpose(1, 2)


def _patch_cases(ctx: Context) -> list[tuple[torch.Tensor, int]]:
    cases = [
        (ctx.randn(2, 3, 6, 9), 3),  # a 2 x 3 grid of 3x3 patches, batch 2, RGB
        (ctx.randn(1, 1, 4, 8), 2),  # a 2 x 4 grid, one channel
        (ctx.randn(3, 2, 8, 4), 4),  # a 2 x 1 grid, batch 3
    ]
    for _ in range(3):
        n, c, p = ctx.randint(1, 3), ctx.randint(1, 3), ctx.choice([2, 3, 4, 5])
        cases.append((ctx.randn(n, c, p * ctx.randint(1, 4), p * ctx.randint(2, 4)), p))
    return cases


def _right_on(fn: Callable[..., torch.Tensor], x: torch.Tensor, p: int) -> bool:
    """Whether ``fn(x, p)`` runs and equals the reference (a probe for a diagnosis)."""
    try:
        with forbid(fn, PATCH_LIBRARY):
            got = call(fn, x.clone(), p)
    except CheckFailed:
        return False
    ref = _ref_patchify(x, p)
    return isinstance(got, torch.Tensor) and tensors_close(got, ref, 1e-5, 1e-4)


def _diagnose_patchify(fn: Callable[..., torch.Tensor], x: torch.Tensor, p: int) -> str:
    n, _, h, w = x.shape
    side = min(h, w)
    if h != w and side // p >= 2 and _right_on(fn, x[..., :side, :side], p):
        return (
            "Your code is right for square images only: use H // p and W // p separately "
            "(this image is H x W = " + f"{h} x {w})."
        )
    if n > 1 and _right_on(fn, x[:1], p):
        return (
            f"Your code is right for a batch of one only: keep the batch axis N = {n} "
            f"(reshape with n = x.shape[0])."
        )
    if p != 4:  # probe with an image that 2x2 and 4x4 patches both tile
        probe = x[:1, :, :1, :1].expand(1, x.shape[1], 8, 8) + torch.arange(64, dtype=x.dtype).reshape(8, 8)
        try:
            with forbid(fn, PATCH_LIBRARY):
                got = call(fn, probe.clone(), 2)
            if isinstance(got, torch.Tensor) and tensors_close(got, _ref_patchify(probe, 4), 1e-5, 1e-4):
                return f"You cut 4x4 patches: use the patch size p = {p} that the function receives."
        except CheckFailed:
            pass
    return ""


@checker("patchify")
def check_patchify(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), p)`` -> ``(N, HW/p^2, C*p*p)`` row-major patches."""
    for x, p in _patch_cases(ctx):
        n, c, h, w = x.shape
        gh, gw = h // p, w // p
        what = f"patchify(x {tuple(x.shape)}, p={p})"
        ref = _ref_patchify(x, p)
        try:
            with forbid(fn, PATCH_LIBRARY):
                got = call(fn, x.clone(), p, describe=what)
        except CheckFailed as exc:
            hint = _diagnose_patchify(fn, x, p)
            raise CheckFailed(f"{exc} {hint}".rstrip()) from None
        if not (isinstance(got, torch.Tensor) and tensors_close(got, ref, 1e-5, 1e-4)):
            hint = _diagnose_patchify(fn, x, p)
            if hint:
                fail(f"{what} gives wrong patches. {hint}")
        grid = x.reshape(n, c, gh, p, gw, p)
        expect_tensor(
            got,
            ref,
            what,
            wrong={
                "Each patch is flattened as (p, p, C) (channels last); flatten it as (C, p, p), the "
                "order of a Conv2d weight, so the embedding equals the patch conv.": grid.permute(
                    0, 2, 4, 3, 5, 1
                ).reshape(n, gh * gw, -1),
                "The patches are listed column by column; list them row by row (left to right, then "
                "top to bottom), like reading text.": grid.permute(0, 4, 2, 1, 3, 5).reshape(n, gh * gw, -1),
                "You reshaped without permuting, which mixes rows of different patches: split H "
                "and W into (grid, p) and move the two grid axes in front before flattening.": x.reshape(
                    n, gh * gw, -1
                ),
            },
            shape_hint=f"There are (H/p)(W/p) = {gh * gw} patches of C*p*p = {c * p * p} values: "
            f"({n}, {gh * gw}, {c * p * p}).",
        )
    return (
        "your patches match F.unfold's: row-major order, each flattened as (C, p, p), on "
        "non-square images and batches too."
    )


@checker("patch embedding")
def check_patch_embed(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, weight (D, C, p, p), bias (D,))`` equals the strided patch convolution."""
    cases = [
        (1, 3, 4, 8, 12, 5),  # non-square image, RGB
        (2, 2, 3, 6, 3, 4),  # p = 3, batch 2, a 2 x 1 grid
        (2, 1, 2, 4, 6, 4),
    ]  # D = C*p*p: a forgotten transpose still runs
    for _ in range(2):
        p = ctx.choice([2, 3, 4])
        cases.append(
            (
                ctx.randint(1, 2),
                ctx.randint(1, 3),
                p,
                p * ctx.randint(1, 3),
                p * ctx.randint(1, 3),
                ctx.randint(3, 8),
            )
        )
    for n, c, p, h, w, d in cases:
        x = ctx.randn(n, c, h, w)
        weight, bias = ctx.randn(d, c, p, p), ctx.randn(d)
        what = f"patch_embed(x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias)"
        with forbid(fn, CONV_LIBRARY):
            got = call(fn, x.clone(), weight.clone(), bias.clone(), describe=what)
        ref = F.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)
        patches = _ref_patchify(x, p)
        wrong = {
            "You forgot the bias.": ref - bias,
            "Tokens must be (N, num_patches, D): transpose the (N, D, num_patches) result.": ref.transpose(
                1, 2
            ),
            "The patches and the weight are flattened in different orders: flatten both as "
            "(C, p, p) (weight.flatten(1) does that for a (D, C, p, p) weight).": patches
            @ weight.permute(0, 2, 3, 1).reshape(d, -1).T
            + bias,
        }
        if d == c * p * p:
            wrong[
                "Multiply by the TRANSPOSED flattened weight: patches (N, P, C*p*p) @ "
                "weight.flatten(1).T (C*p*p, D)."
            ] = patches @ weight.flatten(1) + bias
        expect_tensor(
            got, ref, what, wrong=wrong, shape_hint="One D-dimensional token per patch: (N, num_patches, D)."
        )
    return "a ViT's patch embedding is exactly a conv with kernel = stride = patch size."


@checker("attention cost")
def check_attention_cost(ctx: Context, fn: Callable[..., tuple[int, int]]) -> str:
    """Check ``fn(image_size, patch_size)`` -> (patch tokens, attention-matrix entries)."""
    cases = [(224, 16), (32, 4), (21, 7), (30, 5), (384, 16)]
    while len(cases) < 10:
        p = ctx.choice([2, 3, 4, 6, 8, 14])
        cases.append((p * ctx.randint(2, 30), p))
    for size, p in cases:
        what = f"attention_cost(image_size={size}, patch_size={p})"
        got = call(fn, size, p, describe=what)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"{what} should return a tuple (tokens, attention_entries), got {got!r:.80}.")
        tokens = (size // p) ** 2
        if tokens != 196 and tuple(got) == (196, 196**2):
            fail(
                f"{what} returned (196, 38416), the numbers of the 224 px / 16 px example; "
                f"compute them from the arguments."
            )
        expect_equal(
            got[0],
            tokens,
            f"{what}[0] (tokens)",
            wrong={
                "That is the number of patches along ONE side; the image has (size/p)^2 patches.": size // p,
                "Divide by the patch size, not its area, along each side: (size / p)^2.": size * size // p,
                "Count the patch tokens only, without the class token: (size / p)^2.": tokens + 1,
            },
            hint="tokens = (image_size / patch_size)^2.",
        )
        expect_equal(
            got[1],
            tokens**2,
            f"{what}[1] (attention entries)",
            wrong={
                "Every token attends to every token: the attention matrix is tokens x tokens.": tokens,
                "Each pair counts in both directions (token i attending to j and j to i), the "
                "diagonal included: tokens^2 entries, not tokens * (tokens - 1) / 2.": tokens
                * (tokens - 1)
                // 2,
            },
            hint="Self-attention compares all pairs of tokens: tokens^2 entries (per head and layer).",
        )
    return "right: 224 px with 16 px patches gives 196 tokens and 38,416 attention entries per head."
