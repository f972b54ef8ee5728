"""A small Vision Transformer and a translation-equivariance probe (section 14.14).

The ViT cuts the image into ``p x p`` patches with one strided convolution (kernel = stride =
``p``, which is the same as flattening every patch and applying one shared linear map), adds a
learned class token and learned position embeddings, and runs a stack of pre-norm transformer
blocks (multi-head self-attention, then an MLP, each with a residual connection). The class
token's final state feeds the linear classifier.

:func:`shift_equivariance_error` measures how far a feature map is from following a circular
shift of its input, for CNN feature maps and ViT patch tokens alike;
:func:`with_circular_padding` makes a CNN whose convolutions wrap around, so that the border is
no longer special and only stride and position information can break equivariance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


class PatchEmbedding(nn.Module):
    """Split an image into non-overlapping patches and project each to ``dim`` channels.

    Args:
        in_channels: Image channels.
        dim: Token width.
        patch_size: Patch side ``p``; H and W must be multiples of it.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        """Patch features laid out on their grid.

        Args:
            x: Images ``(N, C, H, W)``.

        Returns:
            ``(N, dim, H / p, W / p)``.
        """
        p = self.patch_size
        if x.ndim != 4 or x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"PatchEmbedding expects (N, C, H, W) with H and W multiples of the "
                f"patch size {p}, got {tuple(x.shape)}."
            )
        return self.proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens in raster order (row by row).

        Args:
            x: Images ``(N, C, H, W)``.

        Returns:
            Tokens ``(N, (H / p) * (W / p), dim)``.
        """
        return self.grid(x).flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    r"""Multi-head self-attention, :math:`\mathrm{softmax}(QK^\top/\sqrt{d_h})V` per head.

    Written with explicit matrix products so the attention maps are inspectable and FLOP
    counters see every multiply; numerically equal to ``nn.MultiheadAttention`` with the same
    weights (``qkv`` holds ``in_proj_weight``/``in_proj_bias``, ``out`` the output projection).

    Args:
        dim: Token width; must be divisible by ``heads``.
        heads: Number of attention heads.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}.")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, keep_attention: bool = False) -> torch.Tensor:
        """Attend every token to every token.

        Args:
            x: Tokens ``(N, T, dim)``.
            keep_attention: Store the attention weights ``(N, heads, T, T)`` in
                ``last_attention``.

        Returns:
            ``(N, T, dim)``.
        """
        n, t, d = x.shape
        q, k, v = (
            self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )  # each (N, heads, T, d_h)
        attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)
        if keep_attention:
            self.last_attention = attn.detach()
        return self.out((attn @ v).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: ``x + MSA(LN(x))`` then ``x + MLP(LN(x))``.

    Args:
        dim: Token width.
        heads: Attention heads.
        mlp_ratio: Hidden width of the MLP as a multiple of ``dim``.
        dropout: Dropout after attention and inside the MLP.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: tokens ``(N, T, dim)``. Returns: ``(N, T, dim)``."""
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small Vision Transformer for CIFAR-sized images.

    Args:
        image_size: Height and width of the input.
        patch_size: Patch side; ``image_size`` must be a multiple of it.
        in_channels: Image channels.
        num_classes: Output classes.
        dim: Token width.
        depth: Number of transformer blocks.
        heads: Attention heads per block.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        dropout: Dropout rate in the blocks and after adding position embeddings.
        position_embedding: Add learned position embeddings (``False`` leaves the model blind
            to where a patch came from, used to show what they do to equivariance).
        class_token: Prepend a learned class token and classify from it; ``False`` classifies
            from the mean of the patch tokens.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        num_classes: int = 10,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        position_embedding: bool = True,
        class_token: bool = True,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}.")
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.embed = PatchEmbedding(in_channels, dim, patch_size)
        n_tokens = self.num_patches + (1 if class_token else 0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, dim) * 0.02) if position_embedding else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Final token states after all blocks and the last LayerNorm.

        Args:
            x: Images ``(N, C, H, W)`` with ``H == W == image_size``.

        Returns:
            ``(N, T, dim)``; with a class token it is token 0, followed by the patch tokens in
            raster order.
        """
        if x.ndim != 4 or tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"ViT was built for {self.image_size}x{self.image_size} images, got shape {tuple(x.shape)}."
            )
        t = self.embed(x)
        if self.cls_token is not None:
            t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], dim=1)
        if self.pos_embed is not None:
            t = t + self.pos_embed
        return self.norm(self.blocks(self.drop(t)))

    def patch_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Final patch tokens laid out on the patch grid, like a CNN feature map.

        Args:
            x: Images ``(N, C, H, W)``.

        Returns:
            ``(N, dim, H / p, W / p)``.
        """
        t = self.tokens(x)
        if self.cls_token is not None:
            t = t[:, 1:]
        side = self.image_size // self.patch_size
        return t.transpose(1, 2).reshape(len(t), -1, side, side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            x: Images ``(N, C, H, W)``.

        Returns:
            ``(N, num_classes)``.
        """
        t = self.tokens(x)
        return self.head(t[:, 0] if self.cls_token is not None else t.mean(1))


def shift_equivariance_map(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    shift: tuple[int, int],
    feature_shift: tuple[int, int],
) -> torch.Tensor:
    """Where ``f(shift(x))`` and ``shift(f(x))`` differ, per feature-map location.

    Args:
        feature_fn: Maps images ``(N, C, H, W)`` to feature maps ``(N, D, h, w)``.
        x: Images ``(N, C, H, W)``.
        shift: ``(dy, dx)`` circular input shift in pixels.
        feature_shift: ``(dy, dx)`` circular shift applied to the feature map.

    Returns:
        ``(h, w)`` map: the norm of the difference over batch and channels at each location,
        divided by the root-mean-square norm of ``f(x)`` per location.
    """
    with torch.no_grad():
        base = feature_fn(x)
        moved = feature_fn(torch.roll(x, shifts=shift, dims=(-2, -1)))
    if base.ndim != 4 or moved.shape != base.shape:
        raise ValueError(
            f"feature_fn must return (N, D, h, w) maps of a fixed shape, got "
            f"{tuple(base.shape)} and {tuple(moved.shape)}."
        )
    expected = torch.roll(base, shifts=feature_shift, dims=(-2, -1))
    diff = (moved - expected).pow(2).sum(dim=(0, 1)).sqrt()
    scale = base.pow(2).sum(dim=(0, 1)).mean().sqrt().clamp(min=1e-12)
    return diff / scale


def shift_equivariance_error(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    shift: tuple[int, int],
    feature_shift: tuple[int, int],
) -> float:
    r"""Relative distance between ``f(shift(x))`` and ``shift(f(x))`` for circular shifts.

    .. math:: e = \frac{\lVert f(S_s x) - S_{s'} f(x) \rVert}{\lVert f(x) \rVert}

    where :math:`S_s` rolls the last two axes by ``s = shift`` and :math:`s'` is
    ``feature_shift`` (the input shift divided by the feature map's stride). ``e = 0`` (up to
    rounding) means the features move exactly with the input.

    Args:
        feature_fn: Maps images ``(N, C, H, W)`` to feature maps ``(N, D, h, w)``.
        x: Images ``(N, C, H, W)``.
        shift: ``(dy, dx)`` input shift in pixels.
        feature_shift: ``(dy, dx)`` shift applied to the feature map.

    Returns:
        The relative error ``e``.
    """
    m = shift_equivariance_map(feature_fn, x, shift, feature_shift)
    return float(m.pow(2).mean().sqrt())


def with_circular_padding(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose padded convolutions wrap around (``padding_mode="circular"``).

    With circular padding a stride-1 convolution commutes exactly with circular shifts of its
    input; zero padding treats the border differently and breaks that near the edges.

    Args:
        model: Any module; it is not changed.

    Returns:
        The modified copy (same weights, same train/eval mode).
    """
    clone = copy.deepcopy(model)
    for m in clone.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if isinstance(m.padding, str):
            raise ValueError(f"{m} uses padding={m.padding!r}; give explicit integers.")
        if any(p > 0 for p in m.padding):
            m.padding_mode = "circular"
    return clone
