"""Run-mode switches shared by every notebook (all sections).

Notebooks run in *full* mode by default (what a reader gets). CI sets ``CNNBOOK_FAST=1`` to
select *fast* mode, which shrinks data sizes and epoch counts so the whole collection executes
in a few minutes on a 2-core CPU. Papermill can override any value in a notebook's
``parameters`` cell; a value left as ``None`` there means "choose by mode" (see :func:`pick`).
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

FAST_ENV = "CNNBOOK_FAST"
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


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) for reproducible runs.

    Args:
        seed: The seed.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
