"""CIFAR-10 and MNIST as uint8 tensors: finding, downloading and caching them.

Used in sections 14.5, 14.6, 14.9, 14.12 and 14.14-14.16.

Where the data comes from, in order:

1. a local copy in the folder passed as ``root=`` or named by ``CNNBOOK_DATA``: CIFAR-10 as
   class folders of images (``cifar10/{train,test}/<class>/*.jpg``) or as torchvision's
   ``cifar-10-batches-py/``, and MNIST as torchvision's ``MNIST/raw/`` IDX files;
2. otherwise a download through torchvision into :func:`cnnbook.data_paths.cache_dir`;
3. otherwise a :class:`FileNotFoundError` that says what to set or download.

Images are decoded once and the uint8 arrays cached in ``cache_dir()/decoded`` (written
atomically, keyed by the source's path, listing and modification times), so a cached CIFAR-10
loads in a fraction of a second. The datasets' class names and published per-channel
statistics live here too. The arrays come back as :class:`cnnbook.arrays.ImageArrays`; the
input pipelines that feed them to a model are in :mod:`cnnbook.loaders`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cnnbook import data_paths
from cnnbook.arrays import ImageArrays

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
