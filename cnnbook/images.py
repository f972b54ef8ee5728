"""Real photos that work offline, as float tensors (sections 14.1, 14.4, 14.9, 14.10, 14.12).

The photos come from scikit-image's bundled sample data (``skimage.data``), so no download is
needed. All loaders return ``float32`` tensors with values in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# name -> (skimage.data function name, what it shows)
PHOTOS: dict[str, str] = {
    "chelsea": "a tabby cat",
    "coffee": "a cup of coffee on a saucer",
    "astronaut": "astronaut Eileen Collins",
    "rocket": "a rocket on its launch pad",
    "camera": "a cameraman (grayscale)",
    "coins": "Greek coins (grayscale)",
    "cat": "a tabby cat (alias of chelsea)",
}


def load_photo(name: str, size: int | tuple[int, int] | None = None, gray: bool = False) -> torch.Tensor:
    """Load one of scikit-image's sample photos.

    Args:
        name: One of :data:`PHOTOS` (``"chelsea"``, ``"coffee"``, ``"astronaut"``, ...).
        size: Resize to ``size`` (an int gives a square image) with antialiased bilinear
            interpolation; ``None`` keeps the original size.
        gray: Return a single luminance channel (ITU-R 601 weights) instead of RGB.

    Returns:
        Float tensor of shape ``(3, H, W)`` (or ``(1, H, W)`` when ``gray`` or for a grayscale
        photo) with values in ``[0, 1]``.

    Raises:
        ValueError: If ``name`` is not a known photo.
    """
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"Unknown photo {name!r}; choose one of {sorted(PHOTOS)}.")
    array = np.asarray(getattr(skimage.data, name)())
    img = torch.from_numpy(array.astype(np.float32) / 255.0)
    img = img.unsqueeze(0) if img.ndim == 2 else img.permute(2, 0, 1)[:3]
    if gray and img.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        img = (img * weights).sum(0, keepdim=True)
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if min(hw) < 1:
            raise ValueError(f"size must be positive, got {size!r}.")
        img = F.interpolate(img[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[
            0
        ].clamp(0, 1)
    return img.contiguous()


def as_rgb_batch(images: torch.Tensor) -> torch.Tensor:
    """Check that ``images`` are float RGB and return them as a batch.

    Args:
        images: Float images in ``[0, 1]``, ``(3, H, W)`` or ``(N, 3, H, W)``.

    Returns:
        ``(N, 3, H, W)`` (a view; a single image gets a batch dimension of 1).

    Raises:
        ValueError: If the input is not a float tensor of one or more RGB images.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(
            "preprocess expects a float tensor in [0, 1]; convert uint8 images with images.float() / 255."
        )
    batch = images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"preprocess expects (3, H, W) or (N, 3, H, W), got {tuple(images.shape)}.")
    return batch
