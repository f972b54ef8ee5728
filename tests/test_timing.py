"""cnnbook.timing: statistics of the measurements (no timing targets here)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cnnbook.timing import compare_forward, time_call, time_forward


def test_counts_calls_and_orders_quantiles() -> None:
    calls = itertools.count()
    t = time_call(lambda: next(calls), repeats=7, warmup=2)
    assert next(calls) == 9
    assert t.repeats == 7
    assert 0 <= t.q25_ms <= t.median_ms <= t.q75_ms
    assert "ms" in str(t)


def test_forward_runs_without_grad_and_keeps_mode() -> None:
    seen = []
    model = nn.Linear(3, 2).train()
    model.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    time_forward(model, torch.randn(4, 3), repeats=2, warmup=1)
    assert seen == [False] * 3
    assert model.training


def test_rejects_zero_repeats() -> None:
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)


def test_compare_interleaves_and_names_results() -> None:
    order: list[str] = []
    models = {"a": lambda x: order.append("a"), "b": lambda x: order.append("b")}
    out = compare_forward(models, torch.zeros(1), repeats=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert list(out) == ["a", "b"]
    assert all(t.repeats == 3 for t in out.values())
    with pytest.raises(ValueError, match="repeats"):
        compare_forward({}, torch.zeros(1))
