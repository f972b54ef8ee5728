"""cnnbook.train helpers used by fit: unwrap, check_outputs, predict, make_optimizer; distributed_env."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from test_train import toy_arrays, toy_model
from torch import nn

from cnnbook import distributed, modules, optim, train
from cnnbook.loaders import GPUBatchLoader

# ---------------------------------------------------------------- unwrap


def test_unwrap_plain_module_is_itself() -> None:
    model = toy_model()
    assert modules.unwrap(model) is model


def test_unwrap_ddp_wrapper() -> None:
    """A real ``DistributedDataParallel`` wrapper, in a one-process gloo group."""
    model = toy_model()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert ddp.module is model
        assert modules.unwrap(ddp) is model
    finally:
        dist.destroy_process_group()


def test_unwrap_compiled_module_and_nested_wrappers() -> None:
    """A real ``torch.compile`` wrapper (lazy: nothing compiles before the first call).

    Most of this test's time is the one-time import of ``torch._dynamo``.
    """
    model = toy_model()
    compiled = torch.compile(model)
    assert compiled is not model
    assert modules.unwrap(compiled) is model
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert modules.unwrap(nn.parallel.DistributedDataParallel(compiled)) is model
        assert modules.unwrap(torch.compile(nn.parallel.DistributedDataParallel(model))) is model
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- check_outputs
def test_check_outputs_accepts_matching_outputs() -> None:
    labels = torch.tensor([0, 2, 1, 2])
    assert train.check_outputs(torch.zeros(4, 3), labels, 3) is None
    assert train.check_outputs(torch.zeros(4, 5), labels, None) is None  # K unknown: labels fit


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((4,), r"returned shape \(4,\) for a batch of 4 images.*torch.flatten\(x, 1\)"),
        ((4, 3, 2, 2), r"returned shape \(4, 3, 2, 2\) for a batch of 4 images"),
        ((5, 3), r"returned shape \(5, 3\) for a batch of 4 images"),
    ],
)
def test_check_outputs_rejects_wrong_shapes(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train.check_outputs(torch.zeros(shape), torch.tensor([0, 1, 2, 0]), 3)


def test_check_outputs_class_count_mismatch_names_the_fix() -> None:
    with pytest.raises(
        ValueError,
        match=r"outputs 1000 scores per image but the data has 10 "
        r"classes.*nn\.Linear\(model\.fc\.in_features, 10\)"
        r".*num_classes=10",
    ):
        train.check_outputs(torch.zeros(2, 1000), torch.tensor([3, 9]), 10)


def test_check_outputs_label_out_of_range() -> None:
    with pytest.raises(
        ValueError,
        match=r"A label is 7 but the model has only 5 outputs "
        r"\(labels must be 0\.\.4\); .*num_classes=8 or more",
    ):
        train.check_outputs(torch.zeros(3, 5), torch.tensor([0, 7, 4]), None)


# ---------------------------------------------------------------- predict
def test_predict_equals_an_eval_forward_pass() -> None:
    arrays = toy_arrays(40)
    torch.manual_seed(0)
    model = toy_model(dropout=0.5)
    loader = GPUBatchLoader(arrays, 16, train=False, device="cpu")  # batches of 16, 16, 8
    logits, preds, labels = train.predict(model, loader, device="cpu")
    assert model.training  # the mode is restored
    assert logits.shape == (40, 3)
    assert logits.dtype == torch.float32
    assert logits.device.type == "cpu"
    model.eval()
    with torch.no_grad():
        expected = model(arrays.normalized())  # no dropout: the same logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(preds, expected.argmax(1))
    assert torch.equal(labels, arrays.labels)
    again, _, _ = train.predict(model, loader)  # device None: the model's own
    assert not model.training
    torch.testing.assert_close(again, logits)


def test_predict_on_a_plain_list_of_batches_and_empty_loader() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 1, 0, 1, 0])
    logits, preds, labels = train.predict(model, [(x[:4], y[:4]), (x[4:], y[4:])], "cpu")
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x))
    assert torch.equal(labels, y)
    assert torch.equal(preds, model(x).argmax(1))
    with pytest.raises(ValueError, match="The loader yielded no batches"):
        train.predict(model, [], "cpu")


# ---------------------------------------------------------------- make_optimizer
def _decay_by_param(opt: torch.optim.Optimizer) -> dict[int, float]:
    return {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}


def test_make_optimizer_decays_only_weight_matrices() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    opt = optim.make_optimizer(model, "sgd", lr=0.1, weight_decay=1e-3, momentum=0.8)
    assert isinstance(opt, torch.optim.SGD)
    decay = _decay_by_param(opt)
    expected = {id(p): (1e-3 if p.dim() > 1 else 0.0) for p in model.parameters()}
    assert decay == expected
    conv, bn, _, lin = model
    assert decay[id(conv.weight)] == decay[id(lin.weight)] == 1e-3
    assert decay[id(conv.bias)] == decay[id(bn.weight)] == decay[id(lin.bias)] == 0.0
    for group in opt.param_groups:
        assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.8, True)
    plain = optim.make_optimizer(model, momentum=0.0)
    assert not plain.param_groups[0]["nesterov"]  # Nesterov needs momentum


def test_make_optimizer_adamw_skips_frozen_and_empty_groups() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    opt = optim.make_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    assert _decay_by_param(opt) == {
        id(model[2].weight): 0.05,
        id(model[1].weight): 0.0,
        id(model[1].bias): 0.0,
        id(model[2].bias): 0.0,
    }
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    only_norm = optim.make_optimizer(nn.BatchNorm1d(4), "adamw")
    assert len(only_norm.param_groups) == 1
    assert only_norm.param_groups[0]["weight_decay"] == 0.0


def test_make_optimizer_errors() -> None:
    with pytest.raises(
        ValueError,
        match=r"Unknown optimizer 'adam'; choose one of "
        r"\('sgd', 'adamw'\)",
    ):
        optim.make_optimizer(toy_model(), "adam")
    frozen = toy_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters; unfreeze some"):
        optim.make_optimizer(frozen)


# ---------------------------------------------------------------- distributed_env
def test_distributed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.distributed_env() == (0, 1, 0)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.distributed_env() == (5, 8, 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert distributed.distributed_env() == (5, 8, 0)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="two"):
        distributed.distributed_env()


# ---------------------------------------------------------------- fit stays readable
def test_fit_body_is_at_most_60_lines_and_takes_settings() -> None:
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(train.fit)))
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # docstring aside
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= 60, f"fit's body is {lines} lines; move bookkeeping into helpers"
    params = inspect.signature(train.fit).parameters
    assert "settings" in params
    assert "momentum" not in params  # a ready optimiser covers other momenta


def test_fit_takes_settings_or_shortcuts_not_both() -> None:
    from cnnbook.device import run_settings

    model = toy_model()
    tr = GPUBatchLoader(toy_arrays(32), 16, device="cpu")
    settings = run_settings("cpu", channels_last=False)
    hist = train.fit(model, tr, settings=settings, epochs=1, progress=False, verbose=False)
    assert len(hist) == 1
    assert not model[0].weight.is_contiguous(memory_format=torch.channels_last)  # as the settings say
    with pytest.raises(ValueError, match="either settings= or device="):
        train.fit(model, tr, settings=settings, device="cpu", epochs=1, progress=False, verbose=False)
