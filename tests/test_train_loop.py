"""cnnbook.train.train_one_epoch: the plain loop, the scaler path, max_steps; predict's manners."""

from __future__ import annotations

import copy

import pytest
import torch
from test_train import toy_arrays, toy_model
from torch import nn

from cnnbook import train
from cnnbook.device import run_settings, settings_for
from cnnbook.loaders import GPUBatchLoader


def _batches(n: int = 5, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(n)]


def _hand_written(model: nn.Module, batches, lr: float) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_one_epoch_equals_the_hand_written_loop() -> None:
    torch.manual_seed(0)
    ours, theirs = toy_model(dropout=0.0), toy_model(dropout=0.0)
    theirs.load_state_dict(ours.state_dict())
    batches = _batches()
    losses = _hand_written(theirs, batches, 0.1)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    res = train.train_one_epoch(ours, batches, opt, nn.CrossEntropyLoss())
    assert res.count == 30
    assert res.step_lr == (0.1,) * 5
    assert res.loss == pytest.approx(sum(losses) / 5, rel=1e-6)  # equal batches: plain mean
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_enabled_grad_scaler_changes_nothing_in_float32() -> None:
    """Scaling by a power of two and unscaling is exact: the scaler path is the plain path."""
    torch.manual_seed(1)
    plain, scaled = toy_model(dropout=0.0), toy_model(dropout=0.0)
    scaled.load_state_dict(plain.state_dict())
    batches = _batches()
    settings = run_settings("cpu", channels_last=False)
    for model, enabled in ((plain, False), (scaled, True)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", enabled=enabled, init_scale=2.0**10)
        train.train_one_epoch(model, batches, opt, nn.CrossEntropyLoss(), settings=settings, scaler=scaler)
        assert scaler.is_enabled() is enabled
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        assert torch.equal(a, b)


def test_max_steps_scheduler_and_progress() -> None:
    model = toy_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)

    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    res = train.train_one_epoch(
        model, _batches(5), opt, nn.CrossEntropyLoss(), scheduler=sched, max_steps=3, progress=bar
    )
    assert res.count == 18
    assert bar.n == 3
    assert res.step_lr == (1.0, 0.5, 0.25)
    assert opt.param_groups[0]["lr"] == 0.125


def test_one_epoch_checks_outputs_and_empty_loaders() -> None:
    model, opt = toy_model(classes=5), None
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="outputs 5 scores per image but the data has 3"):
        train.train_one_epoch(model, _batches(1), opt, nn.CrossEntropyLoss(), num_classes=3)
    with pytest.raises(ValueError, match="yielded no batches"):
        train.train_one_epoch(model, [], opt, nn.CrossEntropyLoss())


def test_predict_keeps_the_model_layout_and_matches_devices() -> None:
    arrays = toy_arrays(20)
    model = toy_model()
    conv = model[0]
    assert conv.weight.is_contiguous()
    loader = GPUBatchLoader(arrays, 8, train=False, device="cpu", channels_last=True)
    train.predict(model, loader)
    assert conv.weight.is_contiguous()  # not switched to channels-last behind the caller's back
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    logits_cl, _, _ = train.predict(cl, loader)
    assert cl[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(logits_cl, train.predict(model, loader)[0])
    assert settings_for(cl).channels_last
    assert not settings_for(model).channels_last
    # device= moves the model; the batches follow the model
    moved = toy_model().to(torch.float32)
    logits, _, _ = train.predict(moved, loader, device="cpu")
    assert logits.shape == (20, 3)
    assert next(moved.parameters()).device.type == "cpu"


def test_fit_no_longer_takes_the_removed_options() -> None:
    tr = GPUBatchLoader(toy_arrays(32), 16, device="cpu")
    for option in (
        "label_smoothing",
        "class_weights",
        "compile",
        "grad_clip",
        "restore_best",
        "freeze_batchnorm",
    ):
        with pytest.raises(TypeError, match=option):
            train.fit(toy_model(), tr, epochs=1, progress=False, verbose=False, **{option: 1})
