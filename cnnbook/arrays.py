"""A labelled image set as uint8 tensors: statistics, subsets and splits.

Used in sections 14.5, 14.6, 14.9 and 14.14-14.16.

:class:`ImageArrays` is what :func:`cnnbook.datasets.load_cifar10` and
:func:`cnnbook.datasets.load_mnist` return and what both input pipelines in
:mod:`cnnbook.loaders` read. :func:`channel_stats` measures per-channel statistics;
:func:`stratified_subset`, :func:`train_val_split` and :func:`class_subset` pick images
class by class (a validation set held out from training, a small or imbalanced set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from cnnbook.normalization import normalize, require_stats


@dataclass
class ImageArrays:
    """A labelled image set held as tensors.

    Attributes:
        images: uint8 tensor of shape ``(N, C, H, W)``.
        labels: int64 tensor of shape ``(N,)`` with values in ``[0, len(classes))``.
        classes: Class names; ``classes[k]`` names label ``k``.
        mean: Per-channel mean (pixels in [0, 1]) to normalise with, or ``None`` if unknown.
        std: Per-channel standard deviation to normalise with, or ``None`` if unknown.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8:
            raise TypeError("ImageArrays.images must be a uint8 tensor of shape (N, C, H, W).")
        if self.images.dim() != 4:
            raise ValueError(
                f"ImageArrays.images must have shape (N, C, H, W); got {tuple(self.images.shape)}."
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageArrays.labels must be int64 of shape ({self.images.shape[0]},); got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}."
            )
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def class_counts(self) -> torch.Tensor:
        """Images per class, shape ``(num_classes,)``."""
        return torch.bincount(self.labels.cpu(), minlength=self.num_classes)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageArrays:
        """The images at ``indices`` (same classes and statistics)."""
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.images.device)
        return ImageArrays(
            self.images[idx], self.labels[idx.to(self.labels.device)], self.classes, self.mean, self.std
        )

    def normalized(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start:stop`` as normalised float32, shape ``(n, C, H, W)``.

        Raises:
            ValueError: If the set carries no mean/std.
        """
        mean, std = require_stats(self.mean, self.std)
        return normalize(self.images[start:stop], mean, std)


def channel_stats(
    arrays: ImageArrays | torch.Tensor, chunk: int = 10_000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of pixel values scaled to [0, 1].

    Args:
        arrays: An :class:`ImageArrays` or a uint8 tensor ``(N, C, H, W)``.
        chunk: Images processed at a time (bounds memory).

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats (population standard deviation).
    """
    images = arrays.images if isinstance(arrays, ImageArrays) else arrays
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float64).cpu() / 255.0
        total += block.sum(dim=(0, 2, 3))
        total_sq += (block * block).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def stratified_subset(arrays: ImageArrays, per_class: int, seed: int = 0) -> ImageArrays:
    """Pick ``per_class`` random images of every class (a balanced subset).

    Args:
        arrays: The full set.
        per_class: Images to keep per class.
        seed: Seed of the random choice (same seed, same subset).

    Returns:
        A new :class:`ImageArrays` with ``per_class * num_classes`` images, in their original
        order.

    Raises:
        ValueError: If ``per_class`` is not positive or a class has fewer images.
    """
    if per_class <= 0:
        raise ValueError(f"per_class must be positive; got {per_class}.")
    gen = torch.Generator().manual_seed(seed)
    labels = arrays.labels.cpu()
    chosen = []
    for k, name in enumerate(arrays.classes):
        idx = torch.nonzero(labels == k).flatten()
        if idx.numel() < per_class:
            raise ValueError(
                f"Class {name!r} has only {idx.numel()} images; ask for at most {idx.numel()} per class."
            )
        chosen.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    return arrays.subset(torch.cat(chosen).sort().values)


def train_val_split(
    arrays: ImageArrays, val_size: int | float = 5000, seed: int = 0
) -> tuple[ImageArrays, ImageArrays]:
    """Hold out a stratified validation set from a training set (sections 14.15, 14.16).

    Model selection (best epoch, checkpoint, learning rate, ...) uses the validation part; the
    test set is scored once, at the end. Each class gives the same share of its images, so the
    validation set has the training set's class balance (to within one image per class).

    Args:
        arrays: The training set.
        val_size: Validation images in all (an int, e.g. 5000 for CIFAR-10) or a fraction in
            ``(0, 1)``.
        seed: Seed of the random choice (same seed, same split).

    Returns:
        ``(train, val)``: disjoint :class:`ImageArrays` that together hold every image, each in
        the original order.

    Raises:
        ValueError: If ``val_size`` leaves no training or no validation image in some class.
    """
    n = len(arrays)
    fraction = (
        val_size / n if isinstance(val_size, int) and not isinstance(val_size, bool) else float(val_size)
    )
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"val_size must be a fraction in (0, 1) or a count in [1, {n - 1}]; got {val_size!r}."
        )
    gen = torch.Generator().manual_seed(seed)
    labels = arrays.labels.cpu()
    val_idx = []
    for k, name in enumerate(arrays.classes):
        idx = torch.nonzero(labels == k).flatten()
        take = round(fraction * idx.numel())
        if idx.numel() and not 0 < take < idx.numel():
            raise ValueError(
                f"Class {name!r} has {idx.numel()} images: a validation share of "
                f"{fraction:.3g} leaves {take} of them for validation. Choose a "
                f"val_size that keeps images of every class on both sides."
            )
        val_idx.append(idx[torch.randperm(idx.numel(), generator=gen)[:take]])
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[torch.cat(val_idx)] = True
    return (arrays.subset(torch.nonzero(~is_val).flatten()), arrays.subset(torch.nonzero(is_val).flatten()))


def class_subset(arrays: ImageArrays, counts: Mapping[str, int], seed: int = 0) -> ImageArrays:
    """Keep some classes with chosen numbers of images (e.g. to build an imbalanced set).

    Args:
        arrays: The full set.
        counts: Class name -> images to keep; labels are renumbered in this order.
        seed: Seed of the random choice.

    Returns:
        A new :class:`ImageArrays` whose ``classes`` are ``list(counts)``.

    Raises:
        ValueError: For an unknown class name or a count larger than the class.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = arrays.labels.cpu()
    picked, new_labels = [], []
    for new, (name, count) in enumerate(counts.items()):
        if name not in arrays.classes:
            raise ValueError(f"Unknown class {name!r}; choose from {arrays.classes}.")
        idx = torch.nonzero(labels == arrays.classes.index(name)).flatten()
        if not 0 < count <= idx.numel():
            raise ValueError(
                f"Class {name!r} has {idx.numel()} images; ask for 1 to {idx.numel()}, not {count}."
            )
        chosen = idx[torch.randperm(idx.numel(), generator=gen)[:count]].sort().values
        picked.append(chosen)
        new_labels.append(torch.full((count,), new, dtype=torch.int64))
    order = torch.cat(picked)
    dev = arrays.images.device
    return ImageArrays(
        arrays.images[order.to(dev)],
        torch.cat(new_labels).to(arrays.labels.device),
        list(counts),
        arrays.mean,
        arrays.std,
    )
