"""Per-channel normalisation: the package's one formula and its inverse.

Used in sections 14.5, 14.9, 14.15 and 14.16 (and by every loader and pretrained model).

``(x / max_value - mean) / std`` per channel, as torchvision's ``ToTensor`` + ``Normalize`` do.
:func:`normalize`, :func:`denormalize`, :class:`cnnbook.loaders.GPUBatchLoader`,
:meth:`cnnbook.arrays.ImageArrays.normalized` and :meth:`cnnbook.pretrained.Pretrained.normalize`
all build on :func:`normalization_affine`. The statistics themselves live with their dataset
(:data:`cnnbook.datasets.CIFAR10_MEAN`, :data:`cnnbook.pretrained.IMAGENET_MEAN`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def require_stats(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` as float tuples, or a ``ValueError`` saying what to pass when one is missing."""
    if mean is None or std is None:
        raise ValueError(
            "No normalisation statistics: pass mean= and std= (e.g. "
            "cnnbook.datasets.CIFAR10_MEAN/CIFAR10_STD, or cnnbook.arrays.channel_stats(arrays))."
        )
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def normalization_affine(
    mean: Sequence[float],
    std: Sequence[float],
    channels: int,
    *,
    max_value: float = 255.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)``, each ``(C, 1, 1)``, with ``x * scale + shift == (x / max_value - mean) / std``.

    The package's one normalisation formula: :func:`normalize`, :func:`denormalize`,
    :class:`cnnbook.loaders.GPUBatchLoader` and :meth:`cnnbook.pretrained.Pretrained.normalize` use it.

    Args:
        mean: Per-channel mean on the ``[0, 1]`` scale.
        std: Per-channel standard deviation on the ``[0, 1]`` scale.
        channels: ``C`` of the images (checked against ``mean`` and ``std``).
        max_value: Pixel value of white: 255 for uint8 images, 1 for float images in [0, 1].
        dtype: Dtype of the returned tensors.
        device: Their device.

    Raises:
        ValueError: If ``mean``/``std`` do not have ``C`` values or a std is not positive.
    """
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean/std have {len(mean)}/{len(std)} values but the images have "
            f"{channels} channels; use statistics of the same dataset."
        )
    if min(std) <= 0:
        raise ValueError(f"std must be positive; got {tuple(std)}.")
    m = torch.tensor(mean, dtype=torch.float64).view(channels, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(channels, 1, 1)
    return ((1.0 / (max_value * s)).to(device=device, dtype=dtype), (-m / s).to(device=device, dtype=dtype))


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
    max_value: float = 255.0,
) -> torch.Tensor:
    """``(x / max_value - mean) / std`` per channel, as ToTensor + Normalize do for uint8 images.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``; uint8 (``max_value=255``) or float in
            ``[0, 1]`` (``max_value=1``).
        mean: Per-channel mean on the ``[0, 1]`` scale.
        std: Per-channel standard deviation.
        dtype: Output dtype.
        max_value: Pixel value of white.

    Returns:
        Normalised ``dtype`` images, same shape.
    """
    scale, shift = normalization_affine(
        mean, std, images.shape[-3], max_value=max_value, dtype=dtype, device=images.device
    )
    return torch.addcmul(shift, images.to(dtype), scale)


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo :func:`normalize` for display: ``x * std + mean``, clipped to ``[0, 1]``.

    Args:
        images: Normalised ``(N, C, H, W)`` or ``(C, H, W)`` float images.
        mean: The per-channel mean they were normalised with.
        std: The per-channel standard deviation.

    Returns:
        Same shape and dtype, in ``[0, 1]``.
    """
    scale, shift = normalization_affine(
        mean, std, images.shape[-3], max_value=1.0, dtype=images.dtype, device=images.device
    )
    return ((images - shift) / scale).clamp(0, 1)
