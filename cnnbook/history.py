"""The per-epoch record of a training run (sections 14.15 and 14.16).

:func:`cnnbook.train.fit` returns a :class:`History`, :func:`cnnbook.plots.plot_history` draws
it, and :func:`cnnbook.checkpoint.save_checkpoint` stores it as plain lists and numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
