"""Checks for the exercise notebooks in ``exercises/`` and ``solutions/`` (all sections).

One module per section (``convolution`` for 14.1, ``stride_padding`` for 14.2, ...), each
holding one ``check_<exercise>`` function per exercise. The shared machinery (printing,
random inputs, recognising known mistakes, forbidding library shortcuts) is in
:mod:`cnnbook.checks.core`. Usage in a notebook::

    from cnnbook.checks import convolution as checks
    checks.check_correlate2d(correlate2d)   # prints ✅ or ❌ with a hint
    from cnnbook.checks import hint
    hint(2)                                  # after a ❌: a further hint, not the answer
"""

from __future__ import annotations

from cnnbook.checks.core import CheckFailed, CheckResult, hint

__all__ = ["CheckFailed", "CheckResult", "hint"]
