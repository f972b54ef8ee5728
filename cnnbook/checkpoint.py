"""Checkpoints: written atomically, read back with ``weights_only=True`` (sections 14.15 and 14.16).

:func:`save_checkpoint` writes a model's weights (and, for resuming, the optimiser, schedule,
gradient-scaler and RNG state and the :class:`cnnbook.history.History`) to a temporary file in
the target folder and renames it, so an interrupted write never leaves a half-written file.
:func:`load_checkpoint` checks the file and the model's keys and shapes and says what to do
when they do not fit. :func:`cnnbook.train.fit` keeps the best epoch's weights under its
``checkpoint=`` path and every epoch's under :func:`last_checkpoint_path`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from cnnbook.history import History
from cnnbook.modules import unwrap

CHECKPOINT_FORMAT = "cnnbook-checkpoint-v1"


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


def resume_run(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    epochs: int,
    steps: int,
) -> tuple[History, int]:
    """Restore a run from :func:`cnnbook.train.fit`'s every-epoch checkpoint.

    Args:
        path: The checkpoint (:func:`last_checkpoint_path` of the run's ``checkpoint=``).
        model: Receives the weights (a wrapper is unwrapped).
        optimizer: Receives the optimiser state.
        scheduler: Receives the schedule's state.
        scaler: Receives the gradient scaler's state.
        device: Where the tensors are loaded.
        epochs: Epochs the resumed run plans in all.
        steps: Optimisation steps per epoch.

    Returns:
        ``(history, epochs done)``; the global RNG is restored too.

    Raises:
        ValueError: If the schedule's length differs or the run already finished.
    """
    state = load_checkpoint(
        path, unwrap(model), optimizer=optimizer, scheduler=scheduler, scaler=scaler, map_location=device
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
