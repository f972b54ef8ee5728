"""Checks for the section 14.14 exercises (vision transformers: patches, sizes, attention, cost).

Every check runs fixed edge cases first (non-square images, batches larger than one, several
channels, patch sizes that are not powers of two, image sides not divisible by 4), then random
cases, so an answer gets the same verdict on every seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.checks.core import (
    FAMILY_CONV,
    CheckFailed,
    Context,
    Family,
    call,
    checker,
    expect_answers,
    expect_equal,
    expect_int,
    expect_tensor,
    fail,
    forbidden,
    tensors_close,
)

_PATCH_WHY = "cut the patches with reshape and permute"
FAMILY_IM2COL = Family(
    name="patch extraction",
    does="cuts every patch out and flattens it for you",
    task=_PATCH_WHY,
    scope="F.unfold, F.fold, nn.Unfold (im2col) and cnnbook's PatchEmbedding (Tensor.unfold along one "
    "axis is allowed)",
    ops=r"::(im2col|col2im)$",
    python=(
        (r"torch\.nn\.functional", r"^(unfold|fold)$"),
        (r"torch\.nn\.modules\.fold", r"^(Unfold|Fold)$"),
        (r"cnnbook\.(?!checks)[\w.]+", r"^(PatchEmbedding|patchify)$"),
    ),
)
FAMILY_ATTENTION = Family(
    name="attention",
    does="computes the attention for you",
    task="write the attention formula yourself",
    scope="F.scaled_dot_product_attention (and its fused kernels), F.multi_head_attention_forward, "
    "nn.MultiheadAttention, nn.TransformerEncoderLayer, and cnnbook's SelfAttention",
    ops=r"scaled_dot_product|multi_head_attention|_transformer_encoder|_masked_softmax",
    python=(
        (r"torch\.nn\.functional", r"^(scaled_dot_product_attention|multi_head_attention_forward)$"),
        (r"torch\.nn\.modules\.(activation|transformer)", r"^(MultiheadAttention|TransformerEncoderLayer)$"),
        (r"cnnbook\.(?!checks)[\w.]+", r"(?i)attention"),
    ),
)


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
        with forbidden(FAMILY_IM2COL, FAMILY_CONV, why=_PATCH_WHY):
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
            with forbidden(FAMILY_IM2COL, FAMILY_CONV, why=_PATCH_WHY):
                got = call(fn, probe.clone(), 2)
            if isinstance(got, torch.Tensor) and tensors_close(got, _ref_patchify(probe, 4), 1e-5, 1e-4):
                return f"You cut 4x4 patches: use the patch size p = {p} that the function receives."
        except CheckFailed:
            pass
    return ""


@checker(
    "patchify",
    requirement="(N, (H/p)(W/p), C*p*p): patches row by row, each flattened as (C, p, p), cut with "
    "reshape and permute (no F.unfold / nn.Unfold, no convolution)",
)
def check_patchify(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x (N, C, H, W), p)`` -> ``(N, HW/p^2, C*p*p)`` row-major patches."""
    for x, p in _patch_cases(ctx):
        n, c, h, w = x.shape
        gh, gw = h // p, w // p
        what = f"patchify(x {tuple(x.shape)}, p={p})"
        ref = _ref_patchify(x, p)
        try:
            with forbidden(FAMILY_IM2COL, FAMILY_CONV, why=_PATCH_WHY):
                got = call(fn, x.clone(), p, describe=what)
        except CheckFailed as exc:
            hint = "" if "off limits" in str(exc) else _diagnose_patchify(fn, x, p)
            raise CheckFailed(
                f"{exc} {hint}".rstrip(), requirement=exc.requirement, hint2=exc.hint2
            ) from None
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


@checker(
    "attention cost",
    requirement="(tokens, entries) as ints: (image_size // patch_size)^2 patch tokens, no class "
    "token, and tokens^2 attention entries",
)
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
        got = (
            expect_int(got[0], f"{what}[0] (tokens)"),
            expect_int(got[1], f"{what}[1] (attention entries)"),
        )
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


# ---------------------------------------------------------------- predict, then check: ViT-B/16


def _vit_b16_reference(batch: int = 8) -> dict[str, Any]:
    """Tokens, attention-weight shape and patch-embedding parameters of torchvision's ViT-B/16."""
    from torchvision.models import vit_b_16

    with torch.device("meta"):
        model = vit_b_16(weights=None)
    heads = model.encoder.layers[0].self_attention.num_heads
    tokens = int(model.seq_length)  # patches + class token
    return {
        "tokens": tokens,
        "attention_shape": (batch, heads, tokens, tokens),
        "embed_params": sum(p.numel() for p in model.conv_proj.parameters()),
    }


@checker(
    "predicted ViT-B/16 sizes",
    requirement="tokens and embed_params as whole numbers, attention_shape as a tuple of ints, "
    "all for a batch of 8 at 224 px",
)
def check_vit_predictions(ctx: Context, predicted: Any) -> str:
    """Compare predictions for ViT-B/16 at 224 px (batch 8) with torchvision's model."""
    del ctx  # one fixed model: the same verdict on every seed
    keys = ["tokens", "attention_shape", "embed_params"]
    predicted = expect_answers(predicted, keys, "predicted")
    ref = _vit_b16_reference()
    for key in ("tokens", "embed_params"):
        v = predicted[key]
        if isinstance(v, bool) or not isinstance(v, int):
            fail(f"predicted[{key!r}] is a count: enter a whole number (an int), got {v!r}.")
    shape = predicted["attention_shape"]
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        fail(f"predicted['attention_shape'] is a shape: a tuple of ints such as (2, 3, 4, 5), got {shape!r}.")
    expect_equal(
        predicted["tokens"],
        ref["tokens"],
        "predicted['tokens']",
        wrong={
            "That counts the patches only: the class token is a token too (196 + 1).": 196,
            "That is the number of patches along one side; the image has 14 x 14 of them, plus the "
            "class token.": 14,
            "Count patches of 16 x 16 pixels on a 224 x 224 image: 224 / 16 = 14 per side.": (224 // 8) ** 2
            + 1,
        },
        hint="tokens = (224 / 16)^2 patches + 1 class token.",
    )
    t = ref["tokens"]
    expect_equal(
        tuple(shape),
        ref["attention_shape"],
        "predicted['attention_shape']",
        wrong={
            "Attention weights have one T x T matrix per head: (batch, heads, T, T), not (batch, T, D).": (
                8,
                t,
                768,
            ),
            "Each head has its own attention matrix: (batch, heads, T, T).": (8, t, t),
            "ViT-B/16 has 12 heads of 64 channels (768 = 12 x 64); the weights are (batch, heads, T, T).": (
                8,
                12,
                t,
                64,
            ),
            "The class token attends and is attended to as well: T = 197.": (8, 12, 196, 196),
        },
        hint="Per head, every token weighs every token: (batch, heads, tokens, tokens).",
    )
    expect_equal(
        predicted["embed_params"],
        ref["embed_params"],
        "predicted['embed_params']",
        wrong={
            "You forgot the bias: one per output channel, 768 more.": 768 * 3 * 16 * 16,
            "Each of the 768 filters sees all 3 colour channels of a 16 x 16 patch: 768 * 3 * 16 * 16 "
            "weights, plus 768 biases.": 768 * 16 * 16 + 768,
            "The weights are shared by all 196 patches: do not multiply by the number of patches.": 196
            * (768 * 3 * 16 * 16 + 768),
        },
        hint="A conv with 768 filters of 3 x 16 x 16 weights and one bias each.",
    )
    return (
        f"ViT-B/16 at 224 px: {ref['tokens']} tokens, attention weights {ref['attention_shape']} per "
        f"layer, {ref['embed_params']:,} parameters in the patch embedding."
    )


# ---------------------------------------------------------------- find the bug: attention


def _attention(
    x: torch.Tensor,
    qkv_w: torch.Tensor,
    qkv_b: torch.Tensor,
    out_w: torch.Tensor,
    out_b: torch.Tensor,
    heads: int,
    mistake: str = "",
) -> torch.Tensor:
    n, t, d = x.shape
    dh = d // heads
    q, k, v = F.linear(x, qkv_w, qkv_b).split(d, dim=-1)
    if mistake == "no_transpose":
        q, k, v = (m.reshape(n, heads, t, dh) for m in (q, k, v))
    else:
        q, k, v = (m.reshape(n, t, heads, dh).transpose(1, 2) for m in (q, k, v))
    scale = d**-0.5 if "scale_d" in mistake else 1.0 if mistake == "no_scale" else dh**-0.5
    scores = q @ k.transpose(-2, -1) * scale
    weights = scores.softmax(dim=-2 if "softmax_rows" in mistake else -1)
    mixed = weights @ v
    mixed = (
        mixed.reshape(n, t, d) if mistake == "no_transpose_back" else mixed.transpose(1, 2).reshape(n, t, d)
    )
    if mistake == "no_out":
        return mixed
    return F.linear(mixed, out_w, out_b)


@checker(
    "self-attention",
    requirement="softmax(Q K^T / sqrt(d_h)) V per head (softmax over the keys, d_h = D / heads), "
    "heads concatenated, then the output projection; written by hand, without "
    "F.scaled_dot_product_attention, nn.MultiheadAttention or cnnbook's SelfAttention",
)
def check_attention(ctx: Context, fn: Callable[..., torch.Tensor]) -> str:
    """Check ``fn(x, qkv_weight, qkv_bias, out_weight, out_bias, heads)`` against nn.MultiheadAttention."""
    cases = [(2, 5, 8, 2), (1, 7, 12, 3), (3, 4, 6, 1), (2, 6, 16, 4)]  # T != D, 1 to 4 heads
    for _ in range(2):
        h = ctx.choice([1, 2, 4])
        cases.append((ctx.randint(1, 3), ctx.randint(2, 9), h * ctx.randint(2, 4), h))
    for n, t, d, h in cases:
        x = ctx.randn(n, t, d, dtype=torch.float32)
        mha = nn.MultiheadAttention(d, h, batch_first=True)
        with torch.no_grad():
            for p in mha.parameters():
                p.copy_(torch.randn(p.shape, generator=ctx.gen) * 0.5)
            ref = mha(x, x, x, need_weights=False)[0]
        args = (
            mha.in_proj_weight.detach(),
            mha.in_proj_bias.detach(),
            mha.out_proj.weight.detach(),
            mha.out_proj.bias.detach(),
        )
        what = f"attention(x {tuple(x.shape)}, ..., heads={h})"
        with forbidden(FAMILY_ATTENTION):
            got = call(fn, x.clone(), *(a.clone() for a in args), h, describe=what)
        mistakes = {
            "softmax_rows": "The softmax must run over the keys (dim=-1: each query's weights sum to "
            "1), not over the queries.",
            "scale_d": "Scale the scores by 1 / sqrt(d_h), the width of ONE head (D / heads), not "
            "1 / sqrt(D).",
            "no_scale": "The scores need the 1 / sqrt(d_h) scaling before the softmax.",
            "no_transpose": "Split the heads with reshape(N, T, heads, d_h).transpose(1, 2): reshaping "
            "straight to (N, heads, T, d_h) mixes tokens and channels.",
            "no_transpose_back": "Bring the heads back with transpose(1, 2) before reshaping to (N, T, D).",
            "no_out": "You forgot the output projection (out_weight, out_bias).",
            "softmax_rows+scale_d": "Both bugs of attention_buggy are still there: the softmax runs "
            "over the queries and the scale uses D instead of d_h.",
        }
        wrong = {hint: _attention(x, *args, h, mistake=m) for m, hint in mistakes.items()}
        if h == 1:  # with one head the scalings and the head splits coincide
            for key in list(wrong):
                if "sqrt(D)" in key or "Split the heads" in key or "transpose(1, 2) before" in key:
                    del wrong[key]
        expect_tensor(got, ref, what, wrong=wrong, shape_hint="Return (N, T, D), like the input.")
    return "your attention equals nn.MultiheadAttention with the same weights, for 1 to 4 heads."
