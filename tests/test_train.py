"""cnnbook.train: fit/evaluate, schedules, checkpoints, resume, interrupt, DDP; plots of runs."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnbook import checkpoint, history, optim, plots, train
from cnnbook.arrays import ImageArrays
from cnnbook.loaders import GPUBatchLoader

ROOT = Path(__file__).resolve().parents[1]


def toy_arrays(n: int = 96, classes: int = 3, seed: int = 0) -> ImageArrays:
    """Colour-coded classes: class k has a brighter channel k, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 120, (n, 3, 8, 8), generator=g)
    images[torch.arange(n), labels] += 120
    return ImageArrays(
        images.to(torch.uint8), labels, [f"c{k}" for k in range(classes)], (0.4, 0.4, 0.4), (0.25, 0.25, 0.25)
    )


def toy_model(classes: int = 3, dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(8, classes),
    )


def loaders(arrays: ImageArrays, batch: int = 16):
    return (
        GPUBatchLoader(arrays, batch, device="cpu", seed=0),
        GPUBatchLoader(arrays, 32, train=False, device="cpu"),
    )


def quiet_fit(model, tr, va=None, **kw) -> history.History:
    kw.setdefault("progress", False)
    kw.setdefault("verbose", False)
    return train.fit(model, tr, va, device="cpu", **kw)


def test_fit_learns_and_records_history() -> None:
    torch.manual_seed(0)
    model = toy_model()
    tr, va = loaders(toy_arrays())
    hist = quiet_fit(model, tr, va, epochs=4, lr=0.1)
    assert len(hist) == 4
    assert hist["epoch"] == [1, 2, 3, 4]
    assert set(hist.last) >= {
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "images_per_s",
        "seconds",
        "eval_seconds",
    }
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist.last["val_acc"] > 0.9  # the colour cue is easy
    assert hist.best_metric == max(hist["val_acc"])
    assert hist["val_acc"][hist.best_epoch - 1] == hist.best_metric
    res = train.evaluate(model, va)
    assert res.count == 96
    assert res.accuracy == pytest.approx(hist.last["val_acc"])
    assert "epoch   4" in hist.summary()


def test_progress_bars_are_two_whatever_the_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """One epoch bar and one step bar reset each epoch: a bar per epoch would open a notebook
    widget per epoch, and a loop of short fits then floods the kernel's output channel."""
    import tqdm.auto

    made: list = []

    class Counting(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Counting)
    tr, _ = loaders(toy_arrays(48))
    for epochs in (1, 7):
        made.clear()
        train.fit(toy_model(), tr, device="cpu", epochs=epochs, verbose=False)
        assert len(made) == 2, f"{epochs} epochs opened {len(made)} progress bars"
        epoch_bar, step_bar = made
        assert epoch_bar.n == epochs  # both counted what ran
        assert step_bar.n == len(tr)
        assert step_bar.desc.startswith(f"epoch {epochs}")


def test_same_seed_same_curve_on_cpu() -> None:
    def run(seed: int) -> tuple[list[float], torch.Tensor]:
        torch.manual_seed(seed)
        model = toy_model()
        hist = quiet_fit(model, *loaders(toy_arrays()), epochs=2, seed=seed)
        return hist["train_loss"], model[-1].weight.detach().clone()

    (loss_a, w_a), (loss_b, w_b), (loss_c, _) = run(1), run(1), run(2)
    assert loss_a == loss_b
    assert torch.equal(w_a, w_b)
    assert loss_a != loss_c


def test_schedules_shape_the_learning_rate() -> None:
    tr, _ = loaders(toy_arrays())  # 6 steps per epoch
    hist = quiet_fit(toy_model(), tr, epochs=5, lr=0.2, schedule="onecycle", warmup=0.2)
    lrs = hist.step_lr
    assert len(lrs) == 30
    peak = max(range(30), key=lrs.__getitem__)
    assert peak == 5  # last step of a 20% warm-up
    assert lrs[peak] == pytest.approx(0.2)
    assert lrs[0] == pytest.approx(0.02)
    assert lrs[-1] < 0.01
    hist = quiet_fit(toy_model(), tr, epochs=2, lr=0.1, schedule="cosine")
    assert hist.step_lr[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(hist.step_lr, hist.step_lr[1:], strict=False))
    hist = quiet_fit(toy_model(), tr, epochs=1, lr=0.1, schedule="constant")
    assert set(hist.step_lr) == {0.1}
    with pytest.raises(ValueError, match="Unknown schedule 'step'"):
        quiet_fit(toy_model(), tr, epochs=1, schedule="step")


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 10, 11])
@pytest.mark.parametrize("warmup", [0.0, 0.2, 0.5, 0.9])
def test_one_cycle_survives_short_runs(steps: int, warmup: float) -> None:
    """torch's OneCycleLR divides by zero when a phase has no steps (e.g. 5 steps, 20% warm-up)."""
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched = optim.make_scheduler(opt, "onecycle", steps, warmup)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0.0 < lr <= 0.1 + 1e-12 for lr in lrs), lrs
    assert max(lrs) > 0.085 or steps < 3  # near the peak (OneCycleLR peaks between steps)
    with pytest.raises(ValueError, match="warmup is a fraction"):
        optim.make_scheduler(opt, "onecycle", 10, 1.0)


def test_loss_fn_with_label_smoothing_is_the_training_loss() -> None:
    torch.manual_seed(0)
    model = toy_model(dropout=0.0)
    arrays = toy_arrays()
    tr = GPUBatchLoader(arrays, 16, device="cpu", augment=False)
    x, y = arrays.normalized(), arrays.labels
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, label_smoothing=0.2).item()
    hist = quiet_fit(
        model,
        tr,
        epochs=1,
        lr=0.0,
        schedule="constant",
        loss_fn=nn.CrossEntropyLoss(label_smoothing=0.2),
        channels_last=False,
    )
    assert hist.last["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_loss_fn_with_class_weights_is_the_training_loss() -> None:
    torch.manual_seed(0)
    model = toy_model(dropout=0.0)
    arrays = toy_arrays(96)
    weights = torch.tensor([1.0, 2.0, 4.0])
    with torch.no_grad():
        per_image = F.cross_entropy(model(arrays.normalized()), arrays.labels, reduction="none")
    hist = quiet_fit(
        model,
        GPUBatchLoader(arrays, 96, device="cpu", augment=False),
        epochs=1,
        lr=0.0,
        schedule="constant",
        loss_fn=nn.CrossEntropyLoss(weight=weights),
        channels_last=False,
    )
    w = weights[arrays.labels]  # weighted mean over the (single) batch
    assert hist.last["train_loss"] == pytest.approx(float((w * per_image).sum() / w.sum()), rel=1e-5)


def test_balanced_class_weights() -> None:
    labels = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    w = train.balanced_class_weights(labels)
    assert torch.allclose(w, torch.tensor([100 / 240, 100 / 45, 100 / 15]))
    counts = torch.bincount(labels).float()
    assert torch.allclose(w * counts, torch.full((3,), 100 / 3))  # equal total weight per class
    assert torch.equal(train.balanced_class_weights(torch.arange(4)), torch.ones(4))
    with pytest.raises(ValueError, match=r"Classes \[3\] have no training example"):
        train.balanced_class_weights(labels, num_classes=4)


def test_output_mismatch_is_explained() -> None:
    tr, _ = loaders(toy_arrays(classes=3))
    with pytest.raises(ValueError, match=r"outputs 5 scores.*3 classes.*nn.Linear"):
        quiet_fit(toy_model(classes=5), tr, epochs=1)
    with pytest.raises(ValueError, match=r"label is 2 but the model has only 2 outputs"):
        quiet_fit(toy_model(classes=2), [(torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))], epochs=1)
    flat = nn.Sequential(nn.Conv2d(3, 3, 1))  # forgot the head: returns (N, 3, 8, 8)
    with pytest.raises(ValueError, match=r"returned shape \(16, 3, 8, 8\)"):
        quiet_fit(flat, tr, epochs=1)


def test_checkpoint_round_trip_and_bad_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = toy_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    hist = history.History(rows=[{"epoch": 1, "val_acc": 0.5}], step_lr=[0.1])
    path = checkpoint.save_checkpoint(
        tmp_path / "ck" / "m.pt", model, optimizer=opt, epoch=3, history=hist, extra={"classes": ["a", "b"]}
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]  # no temp file left
    assert "model" in torch.load(path, weights_only=True)  # plain data only
    other = toy_model()
    opt2 = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    state = checkpoint.load_checkpoint(path, other, optimizer=opt2)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    )
    assert state["epoch"] == 3
    assert state["extra"]["classes"] == ["a", "b"]
    assert state["history"].rows == hist.rows
    assert torch.equal(
        opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"]
    )

    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:200])  # truncated copy
    with pytest.raises(ValueError, match="damaged.*Delete it"):
        checkpoint.load_checkpoint(bad, toy_model())
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="not a cnnbook checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "bare.pt", toy_model())
    with pytest.raises(ValueError, match="different model"):
        checkpoint.load_checkpoint(path, nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="different shape"):
        checkpoint.load_checkpoint(path, toy_model(classes=7))


def test_best_checkpoint_and_resume_equal_an_unbroken_run(tmp_path: Path) -> None:
    arrays = toy_arrays()

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return toy_model()

    straight = fresh()
    h_straight = quiet_fit(
        straight, *loaders(arrays), epochs=3, seed=5, checkpoint=tmp_path / "a" / "best.pt"
    )
    best = checkpoint.load_checkpoint(tmp_path / "a" / "best.pt", toy_model())
    assert best["epoch"] == h_straight.best_epoch

    first = fresh()  # the same plan, stopped by Ctrl-C after one epoch
    tr, va = loaders(arrays)
    h_first = quiet_fit(
        first,
        InterruptingLoader(tr, after_batches=len(tr)),
        va,
        epochs=3,
        seed=5,
        checkpoint=tmp_path / "b" / "best.pt",
    )
    assert h_first.interrupted
    assert len(h_first) == 1
    last = checkpoint.last_checkpoint_path(tmp_path / "b" / "best.pt")
    assert last.name == "best-last.pt"
    assert last.is_file()
    resumed = fresh()
    h_resumed = quiet_fit(resumed, *loaders(arrays), epochs=3, seed=5, resume=last)
    assert h_resumed["train_loss"] == h_straight["train_loss"]
    assert h_resumed.step_lr == h_straight.step_lr
    assert all(
        torch.equal(a, b)
        for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError, match="schedule of 18 steps.*plans 24"):
        quiet_fit(fresh(), *loaders(arrays), epochs=4, resume=last)
    quiet_fit(first, *loaders(arrays), epochs=1, seed=5, checkpoint=tmp_path / "c" / "best.pt")
    with pytest.raises(ValueError, match="already finished 1 epochs"):
        quiet_fit(
            fresh(),
            *loaders(arrays),
            epochs=1,
            resume=checkpoint.last_checkpoint_path(tmp_path / "c" / "best.pt"),
        )


class InterruptingLoader:
    """Yields the wrapped loader's batches, then raises KeyboardInterrupt mid-epoch."""

    def __init__(self, loader: GPUBatchLoader, after_batches: int) -> None:
        self.loader, self.after, self.count = loader, after_batches, 0
        self.classes = loader.classes

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.count == self.after:
                raise KeyboardInterrupt
            self.count += 1
            yield batch


def test_keyboard_interrupt_keeps_history_and_best_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    model = toy_model()
    tr, va = loaders(toy_arrays())
    hist = train.fit(
        model,
        InterruptingLoader(tr, after_batches=2 * len(tr) + 3),
        va,
        device="cpu",
        epochs=5,
        progress=False,
        verbose=False,
        checkpoint=tmp_path / "best.pt",
    )
    assert hist.interrupted
    assert len(hist) == 2
    assert "Interrupted: kept 2 finished epoch(s)" in capsys.readouterr().out
    saved = checkpoint.load_checkpoint(tmp_path / "best.pt", toy_model())
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved["model"].values(), strict=True)
    )


def test_plots_of_a_run() -> None:
    hist = quiet_fit(toy_model(), *loaders(toy_arrays()), epochs=2)
    fig = plots.plot_history(hist, title="toy")
    assert len(fig.axes) == 3
    assert len(fig.axes[0].lines) == 2  # train + validation
    cm = torch.tensor([[5, 1], [2, 7]])
    fig = plots.plot_confusion_matrix(cm, ["a", "b"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.83", "0.17", "0.22", "0.78"]
    with pytest.raises(ValueError, match="3 classes"):
        plots.plot_confusion_matrix(cm, ["a", "b", "c"])
    with pytest.raises(ValueError, match="empty"):
        plots.plot_history(history.History())


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["fast", "classic"])
def test_torchrun_two_cpu_processes_end_with_equal_weights(tmp_path: Path, loader: str) -> None:
    """scripts/train_cifar.py under torchrun: two gloo processes, each on half the data."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "scripts" / "train_cifar.py"),
        "--device",
        "cpu",
        "--fast",
        "--synthetic",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--widths",
        "8",
        "8",
        "8",
        "--loader",
        loader,
        "--out",
        str(tmp_path),
        "--no-tune-malloc",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun passes SIGTERM on to its workers and waits for them
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in 240 s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    assert "2 process(es)" in out
    assert "DistributedDataParallel" in out
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["steps_per_epoch"] == 4  # each rank saw half of the 64 images, 8 per batch
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from train_cifar import synthetic_cifar
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from cnnbook import recipes

    plan = recipes.cifar10_plan("cpu", fast=True, widths=(8, 8, 8))
    init = recipes.prepare_model(plan, synthetic_cifar(64), seed=0).state_dict()
    for name, w in r0["model"].items():
        if "running_" in name:  # DDP syncs buffers from rank 0 before each forward pass, so
            continue  # batch-norm statistics differ by each rank's own last batch
        assert torch.equal(w, r1["model"][name]), f"replicas differ at {name}"
    trained = [k for k in init if init[k].is_floating_point() and not torch.equal(init[k], r0["model"][k])]
    assert trained, "no weight changed: the processes did not train"
    assert r0["train_loss"] == r1["train_loss"]  # the loss is averaged over both ranks
    assert all(math.isfinite(v) for v in r0["train_loss"])
