"""Show the package's own source inside a notebook (every section that teaches a layer or loop).

When a notebook's lesson is code that lives in ``cnnbook`` (a block, a loop, a hook), the notebook
displays that code with :func:`show_source`, so what the student reads is exactly what runs.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

from IPython.display import Code


def source_of(obj: Any) -> str:
    """The source text of a function, class or method, dedented.

    Args:
        obj: A function, class, method or module from ``cnnbook`` (or anywhere Python can find
            source for).

    Returns:
        The source code as a string.

    Raises:
        TypeError: If ``obj`` has no Python source (a builtin, a C extension, an instance).
    """
    target = (
        obj
        if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) or inspect.ismodule(obj)
        else None
    )
    if target is None:
        raise TypeError(
            f"show_source needs a function, class, method or module; got an instance of "
            f"{type(obj).__name__} (pass its class: type(obj))."
        )
    try:
        return textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError) as exc:
        raise TypeError(f"No Python source is available for {obj!r}: {exc}") from None


def show_source(*objs: Any) -> Code:
    """Display the source of one or more objects, syntax-highlighted.

    Args:
        *objs: Functions, classes or methods, shown in order, separated by a blank line.

    Returns:
        An ``IPython.display.Code`` object: the last expression of a cell renders it highlighted;
        ``str(...)`` of it is the plain source.
    """
    if not objs:
        raise TypeError("show_source needs at least one function, class or method.")
    return Code("\n\n".join(source_of(obj).rstrip() for obj in objs), language="python")
