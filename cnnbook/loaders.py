"""The two input pipelines: per-image transforms, and whole batches on the device.

Used in sections 14.5, 14.6, 14.9 and 14.14-14.16.

Both apply the same augmentation (random crop after zero padding, horizontal flip,
per-channel normalisation):

* the classic one the chapter teaches: a per-image :class:`ImageArrayDataset` with torchvision
  transforms (:func:`classic_transforms`) behind a ``torch.utils.data.DataLoader``
  (:func:`cifar10_dataset`, :func:`classic_loader`);
* a fast one, :class:`GPUBatchLoader`, that keeps the whole uint8 dataset as one tensor on the
  training device (the GPU when there is one) and augments whole batches at once
  (:func:`crop_flip`).

:class:`ResizedLoader` wraps either and upsamples each batch for a pretrained backbone (14.9).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cnnbook.arrays import ImageArrays
from cnnbook.datasets import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from cnnbook.normalization import normalization_affine, require_stats


# --------------------------------------------------------------------------------------------
# Classic pipeline: per-image Dataset + torchvision transforms
# --------------------------------------------------------------------------------------------
class ImageArrayDataset(Dataset):
    """A per-image ``Dataset`` over :class:`ImageArrays`, as torchvision's ``CIFAR10`` works.

    Each item is ``(transform(pil_image), label)``; without a transform the PIL image itself.

    Args:
        arrays: The images (kept on the CPU).
        transform: A torchvision transform applied to each PIL image.
    """

    def __init__(self, arrays: ImageArrays, transform=None) -> None:
        self.arrays = arrays
        self.classes = arrays.classes
        self.transform = transform
        hwc = arrays.images.cpu().permute(0, 2, 3, 1).numpy()
        self._pixels = np.ascontiguousarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
        self._labels = arrays.labels.cpu().tolist()

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self._pixels[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self._labels[index]


def classic_transforms(
    train: bool,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    size: int = 32,
    padding: int = 4,
    flip: bool = True,
):
    """The chapter's torchvision transforms: augmentation for training, none for evaluation.

    Args:
        train: Add ``RandomCrop(size, padding)`` and (if ``flip``) ``RandomHorizontalFlip``.
        mean: Per-channel mean for ``Normalize``.
        std: Per-channel standard deviation for ``Normalize``.
        size: Crop size (the image size).
        padding: Zero padding on each side before the random crop.
        flip: Use random horizontal flips.

    Returns:
        A ``torchvision.transforms.Compose``.
    """
    from torchvision import transforms

    steps = []
    if train:
        steps.append(transforms.RandomCrop(size, padding=padding))
        if flip:
            steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))]
    return transforms.Compose(steps)


def cifar10_dataset(
    split: str = "train", transform=None, root: str | Path | None = None, download: bool = True
) -> ImageArrayDataset:
    """CIFAR-10 as a per-image Dataset (classic pipeline).

    Args:
        split: "train" or "test".
        transform: Per-image transform; ``None`` gives :func:`classic_transforms` for the
            split (augmentation on "train" only). Pass ``False`` for raw PIL images.
        root: See :func:`load_cifar10`.
        download: See :func:`load_cifar10`.
    """
    if transform is None:
        transform = classic_transforms(split == "train")
    return ImageArrayDataset(load_cifar10(split, root, download), transform or None)


def classic_loader(
    dataset: Dataset,
    batch_size: int = 32,
    shuffle: bool = True,
    num_workers: int = 2,
    device: torch.device | str | None = None,
    seed: int | None = None,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over a per-image dataset, with ``pin_memory`` when training on CUDA.

    Args:
        dataset: E.g. :func:`cifar10_dataset`.
        batch_size: Images per batch (the chapter uses 32).
        shuffle: Reshuffle every epoch (training).
        num_workers: Worker processes decoding/augmenting in parallel (0: in this process).
        device: The training device (decides ``pin_memory``).
        seed: Seed for the shuffling order and the workers' augmentation.
    """
    from torch.utils.data import DataLoader

    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    pin = device is not None and torch.device(device).type == "cuda"
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin,
        generator=gen,
        persistent_workers=num_workers > 0,
    )


# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Fast pipeline: the whole dataset as one tensor, augmented a batch at a time
# --------------------------------------------------------------------------------------------
def crop_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    """Zero-pad a batch by ``padding``, crop each image at its own offset, flip some.

    Equivalent, image by image, to ``hflip(crop(pad(img, padding), top, left, H, W))`` (the
    flip applied where ``flip`` is true), i.e. what ``RandomCrop(padding=...)`` followed by
    ``RandomHorizontalFlip`` does with those random draws.

    Args:
        images: ``(B, C, H, W)``, any dtype.
        top: ``(B,)`` int offsets in ``[0, 2 * padding]``.
        left: ``(B,)`` int offsets in ``[0, 2 * padding]``.
        flip: ``(B,)`` bool, flip horizontally where true.
        padding: Zero padding added on every side.

    Returns:
        ``(B, C, H, W)`` tensor of the same dtype.
    """
    b, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    # Cropping a flipped image equals flipping the crop taken at the mirrored offset, so stack
    # the batch with its mirror image and pick, per image, one of (2p+1)^2 windows of that
    # stack. unfold only builds a view; the one indexing operation does all the copying.
    both = torch.stack([padded, padded.flip(-1)])
    windows = both.unfold(3, h, 1).unfold(4, w, 1)  # (2, B, C, 2p+1, 2p+1, H, W) view
    flip = flip.to(dev)
    top, left = top.to(dev), left.to(dev)
    left = torch.where(flip, 2 * padding - left, left)
    return windows[flip.long(), torch.arange(b, device=dev), :, top, left]


class GPUBatchLoader:
    """Batches from a whole-dataset uint8 tensor kept on the device, augmented on the fly.

    The dataset lives on ``device`` once (on a GPU when there is one; in CPU memory
    otherwise). Each batch is gathered by index, randomly cropped after zero padding and
    flipped (training only), converted to float and normalised, all as whole-batch tensor
    operations: the same augmentation as :func:`classic_transforms` without per-image Python.

    Iterating yields ``(x, y)``: ``x`` float ``(B, C, H, W)`` (channels-last memory if asked),
    ``y`` int64 ``(B,)``, both on ``device``. Each full pass advances the epoch, which seeds
    the next shuffle, so runs repeat exactly for a given ``seed``.

    Args:
        arrays: The images (uint8) and labels.
        batch_size: Images per batch.
        train: Training mode: shuffle, augment and drop the last partial batch by default.
        device: Where to keep the data and yield batches; ``None`` picks CUDA/MPS/CPU.
        mean: Per-channel mean; ``None`` takes ``arrays.mean``.
        std: Per-channel standard deviation; ``None`` takes ``arrays.std``.
        padding: Zero padding for the random crop (0 disables cropping).
        flip: Random horizontal flips (turn off for digits).
        shuffle: Override the training-mode default.
        augment: Override the training-mode default.
        drop_last: Override the training-mode default.
        channels_last: Yield batches in channels-last memory format.
        seed: Seed for shuffling and augmentation.
        rank: This process's rank when training data-parallel (each rank gets its shard).
        world_size: Number of data-parallel processes.
    """

    def __init__(
        self,
        arrays: ImageArrays,
        batch_size: int = 256,
        *,
        train: bool = True,
        device: torch.device | str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        padding: int = 4,
        flip: bool = True,
        shuffle: bool | None = None,
        augment: bool | None = None,
        drop_last: bool | None = None,
        channels_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        from cnnbook.device import pick_device

        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive; got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size}).")
        self.device = torch.device(device) if device is not None else pick_device()
        self.mean, self.std = require_stats(
            mean if mean is not None else arrays.mean, std if std is not None else arrays.std
        )
        self.classes = arrays.classes
        self.images = arrays.images.to(self.device)
        self.labels = arrays.labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = train if shuffle is None else shuffle
        self.augment = train if augment is None else augment
        self.drop_last = train if drop_last is None else drop_last
        self.padding, self.flip = padding, flip
        self.channels_last = channels_last
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size
        self._scale, self._shift = normalization_affine(
            self.mean, self.std, self.images.shape[1], device=self.device
        )

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch (before dropping a partial batch)."""
        n = len(self.labels)
        return -(-n // self.world_size) if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle and augmentation the next pass uses."""
        self.epoch = epoch

    def _order(self, gen: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.world_size > 1:  # pad to a multiple of world_size, as DistributedSampler does
            total = self.num_samples * self.world_size
            order = torch.cat([order, order[: total - n]])[self.rank :: self.world_size]
        return order

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self._shift, images.to(torch.float32), self._scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = self._order(gen)
        self.epoch += 1
        non_blocking = self.device.type == "cuda"
        for start in range(len(self)):
            idx = order[start * self.batch_size : (start + 1) * self.batch_size]
            idx = idx.to(self.device, non_blocking=non_blocking)
            images = self.images.index_select(0, idx)
            if self.augment and (self.padding or self.flip):
                b = idx.numel()
                span = 2 * self.padding + 1
                top = torch.randint(0, span, (b,), generator=gen)
                left = torch.randint(0, span, (b,), generator=gen)
                flip = (torch.rand(b, generator=gen) < 0.5) if self.flip else torch.zeros(b, dtype=torch.bool)
                images = crop_flip(images, top, left, flip, self.padding)
            yield self._prepare(images), self.labels.index_select(0, idx)


class ResizedLoader:
    """Wrap a loader of ``(x, y)`` batches and resize every ``x`` to ``size x size``.

    Pretrained backbones expect far larger inputs than CIFAR's 32 x 32; upsampling each batch
    (bilinear, as for photos) gives their filters objects at a familiar scale. Normalising
    before or after resizing gives the same result, since both are per-channel affine maps
    and bilinear weights sum to one.

    Args:
        loader: Yields ``(x (N, C, H, W), y (N,))``, e.g. :class:`GPUBatchLoader`.
        size: Output side in pixels.

    Attributes passed through: ``len()``, ``classes`` and ``set_epoch`` when the inner loader
    has them (:func:`cnnbook.train.fit` uses all three).
    """

    def __init__(self, loader: Iterable, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be positive; got {size}.")
        self.loader, self.size = loader, int(size)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self):
        for x, y in self.loader:
            if x.shape[-2:] != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            yield x, y

    def __getattr__(self, name: str):
        if name in ("classes", "set_epoch"):
            return getattr(self.loader, name)
        raise AttributeError(name)
