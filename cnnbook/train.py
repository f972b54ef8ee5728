"""Training loop, evaluation, metrics and checkpoints (sections 14.15 and 14.16).

:func:`train_one_epoch` is one pass over a loader: forward pass under autocast, loss,
backward pass through one gradient scaler (a no-op unless float16 needs it), optimiser and
schedule steps. :func:`fit` repeats it for a number of epochs and adds what a real run needs:
an optimiser and a learning-rate schedule (one-cycle or cosine, stepped every batch), the
device's precision and memory layout (:func:`cnnbook.device.run_settings`), evaluation after
every epoch, a :class:`History`, the best weights in an atomically written checkpoint,
resuming, ``tqdm.auto`` progress bars and a clean stop on ``KeyboardInterrupt``. Data-parallel
training with ``torchrun`` lives in :mod:`cnnbook.distributed`.
"""

from __future__ import annotations

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

from cnnbook import distributed
from cnnbook.device import RunSettings, run_settings
from cnnbook.distributed import distributed_env  # noqa: F401 - re-exported (old home)
from cnnbook.metrics import confusion_matrix, per_class_accuracy  # noqa: F401 - re-exported
from cnnbook.modules import unwrap

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
        return {
            "rows": [dict(r) for r in self.rows],
            "step_lr": list(self.step_lr),
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(
            [dict(r) for r in d["rows"]],
            list(d["step_lr"]),
            d["best_epoch"],
            d["best_metric"],
            bool(d.get("interrupted", False)),
        )

    def summary(self) -> str:
        """One line per epoch."""
        lines = []
        for r in self.rows:
            val = (
                f"  val loss {r['val_loss']:.3f} acc {r['val_acc']:.1%}"
                if not math.isnan(r["val_acc"])
                else ""
            )
            lines.append(
                f"epoch {int(r['epoch']):>3}  train loss {r['train_loss']:.3f} acc "
                f"{r['train_acc']:.1%}{val}  lr {r['lr']:.2e}  "
                f"{r['images_per_s']:,.0f} img/s  {r['seconds']:.1f} s"
            )
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


def _autocast(settings: RunSettings):
    return torch.autocast(
        settings.device.type, dtype=settings.amp_dtype, enabled=settings.amp_dtype is not None
    )


def _batches(loader: Iterable, settings: RunSettings) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    for x, y in loader:
        x = x.to(settings.device, non_blocking=settings.non_blocking)
        if x.dim() == 4:
            x = x.contiguous(memory_format=fmt)
        yield x, y.to(settings.device, non_blocking=settings.non_blocking)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-D weight is stored channels-last (NHWC)."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def settings_for(model: nn.Module, amp: bool | None = None) -> RunSettings:
    """Run settings that match where ``model`` is and how its weights are laid out."""
    return run_settings(_device_of(model), amp=amp, channels_last=_is_channels_last(model))


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
        settings: Device, autocast dtype and memory layout (``None``: :func:`settings_for`).
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
    loss_sum = torch.zeros((), dtype=torch.float64, device=settings.device)
    correct = torch.zeros((), dtype=torch.int64, device=settings.device)
    seen, step_lr, start = 0, [], time.perf_counter()
    for step, (x, y) in enumerate(_batches(loader, settings)):
        optimizer.zero_grad(set_to_none=True)
        with _autocast(settings):
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
        loss_sum += loss.detach().double() * len(y)
        correct += (out.detach().argmax(1) == y).sum()
        seen += len(y)
        if progress is not None:
            progress.update(1)
        if step + 1 == max_steps:
            break
    if seen == 0:
        raise ValueError("The training loader yielded no batches.")
    return EpochResult(
        loss_sum.item() / seen, correct.item() / seen, seen, time.perf_counter() - start, tuple(step_lr)
    )


# --------------------------------------------------------------------------------------------
# Evaluation and metrics
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    settings: RunSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``loader`` in eval mode.

    The model's memory layout is left as it is (inputs are given the same layout) and its
    train/eval mode is restored afterwards.

    Args:
        model: The classifier.
        loader: Yields ``(images, labels)``.
        device: Where to run; the model is moved there if it is elsewhere (``None``: the
            model's device). Batches always go to the model's device.
        settings: Precision/layout (``None``: :func:`settings_for` the model).

    Returns:
        ``(logits, predictions, labels)`` on the CPU: ``(N, K)`` float32, ``(N,)``, ``(N,)``.
    """
    if settings is None:
        if device is not None:
            model.to(device)
        settings = settings_for(model)
    elif _device_of(model) != settings.device:
        model.to(settings.device)
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


def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    settings: RunSettings | None = None,
) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``loader`` (eval mode, no gradients).

    Args:
        model: The classifier.
        loader: Yields ``(images, labels)``.
        device: Where to run (``None``: the model's device); see :func:`predict`.
        settings: Precision/layout (``None``: matching the model).

    Returns:
        An :class:`EvalResult`.
    """
    logits, preds, labels = predict(model, loader, device, settings)
    check_outputs(logits[:1], labels[:1], None)
    loss = F.cross_entropy(logits, labels).item()
    return EvalResult(loss, (preds == labels).double().mean().item(), len(labels))


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
# Checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int = 0,
    history: History | None = None,
    extra: dict | None = None,
) -> Path:
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


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
) -> dict:
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
        raise FileNotFoundError(
            f"No checkpoint at {path}; train first (fit(..., checkpoint='{path}')) or fix the path."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise ValueError(
            f"Checkpoint {path} is damaged or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Delete it "
            "and train again."
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a cnnbook checkpoint (no format {CHECKPOINT_FORMAT!r}); "
            "for a bare state_dict use model.load_state_dict(torch.load(path, "
            "weights_only=True))."
        )
    if model is not None:
        target = unwrap(model)
        missing, unexpected = _key_mismatch(target.state_dict(), state["model"])
        if missing or unexpected:
            raise ValueError(
                f"{path} holds weights of a different model: missing keys {missing[:5]}, "
                f"unexpected keys {unexpected[:5]}. Build the same architecture that was "
                "saved (same class and arguments) before loading."
            )
        try:
            target.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ValueError(
                f"{path} holds weights of a different shape: "
                f"{str(exc).splitlines()[-1].strip()} Build the model with the "
                "arguments used when it was saved."
            ) from None
    for key, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and state.get(key):  # a disabled GradScaler saves an empty dict
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
def make_optimizer(
    model: nn.Module, name: str = "sgd", lr: float = 0.05, weight_decay: float = 5e-4, momentum: float = 0.9
) -> torch.optim.Optimizer:
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
    groups = [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup: float = 0.2
) -> torch.optim.lr_scheduler.LRScheduler | None:
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
            optimizer,
            max_lr=peaks,
            total_steps=total_steps,
            pct_start=pct,
            anneal_strategy="cos",
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"Unknown schedule {name!r}; choose one of {SCHEDULES}.")


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int = 10,
    lr: float = 0.05,
    optimizer: str | torch.optim.Optimizer = "sgd",
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    schedule: str = "onecycle",
    warmup: float = 0.2,
    loss_fn: nn.Module | None = None,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
    checkpoint: str | Path | None = None,
    resume: str | Path | None = None,
    seed: int | None = None,
    num_classes: int | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> History:
    """Train a classifier with :func:`train_one_epoch` and return its per-epoch history.

    Args:
        model: The network; moved to the device (and to channels-last memory) in place. A
            ``DistributedDataParallel`` wrapper is accepted (see :mod:`cnnbook.distributed`).
        train_loader: Yields ``(images (N, C, H, W), labels (N,))``.
        val_loader: Optional evaluation data, scored after every epoch.
        epochs: Total epochs (when resuming, including those already done).
        lr: Peak learning rate.
        optimizer: "sgd" (Nesterov), "adamw", or a ready optimiser instance.
        weight_decay: Weight decay for kernels and weight matrices.
        momentum: SGD momentum.
        schedule: "onecycle", "cosine" or "constant" (stepped every batch).
        warmup: One-cycle warm-up fraction.
        loss_fn: The training loss (``None``: ``nn.CrossEntropyLoss()``); e.g.
            ``nn.CrossEntropyLoss(label_smoothing=0.1)`` or with
            ``weight=balanced_class_weights(labels)`` for imbalanced data.
        device: ``None`` picks CUDA, MPS or CPU.
        amp: Mixed precision (``None``: on for CUDA; bf16 where supported, else fp16 with a
            gradient scaler).
        channels_last: NHWC memory layout (``None``: on for CPU and CUDA).
        checkpoint: File for the best weights (by validation accuracy); a resumable
            every-epoch checkpoint goes next to it (:func:`last_checkpoint_path`).
        resume: Continue from this checkpoint (weights, optimiser, schedule, history).
        seed: Seed Python/NumPy/PyTorch first (same seed on a CPU, same loss curve).
        num_classes: Classes in the data; ``None`` reads ``classes`` from the loader.
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
    if seed is not None:
        config.seed_everything(seed)
    settings = run_settings(device, amp=amp, channels_last=channels_last)
    plain, main = unwrap(model), distributed.is_main_process()
    steps = len(train_loader)  # type: ignore[arg-type]
    if steps == 0:
        raise ValueError(
            "The training loader yields no batches (dataset smaller than one "
            "batch with drop_last?); use a smaller batch size."
        )
    num_classes = num_classes if num_classes is not None else _num_classes_of(train_loader)
    plain.to(settings.device).to(
        memory_format=torch.channels_last if settings.channels_last else torch.preserve_format
    )
    opt = (
        optimizer
        if isinstance(optimizer, torch.optim.Optimizer)
        else make_optimizer(plain, optimizer, lr, weight_decay, momentum)
    )
    sched = make_scheduler(opt, schedule, epochs * steps, warmup)
    scaler = torch.amp.GradScaler(settings.device.type, enabled=settings.grad_scaler)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    history, start_epoch = History(), 0
    if resume is not None:
        history, start_epoch = _resume(resume, plain, opt, sched, scaler, settings, epochs, steps)
    if verbose and main:
        print(
            f"Training on {settings.describe()}"
            + (" | DistributedDataParallel" if plain is not model else "")
        )
    show = progress and main
    epoch_bar = tqdm(
        range(start_epoch, epochs), desc="epochs", disable=not show, initial=start_epoch, total=epochs
    )
    # One step bar, reset every epoch: a new bar per epoch would open a new notebook widget
    # each time (hundreds of messages in a long loop of short fits).
    step_bar = tqdm(total=steps, leave=False, disable=not show)
    best_state = None
    try:
        for epoch in epoch_bar:
            for obj in (train_loader, getattr(train_loader, "sampler", None)):
                set_epoch = getattr(obj, "set_epoch", None)
                if set_epoch is not None:
                    set_epoch(epoch)
            step_bar.reset(total=steps)
            step_bar.set_description(f"epoch {epoch + 1}", refresh=False)
            res = train_one_epoch(
                model,
                train_loader,
                opt,
                loss_fn,
                settings=settings,
                scheduler=sched,
                scaler=scaler,
                num_classes=num_classes,
                progress=step_bar if show else None,
            )
            history.step_lr.extend(res.step_lr)
            row = _epoch_row(epoch, res, opt, plain, val_loader, settings)
            history.rows.append(row)
            metric = row["val_acc"] if val_loader is not None else row["train_acc"]
            if history.best_metric is None or metric > history.best_metric:
                history.best_metric, history.best_epoch = metric, epoch + 1
                best_state = {k: v.detach().clone().cpu() for k, v in plain.state_dict().items()}
                if checkpoint is not None and main:
                    save_checkpoint(
                        checkpoint, plain, epoch=epoch + 1, history=history, extra={"best_metric": metric}
                    )
            if checkpoint is not None and main:
                save_checkpoint(
                    last_checkpoint_path(checkpoint),
                    plain,
                    optimizer=opt,
                    scheduler=sched,
                    scaler=scaler,
                    epoch=epoch + 1,
                    history=history,
                )
            if verbose and main:
                epoch_bar.write(history.summary().splitlines()[-1])
    except KeyboardInterrupt:
        history.interrupted = True
        if best_state is not None:
            plain.load_state_dict(best_state)
        if main:
            print(
                f"\nInterrupted: kept {len(history)} finished epoch(s)"
                + (
                    f"; the model holds the best weights (epoch {history.best_epoch})"
                    if best_state is not None
                    else ""
                )
                + "."
            )
    finally:
        step_bar.close()
        epoch_bar.close()
    return history


def _epoch_row(
    epoch: int,
    res: EpochResult,
    opt: torch.optim.Optimizer,
    model: nn.Module,
    val_loader: Iterable | None,
    settings: RunSettings,
) -> dict[str, float]:
    """The history row: training figures summed over all processes, then validation."""
    totals = distributed.all_reduce_sum(
        torch.tensor(
            [res.loss * res.count, res.accuracy * res.count, float(res.count)],
            dtype=torch.float64,
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


def _resume(
    path: str | Path, model: nn.Module, opt, sched, scaler, settings: RunSettings, epochs: int, steps: int
) -> tuple[History, int]:
    """Restore a run from :func:`fit`'s every-epoch checkpoint; ``(history, epochs done)``."""
    state = load_checkpoint(
        path, model, optimizer=opt, scheduler=sched, scaler=scaler, map_location=settings.device
    )
    saved = state.get("scheduler") or {}
    for key in ("total_steps", "T_max"):
        if key in saved and saved[key] != epochs * steps:
            raise ValueError(
                f"{path} was trained with a learning-rate schedule of {saved[key]} steps, but "
                f"this call plans {epochs * steps} (epochs={epochs}). Resume with the same "
                "epochs, batch size and schedule as the interrupted run."
            )
    done = int(state["epoch"])
    if done >= epochs:
        raise ValueError(
            f"{path} already finished {done} epochs; ask for more than that "
            f"(epochs={done + 1} or more) to continue."
        )
    history = state["history"] or History()
    history.interrupted = False
    torch.set_rng_state(state["rng"].cpu())
    return history, done
