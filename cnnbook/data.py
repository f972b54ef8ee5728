"""CIFAR-10 and MNIST as uint8 tensors, and the two input pipelines (sections 14.5, 14.15, 14.16).

Where the data comes from, in order:

1. a local copy in the folder passed as ``root=`` or named by ``CNNBOOK_DATA``: CIFAR-10 as
   class folders of images (``cifar10/{train,test}/<class>/*.jpg``) or as torchvision's
   ``cifar-10-batches-py/``, and MNIST as torchvision's ``MNIST/raw/`` IDX files;
2. otherwise a download through torchvision into :func:`cnnbook.data_paths.cache_dir`;
3. otherwise a :class:`FileNotFoundError` that says what to set or download.

Images are decoded once and the uint8 arrays cached in ``cache_dir()/decoded`` (written
atomically, keyed by the source's path, listing and modification times), so a cached CIFAR-10
loads in a fraction of a second.

Two input pipelines, with the same augmentation (random crop after zero padding, horizontal
flip, per-channel normalisation):

* the classic one the chapter teaches: a per-image :class:`ImageArrayDataset` with torchvision
  transforms (:func:`classic_transforms`) behind a ``torch.utils.data.DataLoader``;
* a fast one, :class:`GPUBatchLoader`, that keeps the whole uint8 dataset as one tensor on the
  training device (the GPU when there is one) and augments whole batches at once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cnnbook import data_paths

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
# Published per-channel statistics of the training splits (pixel values scaled to [0, 1]).
CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
MNIST_MEAN: tuple[float, ...] = (0.1307,)
MNIST_STD: tuple[float, ...] = (0.3081,)

SPLITS: tuple[str, ...] = ("train", "test")
EXPECTED_SIZES: dict[str, dict[str, int]] = {
    "cifar10": {"train": 50_000, "test": 10_000},
    "mnist": {"train": 60_000, "test": 10_000},
}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}
_DECODE_CHUNK = 2048


# --------------------------------------------------------------------------------------------
# The array container
# --------------------------------------------------------------------------------------------
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
        mean, std = _require_stats(self.mean, self.std)
        return normalize(self.images[start:stop], mean, std)


def _require_stats(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if mean is None or std is None:
        raise ValueError(
            "No normalisation statistics: pass mean= and std= (e.g. "
            "cnnbook.data.CIFAR10_MEAN/CIFAR10_STD, or channel_stats(arrays))."
        )
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


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


# --------------------------------------------------------------------------------------------
# Decoded-array cache
# --------------------------------------------------------------------------------------------
def decoded_cache_dir() -> Path:
    """Where decoded arrays are cached: ``cache_dir()/decoded``."""
    return data_paths.cache_dir() / "decoded"


def _cache_file(kind: str, signature: Sequence[object]) -> Path:
    digest = hashlib.sha1(repr(list(signature)).encode()).hexdigest()[:16]
    return decoded_cache_dir() / f"{kind}-{digest}.pt"


def _read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    if not path.is_file():
        return None
    try:
        # mmap: pages are read lazily from the OS cache, so a cached load takes milliseconds.
        blob = torch.load(path, weights_only=True, mmap=True)
        images, labels, classes = blob["images"], blob["labels"], list(blob["classes"])
    except Exception as exc:  # any damage means "decode again"
        warnings.warn(f"Ignoring unreadable cache file {path} ({exc}); decoding again.", stacklevel=3)
        return None
    return images, labels, classes


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    except OSError as exc:
        warnings.warn(
            f"Cannot write the decoded-array cache in {path.parent} ({exc}); set "
            f"{data_paths.CACHE_ENV} to a writable folder to load faster next time.",
            stacklevel=3,
        )
        return
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(
                {"images": images.contiguous(), "labels": labels.contiguous(), "classes": list(classes)}, fh
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _file_signature(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


# --------------------------------------------------------------------------------------------
# Readers for each layout
# --------------------------------------------------------------------------------------------
def _decode_pil(raw: bytes, channels: int) -> torch.Tensor:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(raw)) as img:
        arr = np.asarray(img.convert("RGB" if channels == 3 else "L"))
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _torchvision_jpeg_decoder():
    """torchvision's batched JPEG decoder (about twice PIL's speed), or ``None``."""
    try:
        with warnings.catch_warnings():  # torchvision 0.29 announces a move to torchcodec
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    return decode_jpeg, ImageReadMode


def _decode_files(files: Sequence[Path], channels: int) -> torch.Tensor:
    """Decode image files of one size into one uint8 tensor ``(N, channels, H, W)``."""
    fast = _torchvision_jpeg_decoder()
    out: list[torch.Tensor] = []
    for start in range(0, len(files), _DECODE_CHUNK):
        chunk = files[start : start + _DECODE_CHUNK]
        raw = [p.read_bytes() for p in chunk]
        try:
            if fast is not None and all(p.suffix.lower() in (".jpg", ".jpeg") for p in chunk):
                decode_jpeg, mode = fast
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    imgs = decode_jpeg(
                        [torch.frombuffer(bytearray(r), dtype=torch.uint8) for r in raw],
                        mode=mode.RGB if channels == 3 else mode.GRAY,
                    )
            else:
                imgs = [_decode_pil(r, channels) for r in raw]
            out.append(torch.stack(imgs))
        except (RuntimeError, OSError, ValueError):
            _name_bad_file(chunk, raw, channels)
            raise
    return torch.cat(out) if out else torch.empty(0, channels, 0, 0, dtype=torch.uint8)


def _name_bad_file(files: Sequence[Path], raw: Sequence[bytes], channels: int) -> None:
    """Decode one by one to raise an error naming the file that failed."""
    first = None
    for p, r in zip(files, raw, strict=True):
        try:
            shape = tuple(_decode_pil(r, channels).shape)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"Cannot decode {p} ({exc}). The dataset copy is damaged: copy the folder "
                "again (or delete it and let torchvision download the original)."
            ) from exc
        if first is None:
            first = shape
        elif shape != first:
            raise ValueError(
                f"{p} has shape {shape} but earlier images have {first}; every image in a "
                "folder dataset must have the same size (resize them first)."
            )


def load_image_folder(
    folder: str | Path,
    classes: Sequence[str] | None = None,
    expected_per_class: int | None = None,
    channels: int = 3,
    cache: bool = True,
) -> ImageArrays:
    """Read a class-folder dataset (``folder/<class>/<image>``) into uint8 arrays.

    Every image must have the same size. Decoded arrays are cached in
    :func:`decoded_cache_dir`, keyed by the folder's path and, per class folder, its
    modification time and file listing (adding, removing or renaming a file invalidates the
    cache; after rewriting files in place delete the ``*.pt`` files in that folder).

    Args:
        folder: The split folder, e.g. ``.../cifar10/train``.
        classes: Class names in label order; ``None`` uses the sorted sub-folder names.
        expected_per_class: If given, the number of images each class must hold (detects a
            truncated copy).
        channels: 3 (decode as RGB) or 1 (grayscale).
        cache: Read and write the decoded-array cache.

    Returns:
        An :class:`ImageArrays` (no normalisation statistics attached).

    Raises:
        FileNotFoundError: If the folder or a class sub-folder is missing.
        ValueError: If a class is empty or has the wrong number of images, or a file cannot
            be decoded.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Dataset folder {folder} does not exist; check the path (or {data_paths.DATA_ENV})."
        )
    present = sorted(d.name for d in folder.iterdir() if d.is_dir())
    names = list(classes) if classes is not None else present
    missing = [c for c in names if c not in present]
    if missing or not names:
        raise FileNotFoundError(
            f"{folder} lacks the class folders {missing or '(none found)'}; the copy looks "
            "incomplete. Copy the dataset again, or point "
            f"{data_paths.DATA_ENV} at a complete copy."
        )
    listings: list[list[str]] = []
    signature: list[object] = [str(folder.resolve()), channels]
    for name in names:
        sub = folder / name
        listing = sorted(f for f in os.listdir(sub) if os.path.splitext(f)[1].lower() in _IMAGE_SUFFIXES)
        if not listing:
            raise ValueError(f"{sub} holds no images; the copy looks truncated. Copy the dataset again.")
        if expected_per_class is not None and len(listing) != expected_per_class:
            raise ValueError(
                f"{sub} holds {len(listing)} images but should hold {expected_per_class}; the "
                "copy looks truncated. Copy the dataset again (or delete it and download)."
            )
        signature.append(
            (
                name,
                sub.stat().st_mtime_ns,
                len(listing),
                hashlib.sha1("\n".join(listing).encode()).hexdigest(),
            )
        )
        listings.append(listing)
    cache_path = _cache_file(f"folder-{folder.name}", signature)
    hit = _read_cache(cache_path) if cache else None
    if hit is not None:
        images, label_t, _ = hit
    else:
        files = [folder / name / f for name, listing in zip(names, listings, strict=True) for f in listing]
        images = _decode_files(files, channels)
        label_t = torch.repeat_interleave(torch.arange(len(names)), torch.tensor([len(x) for x in listings]))
        if cache:
            _write_cache(cache_path, images, label_t, names)
    return ImageArrays(images, label_t, names)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use 'train' or 'test'.")


def _missing_message(name: str, split: str, root: str | Path | None, layouts: str, extra: str = "") -> str:
    where = ", ".join(str(r) for r in data_paths.search_roots(root))
    target = Path(root).expanduser() if root is not None else data_paths.cache_dir()
    return (
        f"{name} ({split}) not found in {where}. Set {data_paths.DATA_ENV} (or pass "
        f"root=) to a folder holding {layouts}, or go online and call with download=True "
        f"so torchvision downloads it into {target}.{extra}"
    )


def _check_data_env() -> None:
    root = data_paths.data_root()
    if root is not None and not root.is_dir():
        raise FileNotFoundError(
            f"{data_paths.DATA_ENV}={root} is not a folder; fix the path or unset "
            f"{data_paths.DATA_ENV} to download into {data_paths.cache_dir()}."
        )


_LAYOUT_HINTS = {
    "cifar10": "cifar10/{train,test}/<class>/*.jpg or torchvision's cifar-10-batches-py/",
    "mnist": "MNIST/raw/ with the IDX files (train-images-idx3-ubyte, ...)",
}
_TITLES = {"cifar10": "CIFAR-10", "mnist": "MNIST"}


def _find_or_download(name: str, split: str, root: str | Path | None, download: bool) -> Path:
    """The folder holding a local copy of ``name``; downloads through torchvision if needed."""
    import torchvision.datasets as tvd

    _check_split(split)
    if root is None:
        _check_data_env()
    found = data_paths.find_local_copy(name, root)
    if found is not None:
        return found
    title, layouts = _TITLES[name], _LAYOUT_HINTS[name]
    if not download:
        raise FileNotFoundError(_missing_message(title, split, root, layouts))
    target = Path(root).expanduser() if root is not None else data_paths.cache_dir()
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.MNIST
    try:
        target.mkdir(parents=True, exist_ok=True)
        cls(root=str(target), train=split == "train", download=True)
    except Exception as exc:  # network errors come in many types
        raise FileNotFoundError(
            _missing_message(
                title, split, root, layouts, f" The download failed: {type(exc).__name__}: {exc}"
            )
        ) from None
    return target / ("cifar-10-batches-py" if name == "cifar10" else "MNIST/raw")


def _cifar10_from_pickles(batches: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    files = sorted(batches.glob("data_batch_*") if split == "train" else batches.glob("test_batch"))
    signature = [split, *_file_signature(files)]
    cache_path = _cache_file(f"cifar10-pickle-{split}", signature)
    hit = _read_cache(cache_path)
    if hit is not None:
        return hit[0], hit[1]
    try:
        ds = CIFAR10(root=str(batches.parent), train=split == "train", download=False)
    except RuntimeError as exc:
        raise ValueError(
            f"{batches} is incomplete or corrupted ({exc}). Delete it and download again, or "
            f"point {data_paths.DATA_ENV} at a complete copy."
        ) from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(ds.targets, dtype=torch.int64)
    _write_cache(cache_path, images, labels, CIFAR10_CLASSES)
    return images, labels


def load_cifar10(split: str = "train", root: str | Path | None = None, download: bool = True) -> ImageArrays:
    """Load CIFAR-10 as uint8 arrays ``(N, 3, 32, 32)`` with the published statistics attached.

    Args:
        split: "train" (50,000 images) or "test" (10,000).
        root: Folder holding ``cifar10/{train,test}/<class>/`` or ``cifar-10-batches-py/``;
            ``None`` searches ``CNNBOOK_DATA`` and then the cache folder.
        download: Download through torchvision when no local copy is found.

    Returns:
        The split as :class:`ImageArrays` with ``classes == list(CIFAR10_CLASSES)``.

    Raises:
        ValueError: For an unknown split, or a truncated or damaged copy.
        FileNotFoundError: When there is no local copy and the download is off or fails.
    """
    found = _find_or_download("cifar10", split, root, download)
    if found.name == "cifar-10-batches-py":
        images, labels = _cifar10_from_pickles(found, split)
    else:
        if data_paths.missing_splits(found, (split,)):
            raise FileNotFoundError(
                f"{found} has no '{split}' folder; the copy is incomplete. Copy the dataset again."
            )
        arrays = load_image_folder(
            found / split, CIFAR10_CLASSES, expected_per_class=EXPECTED_SIZES["cifar10"][split] // 10
        )
        images, labels = arrays.images, arrays.labels
    if tuple(images.shape[1:]) != (3, 32, 32) or images.shape[0] != EXPECTED_SIZES["cifar10"][split]:
        raise ValueError(
            f"CIFAR-10 {split} in {found} has shape {tuple(images.shape)}, expected "
            f"({EXPECTED_SIZES['cifar10'][split]}, 3, 32, 32); copy it again."
        )
    return ImageArrays(images, labels, list(CIFAR10_CLASSES), CIFAR10_MEAN, CIFAR10_STD)


def load_mnist(split: str = "train", root: str | Path | None = None, download: bool = True) -> ImageArrays:
    """Load MNIST as uint8 arrays ``(N, 1, 28, 28)`` with the published statistics attached.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        root: Folder holding ``MNIST/raw/`` (torchvision's layout, uncompressed IDX files);
            ``None`` searches ``CNNBOOK_DATA`` and then the cache folder.
        download: Download through torchvision when no local copy is found.

    Returns:
        The split as :class:`ImageArrays` with classes ``"0"`` ... ``"9"``.

    Raises:
        ValueError: For an unknown split, or a truncated or damaged copy.
        FileNotFoundError: When there is no local copy and the download is off or fails.
    """
    from torchvision.datasets import MNIST

    found = _find_or_download("mnist", split, root, download)
    try:
        ds = MNIST(root=str(found.parent.parent), train=split == "train", download=False)
        images = ds.data.unsqueeze(1).contiguous()
        labels = ds.targets.to(torch.int64)
    except Exception as exc:  # torchvision raises assorted errors here
        raise ValueError(
            f"Cannot read MNIST {split} from {found} ({type(exc).__name__}: {exc}); the copy "
            f"looks missing or truncated. Copy it again (the folder must hold "
            f"{_LAYOUT_HINTS['mnist']})."
        ) from exc
    if tuple(images.shape) != (EXPECTED_SIZES["mnist"][split], 1, 28, 28):
        raise ValueError(
            f"MNIST {split} in {found} has shape {tuple(images.shape)}, expected "
            f"({EXPECTED_SIZES['mnist'][split]}, 1, 28, 28); copy it again."
        )
    return ImageArrays(images, labels, list(MNIST_CLASSES), MNIST_MEAN, MNIST_STD)


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
# Fast pipeline: the whole dataset as one tensor, augmented a batch at a time
# --------------------------------------------------------------------------------------------
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
    :class:`GPUBatchLoader` and :meth:`cnnbook.pretrained.Pretrained.normalize` all use it.

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
        self.mean, self.std = _require_stats(
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
