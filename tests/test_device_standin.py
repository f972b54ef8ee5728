"""Training, evaluation, feature extraction and loaders on a pretend GPU or Mac (issue 18).

Every test here runs on :class:`device_standin.PretendAccelerator` (the ``pretend_device``
marker, see ``conftest.py``): CUDA at compute capability 8.0 (bf16 autocast) and 7.5 (T4: fp16
with a gradient scaler), and Apple MPS (float32, no float64 at all). A tensor or module left
on the CPU beside device tensors raises :class:`~device_standin.DeviceMixError`, float64 on
the device raises :class:`~device_standin.Float64OnDeviceError`, and autocast and
synchronisation calls are recorded. The first tests check the stand-in itself.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from device_standin import DeviceMixError, Float64OnDeviceError, PretendAccelerator
from test_train import InterruptingLoader, toy_arrays, toy_model
from torch import nn

from cnnbook import checkpoint, device, loaders, optim, pretrained, recipes, timing, train
from cnnbook.arrays import ImageArrays

ACCELERATORS = [
    pytest.param(("cuda", (8, 0)), id="cuda-8.0", marks=pytest.mark.pretend_device("cuda", (8, 0))),
    pytest.param(("cuda", (7, 5)), id="cuda-7.5", marks=pytest.mark.pretend_device("cuda", (7, 5))),
    pytest.param(("mps", None), id="mps", marks=pytest.mark.pretend_device("mps")),
]


def bn_model(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    )


def cifar_like(n: int = 40) -> ImageArrays:
    """Random 32x32 colour images of 10 classes (FastCIFARNet's input size)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageArrays(images, torch.arange(n) % 10, list("abcdefghij"), (0.5,) * 3, (0.25,) * 3)


# ---------------------------------------------------------------- the stand-in itself
@pytest.mark.pretend_device("cuda")
def test_standin_raises_where_a_gpu_would(pretend_device: PretendAccelerator) -> None:
    x = torch.ones(4).to("cuda")
    assert x.device.type == "cuda"
    assert x.is_cuda
    assert pretend_device.on_device(x)
    assert torch.zeros(2, device="cuda").device.type == "cuda"
    assert torch.tensor([1.0], device="cuda").device.type == "cuda"
    assert (x * 2).device.type == "cuda"  # results of device tensors stay there
    assert x.cpu().device.type == "cpu"
    assert not pretend_device.on_device(x.to("cpu"))
    assert (x + torch.tensor(2.0)).device.type == "cuda"  # a CPU scalar may join, as on a GPU
    with pytest.raises(DeviceMixError, match="mixed with CPU"):
        x + torch.ones(4)
    with pytest.raises(DeviceMixError, match="mixed with CPU"):
        nn.Linear(4, 2)(x)  # a module left on the CPU
    with pytest.raises(Float64OnDeviceError, match="float64"):
        x.double()
    with pytest.raises(Float64OnDeviceError, match="float64"):
        torch.zeros((), dtype=torch.float64, device="cuda")
    assert x.cpu().double().dtype == torch.float64  # float64 on the CPU is fine
    with pytest.raises(TypeError, match="Use Tensor.cpu"):
        np.asarray(x)  # what matplotlib does with a tensor it is given
    assert np.asarray(x.cpu()).tolist() == [1.0] * 4
    assert x.numpy(force=True).tolist() == [1.0] * 4
    assert device.pick_device() == torch.device("cuda")
    assert device.run_settings().amp_dtype == torch.bfloat16  # capability 8.0


@pytest.mark.pretend_device("mps")
def test_standin_backward_and_optimiser_run(pretend_device: PretendAccelerator) -> None:
    model = nn.Linear(3, 2).to("mps")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3).to("mps")).sum().backward()
    opt.step()
    assert all(pretend_device.on_device(p.grad) for p in model.parameters())
    assert device.pick_device() == torch.device("mps")
    assert device.run_settings().amp_dtype is None


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_standin_runs_adam(pretend_device: PretendAccelerator, accelerator) -> None:
    """Adam's step asks torch.accelerator for the current stream on CUDA (graph-capture check)."""
    kind = accelerator[0]
    model = nn.Linear(3, 2).to(kind)
    before = model.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3).to(kind)).sum().backward()
    opt.step()
    assert pretend_device.on_device(model.weight)
    assert not torch.equal(before, model.weight)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_fit_on_the_device(pretend_device: PretendAccelerator, accelerator) -> None:
    """fit with a class-weighted loss (a CPU tensor inside the loss module) and validation."""
    arrays = toy_arrays(48)
    tr = loaders.GPUBatchLoader(arrays, 16, seed=0)  # device=None: the pretend device
    va = loaders.GPUBatchLoader(arrays, 16, train=False)
    assert pretend_device.on_device(tr.images)
    weights = train.balanced_class_weights(arrays.labels)  # on the CPU, as a student builds it
    model = bn_model()
    hist = train.fit(
        model, tr, va, epochs=2, loss_fn=nn.CrossEntropyLoss(weight=weights), progress=False, verbose=False
    )
    assert len(hist) == 2
    assert all(torch.isfinite(torch.tensor(hist["train_loss"])))
    assert all(pretend_device.on_device(p) for p in model.parameters())
    assert pretend_device.syncs  # each epoch's clock waited for the device
    kind, capability = accelerator
    expected = {(8, 0): torch.bfloat16, (7, 5): torch.float16, None: None}[capability]
    if expected is None:
        assert pretend_device.autocasts == []  # float32: no torch.autocast built at all (MPS)
    else:
        assert {dtype for _, dtype, _ in pretend_device.autocasts} == {expected}


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_resume_from_a_checkpoint_on_the_device(
    pretend_device: PretendAccelerator, accelerator, tmp_path
) -> None:
    """fit's checkpoint is written from the device and resumed onto it (14.15's resume demo)."""
    arrays = toy_arrays(48)
    tr = loaders.GPUBatchLoader(arrays, 16, seed=0)
    model = bn_model()
    path = tmp_path / "best.pt"
    cut = train.fit(
        model,
        InterruptingLoader(tr, after_batches=len(tr)),
        epochs=3,
        checkpoint=path,
        progress=False,
        verbose=False,
    )
    assert cut.interrupted
    last = checkpoint.last_checkpoint_path(path)
    state = torch.load(last, map_location=pretend_device.kind, weights_only=True)
    assert pretend_device.on_device(next(iter(state["model"].values())))
    resumed = bn_model()
    history = train.fit(resumed, tr, epochs=3, resume=last, progress=False, verbose=False)
    assert len(history) == 3
    assert device.model_device(resumed).type == pretend_device.kind


@pytest.mark.pretend_device("mps")
def test_train_one_epoch_with_a_dataloader(pretend_device: PretendAccelerator) -> None:
    """The classic per-image pipeline: CPU batches from a DataLoader, moved to the device."""
    arrays = toy_arrays(32)
    dataset = loaders.ImageArrayDataset(
        arrays, loaders.classic_transforms(True, arrays.mean, arrays.std, size=8)
    )
    loader = loaders.classic_loader(dataset, 8, num_workers=0, device="mps", seed=0)
    settings = device.run_settings()
    model = settings.place(bn_model())
    opt = optim.make_optimizer(model, "adamw", lr=1e-3)
    res = train.train_one_epoch(model, loader, opt, nn.CrossEntropyLoss(), settings=settings)
    assert res.count == 32
    assert 0.0 <= res.accuracy <= 1.0
    assert pretend_device.syncs == ["mps"]  # the clock stopped after the device finished


@pytest.mark.pretend_device("cuda", (7, 5))
def test_classic_loader_pins_memory_for_cuda(pretend_device: PretendAccelerator) -> None:
    arrays = toy_arrays(8)
    dataset = loaders.ImageArrayDataset(
        arrays, loaders.classic_transforms(False, arrays.mean, arrays.std, size=8)
    )
    loader = loaders.classic_loader(dataset, 4, num_workers=0, device="cuda")
    assert loader.pin_memory
    settings = device.run_settings()
    x, y = next(settings.batches(loader))
    assert pretend_device.pinned > 0
    assert pretend_device.on_device(x)
    assert pretend_device.on_device(y)


# ---------------------------------------------------------------- evaluation
@pytest.mark.pretend_device("cuda", (8, 0))
def test_evaluate_and_predict_run_in_float32_unless_asked(pretend_device: PretendAccelerator) -> None:
    arrays = toy_arrays(40)
    model = toy_model(dropout=0.0)
    reference = copy.deepcopy(model).eval()  # stays on the CPU, float32
    with torch.no_grad():
        expected = reference(arrays.normalized())
    loader = loaders.GPUBatchLoader(arrays, 16, train=False)
    settings = device.run_settings()
    assert settings.amp_dtype == torch.bfloat16  # training would use bf16 here...
    logits, preds, labels = train.predict(model, loader, settings=settings)
    assert pretend_device.autocasts == []  # ... evaluation does not
    assert logits.dtype == torch.float32
    assert logits.device.type == "cpu"
    assert not pretend_device.on_device(logits)
    torch.testing.assert_close(logits, expected)  # the model's own float32 predictions
    assert torch.equal(preds, expected.argmax(1))
    assert torch.equal(labels, arrays.labels)
    res = train.evaluate(model, loader)
    assert res.count == 40
    assert pretend_device.autocasts == []
    fast_logits, _, _ = train.predict(model, loader, settings=settings, amp=True)
    assert pretend_device.autocasts == [("cuda", torch.bfloat16, True)] * len(loader)  # per batch
    assert not torch.equal(fast_logits, logits)  # bf16 rounding: why float32 is the default


@pytest.mark.pretend_device("cuda")
def test_predict_places_a_reloaded_model_as_the_settings_say(pretend_device: PretendAccelerator) -> None:
    """A model rebuilt on the CPU to load a checkpoint goes to the device in channels-last."""
    loader = loaders.GPUBatchLoader(toy_arrays(16), 8, train=False)
    settings = device.run_settings()
    assert settings.channels_last
    reloaded = bn_model()  # fresh, on the CPU, contiguous
    train.predict(reloaded, loader, settings=settings)
    assert all(pretend_device.on_device(p) for p in reloaded.parameters())
    assert device.is_channels_last(reloaded)


@pytest.mark.pretend_device("mps")
def test_extract_features_on_the_device(pretend_device: PretendAccelerator) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 6, 3, padding=1),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(6, 4),
        )
    )
    reference = copy.deepcopy(net)
    bundle = pretrained.Pretrained(
        "tiny", net.to("mps"), (0.5,) * 3, (0.25,) * 3, 8, ["a", "b", "c", "d"], {}, "fc", "conv"
    )
    batches = [(torch.randn(4, 3, 8, 8), torch.arange(4)) for _ in range(2)]  # CPU batches
    feats, labels = pretrained.extract_features(bundle, batches)
    assert feats.shape == (8, 6)
    assert not pretend_device.on_device(feats)
    with torch.no_grad():
        expected = torch.cat([reference[:3](x) for x, _ in batches])
    torch.testing.assert_close(feats, expected)
    assert labels.tolist() == [0, 1, 2, 3] * 2


# ---------------------------------------------------------------- timing
@pytest.mark.pretend_device("cuda")
def test_timers_wait_for_the_device(pretend_device: PretendAccelerator) -> None:
    timing.time_call(lambda: None, repeats=3, warmup=1, device="cuda")
    assert pretend_device.syncs == ["cuda"] * 6  # before and after each timed call
    pretend_device.syncs.clear()
    x = torch.randn(2, 3).to("cuda")
    model = nn.Linear(3, 2).to("cuda")
    timing.time_forward(model, x, repeats=2, warmup=1)
    assert pretend_device.syncs == ["cuda"] * 4  # synchronised on the input's device
    pretend_device.syncs.clear()
    timing.compare_forward({"a": model, "b": model}, x, repeats=1, warmup=0)
    assert pretend_device.syncs == ["cuda"] * 4
    pretend_device.syncs.clear()
    timing.time_call(lambda: None, repeats=2, warmup=0)  # no device: nothing to wait for
    assert pretend_device.syncs == []


@pytest.mark.pretend_device("mps")
def test_estimate_seconds_on_the_device(pretend_device: PretendAccelerator) -> None:
    arrays = cifar_like()
    plan = recipes.cifar10_plan(fast=True, widths=(8, 8, 8), batch_size=16)
    assert plan.device == torch.device("mps")
    model = recipes.prepare_model(plan, arrays)
    tr, va = recipes.make_loaders(plan, arrays, arrays)
    secs = recipes.estimate_seconds(model, tr, 2, va, plan.settings(), steps=1)
    assert secs > 0
    # warm-up and timed training steps (one each), then the timed evaluation batch (before/after)
    assert pretend_device.syncs == ["mps"] * 4
    assert not any(pretend_device.on_device(p) for p in model.parameters())  # model untouched


@pytest.mark.pretend_device("cuda", (7, 5))
def test_a_plan_trains_in_one_call(pretend_device: PretendAccelerator) -> None:
    arrays = cifar_like()
    plan = recipes.cifar10_plan(fast=True, widths=(8, 8, 8), epochs=1, batch_size=16)
    model = recipes.prepare_model(plan, arrays)
    tr, va = recipes.make_loaders(plan, arrays, arrays)
    hist = train.fit(model, tr, va, **plan.fit_kwargs(), progress=False, verbose=False)
    assert len(hist) == 1
    assert {dtype for _, dtype, _ in pretend_device.autocasts} == {torch.float16}  # a T4
    assert device.is_channels_last(model)


@pytest.mark.pretend_device("mps")
def test_fit_distributed_in_one_process(pretend_device: PretendAccelerator) -> None:
    """Without torchrun, fit_distributed is fit: the model is placed on the device first."""
    arrays = toy_arrays(32)
    model = bn_model()
    hist = train.fit_distributed(
        model, loaders.GPUBatchLoader(arrays, 16), epochs=1, progress=False, verbose=False
    )
    assert len(hist) == 1
    assert all(pretend_device.on_device(p) for p in model.parameters())
