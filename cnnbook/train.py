"""Training loop, evaluation, metrics and checkpoints (sections 14.15 and 14.16).

:func:`fit` trains a classifier on any loader that yields ``(images, labels)`` batches - the
classic ``DataLoader`` or :class:`cnnbook.data.GPUBatchLoader` - and returns a
:class:`History` with one row per epoch (loss, accuracy, learning rate, images per second,
seconds). It picks mixed precision and memory layout from the device
(:func:`cnnbook.device.run_settings`), shows ``tqdm.auto`` progress bars, schedules the
learning rate (one-cycle or cosine, stepped every batch), supports label smoothing, keeps the
best weights in an atomically written checkpoint, resumes from a checkpoint, stops cleanly on
``KeyboardInterrupt``, and runs unchanged under ``torchrun --nproc_per_node=N`` with
``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnbook.device import RunSettings, run_settings, tune_cpu_allocator

SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")
CHECKPOINT_FORMAT = "cnnbook-checkpoint-v1"


# --------------------------------------------------------------------------------------------
# History and evaluation results
# --------------------------------------------------------------------------------------------
@dataclass
class History:
    """Per-epoch training record.

    Attributes:
        rows: One dict per finished epoch with keys ``epoch``, ``train_loss``, ``train_acc``,
            ``val_loss``, ``val_acc`` (``nan`` without validation data), ``lr`` (at the end of
            the epoch), ``images_per_s`` (training only), ``seconds`` (training only) and
            ``eval_seconds``.
        step_lr: The learning rate used at every optimisation step (for plotting schedules).
        best_epoch: Epoch (1-based) of the best ``val_acc`` (``train_acc`` without validation).
        best_metric: That accuracy.
        interrupted: ``True`` when the run was stopped with Ctrl-C (``KeyboardInterrupt``).
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> list[float]:
        """The column ``key`` over epochs, e.g. ``history["val_acc"]``."""
        if self.rows and key not in self.rows[0]:
            raise KeyError(f"No column {key!r}; history has {', '.join(self.rows[0])}.")
        return [row[key] for row in self.rows]

    @property
    def last(self) -> dict[str, float]:
        """The last finished epoch's row."""
        if not self.rows:
            raise ValueError("The history is empty: no epoch finished.")
        return self.rows[-1]

    def to_dict(self) -> dict:
        """Plain lists and numbers (safe for ``torch.load(weights_only=True)``)."""
        return {"rows": [dict(r) for r in self.rows], "step_lr": list(self.step_lr),
                "best_epoch": self.best_epoch, "best_metric": self.best_metric,
                "interrupted": self.interrupted}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls([dict(r) for r in d["rows"]], list(d["step_lr"]), d["best_epoch"],
                   d["best_metric"], bool(d.get("interrupted", False)))

    def summary(self) -> str:
        """One line per epoch."""
        lines = []
        for r in self.rows:
            val = (f"  val loss {r['val_loss']:.3f} acc {r['val_acc']:.1%}"
                   if not math.isnan(r["val_acc"]) else "")
            lines.append(f"epoch {int(r['epoch']):>3}  train loss {r['train_loss']:.3f} acc "
                         f"{r['train_acc']:.1%}{val}  lr {r['lr']:.2e}  "
                         f"{r['images_per_s']:,.0f} img/s  {r['seconds']:.1f} s")
        return "\n".join(lines)


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
def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


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
            "last linear layer (torch.flatten(x, 1)) and check the head.")
    k = logits.shape[1]
    if num_classes is not None and k != num_classes:
        raise ValueError(
            f"The model outputs {k} scores per image but the data has {num_classes} classes. "
            f"Replace the last layer, e.g. model.fc = nn.Linear(model.fc.in_features, "
            f"{num_classes}), or build the model with num_classes={num_classes}.")
    top = int(labels.max())
    if top >= k:
        raise ValueError(f"A label is {top} but the model has only {k} outputs (labels must be "
                         f"0..{k - 1}); give the model num_classes={top + 1} or more.")


def _autocast(settings: RunSettings):
    return torch.autocast(settings.device.type, dtype=settings.amp_dtype,
                          enabled=settings.amp_dtype is not None)


def _batches(loader: Iterable, settings: RunSettings) -> Iterator[tuple[torch.Tensor,
                                                                        torch.Tensor]]:
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    for x, y in loader:
        x = x.to(settings.device, non_blocking=settings.non_blocking)
        if x.dim() == 4:
            x = x.contiguous(memory_format=fmt)
        yield x, y.to(settings.device, non_blocking=settings.non_blocking)


# --------------------------------------------------------------------------------------------
# Evaluation and metrics
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: torch.device | str | None = None,
            settings: RunSettings | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
    """Run ``model`` over ``loader`` in eval mode.

    Args:
        model: The classifier.
        loader: Yields ``(images, labels)``.
        device: Where to run (``None``: the model's device).
        settings: Precision/layout (``None``: :func:`cnnbook.device.run_settings`).

    Returns:
        ``(logits, predictions, labels)`` on the CPU: ``(N, K)`` float32, ``(N,)``, ``(N,)``.
    """
    settings = settings or run_settings(device or next(model.parameters()).device)
    if settings.channels_last:  # weights and inputs in the same layout, as during training
        model.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for x, y in _batches(loader, settings):
            with _autocast(settings):
                out = model(x)
            logits.append(out.float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("The loader yielded no batches.")
    all_logits = torch.cat(logits)
    return all_logits, all_logits.argmax(1), torch.cat(labels)


def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str | None = None,
             settings: RunSettings | None = None) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``loader`` (eval mode, no gradients).

    Args:
        model: The classifier.
        loader: Yields ``(images, labels)``.
        device: Where to run (``None``: the model's device).
        settings: Precision/layout (``None``: chosen for the device).

    Returns:
        An :class:`EvalResult`.
    """
    logits, preds, labels = predict(model, loader, device, settings)
    check_outputs(logits[:1], labels[:1], None)
    loss = F.cross_entropy(logits, labels).item()
    return EvalResult(loss, (preds == labels).double().mean().item(), len(labels))


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """Counts ``cm[true, predicted]``, shape ``(num_classes, num_classes)`` (as scikit-learn)."""
    idx = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes)


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


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of each class from a confusion matrix: ``diag / row sums`` (``nan`` if empty)."""
    cm = cm.double()
    return cm.diagonal() / cm.sum(1)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: nn.Module, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    scaler: torch.amp.GradScaler | None = None, epoch: int = 0,
                    history: History | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    An interrupted write never leaves a half-written file under ``path``. Everything saved is
    tensors, numbers, strings and lists, so it loads with ``torch.load(weights_only=True)``.

    Args:
        path: Target file.
        model: Its plain weights are saved (wrappers are unwrapped).
        optimizer: Optional optimizer state (for resuming).
        scheduler: Optional learning-rate scheduler state.
        scaler: Optional gradient-scaler state.
        epoch: Epochs completed.
        history: The training history so far.
        extra: More plain data to store (e.g. class names).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "epoch": epoch,
        "rng": torch.get_rng_state(),
        "history": history.to_dict() if history is not None else None,
        "extra": extra or {},
    }
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            state[key] = obj.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, model: nn.Module | None = None, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    scaler: torch.amp.GradScaler | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` and restore whatever objects are given.

    Args:
        path: A file written by :func:`save_checkpoint`.
        model: Receives the weights (strictly: every key must match).
        optimizer: Receives the optimizer state, if saved.
        scheduler: Receives the scheduler state, if saved.
        scaler: Receives the gradient-scaler state, if saved.
        map_location: Where to load tensors.

    Returns:
        The checkpoint dict (``model``, ``epoch``, ``history`` as a :class:`History`, ...).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is damaged, not a cnnbook checkpoint, or holds weights of a
            different model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}; train first (fit(..., "
                                f"checkpoint='{path}')) or fix the path.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors come in many types
        raise ValueError(f"Checkpoint {path} is damaged or not a PyTorch checkpoint "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Delete it "
                         "and train again.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a cnnbook checkpoint (no format {CHECKPOINT_FORMAT!r}); "
                         "for a bare state_dict use model.load_state_dict(torch.load(path, "
                         "weights_only=True)).")
    if model is not None:
        target = unwrap(model)
        missing, unexpected = _key_mismatch(target.state_dict(), state["model"])
        if missing or unexpected:
            raise ValueError(
                f"{path} holds weights of a different model: missing keys {missing[:5]}, "
                f"unexpected keys {unexpected[:5]}. Build the same architecture that was "
                "saved (same class and arguments) before loading.")
        try:
            target.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ValueError(f"{path} holds weights of a different shape: "
                             f"{str(exc).splitlines()[-1].strip()} Build the model with the "
                             "arguments used when it was saved.") from None
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and key in state:
            obj.load_state_dict(state[key])
    if state.get("history") is not None:
        state["history"] = History.from_dict(state["history"])
    return state


def _key_mismatch(expected: dict, found: dict) -> tuple[list[str], list[str]]:
    return (sorted(set(expected) - set(found)), sorted(set(found) - set(expected)))


def last_checkpoint_path(best: str | Path) -> Path:
    """Where :func:`fit` keeps the every-epoch checkpoint next to the best one (for resuming)."""
    best = Path(best)
    return best.with_name(f"{best.stem}-last{best.suffix or '.pt'}")


# --------------------------------------------------------------------------------------------
# Optimiser and schedule
# --------------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.05,
                   weight_decay: float = 5e-4, momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW, over the trainable parameters.

    Biases and normalisation weights (1-D parameters) get no weight decay.

    Args:
        model: The network.
        name: "sgd" or "adamw".
        lr: (Peak) learning rate.
        weight_decay: L2 penalty for weight matrices and kernels.
        momentum: SGD momentum (ignored by AdamW).

    Returns:
        The optimiser.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters; unfreeze some (e.g. the head).")
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int,
                   warmup: float = 0.2) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A learning-rate schedule stepped once per batch.

    Args:
        optimizer: Its ``lr`` is the peak rate.
        name: "onecycle" (linear warm-up for ``warmup`` of the steps, then cosine decay to
            ~0), "cosine" (cosine decay from the peak) or "constant" (no schedule: ``None``).
        total_steps: Optimisation steps in the whole run.
        warmup: Fraction of steps spent warming up (one-cycle only; at least 2 steps, and
            runs of under 3 steps use "cosine").

    Returns:
        The scheduler, or ``None`` for "constant".
    """
    if name == "constant":
        return None
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive; got {total_steps}.")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup is a fraction of the steps in [0, 1); got {warmup}.")
    if name == "onecycle" and total_steps < 3:
        name = "cosine"  # too short for a warm-up and a decay phase
    if name == "onecycle":
        peaks = [g["lr"] for g in optimizer.param_groups]
        # OneCycleLR divides by each phase's length: keep >= 2 warm-up steps and >= 1 decay step.
        pct = min(max(warmup, 2 / total_steps), 1 - 1 / total_steps)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct,
            anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0,
            cycle_momentum=False)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"Unknown schedule {name!r}; choose one of {SCHEDULES}.")


# --------------------------------------------------------------------------------------------
# Data-parallel support
# --------------------------------------------------------------------------------------------
def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as set by ``torchrun`` (``(0, 1, 0)`` otherwise)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    import torch.distributed as dist

    rank, world, local = distributed_env()
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # Keep the group for later fit() calls in this process (re-creating one after
        # destroying it can hang) and close it when the process exits.
        atexit.register(dist.destroy_process_group)
    return dist.get_rank(), dist.get_world_size(), device


def _shard(loader, rank: int, world: int, seed: int):
    """Give this rank its share of the training data (GPUBatchLoader or DataLoader)."""
    from torch.utils.data import DataLoader, DistributedSampler

    if world <= 1:
        return loader
    if hasattr(loader, "world_size") and hasattr(loader, "rank"):
        if loader.world_size == 1:
            loader.rank, loader.world_size = rank, world
        return loader
    if isinstance(loader, DataLoader):
        if isinstance(loader.sampler, DistributedSampler):
            return loader
        sampler = DistributedSampler(loader.dataset, num_replicas=world, rank=rank,
                                     shuffle=True, seed=seed)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                          drop_last=loader.drop_last,
                          persistent_workers=loader.num_workers > 0)
    raise TypeError(f"Cannot shard a {type(loader).__name__} across processes; use a "
                    "DataLoader or cnnbook.data.GPUBatchLoader.")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def fit(model: nn.Module, train_loader: Iterable, val_loader: Iterable | None = None, *,
        epochs: int = 10, lr: float = 0.05, optimizer: str | torch.optim.Optimizer = "sgd",
        weight_decay: float = 5e-4, momentum: float = 0.9, schedule: str = "onecycle",
        warmup: float = 0.2, label_smoothing: float = 0.0,
        class_weights: torch.Tensor | None = None, freeze_batchnorm: bool = False,
        device: torch.device | str | None = None, amp: bool | None = None,
        channels_last: bool | None = None, compile: bool = False,
        checkpoint: str | Path | None = None, resume: str | Path | None = None,
        restore_best: bool = False, seed: int | None = None, num_classes: int | None = None,
        grad_clip: float | None = None, progress: bool = True,
        verbose: bool = True) -> History:
    """Train a classifier and return its per-epoch history.

    Args:
        model: The network; moved to the device (and to channels-last memory) in place.
        train_loader: Yields ``(images (N, C, H, W), labels (N,))``.
        val_loader: Optional evaluation data, scored after every epoch.
        epochs: Total epochs (when resuming, including those already done).
        lr: Peak learning rate.
        optimizer: "sgd" (Nesterov), "adamw", or a ready optimiser instance.
        weight_decay: Weight decay for kernels and weight matrices.
        momentum: SGD momentum.
        schedule: "onecycle", "cosine" or "constant" (stepped every batch).
        warmup: One-cycle warm-up fraction.
        label_smoothing: Cross-entropy label smoothing (0 disables).
        class_weights: Per-class loss weights ``(K,)``, e.g. :func:`balanced_class_weights`
            for imbalanced data.
        freeze_batchnorm: Keep batch-norm layers in eval mode while training (their running
            statistics stay as loaded; their weights still train if trainable), as advised when
            fine-tuning a pretrained network with small batches.
        device: ``None`` picks CUDA, MPS or CPU.
        amp: Mixed precision (``None``: on for CUDA; bf16 where supported, else fp16 with a
            gradient scaler).
        channels_last: NHWC memory layout (``None``: on for CPU and CUDA).
        compile: Wrap the model in ``torch.compile``.
        checkpoint: File for the best weights (by validation accuracy); a resumable
            every-epoch checkpoint goes next to it (:func:`last_checkpoint_path`).
        resume: Continue from this checkpoint (weights, optimiser, schedule, history).
        restore_best: Load the best weights into ``model`` when training ends.
        seed: Seed Python/NumPy/PyTorch first (same seed on a CPU, same loss curve).
        num_classes: Classes in the data; ``None`` reads ``classes`` from the loader.
        grad_clip: Clip the gradient norm to this value.
        progress: Show ``tqdm.auto`` progress bars.
        verbose: Print the settings line and one line per epoch.

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
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}.")
    if seed is not None:
        config.seed_everything(seed)
    settings = run_settings(device, amp=amp, channels_last=channels_last, compile=compile)
    rank, world, dev = _init_distributed(settings.device)
    if dev != settings.device:
        settings = dataclasses.replace(settings, device=dev)
    if settings.tune_allocator:
        tune_cpu_allocator()
    main = rank == 0
    train_loader = _shard(train_loader, rank, world, seed or 0)
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise ValueError("The training loader yields no batches (dataset smaller than one "
                         "batch with drop_last?); use a smaller batch size.")
    num_classes = num_classes if num_classes is not None else _num_classes_of(train_loader)

    model.to(settings.device, memory_format=torch.channels_last if settings.channels_last
             else torch.preserve_format)
    opt = (optimizer if isinstance(optimizer, torch.optim.Optimizer)
           else make_optimizer(model, optimizer, lr, weight_decay, momentum))
    sched = make_scheduler(opt, schedule, epochs * steps_per_epoch, warmup)
    scaler = torch.amp.GradScaler(settings.device.type) if settings.grad_scaler else None
    history, start_epoch = History(), 0
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer=opt, scheduler=sched, scaler=scaler,
                                map_location=settings.device)
        _check_same_schedule(state, epochs * steps_per_epoch, epochs, resume)
        start_epoch = int(state["epoch"])
        history = state["history"] or History()
        history.interrupted = False
        torch.set_rng_state(state["rng"].cpu())
        if start_epoch >= epochs:
            raise ValueError(f"{resume} already finished {start_epoch} epochs; ask for more "
                             f"than that (epochs={start_epoch + 1} or more) to continue.")
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[settings.device.index] if settings.device.type == "cuda" else None)
    if settings.compile:
        net = torch.compile(net)
    weight = class_weights.to(settings.device, torch.float32) if class_weights is not None else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    best_state = None
    if verbose and main:
        print(f"Training on {settings.describe()}"
              + (f" | {world} processes (DistributedDataParallel)" if world > 1 else ""))

    epoch_bar = tqdm(range(start_epoch, epochs), desc="epochs", disable=not (progress and main),
                     initial=start_epoch, total=epochs)
    # One step bar, reset every epoch: a new bar per epoch would open a new notebook widget
    # each time (hundreds of messages in a long loop of short fits).
    step_bar = tqdm(total=steps_per_epoch, leave=False, disable=not (progress and main))
    try:
        for epoch in epoch_bar:
            for loader in (train_loader, getattr(train_loader, "sampler", None)):
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
            row = _train_epoch(net, train_loader, opt, sched, scaler, criterion, settings,
                               num_classes, grad_clip, history, epoch,
                               step_bar, steps_per_epoch, world, freeze_batchnorm)
            t0 = time.perf_counter()
            if val_loader is not None:
                res = evaluate(model, val_loader, settings=settings)
                row.update(val_loss=res.loss, val_acc=res.accuracy)
            else:
                row.update(val_loss=math.nan, val_acc=math.nan)
            row["eval_seconds"] = time.perf_counter() - t0
            history.rows.append(row)
            metric = row["val_acc"] if val_loader is not None else row["train_acc"]
            if history.best_metric is None or metric > history.best_metric:
                history.best_metric, history.best_epoch = metric, epoch + 1
                best_state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
                if checkpoint is not None and main:
                    save_checkpoint(checkpoint, model, epoch=epoch + 1, history=history,
                                    extra={"best_metric": metric})
            if checkpoint is not None and main:
                save_checkpoint(last_checkpoint_path(checkpoint), model, optimizer=opt,
                                scheduler=sched, scaler=scaler, epoch=epoch + 1, history=history)
            if verbose and main:
                epoch_bar.write(history.summary().splitlines()[-1])
    except KeyboardInterrupt:
        history.interrupted = True
        if best_state is not None:
            model.load_state_dict(best_state)
        if main:
            print(f"\nInterrupted: kept {len(history)} finished epoch(s)"
                  + (f"; the model holds the best weights (epoch {history.best_epoch})"
                     if best_state is not None else "") + ".")
    finally:
        step_bar.close()
        epoch_bar.close()
    if restore_best and best_state is not None and not history.interrupted:
        model.load_state_dict(best_state)
    return history


def _check_same_schedule(state: dict, planned_steps: int, epochs: int,
                         path: str | Path) -> None:
    saved = state.get("scheduler") or {}
    for key in ("total_steps", "T_max"):
        if key in saved and saved[key] != planned_steps:
            raise ValueError(
                f"{path} was trained with a learning-rate schedule of {saved[key]} steps, but "
                f"this call plans {planned_steps} (epochs={epochs}). Resume with the same "
                "epochs, batch size and schedule as the interrupted run.")


def _train_epoch(net: nn.Module, loader: Iterable, opt: torch.optim.Optimizer,
                 sched, scaler, criterion: nn.Module, settings: RunSettings,
                 num_classes: int | None, grad_clip: float | None, history: History,
                 epoch: int, bar, steps: int, world: int,
                 freeze_batchnorm: bool = False) -> dict[str, float]:
    """One pass over ``loader``; ``bar`` is a (possibly disabled) tqdm bar, reset here."""
    net.train()
    if freeze_batchnorm:
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    loss_sum = torch.zeros((), device=settings.device, dtype=torch.float64)
    correct = torch.zeros((), device=settings.device, dtype=torch.int64)
    seen = 0
    start = time.perf_counter()
    progress = not bar.disable
    bar.reset(total=steps)
    bar.set_description(f"epoch {epoch + 1}", refresh=False)
    for step, (x, y) in enumerate(_batches(loader, settings)):
        with _autocast(settings):
            out = net(x)
            if step == 0:
                check_outputs(out, y, num_classes)
            loss = criterion(out, y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            opt.step()
        history.step_lr.append(opt.param_groups[0]["lr"])
        if sched is not None:
            sched.step()
        n = y.shape[0]
        loss_sum += loss.detach().double() * n
        correct += (out.detach().argmax(1) == y).sum()
        seen += n
        if progress:
            if step % 20 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}",
                                acc=f"{correct.item() / seen:.1%}", refresh=False)
            bar.update(1)
    totals = torch.stack([loss_sum, correct.double(),
                          torch.tensor(float(seen), dtype=torch.float64,
                                       device=settings.device)])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(totals)
    loss_total, correct_total, count = totals.tolist()
    seconds = time.perf_counter() - start
    return {"epoch": epoch + 1, "train_loss": loss_total / count,
            "train_acc": correct_total / count, "lr": opt.param_groups[0]["lr"],
            "images_per_s": count / seconds, "seconds": seconds}
