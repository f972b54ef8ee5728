"""Helpers for the wrong-answer corpus (issue: exercise checks that a wrong answer cannot pass).

Every checked exercise has, in ``tests/corpus/test_14_XX_*.py``:

* the reference answer and correct variants (other valid spellings), each accepted on every seed;
* at least three realistic wrong answers, one small function per mistake named for it, each
  rejected on every seed with a message that names the mistake.

Use :func:`accepted` and :func:`rejected`; both run the check on :data:`SEEDS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cnnbook.checks import CheckFailed

SEEDS = range(20)


def accepted(check: Callable[..., Any], *answers: Any, seeds: range = SEEDS) -> None:
    """Assert that ``check(*answers)`` passes on every seed."""
    for seed in seeds:
        result = check(*answers, seed=seed, raise_on_fail=False)
        assert result, f"seed {seed}: a correct answer was rejected: {result.message}"
        assert result.passed, f"seed {seed}: a correct answer was rejected: {result.message}"


def rejected(
    check: Callable[..., Any],
    *answers: Any,
    hint: str,
    seeds: range = SEEDS,
    requirement: str | None = None,
) -> None:
    """Assert that ``check(*answers)`` fails on every seed with a message matching ``hint``.

    Args:
        check: A checker from ``cnnbook.checks``.
        *answers: The wrong answer(s).
        hint: A regular expression the failure message must match (case-insensitive): the
            words that name the mistake.
        seeds: Seeds to try.
        requirement: A regular expression the message's ``Requirement:`` line (the
            requirement in the exercise's words) must match; ``None`` skips this.
    """
    for seed in seeds:
        try:
            result = check(*answers, seed=seed, raise_on_fail=False)
        except CheckFailed as exc:  # checkers that raise regardless of raise_on_fail
            message = str(exc)
        else:
            assert not result, f"seed {seed}: a wrong answer was accepted: {result.message}"
            message = result.message
        assert re.search(hint, message, re.IGNORECASE | re.DOTALL), (
            f"seed {seed}: rejected, but the message does not name the mistake ({hint!r}): {message}"
        )
        if requirement is not None:
            line = next((ln for ln in message.splitlines() if ln.strip().startswith("Requirement:")), "")
            assert re.search(requirement, line, re.IGNORECASE), (
                f"seed {seed}: rejected, but the message names no requirement matching "
                f"{requirement!r}: {message}"
            )
