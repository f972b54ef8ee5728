"""Checks for the section 14.15 exercises (validation split, honest model selection,
evaluation that leaves no trace, training and validation transforms).

Every check runs fixed edge cases first (unsorted labels, class ids with gaps, ties on the
validation score, a model whose layers were in mixed train/eval modes, a last batch smaller
than the others, ...) and adds random cases, so an answer gets the same verdict on every seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnbook.checks.core import (
    Context,
    call,
    checker,
    expect_answers,
    expect_equal,
    expect_number,
    expect_tensor,
    fail,
    fixed,
    preserved_state,
)
from cnnbook.datasets import CIFAR10_MEAN, CIFAR10_STD

# ------------------------------------------------------------------ Exercise 1: stratified split


def _as_index(value: Any, what: str, n: int) -> torch.Tensor:
    """``value`` (tensor, array, list) as a 1-D int64 tensor, or a failure saying why not."""
    if value is None:
        fail(f"{what} is None: did you forget to `return` it?")
    try:
        t = torch.as_tensor(np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value))
    except (TypeError, ValueError, RuntimeError):
        fail(f"{what} should be a 1-D tensor (or list) of indices, got {type(value).__name__}.")
    if t.dtype == torch.bool:
        fail(
            f"{what} is a boolean mask of length {t.numel()}; return the INDICES "
            f"(`mask.nonzero().flatten()`), not a mask."
        )
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if t.dim() != 1 or t.dtype.is_floating_point or t.dtype.is_complex:
        fail(
            f"{what} should be a 1-D tensor of integer indices, got shape {tuple(t.shape)} "
            f"and dtype {t.dtype}."
        )
    t = t.long()
    if int(t.min()) < 0 or int(t.max()) >= n:
        fail(f"{what} holds indices outside 0..{n - 1} (found {int(t.min())}..{int(t.max())}).")
    return t


def _split_cases(ctx: Context) -> list[tuple[torch.Tensor, float]]:
    """Fixed edge cases, then random ones; no case has a count ending in exactly .5."""
    g = torch.Generator().manual_seed(7)
    gapped = torch.cat([torch.full((23,), 0), torch.full((17,), 2), torch.full((9,), 5)])
    cases = [
        (torch.cat([torch.full((n,), k) for k, n in enumerate((40, 30, 10))]), 0.2),  # sorted
        (gapped[torch.randperm(len(gapped), generator=g)], 0.3),  # shuffled, ids 0, 2, 5
        (
            torch.cat([torch.full((n,), k) for k, n in enumerate((2, 61, 14, 33))])[
                torch.randperm(110, generator=g)
            ],
            0.3,
        ),  # a class of two, rounding both ways
    ]
    while len(cases) < 5:
        counts = [ctx.randint(5, 60) for _ in range(ctx.randint(2, 5))]
        fraction = ctx.choice([0.1, 0.15, 0.2, 0.25, 0.3])
        if any(abs(fraction * n - math.floor(fraction * n) - 0.5) < 1e-6 for n in counts):
            continue
        labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
        cases.append((labels[torch.randperm(len(labels), generator=ctx.gen)], fraction))
    return cases


@checker(
    "stratified train/validation split",
    requirement="disjoint and complete; round(val_fraction * n_c) of each class in val_idx, chosen at "
    "random by a private torch.Generator seeded with `seed` (the global RNG neither reseeded nor "
    "drawn from); labels unchanged",
)
def check_stratified_split(ctx: Context, fn: Callable[..., Any]) -> str:
    """Check ``fn(labels (N,), val_fraction, seed)`` -> ``(train_idx, val_idx)``, stratified."""
    for labels, fraction in _split_cases(ctx):
        n = len(labels)
        what = f"stratified_split(labels of {n} samples, val_fraction={fraction}, seed=0)"
        before = labels.clone()
        with preserved_state(what="stratified_split", private_rng=True):
            got = call(fn, labels, fraction, 0, describe=what)
        if not torch.equal(labels, before):
            fail(f"{what} changed the labels it was given; work on a copy.")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"{what} should return (train_idx, val_idx), got {type(got).__name__}.")
        train_idx = _as_index(got[0], f"{what}[0] (train_idx)", n)
        val_idx = _as_index(got[1], f"{what}[1] (val_idx)", n)
        both = set(train_idx.tolist()) & set(val_idx.tolist())
        if both:
            fail(
                f"{what}: {len(both)} index(es) are in BOTH parts (e.g. {sorted(both)[:3]}); a "
                f"validation image must never be trained on."
            )
        for part, idx in (("train_idx", train_idx), ("val_idx", val_idx)):
            if idx.unique().numel() != idx.numel():
                fail(f"{what}: {part} lists an index twice.")
        if train_idx.numel() + val_idx.numel() != n:
            fail(
                f"{what}: the two parts hold {train_idx.numel() + val_idx.numel()} indices; "
                f"together they must hold every one of the {n} samples exactly once."
            )
        classes = labels.unique().tolist()
        counts = {c: int((labels == c).sum()) for c in classes}
        want = {c: round(fraction * counts[c]) for c in classes}
        have = {c: int((labels[val_idx] == c).sum()) for c in classes}
        if have != want:
            if have == {c: math.floor(fraction * counts[c]) for c in classes}:
                fail(
                    f"{what}: validation counts per class {have}, expected {want}: you rounded "
                    f"down (int() truncates); round to the nearest integer."
                )
            even = round(fraction * n / len(classes))
            if all(v == even for v in have.values()):
                fail(
                    f"{what}: validation counts per class {have}, expected {want}: you took the "
                    f"same NUMBER from every class; take the same FRACTION of each class."
                )
            if val_idx.numel() == round(fraction * n):
                fail(
                    f"{what}: the validation set has the right size but its class counts are "
                    f"{have}, expected {want}: the split is not stratified (split each class "
                    f"separately)."
                )
            fail(
                f"{what}: validation counts per class {have}, expected "
                f"round(val_fraction * class count) = {want}."
            )

        def val_set(
            seed: int, labels: torch.Tensor = labels, fraction: float = fraction, what: str = what
        ) -> set[int]:
            with preserved_state(what="stratified_split", private_rng=True):
                out = call(
                    fn, labels.clone(), fraction, seed, describe=what.replace("seed=0", f"seed={seed}")
                )
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                fail(f"{what} should return (train_idx, val_idx), got {type(out).__name__}.")
            return set(_as_index(out[1], f"{what}[1] (val_idx)", len(labels)).tolist())

        if val_set(0) != set(val_idx.tolist()):
            fail(
                f"{what}: calling it twice with seed=0 gave two different splits; draw the random "
                f"order from a generator seeded with `seed` (torch.Generator().manual_seed(seed)) "
                f"so a split can be reproduced."
            )
        others = [val_set(s) for s in (1, 2, 3)]
        if all(o == set(val_idx.tolist()) for o in others):
            fail(
                f"{what}: seeds 0, 1, 2 and 3 all gave the same validation set; pick each class's "
                f"validation images at random (a permutation drawn with `seed`), not the first "
                f"ones: data files are often sorted (by date, source, ...)."
            )
    return "disjoint, complete, stratified to the rounded share of every class, reproducible by seed."


# ------------------------------------------------------------------ Exercise 2: honest selection

_SELECTION_CASES: list[tuple[list[float], list[float]]] = [
    ([0.61, 0.70, 0.68, 0.55], [0.60, 0.66, 0.69, 0.57]),  # best on test != best on validation
    ([0.70, 0.72, 0.72, 0.65], [0.69, 0.70, 0.71, 0.60]),  # a tie on validation: keep the first
    ([0.52], [0.50]),  # a single candidate
    ([0.40, 0.45, 0.47, 0.48, 0.50], [0.41, 0.52, 0.47, 0.46, 0.49]),  # the last one is best
]


@checker(
    "honest model selection",
    requirement="choose the highest score(candidate, 'val') (the earliest on a tie), then call "
    "score(chosen, 'test') exactly once and return (chosen, that score)",
)
def check_honest_selection(ctx: Context, fn: Callable[..., Any]) -> str:
    """Check ``fn(candidates, score)`` -> ``(chosen, test_accuracy)``, chosen on validation."""
    cases = list(_SELECTION_CASES)
    for _ in range(2):
        k = ctx.randint(2, 8)
        val = [round(0.3 + 0.6 * float(v), 3) for v in ctx.rand(k)]
        test = [round(v + 0.1 * float(e), 3) for v, e in zip(val, ctx.randn(k), strict=True)]
        cases.append((val, test))
    for val, test in cases:
        names = [f"epoch {i + 1}" for i in range(len(val))]
        calls: list[tuple[str, str]] = []

        def score(
            candidate: str,
            split: str,
            _v: list[float] = val,
            _t: list[float] = test,
            _calls: list[tuple[str, str]] = calls,
            _names: list[str] = names,
        ) -> float:
            if candidate not in _names:
                raise ValueError(f"unknown candidate {candidate!r}; pass one of {_names}")
            if split not in ("val", "test"):
                raise ValueError(f"split must be 'val' or 'test', got {split!r}")
            _calls.append((candidate, split))
            return (_v if split == "val" else _t)[_names.index(candidate)]

        what = f"choose_and_report(candidates={names}, score) with validation accuracies {val}"
        got = call(fn, list(names), score, describe=what)
        best = names[max(range(len(val)), key=lambda i: (val[i], -i))]  # earliest of the ties
        tested = [c for c, split in calls if split == "test"]
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"{what} should return (chosen candidate, its test accuracy), got {got!r}.")
        chosen, reported = got
        if isinstance(chosen, int) and not isinstance(chosen, bool):  # names are strings
            fail(
                f"{what} returned {chosen!r}; return the candidate itself (an element of "
                f"`candidates`, e.g. {names[0]!r}), not its position."
            )
        by_test = names[max(range(len(test)), key=lambda i: (test[i], -i))]
        if len(tested) > 1:
            if chosen == by_test and by_test != best:
                fail(
                    f"{what}: you scored {len(tested)} candidates on the TEST set and chose "
                    f"{chosen!r}, the best on test. Selecting on the test set makes its score "
                    f"optimistic; choose on validation accuracy, then score only the chosen "
                    f"candidate on test."
                )
            fail(
                f"{what}: the test set was scored {len(tested)} times ({tested}); score it "
                f"once, for the chosen candidate only."
            )
        expect_equal(
            chosen,
            best,
            f"{what}: the chosen candidate",
            wrong={
                "On a tie in validation accuracy keep the EARLIEST candidate (`>` rather than `>=` "
                "when you compare with the best so far).": names[
                    max(range(len(val)), key=lambda i: (val[i], i))
                ],
                "That is the candidate with the LOWEST validation accuracy; choose the highest.": names[
                    min(range(len(val)), key=lambda i: (val[i], i))
                ],
            },
            hint="Choose the candidate with the highest score(candidate, 'val').",
        )
        if not tested:
            fail(
                f"{what}: the test set was never scored; return score(chosen, 'test'). "
                + (
                    "(You returned the validation accuracy: it won a contest among the "
                    "candidates, so it is optimistic; only a fresh test score is unbiased.)"
                    if reported == val[names.index(best)]
                    else ""
                )
            )
        if tested != [best]:
            fail(f"{what}: the test set was scored for {tested[0]!r}; score the chosen candidate {best!r}.")
        expect_equal(
            reported,
            test[names.index(best)],
            f"{what}: the reported test accuracy",
            wrong={
                "You reported the chosen candidate's VALIDATION accuracy; report "
                "the score(chosen, 'test') you measured.": val[names.index(best)]
            },
            hint="Return the value score(chosen, 'test') gave.",
        )
    return "chosen on validation accuracy (earliest on a tie), test scored once, for that model only."


# ------------------------------------------------------------------ Exercise 3: evaluation


class _Probe(nn.Module):
    """A small classifier with dropout and batch norm (so train/eval mode matters) that records
    whether gradients were enabled, and the mode it was in, during its forward passes."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(16, classes),
        )
        self.grad_modes: list[bool] = []
        self.train_modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_modes.append(torch.is_grad_enabled())
        self.train_modes.append(any(m.training for m in self.modules()))
        return self.net(x)


def _data(ctx: Context, n: int, batch: int) -> DataLoader:
    x = ctx.randn(n, 1, 6, 6, dtype=torch.float32)
    y = torch.randint(0, 3, (n,), generator=ctx.gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def _modes(model: nn.Module) -> list[tuple[str, bool]]:
    return [(name or "the model", m.training) for name, m in model.named_modules()]


@checker(
    "evaluate",
    requirement="(mean loss per sample, accuracy in [0, 1]) in eval mode without recording gradients; "
    "afterwards every layer in its own earlier mode, the grad mode, weights, buffers and the "
    "parameters' accumulated .grad unchanged",
)
def check_evaluate(ctx: Context, fn: Callable[..., tuple[float, float]]) -> str:
    """Check ``fn(model, loader, loss_fn)`` -> (mean loss, accuracy); the model is left as found."""
    cases = [  # (samples, batch, mode before, grad enabled before, label smoothing)
        (11, 4, "train", True, 0.0),  # last batch smaller; must come back in train mode
        (8, 8, "eval", True, 0.0),  # was in eval mode: must stay in eval mode
        (10, 3, "mixed", True, 0.2),  # batch norm frozen on purpose; a loss_fn with smoothing
        (7, 2, "train", False, 0.0),  # called inside torch.no_grad(): leave it off
    ]
    cases.append(
        (
            ctx.randint(5, 12),
            ctx.randint(2, 5),
            ctx.choice(["train", "eval", "mixed"]),
            bool(ctx.randint(0, 1)),
            ctx.choice([0.0, 0.1]),
        )
    )  # plus one random case
    for i, (n, batch, mode, grad, smoothing) in enumerate(cases):
        fixed = i < len(cases) - 1  # the fixed cases draw the same model and data every time
        case_ctx = Context(i, torch.Generator().manual_seed(1000 + i)) if fixed else ctx
        torch.manual_seed(1000 + i if fixed else ctx.randint(0, 10_000))
        model = _Probe()
        with torch.no_grad():
            bn = model.net[1]
            assert isinstance(bn, nn.BatchNorm2d)
            assert bn.running_mean is not None
            assert bn.running_var is not None
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            head = model.net[-1]
            assert isinstance(head, nn.Linear)
            head.weight.mul_(8.0)  # confident predictions: the loss_fn matters
        model.train(mode != "eval")
        if mode == "mixed":
            bn.eval()  # frozen batch norm inside a training model
        modes = _modes(model)
        before = copy.deepcopy(model.state_dict())
        for p in model.parameters():  # gradients a training loop has accumulated so far
            p.grad = torch.randn(p.shape, generator=case_ctx.gen)
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        loader = _data(case_ctx, n, batch)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
        what = (
            f"evaluate on {n} samples in batches of {batch} (model in {mode} mode"
            f"{', batch norm frozen in eval mode' if mode == 'mixed' else ''}"
            f"{', called inside torch.no_grad()' if not grad else ''})"
        )
        with torch.set_grad_enabled(grad), preserved_state(what="evaluate"):
            got = call(fn, model, loader, loss_fn, describe=what)
        for key, value in model.state_dict().items():
            if not torch.equal(value, before[key]):
                fail(
                    f"{what} changed the model's {key}: in train mode batch norm updates its "
                    f"running statistics. Call model.eval() before evaluating."
                )
        if any(model.train_modes):
            fail(
                f"{what}: the model ran in train mode (dropout active); call model.eval() before "
                f"the forward passes."
            )
        if any(model.grad_modes):
            fail(
                f"{what}: gradients were being recorded; wrap the loop in `with torch.no_grad():` "
                f"to save memory and time."
            )
        now = [p.grad for p in model.parameters()]
        if any(g is None for g in now) or any(
            not torch.equal(g, old) for g, old in zip(now, grads, strict=True) if g is not None
        ):
            wiped = any(g is None or not g.any() for g in now)
            fail(
                f"{what} "
                + (
                    "wiped the gradients the training loop had accumulated (model.zero_grad() or "
                    "optimizer.zero_grad() inside evaluate)"
                    if wiped
                    else "changed the parameters' accumulated .grad (a backward() inside evaluate adds to it)"
                )
                + ": evaluating mid-training must leave .grad alone; compute no gradients and "
                "zero nothing.",
                hint2="Remove zero_grad() and backward() from evaluate: with torch.no_grad() there "
                "is nothing to zero.",
            )
        after = _modes(model)
        if after != modes:
            changed = [
                f"{name} ({'train' if was else 'eval'} -> {'train' if now else 'eval'})"
                for (name, was), (_, now) in zip(modes, after, strict=True)
                if was != now
            ]
            frozen_bn_woken = mode == "mixed" and dict(after)["net.1"]
            fail(
                f"{what}: the model's layers are not in the modes they had before: "
                f"{', '.join(changed[:4])}. "
                + (
                    "`model.train(was_training)` puts EVERY layer in train mode, including the "
                    "frozen batch norm; remember each layer's mode (model.modules()) and restore "
                    "each one."
                    if frozen_bn_woken
                    else "Remember the mode before model.eval() and restore it afterwards."
                )
            )
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"{what} should return (mean_loss, accuracy), got {got!r}.")
        ref = _Probe()
        ref.load_state_dict(before)
        ref.eval()
        x_all = torch.cat([x for x, _ in loader])
        y_all = torch.cat([y for _, y in loader])
        with torch.no_grad():
            logits = ref(x_all)
            per_batch_loss = [loss_fn(ref(x), y).item() for x, y in loader]
            per_batch_acc = [(ref(x).argmax(1) == y).double().mean().item() for x, y in loader]
        loss = loss_fn(logits, y_all).item()
        acc = (logits.argmax(1) == y_all).double().mean().item()
        wrong_loss: dict[str, float] = {
            "You averaged the per-batch mean losses; the last batch is smaller, so weight each "
            "batch's loss by its size and divide by the number of samples.": sum(per_batch_loss)
            / len(per_batch_loss),
        }
        if smoothing:
            wrong_loss[
                "You computed plain cross-entropy; use the `loss_fn` you were given (here "
                "it has label smoothing)."
            ] = nn.functional.cross_entropy(logits, y_all).item()
        for value, name in ((got[0], "[0] (mean loss)"), (got[1], "[1] (accuracy)")):
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if not isinstance(value, (int, float)):
                fail(f"{what}{name} should be a number, got {type(value).__name__}.")
        expect_equal(
            float(got[0]),
            loss,
            f"{what}[0] (mean loss)",
            rel=1e-5,
            wrong=wrong_loss,
            hint="Weight each batch's loss by its size and divide by the number of samples.",
        )
        expect_equal(
            float(got[1]),
            acc,
            f"{what}[1] (accuracy)",
            rel=1e-6,
            wrong={
                "Return a fraction in [0, 1], not a percentage.": 100 * acc,
                "You averaged per-batch accuracies; count correct predictions over all samples "
                "instead (the last batch is smaller).": sum(per_batch_acc) / len(per_batch_acc),
            },
            hint="accuracy = correct predictions / number of samples, predictions = argmax of the logits.",
        )
    return "eval mode without gradients, exact averages, and the model and grad mode left as found."


# ------------------------------------------------------------------ Exercise 3: predict the traces


def evaluate_buggy(
    model: nn.Module, loader: DataLoader, loss_fn: Callable[..., torch.Tensor]
) -> tuple[float, float]:
    """The colleague's evaluation of the 14.15 predict-then-find-the-bugs exercise, as printed
    there: it restores only the top module's mode, turns gradients on at the end whatever they
    were, and averages the per-batch mean losses."""
    was_training = model.training
    model.eval()
    torch.set_grad_enabled(False)  # no gradients while evaluating
    losses, correct = [], 0
    for inputs, targets in loader:
        outputs = model(inputs)
        losses.append(loss_fn(outputs, targets).item())
        correct += (outputs.argmax(dim=1) == targets).sum().item()
    torch.set_grad_enabled(True)
    model.train(was_training)
    return sum(losses) / len(losses), correct / len(loader.dataset)  # type: ignore[arg-type]


TRACE_LOSSES = (1.0,) * 8 + (4.0,) * 2
"""Per-sample losses of the exercise's loss scenario, evaluated in batches of :data:`TRACE_BATCH`."""
TRACE_BATCH = 4


def trace_model() -> nn.Sequential:
    """The exercise's model: training, with its batch norm (index 1) frozen in eval mode."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    model.train()
    model[1].eval()
    return model


def _observed_traces() -> dict[str, Any]:
    """What ``evaluate_buggy`` really does in the exercise's two scenarios (the caller's grad mode
    is put back afterwards: the buggy code changes it)."""
    grad_before = torch.is_grad_enabled()
    try:
        return _run_trace_scenarios()
    finally:
        torch.set_grad_enabled(grad_before)


def _run_trace_scenarios() -> dict[str, Any]:
    model, data = fixed(
        0,
        lambda: (
            trace_model(),
            DataLoader(TensorDataset(torch.randn(10, 1, 6, 6), torch.randint(0, 2, (10,))), batch_size=4),
        ),
    )
    with torch.no_grad():
        evaluate_buggy(model, data, nn.CrossEntropyLoss())
        grad_enabled = torch.is_grad_enabled()
    per_sample = torch.tensor(TRACE_LOSSES)[:, None]
    stand_in = DataLoader(
        TensorDataset(per_sample, torch.zeros(len(per_sample), dtype=torch.long)), batch_size=TRACE_BATCH
    )
    reported, _ = evaluate_buggy(nn.Identity(), stand_in, lambda outputs, targets: outputs.mean())
    return {
        "grad_enabled": grad_enabled,
        "model_training": model.training,
        "bn_training": model[1].training,
        "reported_loss": reported,
        "true_loss": per_sample.mean().item(),
    }


_TRACE_WHY = {
    "grad_enabled": "evaluate_buggy ends with torch.set_grad_enabled(True): it switches gradients ON "
    "whatever the mode was, so inside the caller's torch.no_grad() block the lines after the call "
    "record gradients again.",
    "model_training": "model.train(was_training) puts the model back into the mode it had: it was "
    "training, so model.training is True again.",
    "bn_training": "model.train(was_training) sets the mode of EVERY submodule, not only the top "
    "one: the batch norm that was frozen in eval mode comes back in train mode.",
    "reported_loss": "evaluate_buggy averages the batch means, sum(losses) / len(losses): the "
    "batches of 4, 4 and 2 samples count equally, so the last, smaller batch weighs twice as much "
    "per sample.",
    "true_loss": "the mean loss per sample is the sum of the ten losses divided by ten.",
}


@checker(
    "predicted traces of evaluate_buggy",
    requirement="five predictions made before running the code: torch.is_grad_enabled() after the "
    "call inside torch.no_grad(), model.training and the frozen batch norm's .training afterwards "
    "(True or False), and the loss evaluate_buggy reports and the true mean loss per sample "
    "(numbers, within 0.01)",
)
def check_trace_predictions(ctx: Context, predicted: Any) -> str:
    """Compare predictions of what ``evaluate_buggy`` leaves behind with what it really does."""
    del ctx  # fixed scenarios: the same verdict on every seed
    truth = _observed_traces()
    keys = list(truth)
    predicted = expect_answers(predicted, keys, "predicted")
    lines = []
    for key in keys:
        guess, true = predicted[key], truth[key]
        if isinstance(true, bool):
            if not isinstance(guess, bool):
                fail(
                    f"predicted[{key!r}]: enter True or False (without quotes), got {guess!r}.",
                    hint2="A mode or the grad mode is a bool: True or False.",
                )
            if guess != true:
                lines.append(f"{key}: you predicted {guess}, the code gives {true}. {_TRACE_WHY[key]}")
            continue
        guess = expect_number(guess, f"predicted[{key!r}]")
        if not math.isclose(float(guess), true, abs_tol=0.01):
            hint = _TRACE_WHY[key]
            other = truth["true_loss" if key == "reported_loss" else "reported_loss"]
            if math.isclose(float(guess), other, abs_tol=0.01):
                hint = (
                    "You swapped the two losses: evaluate_buggy reports the mean of the batch means; "
                    "the true loss weighs every sample once."
                )
            lines.append(f"{key}: you predicted {float(guess):.3f}, the code gives {true:.3f}. {hint}")
    if lines:
        fail(
            f"{len(lines)} of {len(keys)} predictions are off:\n" + "\n".join(lines),
            hint2="Read evaluate_buggy line by line with the scenario in mind: what does "
            "torch.set_grad_enabled(True) do inside a torch.no_grad() block, what does "
            "model.train(True) do to each submodule, and how many batches of which sizes does "
            "the loop see?",
        )
    return (
        "all five predictions match: the call turns gradients back on, wakes the frozen batch norm, "
        f"and reports {truth['reported_loss']:.2f} for a true mean loss of {truth['true_loss']:.2f}."
    )


# ------------------------------------------------------------------ Exercise 4: transforms


def _windows(image: torch.Tensor) -> torch.Tensor:
    """All 81 crops ``(81, C, 32, 32)`` of ``image`` padded by 4 px, the padding set to NaN."""
    padded = nn.functional.pad(image.double(), (4, 4, 4, 4), value=float("nan"))
    return padded.unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4).reshape(81, -1, 32, 32)


def _shift_matches(samples: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """For each sample ``(N, C, 32, 32)``: whether it equals ``image`` shifted by at most 4 px
    in each direction (whatever fills the uncovered border)."""
    windows = _windows(image)
    samples = samples.double()
    mid = slice(14, 18)  # these pixels stay inside the image for every shift: a quick filter
    quick = (samples[:, None, :, mid, mid] - windows[None, :, :, mid, mid]).abs()
    candidates = quick.flatten(2).amax(dim=2).le(1e-4)  # (N, 81)
    found = []
    for sample, hits in zip(samples, candidates, strict=True):
        diff = (sample[None] - windows[hits]).abs().nan_to_num(0.0)
        found.append(bool(diff.flatten(1).amax(dim=1).le(1e-4).any()) if hits.any() else False)
    return torch.tensor(found, dtype=torch.bool)


@checker(
    "train and validation transforms",
    requirement="validation: ToTensor + Normalize(CIFAR-10 mean, std) only; training: "
    "RandomCrop(32, padding=4) and RandomHorizontalFlip() (p = 1/2) before the same two",
)
def check_transforms(ctx: Context, fn: Callable[..., Callable]) -> str:
    """Check ``fn(train)`` builds CIFAR-10 transforms: random crop + flip for training only."""
    from PIL import Image

    rng = np.random.default_rng(ctx.seed)
    array = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    raw = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    expected = (raw - mean) / std
    val = call(fn, False, describe="train=False")
    train = call(fn, True, describe="train=True")
    if not callable(val) or not callable(train):
        fail(
            f"make_transforms should return a callable transform (transforms.Compose), got "
            f"{type(val if not callable(val) else train).__name__}."
        )
    outs = [call(val, image, describe="a 32x32 PIL image") for _ in range(4)]
    augmented = (
        "The validation images must not be augmented: a random crop or flip at "
        "evaluation time makes the score noisy. Use only ToTensor and Normalize."
    )
    if any(
        isinstance(o, torch.Tensor) and o.shape == outs[0].shape and not torch.equal(o, outs[0])
        for o in outs[1:]
    ):
        fail(augmented)
    expect_tensor(
        outs[0],
        expected,
        "the validation transform's output",
        wrong={
            augmented: expected.flip(-1),
            "The validation pipeline does not normalise: add Normalize(mean, std) with the CIFAR-10 "
            "statistics after ToTensor.": raw,
            "You normalised with mean 0.5 and std 0.5, not with the CIFAR-10 statistics.": (raw - 0.5) / 0.5,
        },
        shape_hint="ToTensor gives (3, 32, 32).",
        atol=1e-4,
    )
    samples = [call(train, image, describe="a 32x32 PIL image") for _ in range(64)]
    for s in samples:
        expect_tensor(
            s,
            expected,
            "a training sample's shape",
            atol=float("inf"),
            shape_hint="RandomCrop(32, padding=4) keeps 32x32 images 32x32.",
        )
    views = [("plain", expected), ("horizontal", expected.flip(-1))]
    others = [
        ("vertical", expected.flip(-2)),
        ("vertical", expected.flip(-1, -2)),
        ("raw", raw),
        ("raw", raw.flip(-1)),
        ("raw", raw.flip(-2)),
        ("raw", raw.flip(-1, -2)),
    ]
    stacked = torch.stack([s.detach().cpu() for s in samples])
    kinds: list[str | None] = [None] * len(samples)
    for name, view in views + others:  # the first matching view names each sample
        hits = _shift_matches(stacked, view).tolist()
        kinds = [k if k is not None or not hit else name for k, hit in zip(kinds, hits, strict=True)]
    if "raw" in kinds:
        fail(
            "the training samples are not normalised: Normalize(mean, std) must be in the "
            "training pipeline too, so the model sees the same input statistics in training "
            "and evaluation."
        )
    if "vertical" in kinds:
        fail(
            "some training samples are upside down: a vertical flip does not keep the label "
            "for CIFAR-10 photos (no test image shows an upside-down ship); use only "
            "RandomHorizontalFlip()."
        )
    if None in kinds:
        fail(
            "a training sample is not the image shifted by at most 4 pixels (possibly mirrored "
            "left-right); use RandomCrop(32, padding=4) and RandomHorizontalFlip() only, before "
            "ToTensor and Normalize."
        )
    flips = kinds.count("horizontal")
    if flips == len(samples):
        fail(
            f"all {len(samples)} training samples were mirrored: the flip must be random, with "
            f"probability 1/2 (RandomHorizontalFlip() with its default p=0.5), so the model "
            f"sees both orientations."
        )
    if flips == 0:
        fail(f"none of {len(samples)} training samples was mirrored left-right; add RandomHorizontalFlip().")
    if not 12 <= flips <= 52:
        fail(
            f"{flips} of {len(samples)} training samples were mirrored; a flip with probability "
            f"1/2 mirrors about half of them."
        )
    if all(
        torch.allclose(s, v, atol=1e-5)
        for s, k in zip(samples, kinds, strict=True)
        for name, v in views
        if name == k
    ):
        fail(
            "no training sample was shifted; add RandomCrop(32, padding=4) (pad, then crop back "
            "to 32x32 at a random position)."
        )
    return (
        "training gets random shifts and left-right flips (half the time); validation is "
        "deterministic; both are normalised."
    )
