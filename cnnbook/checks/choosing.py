"""Checks for the exercises of section 14.17: choosing an architecture from the measured table.

The tables are lists of :class:`cnnbook.zoo.ArchRow` (``name``, ``params``, ``macs``, ``top1`` or
``None``, ``latency_ms`` or ``None``). The decisions are checked on tables built to reach the
edge cases (a model exactly at a budget or at the accuracy bar, a model without a published
accuracy, a model that was never timed, a tie in accuracy, nothing that qualifies);
the student's functions also on random tables (two identical models, models of equal cost).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from cnnbook.checks.core import (
    CheckFailed,
    Context,
    call,
    checker,
    expect_answers,
    expect_equal,
    fail,
)
from cnnbook.zoo import ArchRow

__all__ = [
    "check_cheapest_above",
    "check_budget_choices",
    "check_gmacs_per_second",
    "check_pareto_front",
    "ref_choose",
    "ref_gmacs_per_second",
    "ref_pareto_front",
]

COSTS = ("macs", "params", "latency_ms")


def _row(
    name: str, params: float, gmacs: float, top1: float | None, latency_ms: float | None = None
) -> ArchRow:
    return ArchRow(
        name, 2020, int(params), int(round(gmacs * 1e9)), (1, 3, 224, 224), top1, "test table", latency_ms
    )


# ------------------------------------------------------------------ exercise 1: a decision


def _name_of(answer: Any) -> str | None:
    if isinstance(answer, ArchRow):
        return answer.name
    if isinstance(answer, str):
        return answer.strip()
    return None


@checker(
    "the cheapest architecture above the accuracy bar",
    requirement="the name, as the table writes it, of the model with the fewest MACs among those "
    "whose published top-1 is at least the bar (the bar itself included)",
)
def check_cheapest_above(ctx: Context, answer: Any, rows: Sequence[ArchRow], min_top1: float = 75.1) -> str:
    """``answer`` names the architecture with the fewest MACs among those whose published
    top-1 is at least ``min_top1`` in ``rows`` (case and surrounding spaces do not matter)."""
    if answer is None:
        fail('your answer is None: assign the architecture\'s name, e.g. answer_1 = "ResNet-18".')
    name = _name_of(answer)
    if name is None:
        fail(f"give the architecture's name as a string, got {type(answer).__name__}.")
    rows = list(rows)
    by_name = {r.name.lower(): r for r in rows}
    if name.lower() not in by_name:
        fail(f"{name!r} is not in the table; its names are {', '.join(r.name for r in rows)}.")
    got = by_name[name.lower()]
    qualified = [r for r in rows if r.top1 is not None and r.top1 >= min_top1]
    if not qualified:
        fail(f"no architecture in the table reaches {min_top1}%: is it the table from this notebook?")
    best = min(qualified, key=lambda r: r.macs)
    if got.name == best.name:
        return (
            f"{best.name}: {best.top1}% top-1 (bar: at least {min_top1}%) at "
            f"{best.macs / 1e9:.3f} GMACs, the fewest of the {len(qualified)} models that reach it."
        )
    if got.top1 is None:
        fail(
            f"{got.name} has no published ImageNet accuracy, so it cannot be shown to reach the "
            f"bar: only models with a top-1 figure qualify."
        )
    if got.top1 < min_top1:
        fail(
            f"{got.name} has {got.top1}% top-1, below the bar of {min_top1}%: it has few MACs "
            f"but does not qualify."
        )
    strict = [r for r in rows if r.top1 is not None and r.top1 > min_top1]
    if strict and got.name == min(strict, key=lambda r: r.macs).name:
        fail(
            f'{got.name} qualifies, but {best.name} has {best.top1}% and "at least" includes '
            f"the bar itself: it qualifies too, with fewer MACs."
        )
    if got.top1 == max(r.top1 for r in qualified if r.top1 is not None):
        fail(
            f"{got.name} is the most accurate model, but the question asks for the fewest MACs "
            f"among those that reach the bar."
        )
    fail(
        f"{got.name} reaches the bar but costs {got.macs / 1e9:.3f} GMACs; another model that "
        f"reaches it costs fewer."
    )
    return ""


# ------------------------------------------------------------------ exercise 2: choose under budgets


def _known_top1(row: ArchRow) -> float:
    """``row.top1`` of a row already filtered to have one."""
    assert row.top1 is not None
    return row.top1


def ref_choose(rows: Sequence[ArchRow], max_params: int, max_latency_ms: float) -> str | None:
    """The most accurate model with params <= max_params and measured latency <= the budget;
    ties in accuracy go to fewer MACs; ``None`` if nothing fits."""
    fits = [
        r
        for r in rows
        if r.top1 is not None
        and r.latency_ms is not None
        and r.params <= max_params
        and r.latency_ms <= max_latency_ms
    ]
    if not fits:
        return None
    return min(fits, key=lambda r: (-_known_top1(r), r.macs)).name


def _choose_wrong(rows: Sequence[ArchRow], max_params: int, max_latency_ms: float) -> dict[str, Any]:
    def pick(keep: Callable[[ArchRow], bool], key: Callable[[ArchRow], Any]) -> str | None:
        fits = [r for r in rows if keep(r)]
        return min(fits, key=key).name if fits else None

    acc = lambda r: (-r.top1, r.macs)
    known = lambda r: r.top1 is not None
    return {
        'A model exactly at a budget fits: the budgets are "at most" (use <=, not <).': pick(
            lambda r: (
                known(r)
                and r.latency_ms is not None
                and r.params < max_params
                and r.latency_ms < max_latency_ms
            ),
            acc,
        ),
        "A model that was never timed (latency_ms is None) cannot be shown to meet "
        "the latency budget: skip it.": pick(
            lambda r: (
                known(r)
                and r.params <= max_params
                and (r.latency_ms is None or r.latency_ms <= max_latency_ms)
            ),
            acc,
        ),
        "The parameter budget is ignored: a model must meet both budgets.": pick(
            lambda r: known(r) and r.latency_ms is not None and r.latency_ms <= max_latency_ms, acc
        ),
        "That is the fastest model that fits; the exercise asks for the most accurate one.": pick(
            lambda r: (
                known(r)
                and r.latency_ms is not None
                and r.params <= max_params
                and r.latency_ms <= max_latency_ms
            ),
            lambda r: r.latency_ms,
        ),
        "Ties in accuracy go to the model with fewer MACs, not fewer parameters.": pick(
            lambda r: (
                known(r)
                and r.latency_ms is not None
                and r.params <= max_params
                and r.latency_ms <= max_latency_ms
            ),
            lambda r: (-_known_top1(r), r.params),
        ),
        "Ties in accuracy go to the model with fewer MACs, not the lower latency.": pick(
            lambda r: (
                known(r)
                and r.latency_ms is not None
                and r.params <= max_params
                and r.latency_ms <= max_latency_ms
            ),
            lambda r: (-_known_top1(r), r.latency_ms),
        ),
        "Ties in accuracy go to the model with fewer MACs (you kept the one with more).": pick(
            lambda r: (
                known(r)
                and r.latency_ms is not None
                and r.params <= max_params
                and r.latency_ms <= max_latency_ms
            ),
            lambda r: (-_known_top1(r), -r.macs),
        ),
    }


def _call_rows(fn: Callable[..., Any], *args: Any, describe: str) -> Any:
    """``call`` that names the usual cause of a ``NoneType`` comparison error."""
    try:
        return call(fn, *args, describe=describe)
    except CheckFailed as exc:
        if "NoneType" in str(exc):
            fail(
                f"{exc} A row without a published accuracy (top1 is None) or without a measured "
                f"latency (latency_ms is None) cannot be compared: skip such rows first."
            )
        raise


CANDIDATES: list[ArchRow] = [
    _row("A", 3.5e6, 0.300, 71.9, 9.0),
    _row("B", 5.5e6, 0.220, 74.0, 8.0),
    _row("C", 5.3e6, 0.390, 77.7, 15.0),
    _row("D", 4.7e6, 0.400, 75.1, 11.0),
    _row("E", 9.0e6, 0.500, 76.0, 13.0),
    _row("F", 7.0e6, 0.900, 76.0, 12.0),
    _row("G", 28.6e6, 4.500, 82.5, None),
    _row("H", 61_706, 0.0004, None, 0.3),
    _row("I", 25.6e6, 4.100, 76.1, 40.0),
    _row("J", 20.0e6, 3.000, 79.0, 46.0),
]
"""The candidates of the 14.17 choose-and-justify exercise: a latency of ``None`` was not
measured, a top-1 of ``None`` was never published. Built so that the requests below reach every
rule: a candidate exactly at a budget, a tie in accuracy, a most accurate candidate that was not
timed, and a candidate without an accuracy that alone meets the budgets."""

BUDGET_REQUESTS: dict[str, tuple[int, float]] = {
    "a": (6_000_000, 15.0),
    "b": (10_000_000, 14.0),
    "c": (30_000_000, 50.0),
    "d": (1_000_000, 1.0),
}
"""The requests of that exercise: ``(max_params, max_latency_ms)``."""


def _fitting(rows: Sequence[ArchRow], max_params: float, max_latency_ms: float, rule: str = "") -> int:
    """How many rows meet both budgets and can be compared, or what one misread rule counts."""
    return sum(
        (r.top1 is not None or rule == "no_top1")
        and (r.params <= max_params or rule == "no_params")
        and (
            (r.latency_ms is None and rule == "unmeasured")
            or (
                r.latency_ms is not None
                and (r.latency_ms < max_latency_ms if rule == "strict" else r.latency_ms <= max_latency_ms)
            )
        )
        and (rule != "strict" or r.params < max_params)
        for r in rows
    )


_COUNT_WRONG = {
    "strict": 'A candidate exactly at a budget meets it: the budgets are "at most".',
    "unmeasured": "A candidate that was never timed cannot be shown to meet the latency budget: "
    "it does not count.",
    "no_top1": "A candidate without a published accuracy cannot be compared with the others: it does not "
    "count.",
    "no_params": "A candidate must meet both budgets, the parameter budget too.",
}


@checker(
    "choices within two budgets",
    requirement="for each request, the name of the most accurate candidate with params <= max_params "
    "and measured latency_ms <= max_latency_ms (candidates without top1 or latency skipped; a tie in "
    "accuracy goes to fewer MACs (not fewer parameters); None if nothing fits), and how many candidates "
    "meet both budgets",
)
def check_budget_choices(ctx: Context, chosen: Any, fitting: Any) -> str:
    """Check ``chosen`` ``{request: name or None}`` and ``fitting`` ``{request: count}`` for
    :data:`BUDGET_REQUESTS` on :data:`CANDIDATES`."""
    del ctx  # a fixed table: the same verdict on every seed
    keys = list(BUDGET_REQUESTS)
    names = {r.name.lower(): r for r in CANDIDATES}
    for what, answer in (("chosen", chosen), ("fitting", fitting)):
        expect_answers(answer, keys, what, none_allowed=True)
    lines = []
    for key, (max_params, max_latency) in BUDGET_REQUESTS.items():
        budget = f"request {key!r} (at most {max_params / 1e6:g} M parameters and {max_latency:g} ms)"
        pick = chosen[key]
        if isinstance(pick, ArchRow):
            pick = pick.name
        if pick is not None and not isinstance(pick, str):
            fail(f"chosen[{key!r}]: give a candidate's name as a string (or None), got {pick!r}.")
        if isinstance(pick, str) and pick.strip().lower() not in names:
            fail(f"chosen[{key!r}]: {pick!r} is not a candidate; the names are {', '.join(names).upper()}.")
        got = None if pick is None else names[pick.strip().lower()].name
        want = ref_choose(CANDIDATES, max_params, max_latency)
        if got != want:
            hint = "Keep the candidates that meet both budgets, then take the most accurate."
            row = names.get((got or "").lower())
            if got is not None and row is not None and row.top1 is None:
                hint = (
                    f"{got} has no published accuracy (top1 is None), so it cannot be shown to be the "
                    f"most accurate: skip such candidates."
                )
            elif want is None:
                hint = "Nothing that can be compared meets both budgets: the answer is None."
            else:
                for why, value in _choose_wrong(CANDIDATES, max_params, max_latency).items():
                    if value == got and value != want:
                        hint = why
                        break
            lines.append(f"{budget}: you chose {got}, expected another answer. {hint}")
        count = fitting[key]
        if isinstance(count, bool) or not isinstance(count, int):
            fail(f"fitting[{key!r}]: a count is a whole number (an int), got {count!r}.")
        true_count = _fitting(CANDIDATES, max_params, max_latency)
        if count != true_count:
            hint = "Count the candidates with a top-1, a measured latency, and both budgets met."
            for rule, why in _COUNT_WRONG.items():
                if count == _fitting(CANDIDATES, max_params, max_latency, rule) != true_count:
                    hint = why
                    break
            lines.append(
                f"{budget}: you counted {count} as meeting both budgets, expected another number. {hint}"
            )
    if lines:
        fail(
            f"{len(lines)} of {2 * len(keys)} answers are off:\n" + "\n".join(lines),
            hint2="Go through the requests one candidate at a time: cross out every candidate without "
            "a top-1 or a latency, then every one over either budget (a value equal to the budget "
            "stays); count what is left, and among the most accurate of those take the one with the "
            "fewest MACs.",
        )
    return (
        "all four choices and counts are right: a candidate at the budget fits, an untimed or unpublished "
        "one cannot be chosen, ties go to fewer MACs, and nothing fitting means None."
    )


# ------------------------------------------------------------------ exercise 3: Pareto front


def _cost(row: ArchRow, cost: str) -> float | None:
    value = getattr(row, cost)
    return None if value is None else float(value)


def ref_pareto_front(rows: Sequence[ArchRow], cost: str) -> list[str]:
    """Names of the rows no other row dominates (cost <= and top1 >=, one of them strictly),
    among rows with both a top-1 and a cost; sorted by cost."""
    pts = [(r.name, c, a) for r in rows if (a := r.top1) is not None and (c := _cost(r, cost)) is not None]
    front = [
        (c, n) for n, c, a in pts if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for _, c2, a2 in pts)
    ]
    return [n for _, n in sorted(front)]


def _pareto_wrong(rows: Sequence[ArchRow], cost: str) -> dict[str, list[str]]:
    def front(
        keep: Callable[[ArchRow], bool],
        dominated: Callable[..., bool],
        cost_of: Callable[[ArchRow], float | None],
    ) -> list[str]:
        pts = [(r.name, cost_of(r), r.top1) for r in rows if keep(r)]
        return sorted(
            n for n, c, a in pts if not any(n2 != n and dominated(c2, a2, c, a) for n2, c2, a2 in pts)
        )

    has = lambda r: r.top1 is not None and _cost(r, cost) is not None
    mine = lambda r: _cost(r, cost)
    strict = lambda c2, a2, c, a: c2 <= c and a2 >= a and (c2 < c or a2 > a)
    return {
        "Two identical models do not dominate each other: domination needs one of the two "
        "comparisons to be strict.": front(has, lambda c2, a2, c, a: c2 <= c and a2 >= a, mine),
        "A model as accurate as another but costlier is dominated (it is worse on one axis and no "
        "better on the other): domination needs cost <= and top1 >=, with EITHER one strict, not "
        "a strictly higher accuracy.": front(has, lambda c2, a2, c, a: c2 <= c and a2 > a, mine),
        "A model with the same cost and lower accuracy is dominated (it is worse on one axis and "
        "no better on the other): requiring both to be strictly better keeps it.": front(
            has, lambda c2, a2, c, a: c2 < c and a2 > a, mine
        ),
        "The front must use the cost named by the `cost` argument (macs, params or latency_ms), "
        "not always MACs.": front(lambda r: r.top1 is not None, strict, lambda r: float(r.macs)),
        "A model that was never timed has no cost on that axis: leave it out, do not count it as 0.": front(
            lambda r: r.top1 is not None, strict, lambda r: 0.0 if _cost(r, cost) is None else _cost(r, cost)
        ),
    }


def _pareto_cases(ctx: Context) -> list[tuple[str, list[ArchRow], str]]:
    base = [
        _row("LeNet-5", 61_706, 0.0004, None, 0.3),
        _row("MobileNetV3-L", 5.48e6, 0.217, 74.0, 9.0),
        _row("MobileNetV2", 3.5e6, 0.301, 71.9, 8.0),
        _row("EfficientNet-B0", 5.29e6, 0.386, 77.7, 14.0),
        _row("ResNet-18", 11.7e6, 1.81, 69.8, 11.0),
        _row("ResNet-50", 25.6e6, 4.09, 76.1, 40.0),
        _row("ConvNeXt-T", 28.6e6, 4.46, 82.5, None),
        _row("VGG-16", 138e6, 15.5, 71.6, 160.0),
    ]
    twins = [*base[:4], _row("B0-copy", 5.29e6, 0.386, 77.7, 14.0)]
    same_cost = [
        _row("a", 1e6, 1.0, 70.0, 5.0),
        _row("b", 2e6, 1.0, 75.0, 6.0),
        _row("c", 3e6, 2.0, 80.0, 7.0),
    ]
    cases = [
        ("the chapter's table, cost='macs'", base, "macs"),
        ("the chapter's table, cost='params'", base, "params"),
        ("the chapter's table, cost='latency_ms' (ConvNeXt-T not timed)", base, "latency_ms"),
        ("a table with two identical models (cost='macs')", twins, "macs"),
        ("two models of equal MACs, one more accurate (cost='macs')", same_cost, "macs"),
        (
            "two equally accurate models, one with three times the MACs (cost='macs')",
            [
                _row("lean", 4e6, 0.5, 76.0, 9.0),
                _row("costly", 3e6, 1.5, 76.0, 8.0),
                _row("small", 1e6, 0.2, 70.0, 3.0),
            ],
            "macs",
        ),
    ]
    for i in range(3):
        n = ctx.randint(4, 9)
        rows = []
        for j in range(n):
            top1 = None if ctx.rand(1).item() < 0.1 else round(60 + 25 * ctx.rand(1).item(), 0)
            lat = None if ctx.rand(1).item() < 0.2 else float(ctx.randint(1, 30))
            rows.append(_row(f"net{j}", ctx.randint(1, 20) * 1e6, ctx.randint(1, 12) / 4, top1, lat))
        cases.append((f"random table {i + 1}", rows, ctx.choice(COSTS)))
    return cases


@checker(
    "pareto_front(rows, cost)",
    requirement="the names of the rows no other row dominates (cost <= and top1 >=, one of them "
    "strict) on the named cost, rows without top1 or that cost left out; an equally accurate but "
    "costlier model is dominated; two identical models both stay",
)
def check_pareto_front(ctx: Context, pareto_front: Callable[..., Any]) -> str:
    """The names of the non-dominated models for the given cost, in any order, no duplicates."""
    cases = _pareto_cases(ctx)
    for describe, rows, cost in cases:
        got = _call_rows(pareto_front, list(rows), cost, describe=describe)
        if got is None:
            fail(f"pareto_front returned None on {describe}: did you forget to `return` the list?")
        try:
            names = list(got)
        except TypeError:
            fail(f"pareto_front should return a list of names, got {type(got).__name__}.")
        if any(isinstance(n, ArchRow) for n in names):
            fail(f"on {describe}: return the names (row.name), not the rows.")
        if len(names) != len(set(map(str, names))):
            fail(f"on {describe}: the front lists a model twice: {names}.")
        expected = ref_pareto_front(rows, cost)
        wrong = {h: v for h, v in _pareto_wrong(rows, cost).items() if v != sorted(expected)}
        expect_equal(
            sorted(map(str, names)),
            sorted(expected),
            f"the front on {describe} (sorted by name)",
            wrong=wrong,
        )
    return f"pareto_front found the non-dominated models on all {len(cases)} tables."


# ------------------------------------------------------------------ exercise 4: achieved throughput


def ref_gmacs_per_second(rows: Sequence[ArchRow]) -> dict[str, float]:
    """``{name: GMACs per second}`` = ``macs / 1e9 / (latency_ms / 1000)``, timed rows only."""
    return {
        r.name: r.macs / 1e9 / (r.latency_ms / 1e3)
        for r in rows
        if r.latency_ms is not None and r.latency_ms > 0
    }


def _throughput_wrong(rows: Sequence[ArchRow]) -> dict[str, dict[str, float]]:
    timed = [(r, ms) for r in rows if (ms := r.latency_ms) is not None and ms > 0]
    return {
        "The latency is in milliseconds: divide by latency_ms / 1000 (seconds), not by latency_ms.": {
            r.name: r.macs / 1e9 / ms for r, ms in timed
        },
        "A multiply-add is one MAC; counting it as 2 FLOPs doubles the figure.": {
            r.name: 2 * r.macs / 1e9 / (ms / 1e3) for r, ms in timed
        },
        "Throughput is multiply-adds per second: use row.macs, not row.params.": {
            r.name: r.params / 1e9 / (ms / 1e3) for r, ms in timed
        },
    }


def _same_dict(got: dict, expected: dict, rel: float = 1e-6) -> bool:
    return set(got) == set(expected) and all(
        isinstance(got[k], (int, float)) and math.isclose(float(got[k]), expected[k], rel_tol=rel)
        for k in expected
    )


@checker(
    "gmacs_per_second(rows)",
    requirement="{name: (macs / 1e9) / (latency_ms / 1000)} for every row with a measured latency, "
    "the others left out",
)
def check_gmacs_per_second(ctx: Context, gmacs_per_second: Callable[..., Any]) -> str:
    """``{name: achieved GMAC/s}`` for the rows with a measured latency (others left out)."""
    base = [
        _row("LeNet-5", 61_706, 0.000416520, None, 0.25),
        _row("MobileNetV2", 3.5e6, 0.301, 71.9, 8.0),
        _row("ResNet-50", 25.6e6, 4.09, 76.1, 40.0),
        _row("ViT-B/16", 86.6e6, 17.56, 81.1, None),
    ]
    cases = [("a table where ViT-B/16 was not timed and LeNet-5 has no accuracy", base)]
    for i in range(3):
        rows = [
            _row(
                f"net{j}",
                ctx.randint(10_000, 10**8),
                0.01 + 10 * ctx.rand(1).item(),
                None if ctx.rand(1).item() < 0.2 else 70.0,
                None if j == 0 else round(0.5 + 200 * ctx.rand(1).item(), 2),
            )
            for j in range(ctx.randint(3, 7))
        ]
        cases.append((f"random table {i + 1} (its first model not timed)", rows))
    for describe, rows in cases:
        got = call(gmacs_per_second, list(rows), describe=describe)
        if got is None:
            fail(f"gmacs_per_second returned None on {describe}: did you forget to `return`?")
        if not isinstance(got, dict):
            fail(f"gmacs_per_second should return a dict {{name: GMAC/s}}, got {type(got).__name__}.")
        expected = ref_gmacs_per_second(rows)
        untimed = {r.name for r in rows if r.latency_ms is None}
        if untimed & set(got):
            fail(
                f"on {describe}: {sorted(untimed & set(got))} were not timed (latency_ms is None) "
                f"and have no throughput: leave them out."
            )
        if set(got) != set(expected):
            fail(f"on {describe}: expected the keys {sorted(expected)}, got {sorted(map(str, got))}.")
        bad = [k for k, v in got.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            fail(
                f"on {describe}: the values should be numbers (GMAC/s), got "
                f"{type(got[bad[0]]).__name__} for {bad[0]!r}."
            )
        if _same_dict(got, expected):
            continue
        for hint, value in _throughput_wrong(rows).items():
            if _same_dict(got, value):
                fail(f"on {describe}: {hint}")
        name = next(k for k in expected if not math.isclose(float(got[k]), expected[k], rel_tol=1e-6))
        fail(f"on {describe}: for {name} expected {expected[name]:.4g} GMAC/s, got {got[name]!r}.")
    return f"gmacs_per_second gave the right throughputs on all {len(cases)} tables."
