"""Cutout, Mixup and CutMix written out, for section 14.12 (data augmentation).

torchvision ships Mixup and CutMix (``torchvision.transforms.v2.MixUp`` / ``CutMix``); use those
in training code. The functions here take their random choices (``lam``, the box, the centre)
as arguments so each step can be seen and checked; with the same choices they give exactly
torchvision's results (section 14.12 shows it). torchvision has no Cutout as such (its
``RandomErasing`` samples a rectangle that always lies inside the image), so :class:`Cutout`
is the transform to use for that one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Cutout", "cutmix", "cutmix_box", "cutout", "mixup", "to_soft_labels"]


def cutout(
    images: torch.Tensor,
    size: int,
    centers: torch.Tensor | None = None,
    fill: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blank a ``size x size`` square in each image (DeVries and Taylor, 2017).

    The square's centre is uniform over the image, so near the border part of the square
    falls outside and less than ``size**2`` pixels are blanked.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``.
        size: Side of the square in pixels.
        centers: ``(N, 2)`` integer ``(row, col)`` centres; ``None`` draws them.
        fill: Value written into the square.
        generator: Random generator for the centres.

    Returns:
        A new tensor, same shape as ``images``.

    Raises:
        ValueError: On a bad shape or size.
    """
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.ndim != 4:
        raise ValueError(f"cutout expects (C, H, W) or (N, C, H, W), got {tuple(images.shape)}.")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    n, _, h, w = batch.shape
    if centers is None:
        centers = torch.stack(
            [torch.randint(h, (n,), generator=generator), torch.randint(w, (n,), generator=generator)], dim=1
        )
    if centers.shape != (n, 2):
        raise ValueError(f"centers must have shape ({n}, 2), got {tuple(centers.shape)}.")
    out = batch.clone()
    for i, (cy, cx) in enumerate(centers.tolist()):
        y1, y2 = max(cy - size // 2, 0), min(cy - size // 2 + size, h)
        x1, x2 = max(cx - size // 2, 0), min(cx - size // 2 + size, w)
        out[i, :, y1:y2, x1:x2] = fill
    return out[0] if single else out


class Cutout(nn.Module):
    """Transform form of :func:`cutout`, for ``torchvision.transforms.v2.Compose``.

    Args:
        size: Side of the blanked square.
        p: Probability of applying it.
        fill: Value of the blanked pixels (0 is black before normalisation).
    """

    def __init__(self, size: int, p: float = 1.0, fill: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}.")
        self.size, self.p, self.fill = size, p, fill

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Blank one square of a ``(C, H, W)`` or ``(N, C, H, W)`` tensor with probability p."""
        if torch.rand(()) >= self.p:
            return image
        return cutout(image, self.size, fill=self.fill)

    def extra_repr(self) -> str:
        return f"size={self.size}, p={self.p}, fill={self.fill}"


def to_soft_labels(labels: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Class indices ``(N,)`` to one-hot floats ``(N, K)``; ``(N, K)`` labels pass through.

    Raises:
        ValueError: If indices come without ``num_classes``, or the shape is wrong.
    """
    if labels.ndim == 1:
        if num_classes is None:
            raise ValueError("num_classes is needed to one-hot encode index labels.")
        return F.one_hot(labels.long(), num_classes).float()
    if labels.ndim == 2:
        return labels.float()
    raise ValueError(f"labels must be (N,) indices or (N, K) probabilities, got {tuple(labels.shape)}.")


def _partner(images: torch.Tensor, partner: torch.Tensor | None) -> torch.Tensor:
    # torchvision pairs each sample with the previous one in the batch (a roll by one).
    return torch.roll(torch.arange(images.shape[0]), 1) if partner is None else partner


def mixup(
    images: torch.Tensor,
    labels: torch.Tensor,
    lam: float,
    num_classes: int | None = None,
    partner: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each image and its label with a partner's (Zhang et al., 2018).

    ``x = lam * x_i + (1 - lam) * x_j`` and ``y = lam * y_i + (1 - lam) * y_j``.

    Args:
        images: ``(N, C, H, W)`` float batch.
        labels: ``(N,)`` class indices or ``(N, K)`` soft labels.
        lam: Mixing weight in ``[0, 1]``, usually drawn from ``Beta(alpha, alpha)``.
        num_classes: ``K``, needed for index labels.
        partner: ``(N,)`` index of each sample's partner; ``None`` uses the previous sample
            (as torchvision does), so shuffle the batch first.

    Returns:
        ``(mixed images (N, C, H, W), soft labels (N, K))``.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}.")
    soft = to_soft_labels(labels, num_classes)
    j = _partner(images, partner)
    return lam * images + (1 - lam) * images[j], lam * soft + (1 - lam) * soft[j]


def cutmix_box(lam: float, height: int, width: int, center: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pasted box of CutMix: area about ``(1 - lam) * H * W`` around ``center``.

    Half-sides are ``int(0.5 * sqrt(1 - lam) * W)`` and ``... * H``; the box is clipped to the
    image, which is why CutMix recomputes ``lam`` from the clipped area.

    Args:
        lam: Fraction of the image to keep.
        height: ``H``.
        width: ``W``.
        center: ``(row, col)`` of the box centre.

    Returns:
        ``(x1, y1, x2, y2)``, half-open pixel ranges ``[x1, x2) x [y1, y2)``.
    """
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    cy, cx = center
    return (max(cx - half_w, 0), max(cy - half_h, 0), min(cx + half_w, width), min(cy + half_h, height))


def cutmix(
    images: torch.Tensor,
    labels: torch.Tensor,
    box: tuple[int, int, int, int],
    num_classes: int | None = None,
    partner: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste a box from each sample's partner into it (Yun et al., 2019).

    Labels are mixed by area: ``lam = 1 - box_area / (H * W)``.

    Args:
        images: ``(N, C, H, W)`` batch.
        labels: ``(N,)`` class indices or ``(N, K)`` soft labels.
        box: ``(x1, y1, x2, y2)`` from :func:`cutmix_box`.
        num_classes: ``K``, needed for index labels.
        partner: ``(N,)`` partner indices; ``None`` uses the previous sample.

    Returns:
        ``(images (N, C, H, W), soft labels (N, K), lam actually used)``.
    """
    x1, y1, x2, y2 = box
    h, w = images.shape[-2:]
    if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
        raise ValueError(f"box {box} does not lie inside a {h}x{w} image.")
    soft = to_soft_labels(labels, num_classes)
    j = _partner(images, partner)
    out = images.clone()
    out[..., y1:y2, x1:x2] = images[j][..., y1:y2, x1:x2]
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (h * w)
    return out, lam * soft + (1 - lam) * soft[j], lam
