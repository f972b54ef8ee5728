"""Wrong-answer corpus for the 14.17 exercises (cnnbook.checks.choosing)."""

from __future__ import annotations

import pytest

from cnnbook import zoo
from cnnbook.checks import choosing as checks
from cnnbook.zoo import ArchRow
from tests.corpus.corpus_tools import accepted, rejected


@pytest.fixture(scope="module")
def table() -> list[ArchRow]:
    """The chapter's table as the notebook builds it, from torchvision's metadata (fast)."""
    rows = []
    for arch in zoo.ARCHITECTURES:
        if arch.weights_enum is None:
            rows.append(zoo.count_row(arch.name))  # LeNet-5 and Lite0 are quick to count
            continue
        meta = zoo.torchvision_weights(arch.weights_enum).meta
        rows.append(
            ArchRow(
                arch.name,
                arch.year,
                meta["num_params"],
                round(meta["_ops"] * 1e9),
                arch.input_shape,
                arch.top1,
                arch.top1_source,
            )
        )
    return rows


# ------------------------------------------------------------ exercise 1: cheapest above 75.1 %


def test_cheapest_above_accepts_the_answer(table: list[ArchRow]) -> None:
    accepted(lambda a, **kw: checks.check_cheapest_above(a, table, **kw), "EfficientNet-Lite0")
    accepted(lambda a, **kw: checks.check_cheapest_above(a, table, **kw), " efficientnet-lite0 ")
    lite = next(r for r in table if r.name == "EfficientNet-Lite0")
    accepted(lambda a, **kw: checks.check_cheapest_above(a, table, **kw), lite)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ("EfficientNet-B0", r"at least.*includes the bar"),  # used > instead of >=
        ("MobileNetV3-L", r"below the bar"),  # fewest MACs, ignoring the bar
        ("ConvNeXt-T", r"most accurate.*fewest MACs"),  # best accuracy instead
        ("LeNet-5", r"no published ImageNet accuracy"),  # fewest MACs of all
        ("ResNet-50", r"costs fewer|reaches the bar but"),  # a familiar default
        ("EfficientNet", r"not in the table"),  # not a name in the table
    ],
)
def test_cheapest_above_rejects_mistakes(table: list[ArchRow], answer: str, hint: str) -> None:
    rejected(lambda a, **kw: checks.check_cheapest_above(a, table, **kw), answer, hint=hint)


def test_cheapest_above_none_and_types(table: list[ArchRow]) -> None:
    rejected(lambda a, **kw: checks.check_cheapest_above(a, table, **kw), None, hint="is None")
    rejected(lambda a, **kw: checks.check_cheapest_above(a, table, **kw), 3, hint="as a string")


# ------------------------------------------------------------ exercise 2: choose and justify

RIGHT_CHOSEN = {"a": "C", "b": "E", "c": "J", "d": None}
RIGHT_FITTING = {"a": 4, "b": 5, "c": 8, "d": 0}
_BUDGET_REQ = r"fewer MACs \(not fewer parameters\)"


def test_budget_answers_agree_with_the_rules_as_code() -> None:
    for key, budgets in checks.BUDGET_REQUESTS.items():
        assert checks.ref_choose(checks.CANDIDATES, *budgets) == RIGHT_CHOSEN[key]
        fits = [
            r
            for r in checks.CANDIDATES
            if r.top1 is not None
            and r.latency_ms is not None
            and r.params <= budgets[0]
            and r.latency_ms <= budgets[1]
        ]
        assert len(fits) == RIGHT_FITTING[key]


def test_budget_choices_accept_the_answers_in_any_spelling() -> None:
    accepted(checks.check_budget_choices, RIGHT_CHOSEN, RIGHT_FITTING)
    accepted(checks.check_budget_choices, {**RIGHT_CHOSEN, "a": " c ", "b": "e"}, RIGHT_FITTING)
    row_j = next(r for r in checks.CANDIDATES if r.name == "J")
    accepted(checks.check_budget_choices, {**RIGHT_CHOSEN, "c": row_j}, RIGHT_FITTING)


@pytest.mark.parametrize(
    ("chosen", "fitting", "hint"),
    [
        (
            {**RIGHT_CHOSEN, "a": "D"},
            {**RIGHT_FITTING, "a": 3},
            r"request 'a'.*at most.*request 'a'.*at most",
        ),  # < for <=
        (
            {**RIGHT_CHOSEN, "b": "F"},
            RIGHT_FITTING,
            r"request 'b'.*fewer MACs, not fewer parameters",
        ),  # fewer params
        (
            {**RIGHT_CHOSEN, "c": "G"},
            {**RIGHT_FITTING, "c": 9},
            r"request 'c'.*never timed.*request 'c'.*never timed",
        ),
        (
            {**RIGHT_CHOSEN, "d": "H"},
            {**RIGHT_FITTING, "d": 1},
            r"request 'd'.*no published accuracy",
        ),  # H qualifies
        ({**RIGHT_CHOSEN, "b": "C"}, RIGHT_FITTING, r"request 'b'"),  # ignores the latency budget
        ({**RIGHT_CHOSEN, "c": "A"}, RIGHT_FITTING, r"request 'c'"),  # the smallest, not the most accurate
        ({**RIGHT_CHOSEN, "d": "A"}, RIGHT_FITTING, r"request 'd'.*answer is None"),  # nothing fits
        (RIGHT_CHOSEN, {**RIGHT_FITTING, "a": 5}, r"request 'a'.*without a published accuracy"),  # counts H
        (RIGHT_CHOSEN, {**RIGHT_FITTING, "b": 6}, r"request 'b'.*without a published accuracy"),
        (RIGHT_CHOSEN, {**RIGHT_FITTING, "a": 6}, r"request 'a'.*parameter budget too"),  # latency only
        (RIGHT_CHOSEN, {**RIGHT_FITTING, "c": 4.0}, r"whole number"),
        ({**RIGHT_CHOSEN, "a": "EfficientNet-B0"}, RIGHT_FITTING, r"not a candidate"),
        ({**RIGHT_CHOSEN, "d": "None"}, RIGHT_FITTING, r"not a candidate"),
        ({**RIGHT_CHOSEN, "a": ...}, RIGHT_FITTING, r"replace every \.\.\."),
        ({k: v for k, v in RIGHT_CHOSEN.items() if k != "d"}, RIGHT_FITTING, r"missing \['d'\]"),
        (["C", "E", "J", None], RIGHT_FITTING, r"give a dict"),
    ],
)
def test_budget_choices_reject_mistakes(chosen, fitting, hint: str) -> None:
    rejected(checks.check_budget_choices, chosen, fitting, hint=hint, requirement=_BUDGET_REQ)


# ------------------------------------------------------------ exercise 3: Pareto front


def _points(rows, cost):
    return [
        (r.name, getattr(r, cost), r.top1)
        for r in rows
        if r.top1 is not None and getattr(r, cost) is not None
    ]


def pareto_reference(rows, cost):
    pts = _points(rows, cost)
    return [n for n, c, a in pts if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for _, c2, a2 in pts)]


def pareto_sweep_variant(rows, cost):
    # sort by cost, then best accuracy first; keep a model if it beats every cheaper one,
    # or ties the best exactly at the same cost (an identical twin)
    pts = sorted(_points(rows, cost), key=lambda p: (p[1], -p[2]))
    front, best, best_cost = [], float("-inf"), None
    for n, c, a in pts:
        if a > best or (a == best and c == best_cost):
            front.append(n)
            best, best_cost = a, c
    return front


def pareto_weak_domination(rows, cost):
    pts = _points(rows, cost)
    return [n for n, c, a in pts if not any(n2 != n and c2 <= c and a2 >= a for n2, c2, a2 in pts)]


def pareto_both_strict(rows, cost):
    pts = _points(rows, cost)
    return [n for n, c, a in pts if not any(c2 < c and a2 > a for _, c2, a2 in pts)]


def pareto_always_macs(rows, cost):
    return pareto_reference(rows, "macs")


def pareto_unmeasured_as_zero(rows, cost):
    pts = [(r.name, getattr(r, cost) or 0, r.top1) for r in rows if r.top1 is not None]
    return [n for n, c, a in pts if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for _, c2, a2 in pts)]


def pareto_needs_more_accuracy(rows, cost):
    pts = _points(rows, cost)
    return [n for n, c, a in pts if not any(c2 <= c and a2 > a for _, c2, a2 in pts)]


def pareto_needs_lower_cost(rows, cost):
    pts = _points(rows, cost)
    return [n for n, c, a in pts if not any(c2 < c and a2 >= a for _, c2, a2 in pts)]


def test_pareto_equally_accurate_but_costlier_is_dominated() -> None:
    rejected(
        checks.check_pareto_front,
        pareto_needs_more_accuracy,
        hint="as accurate as another but costlier is dominated",
        requirement="equally accurate but costlier model is dominated",
    )
    rejected(checks.check_pareto_front, pareto_needs_lower_cost, hint="same cost and lower accuracy")


def test_pareto_accepts_correct_answers() -> None:
    accepted(checks.check_pareto_front, lambda rows, cost: tuple(pareto_reference(rows, cost)))
    accepted(checks.check_pareto_front, pareto_reference)
    accepted(checks.check_pareto_front, pareto_sweep_variant)
    accepted(checks.check_pareto_front, lambda rows, cost: set(pareto_reference(rows, cost)))


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (pareto_weak_domination, r"identical models.*strict"),
        (pareto_both_strict, r"same cost and lower accuracy"),
        (pareto_always_macs, r"`cost` argument"),
        (pareto_unmeasured_as_zero, r"never timed"),
        (lambda rows, cost: pareto_reference(rows, cost) * 2, r"lists a model twice"),
    ],
)
def test_pareto_rejects_mistakes(answer, hint: str) -> None:
    rejected(checks.check_pareto_front, answer, hint=hint)


# ------------------------------------------------------------ exercise 4: achieved GMAC/s


def throughput_reference(rows):
    return {r.name: (r.macs / 1e9) / (r.latency_ms / 1000) for r in rows if r.latency_ms is not None}


def throughput_variant(rows):
    out = {}
    for r in rows:
        if r.latency_ms:
            out[r.name] = r.macs * 1e3 / r.latency_ms / 1e9  # MACs per ms -> per s, in G
    return out


def throughput_in_ms(rows):
    return {r.name: r.macs / 1e9 / r.latency_ms for r in rows if r.latency_ms is not None}


def throughput_flops(rows):
    return {r.name: 2 * r.macs / 1e9 / (r.latency_ms / 1e3) for r in rows if r.latency_ms is not None}


def throughput_params(rows):
    return {r.name: r.params / 1e9 / (r.latency_ms / 1e3) for r in rows if r.latency_ms is not None}


def throughput_keeps_untimed(rows):
    return {r.name: 0.0 if r.latency_ms is None else r.macs / 1e9 / (r.latency_ms / 1e3) for r in rows}


def test_throughput_accepts_correct_answers() -> None:
    accepted(checks.check_gmacs_per_second, throughput_reference)
    accepted(checks.check_gmacs_per_second, throughput_variant)


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (throughput_in_ms, r"milliseconds"),
        (throughput_flops, r"2 FLOPs"),
        (throughput_params, r"not row.params"),
        (throughput_keeps_untimed, r"not timed.*leave them out"),
    ],
)
def test_throughput_rejects_mistakes(answer, hint: str) -> None:
    rejected(checks.check_gmacs_per_second, answer, hint=hint)
