"""GPU paths (``make gpu-check``): run only where CUDA is present, skipped with the reason elsewhere.

The precision rule on the real card (bf16 from compute capability 8.0, fp16 below); fit for a
few steps with float16 autocast + gradient scaler and with bfloat16; GPUBatchLoader serving
batches from GPU memory; channels-last training; float32 evaluation equal to a plain forward
pass; a checkpoint written on the GPU read back on a CPU-only load. Logits are compared with
TF32 turned off (with TF32, matmuls and convolutions round their inputs to 10 mantissa bits, and
GPU/CPU logits differ by ~1e-3, which no tolerance of 1e-4 can claim).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_train import toy_arrays
from torch import nn

from cnnbook import checkpoint, train
from cnnbook.device import run_settings
from cnnbook.loaders import GPUBatchLoader

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU here: the GPU paths are untested on this machine (run `make gpu-check` on one)",
)


@pytest.fixture
def no_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full float32 matmuls and convolutions for exact comparisons (restored afterwards)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def test_precision_rule_on_this_card() -> None:
    major, minor = torch.cuda.get_device_capability()
    settings = run_settings("cuda")
    expected = torch.bfloat16 if (major, minor) >= (8, 0) else torch.float16
    assert settings.amp_dtype == expected, settings.reason
    assert settings.grad_scaler == (expected == torch.float16)
    print(f"{torch.cuda.get_device_name()} (capability {major}.{minor}): {settings.describe()}")


def bn_model(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    )


def loaders(n: int = 96):
    arrays = toy_arrays(n)
    return (
        GPUBatchLoader(arrays, 16, device="cuda", seed=0),
        GPUBatchLoader(arrays, 32, train=False, device="cuda"),
    )


def test_gpu_batch_loader_serves_batches_from_the_gpu() -> None:
    tr, va = loaders()
    x, y = next(iter(tr))
    assert x.is_cuda
    assert y.is_cuda
    assert x.dtype == torch.float32
    assert x.shape == (16, 3, 8, 8)
    cpu = GPUBatchLoader(toy_arrays(96), 32, train=False, device="cpu")
    torch.testing.assert_close(next(iter(va))[0].cpu(), next(iter(cpu))[0])  # same pixels


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fit_with_mixed_precision(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has no native bfloat16 (compute capability below 8.0)")
    capability = (8, 0) if dtype == torch.bfloat16 else (7, 5)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)  # the choice
    settings = run_settings("cuda")
    assert settings.amp_dtype == dtype
    assert settings.grad_scaler == (dtype == torch.float16)
    model = bn_model()
    tr, va = loaders()
    hist = train.fit(model, tr, va, epochs=3, lr=0.1, device="cuda", progress=False, verbose=False, seed=0)
    assert all(torch.isfinite(torch.tensor(hist["train_loss"])))
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert next(model.parameters()).dtype == torch.float32  # autocast: weights stay float32
    assert hist.last["val_acc"] > 0.5


def test_fp16_grad_scaler_recovers_gradients_that_underflow() -> None:
    """A tiny loss underflows in float16; the scaler's factor keeps the gradient non-zero."""
    settings = dataclasses.replace(
        run_settings("cuda"), amp_dtype=torch.float16, grad_scaler=True, channels_last=False
    )
    model = nn.Linear(4, 2).cuda()
    x, y = torch.randn(8, 4, device="cuda"), torch.zeros(8, dtype=torch.long, device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    before = model.weight.detach().clone()
    scaler = torch.amp.GradScaler("cuda", enabled=True)
    train.train_one_epoch(
        model,
        [(x, y)],
        opt,
        lambda out, t: 1e-8 * nn.functional.cross_entropy(out, t),
        settings=settings,
        scaler=scaler,
    )
    assert model.weight.grad is not None
    assert model.weight.grad.abs().sum() > 0
    assert torch.equal(model.weight.detach(), before)  # lr 0: only the gradient was checked


def test_channels_last_training_keeps_the_layout_and_matches_contiguous() -> None:
    tr, _ = loaders()
    a, b = bn_model(), bn_model()
    train.fit(
        a,
        tr,
        epochs=1,
        lr=0.05,
        device="cuda",
        amp=False,
        channels_last=True,
        progress=False,
        verbose=False,
        seed=0,
    )
    train.fit(
        b,
        tr,
        epochs=1,
        lr=0.05,
        device="cuda",
        amp=False,
        channels_last=False,
        progress=False,
        verbose=False,
        seed=0,
    )
    assert a[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert b[0].weight.is_contiguous()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-3, rtol=1e-3)  # same maths, other kernels


def test_float32_predict_equals_a_plain_forward_pass(no_tf32: None) -> None:
    model = bn_model()
    tr, va = loaders()
    train.fit(model, tr, epochs=1, device="cuda", progress=False, verbose=False, seed=0)  # bf16/fp16
    logits, _, _ = train.predict(model, va)
    x = torch.cat([x for x, _ in va])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x).cpu())  # float32 evaluation by default


def test_checkpoint_saved_on_gpu_loads_on_cpu(tmp_path: Path, no_tf32: None) -> None:
    model = bn_model()
    tr, va = loaders()
    train.fit(
        model, tr, va, epochs=1, device="cuda", progress=False, verbose=False, checkpoint=tmp_path / "best.pt"
    )
    cpu_model = bn_model()
    state = checkpoint.load_checkpoint(tmp_path / "best.pt", cpu_model, map_location="cpu")
    assert all(t.device.type == "cpu" for t in state["model"].values())
    gpu_state = {k: v.cpu() for k, v in model.state_dict().items()}
    for k, v in cpu_model.state_dict().items():
        torch.testing.assert_close(v, gpu_state[k].contiguous())
    x = toy_arrays(8).normalized()
    cpu_model.eval()
    model.eval()
    with torch.no_grad():
        # float32 on both (TF32 off): only summation order differs
        torch.testing.assert_close(cpu_model(x), model(x.cuda()).float().cpu(), atol=1e-4, rtol=1e-4)
