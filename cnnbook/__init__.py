"""cnnbook: tested helpers for the Chapter 14 (Convolutional Neural Networks) notebooks.

Each submodule names the sections it serves in its docstring. Import the submodule you need,
e.g. ``from cnnbook import geometry``; importing the package itself stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
