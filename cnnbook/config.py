"""Run-mode switches shared by every notebook (all sections).

Notebooks run in *full* mode by default (what a reader gets). CI sets ``CNNBOOK_FAST=1`` to
select *fast* mode, which shrinks data sizes and epoch counts so the whole collection executes
in a few minutes on a 2-core CPU. Papermill can override any value in a notebook's
``parameters`` cell; a value left as ``None`` there means "choose by mode" (see :func:`pick`).

``CNNBOOK_START_METHOD`` (e.g. ``spawn``) sets how DataLoader worker processes start, for the
whole process, when this module is imported and again in :func:`seed_everything` (which every
notebook calls): macOS and Windows always use ``spawn``, so CI runs the notebooks under it
too, to see there what a Mac or Windows student sees.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

FAST_ENV = "CNNBOOK_FAST"
START_METHOD_ENV = "CNNBOOK_START_METHOD"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def fast_mode(override: bool | None = None) -> bool:
    """Return whether fast (CI) mode is on.

    Args:
        override: An explicit choice (e.g. injected by papermill); ``None`` reads the
            ``CNNBOOK_FAST`` environment variable.

    Returns:
        ``True`` in fast mode, ``False`` in full mode.

    Raises:
        ValueError: If ``CNNBOOK_FAST`` holds something other than a yes/no value.
    """
    if override is not None:
        return bool(override)
    raw = os.environ.get(FAST_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{FAST_ENV}={raw!r} is not understood; set it to 1 (fast) or 0 (full).")


def pick(value: T | None, *, fast: T, full: T, fast_mode_on: bool | None = None) -> T:
    """Choose a size by run mode unless the caller fixed it.

    Args:
        value: A value fixed by the reader or by papermill; returned unchanged if not ``None``.
        fast: The value to use in fast mode.
        full: The value to use in full mode.
        fast_mode_on: Mode to use; ``None`` asks :func:`fast_mode`.

    Returns:
        ``value`` if given, else ``fast`` or ``full``.
    """
    if value is not None:
        return value
    return fast if fast_mode(fast_mode_on) else full


def apply_start_method() -> str | None:
    """Start worker processes the way ``CNNBOOK_START_METHOD`` says (``fork``, ``spawn``, ...).

    Returns:
        The method set, or ``None`` when the variable is unset (the platform's default stays).

    Raises:
        ValueError: If the method does not exist on this platform.
    """
    method = os.environ.get(START_METHOD_ENV, "").strip().lower()
    if not method:
        return None
    allowed = multiprocessing.get_all_start_methods()
    if method not in allowed:
        raise ValueError(
            f"{START_METHOD_ENV}={method!r} is not a start method here; use one of {', '.join(allowed)} "
            "or unset it."
        )
    multiprocessing.set_start_method(method, force=True)
    return method


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) for reproducible runs.

    Also applies ``CNNBOOK_START_METHOD`` (:func:`apply_start_method`).

    Args:
        seed: The seed.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, for code that wants its own stream.
    """
    apply_start_method()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


apply_start_method()
