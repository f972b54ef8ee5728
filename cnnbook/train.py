"""The training loop, evaluation and the whole run (sections 14.15 and 14.16).

:func:`train_one_epoch` is one pass over a loader: forward pass under autocast, loss, backward
pass through one gradient scaler (a no-op unless float16 needs it), optimiser and schedule
steps. :func:`fit` repeats it and adds what a real run needs: an optimiser and schedule
(:mod:`cnnbook.optim`), the device's precision and layout (:class:`cnnbook.device.RunSettings`),
evaluation every epoch, a :class:`cnnbook.history.History`, the best weights in a checkpoint
(:mod:`cnnbook.checkpoint`), resuming, progress bars and a clean stop on ``KeyboardInterrupt``.
:func:`fit_distributed` runs it in every process ``torchrun`` starts (the process-group helpers
live in :mod:`cnnbook.distributed`, which imports nothing from here). Nothing on the training
device is float64 (MPS has none); :func:`evaluate`/:func:`predict` run in float32 unless asked.

The step serves classifiers (``(N, K)`` scores, accuracy). Sections 14.6 and 14.13 keep their
own few-line loops on the page: 14.6's controlled experiment needs every step's loss under
plain SGD without mixed precision, and 14.13's per-pixel and detection losses are not a classifier's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook import distributed
from cnnbook.checkpoint import last_checkpoint_path, resume_run, save_checkpoint
from cnnbook.device import RunSettings, run_settings, settings_for
from cnnbook.history import History
from cnnbook.modules import unwrap
from cnnbook.optim import make_optimizer, make_scheduler
from cnnbook.timing import synchronize


@dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy over a whole loader.

    Attributes:
        loss: Mean cross-entropy per image.
        accuracy: Fraction classified correctly.
        count: Images seen.
    """

    loss: float
    accuracy: float
    count: int


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _num_classes_of(loader: Iterable) -> int | None:
    for obj in (loader, getattr(loader, "dataset", None)):
        classes = getattr(obj, "classes", None)
        if classes is not None:
            return len(classes)
    return None


def check_outputs(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None) -> None:
    """Fail early, with the fix, when a model's outputs do not fit the labels.

    Args:
        logits: Model output for one batch, expected ``(N, num_classes)``.
        labels: The batch's labels ``(N,)``.
        num_classes: Classes in the data, if known.

    Raises:
        ValueError: If the output is not ``(N, K)``, ``K`` differs from ``num_classes``, or a
            label is not below ``K``.
    """
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"The model returned shape {tuple(logits.shape)} for a batch of {labels.shape[0]} "
            "images; a classifier must return (N, num_classes) scores. Flatten before the "
            "last linear layer (torch.flatten(x, 1)) and check the head."
        )
    k = logits.shape[1]
    if num_classes is not None and k != num_classes:
        raise ValueError(
            f"The model outputs {k} scores per image but the data has {num_classes} classes. "
            f"Replace the last layer, e.g. model.fc = nn.Linear(model.fc.in_features, "
            f"{num_classes}), or build the model with num_classes={num_classes}."
        )
    top = int(labels.max())
    if top >= k:
        raise ValueError(
            f"A label is {top} but the model has only {k} outputs (labels must be "
            f"0..{k - 1}); give the model num_classes={top + 1} or more."
        )


# --------------------------------------------------------------------------------------------
# One epoch of training
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochResult:
    """What one :func:`train_one_epoch` pass saw.

    Attributes:
        loss: Mean training loss per image (as computed during the pass, in train mode).
        accuracy: Fraction of images classified correctly during the pass.
        count: Images seen.
        seconds: Wall time of the pass.
        step_lr: The learning rate of every optimisation step.
    """

    loss: float
    accuracy: float
    count: int
    seconds: float
    step_lr: tuple[float, ...]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    *,
    settings: RunSettings | None = None,
    scheduler=None,
    scaler: torch.amp.GradScaler | None = None,
    num_classes: int | None = None,
    max_steps: int | None = None,
    progress=None,
) -> EpochResult:
    """One pass over ``loader``: forward, loss, backward and an optimiser step per batch.

    Args:
        model: The network, already on ``settings.device`` (put in train mode here).
        loader: Yields ``(images (N, C, H, W), labels (N,))``; batches are moved to the device.
        optimizer: Steps once per batch.
        loss_fn: ``loss_fn(logits (N, K), labels (N,))`` -> mean loss, e.g.
            ``nn.CrossEntropyLoss(label_smoothing=0.1)``.
        settings: Device, autocast dtype and memory layout (``None``:
            :func:`cnnbook.device.settings_for` the model).
        scheduler: Stepped after every optimiser step, if given.
        scaler: A ``torch.amp.GradScaler`` (``None``: one enabled only when
            ``settings.grad_scaler``, i.e. float16 autocast; disabled it changes nothing).
        num_classes: Classes in the data, checked against the first batch's outputs.
        max_steps: Stop after this many batches (``None``: the whole loader).
        progress: A ``tqdm`` bar to advance once per batch, or ``None``.

    Returns:
        An :class:`EpochResult`.

    Raises:
        ValueError: If the model's outputs do not fit the labels, or no batch was seen.
    """
    settings = settings or settings_for(model)
    if scaler is None:
        scaler = torch.amp.GradScaler(settings.device.type, enabled=settings.grad_scaler)
    model.train()
    # float32 running sums on the device: MPS has no float64, and a .item() per batch would
    # wait for the device every step
    loss_sum = torch.zeros((), dtype=torch.float32, device=settings.device)
    correct = torch.zeros((), dtype=torch.int64, device=settings.device)
    seen, step_lr, start = 0, [], time.perf_counter()
    for step, (x, y) in enumerate(settings.batches(loader)):
        optimizer.zero_grad(set_to_none=True)
        with settings.autocast():
            out = model(x)
            if step == 0:
                check_outputs(out, y, num_classes)
            loss = loss_fn(out, y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step_lr.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().float() * len(y)
        correct += (out.detach().argmax(1) == y).sum()
        seen += len(y)
        if progress is not None:
            progress.update(1)
        if step + 1 == max_steps:
            break
    if seen == 0:
        raise ValueError("The training loader yielded no batches.")
    synchronize(settings.device)  # the clock stops when the device has finished
    seconds = time.perf_counter() - start
    return EpochResult(loss_sum.item() / seen, correct.item() / seen, seen, seconds, tuple(step_lr))


# --------------------------------------------------------------------------------------------
# Evaluation and metrics
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    settings: RunSettings | None = None,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``loader`` in eval mode, in float32 unless ``amp``.

    Float32 by default on every device, so predictions are the model's own: under bfloat16
    autocast a few predictions of a trained CIFAR model flip (argmax ties broken by rounding),
    and results would differ between a GPU and a CPU. The train/eval mode is restored
    afterwards.

    Args:
        model: The classifier.
        loader: Yields ``(images, labels)``.
        device: Where to run when no ``settings`` are given; the model is moved there
            (``None``: where the model is, in its own memory layout).
        settings: Device and memory layout; the model is placed accordingly
            (:meth:`~cnnbook.device.RunSettings.place`, e.g. channels-last for a reloaded model).
        amp: Use the settings' mixed precision (faster on a GPU; predictions may differ
            slightly from float32).

    Returns:
        ``(logits, predictions, labels)`` on the CPU: ``(N, K)`` float32, ``(N,)``, ``(N,)``.
    """
    if settings is None:
        if device is not None:
            model.to(device)
        settings = settings_for(model)
    settings.place(model)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in settings.batches(loader):
            with settings.autocast() if amp else contextlib.nullcontext():
                out = model(x)
            logits.append(out.float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("The loader yielded no batches.")
    all_logits = torch.cat(logits)
    return all_logits, all_logits.argmax(1), torch.cat(labels)


def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    settings: RunSettings | None = None,
    amp: bool = False,
) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``loader`` (eval mode, no gradients).

    Float32 by default on every device (see :func:`predict` for why); ``amp=True`` uses the
    settings' mixed precision.

    Args:
        model: The classifier.
        loader: Yields ``(images, labels)``.
        device: Where to run (``None``: the model's device); see :func:`predict`.
        settings: Device and layout (``None``: matching the model).
        amp: Mixed precision as in :func:`predict`.

    Returns:
        An :class:`EvalResult`.
    """
    logits, preds, labels = predict(model, loader, device, settings, amp=amp)
    check_outputs(logits[:1], labels[:1], None)
    loss = F.cross_entropy(logits, labels).item()
    return EvalResult(loss, (preds == labels).double().mean().item(), len(labels))  # on the CPU


def balanced_class_weights(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Loss weights ``N / (K * n_k)`` that give every class the same total weight.

    Args:
        labels: Training labels ``(N,)``.
        num_classes: ``K``; ``None`` uses ``labels.max() + 1``.

    Returns:
        float32 ``(K,)``; 1.0 for every class when the data is balanced.

    Raises:
        ValueError: If a class has no example (its weight would be infinite).
    """
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes or 0).double()
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"Classes {missing} have no training example; drop them or add data.")
    return (counts.sum() / (len(counts) * counts)).float()


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    settings: RunSettings | None = None,
    epochs: int = 10,
    lr: float = 0.05,
    optimizer: str | torch.optim.Optimizer = "sgd",
    weight_decay: float = 5e-4,
    schedule: str = "onecycle",
    warmup: float = 0.2,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    seed: int | None = None,
    num_classes: int | None = None,
    progress: bool = True,
    verbose: bool = True,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
) -> History:
    """Train a classifier with :func:`train_one_epoch` and return its per-epoch history.

    Args:
        model: The network; moved to the device (and to channels-last memory) in place. A
            ``DistributedDataParallel`` wrapper is accepted (see :func:`fit_distributed`).
        train_loader: Yields ``(images (N, C, H, W), labels (N,))``.
        val_loader: Optional evaluation data, scored (in float32) after every epoch.
        settings: Device, precision and memory layout (:func:`cnnbook.device.run_settings`;
            ``None``: built from ``device``, ``amp`` and ``channels_last``).
        epochs: Total epochs (when resuming, including those already done).
        lr: Peak learning rate.
        optimizer: "sgd" (Nesterov momentum 0.9), "adamw", or a ready optimiser instance.
        weight_decay: Weight decay for kernels and weight matrices.
        schedule: "onecycle", "cosine" or "constant" (stepped every batch).
        warmup: One-cycle warm-up fraction.
        loss_fn: The training loss (``None``: ``nn.CrossEntropyLoss()``); e.g.
            ``nn.CrossEntropyLoss(label_smoothing=0.1)`` or with
            ``weight=balanced_class_weights(labels)`` for imbalanced data. A module is moved
            to the device with the model.
        checkpoint: File for the best weights (by validation accuracy); a resumable
            every-epoch checkpoint goes next to it (:func:`last_checkpoint_path`).
        resume: Continue from this checkpoint (weights, optimiser, schedule, history).
        seed: Seed Python/NumPy/PyTorch first (same seed on a CPU, same loss curve).
        num_classes: Classes in the data; ``None`` reads ``classes`` from the loader.
        progress: Show ``tqdm.auto`` progress bars.
        verbose: Print the settings line and one line per epoch.
        device: Without ``settings``: the device (``None`` picks CUDA, MPS or CPU).
        amp: Without ``settings``: mixed precision (``None``: on for CUDA, bf16 from compute
            capability 8.0, else fp16 with a gradient scaler).
        channels_last: Without ``settings``: NHWC layout (``None``: on for CPU and CUDA).

    Returns:
        The :class:`History`. On ``KeyboardInterrupt`` the finished epochs are kept,
        ``history.interrupted`` is set and the best weights so far are loaded into ``model``.

    Raises:
        ValueError: For bad arguments, or a model whose outputs do not fit the labels.
    """
    from tqdm.auto import tqdm

    from cnnbook import config

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1; got {epochs}.")
    if seed is not None:
        config.seed_everything(seed)
    settings = _resolve_settings(settings, device, amp, channels_last)
    steps = _count_steps(train_loader)
    settings.place(unwrap(model))
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(settings.device)  # e.g. CrossEntropyLoss(weight=...) holds a tensor
    if not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = make_optimizer(unwrap(model), optimizer, lr, weight_decay)
    sched = make_scheduler(optimizer, schedule, epochs * steps, warmup)
    scaler = torch.amp.GradScaler(settings.device.type, enabled=settings.grad_scaler)
    classes = num_classes if num_classes is not None else _num_classes_of(train_loader)
    run = _Run(model, optimizer, sched, scaler, loss_fn, settings, classes, checkpoint)
    history, start_epoch = History(), 0
    if resume is not None:
        history, start_epoch = resume_run(
            resume, run.model, run.opt, run.sched, run.scaler, run.settings.device, epochs, steps
        )
    if verbose and run.main:
        ddp = " | DistributedDataParallel" if unwrap(model) is not model else ""
        print(f"Training on {settings.describe()}{ddp}")
    show = progress and run.main
    epoch_bar = tqdm(
        range(start_epoch, epochs), desc="epochs", disable=not show, initial=start_epoch, total=epochs
    )
    # One step bar, reset every epoch: a new bar per epoch would open a new notebook widget
    # each time (hundreds of messages in a long loop of short fits).
    step_bar = tqdm(total=steps, leave=False, disable=not show)
    try:
        for epoch in epoch_bar:
            step_bar.reset(total=steps)
            step_bar.set_description(f"epoch {epoch + 1}", refresh=False)
            run.epoch(epoch, train_loader, val_loader, history, step_bar if show else None)
            if verbose and run.main:
                epoch_bar.write(history.summary().splitlines()[-1])
    except KeyboardInterrupt:
        run.stop(history)
    finally:
        step_bar.close()
        epoch_bar.close()
    return history


def _resolve_settings(
    settings: RunSettings | None,
    device: torch.device | str | None,
    amp: bool | None,
    channels_last: bool | None,
) -> RunSettings:
    if settings is None:
        return run_settings(device, amp=amp, channels_last=channels_last)
    if device is not None or amp is not None or channels_last is not None:
        raise ValueError(
            "Give either settings= or device=/amp=/channels_last=, not both: the settings already "
            "hold the device, precision and memory layout."
        )
    return settings


def _count_steps(train_loader: Iterable) -> int:
    steps = len(train_loader)  # type: ignore[arg-type]
    if steps == 0:
        raise ValueError(
            "The training loader yields no batches (dataset smaller than one "
            "batch with drop_last?); use a smaller batch size."
        )
    return steps


@dataclass
class _Run:
    """What one :func:`fit` call trains with, and its per-epoch bookkeeping."""

    model: nn.Module  # as given: maybe wrapped in DistributedDataParallel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    settings: RunSettings
    num_classes: int | None
    checkpoint: str | Path | None
    best_state: dict[str, torch.Tensor] | None = None
    main: bool = field(default_factory=distributed.is_main_process)

    def epoch(self, epoch: int, train_loader: Iterable, val_loader, history: History, bar) -> None:
        """Train one epoch, score it, keep the best weights and write the checkpoints."""
        for obj in (train_loader, getattr(train_loader, "sampler", None)):
            set_epoch = getattr(obj, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
        res = train_one_epoch(
            self.model,
            train_loader,
            self.opt,
            self.loss_fn,
            settings=self.settings,
            scheduler=self.sched,
            scaler=self.scaler,
            num_classes=self.num_classes,
            progress=bar,
        )
        history.step_lr.extend(res.step_lr)
        plain = unwrap(self.model)
        row = _epoch_row(epoch, res, self.opt, plain, val_loader, self.settings)
        history.rows.append(row)
        metric = row["val_acc"] if val_loader is not None else row["train_acc"]
        if history.best_metric is None or metric > history.best_metric:
            history.best_metric, history.best_epoch = metric, epoch + 1
            self.best_state = {k: v.detach().clone().cpu() for k, v in plain.state_dict().items()}
            if self.checkpoint is not None and self.main:
                extra = {"best_metric": metric}
                save_checkpoint(self.checkpoint, plain, epoch=epoch + 1, history=history, extra=extra)
        if self.checkpoint is not None and self.main:
            save_checkpoint(
                last_checkpoint_path(self.checkpoint),
                plain,
                optimizer=self.opt,
                scheduler=self.sched,
                scaler=self.scaler,
                epoch=epoch + 1,
                history=history,
            )

    def stop(self, history: History) -> None:
        """After Ctrl-C: mark the history and load the best weights so far."""
        history.interrupted = True
        if self.best_state is not None:
            unwrap(self.model).load_state_dict(self.best_state)
        if self.main:
            best = (
                f"; the model holds the best weights (epoch {history.best_epoch})"
                if self.best_state is not None
                else ""
            )
            print(f"\nInterrupted: kept {len(history)} finished epoch(s){best}.")


def _epoch_row(
    epoch: int,
    res: EpochResult,
    opt: torch.optim.Optimizer,
    model: nn.Module,
    val_loader: Iterable | None,
    settings: RunSettings,
) -> dict[str, float]:
    """The history row: training figures summed over all processes, then validation."""
    # float32 on the device (NCCL reduces there; MPS has no float64): counts stay exact
    # below 2**24 images per epoch
    totals = distributed.all_reduce_sum(
        torch.tensor(
            [res.loss * res.count, res.accuracy * res.count, float(res.count)],
            dtype=torch.float32,
            device=settings.device,
        )
    )
    loss_total, correct_total, count = totals.tolist()
    row = {
        "epoch": epoch + 1,
        "train_loss": loss_total / count,
        "train_acc": correct_total / count,
        "lr": opt.param_groups[0]["lr"],
        "images_per_s": count / res.seconds,
        "seconds": res.seconds,
        "val_loss": math.nan,
        "val_acc": math.nan,
    }
    start = time.perf_counter()
    if val_loader is not None:
        val = evaluate(model, val_loader, settings=settings)
        row.update(val_loss=val.loss, val_acc=val.accuracy)
    row["eval_seconds"] = time.perf_counter() - start
    return row


def fit_distributed(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    settings: RunSettings | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    amp: bool | None = None,
    channels_last: bool | None = None,
    **fit_kwargs,
) -> History:
    """:func:`fit` in every process started by ``torchrun`` (section 14.15).

    Every rank must build the same model (``DistributedDataParallel`` also copies rank 0's
    weights to the others) and the same full loaders; each trains on its shard of
    ``train_loader`` (:func:`cnnbook.distributed.shard`). Without ``torchrun`` this is plain
    :func:`fit`.

    Args:
        model: The network (placed on this rank's device).
        train_loader: The whole training set's loader (sharded here; not changed).
        val_loader: Evaluation data (every rank scores all of it).
        settings: Precision and layout; its device type is kept, its index becomes this
            rank's GPU (``None``: built from ``device``, ``amp`` and ``channels_last``).
        device: Without ``settings``: device type (``None``: CUDA, MPS or CPU).
        seed: Seed for :func:`fit` and the shard's shuffle.
        amp: Without ``settings``: mixed precision as in :func:`fit`.
        channels_last: Without ``settings``: memory layout as in :func:`fit`.
        **fit_kwargs: Passed on to :func:`fit`.

    Returns:
        The :class:`History` (the same on every rank).
    """
    from dataclasses import replace

    settings = _resolve_settings(settings, device, amp, channels_last)
    rank, world, dev = distributed.setup(settings.device)
    settings = replace(settings, device=dev)
    settings.place(model)  # before wrapping: DDP registers the parameters as they are
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    train_loader = distributed.shard(train_loader, rank, world, seed)
    return fit(net, train_loader, val_loader, settings=settings, seed=seed, **fit_kwargs)
