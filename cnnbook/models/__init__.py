"""Model zoo for the architecture sections (14.5-14.8, 14.11, 14.12).

Each submodule holds one family of networks; this package re-exports the public builders so
notebooks can write ``from cnnbook.models import resnet18``. Keep this file a plain list of
imports plus ``__all__`` (several authors add to it).
"""

from __future__ import annotations

__all__: list[str] = []
