"""Wrong-answer corpus for the section 14.15 exercises (see corpus_tools)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from corpus_tools import accepted, rejected
from torchvision import transforms as T

from cnnbook.checks import pipeline as checks

# ------------------------------------------------------------------ Exercise 1: stratified split


def split_reference(labels, val_fraction, seed):
    gen = torch.Generator().manual_seed(seed)
    val = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        take = round(val_fraction * len(idx))
        val.append(idx[torch.randperm(len(idx), generator=gen)[:take]])
    val_idx = torch.cat(val)
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[val_idx] = True
    return torch.nonzero(~is_val).flatten(), val_idx


def split_numpy_lists(labels, val_fraction, seed):
    """Correct variant: NumPy, plain Python lists, sorted output."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        val += rng.choice(idx, size=int(math.floor(val_fraction * len(idx) + 0.5)), replace=False).tolist()
    train = sorted(set(range(len(y))) - set(val))
    return train, sorted(val)


def split_not_stratified(labels, val_fraction, seed):
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    k = round(val_fraction * len(labels))
    return perm[k:], perm[:k]


def split_rounds_down(labels, val_fraction, seed):
    gen = torch.Generator().manual_seed(seed)
    val = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        val.append(idx[torch.randperm(len(idx), generator=gen)[: int(val_fraction * len(idx))]])
    val_idx = torch.cat(val)
    return torch.tensor(sorted(set(range(len(labels))) - set(val_idx.tolist()))), val_idx


def split_same_number_per_class(labels, val_fraction, seed):
    gen = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = round(val_fraction * len(labels) / len(classes))
    val = [
        torch.nonzero(labels == c).flatten()[
            torch.randperm(int((labels == c).sum()), generator=gen)[:per_class]
        ]
        for c in classes
    ]
    val_idx = torch.cat(val)
    return torch.tensor(sorted(set(range(len(labels))) - set(val_idx.tolist()))), val_idx


def split_first_of_each_class(labels, val_fraction, seed):
    val = [
        torch.nonzero(labels == c).flatten()[: round(val_fraction * int((labels == c).sum()))]
        for c in labels.unique()
    ]
    val_idx = torch.cat(val)
    return torch.tensor(sorted(set(range(len(labels))) - set(val_idx.tolist()))), val_idx


def split_ignores_seed(labels, val_fraction, seed):
    val = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        val.append(idx[torch.randperm(len(idx))[: round(val_fraction * len(idx))]])
    val_idx = torch.cat(val)
    return torch.tensor(sorted(set(range(len(labels))) - set(val_idx.tolist()))), val_idx


def split_train_keeps_everything(labels, val_fraction, seed):
    return torch.arange(len(labels)), split_reference(labels, val_fraction, seed)[1]


def split_returns_masks(labels, val_fraction, seed):
    _, val_idx = split_reference(labels, val_fraction, seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[val_idx] = True
    return ~mask, mask


def split_reseeds_global_torch(labels, val_fraction, seed):
    torch.manual_seed(seed)  # reproducible, but it resets the caller's random stream
    val = []
    for c in labels.unique():
        idx = torch.nonzero(labels == c).flatten()
        val.append(idx[torch.randperm(len(idx))[: round(val_fraction * len(idx))]])
    val_idx = torch.cat(val)
    return torch.tensor(sorted(set(range(len(labels))) - set(val_idx.tolist()))), val_idx


def split_reseeds_global_numpy(labels, val_fraction, seed):
    np.random.seed(seed)
    y = np.asarray(labels)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        val += np.random.permutation(idx)[: round(val_fraction * len(idx))].tolist()
    return sorted(set(range(len(y))) - set(val)), val


def split_private_generator_float64_extra_kwarg(labels, val_fraction, seed, shuffle_train=False):
    """Correct variant: float labels, a keyword with a default, a generator made per call."""
    return split_reference(labels.double(), val_fraction, seed)


def test_split_accepts_the_reference_and_variants() -> None:
    accepted(checks.check_stratified_split, split_reference)
    accepted(checks.check_stratified_split, split_numpy_lists)
    accepted(checks.check_stratified_split, split_private_generator_float64_extra_kwarg)


def test_split_must_leave_the_global_rng_alone() -> None:
    for answer in (split_reseeds_global_torch, split_reseeds_global_numpy):
        rejected(
            checks.check_stratified_split,
            answer,
            hint="reseeded or drew from the global",
            requirement="private torch.Generator",
        )


def test_split_rejects_known_mistakes() -> None:
    c = checks.check_stratified_split
    rejected(c, split_not_stratified, hint="not stratified")
    rejected(c, split_rounds_down, hint="rounded down")
    rejected(c, split_same_number_per_class, hint="same NUMBER from every class")
    rejected(c, split_first_of_each_class, hint="at random .*not the first")
    rejected(c, split_ignores_seed, hint="drew from the global torch random number generator")
    rejected(c, split_train_keeps_everything, hint="in BOTH parts")
    rejected(c, split_returns_masks, hint="boolean mask")


# ------------------------------------------------------------------ Exercise 2: honest selection


def select_reference(candidates, score):
    best, best_val = None, -1.0
    for c in candidates:
        v = score(c, "val")
        if v > best_val:
            best, best_val = c, v
    return best, score(best, "test")


def select_with_max(candidates, score):
    """Correct variant: max() keeps the first of equal keys."""
    chosen = max(candidates, key=lambda c: score(c, "val"))
    return chosen, score(chosen, "test")


def select_on_test(candidates, score):
    chosen = max(candidates, key=lambda c: score(c, "test"))
    return chosen, score(chosen, "test")


def select_on_val_but_test_everything(candidates, score):
    tests = {c: score(c, "test") for c in candidates}
    chosen = max(candidates, key=lambda c: score(c, "val"))
    return chosen, tests[chosen]


def select_reports_validation(candidates, score):
    chosen = max(candidates, key=lambda c: score(c, "val"))
    return chosen, score(chosen, "val")


def select_keeps_later_tie(candidates, score):
    best, best_val = None, -1.0
    for c in candidates:
        v = score(c, "val")
        if v >= best_val:
            best, best_val = c, v
    return best, score(best, "test")


def select_returns_index(candidates, score):
    i = max(range(len(candidates)), key=lambda i: score(candidates[i], "val"))
    return i, score(candidates[i], "test")


def test_selection_accepts_the_reference_and_variants() -> None:
    accepted(checks.check_honest_selection, select_reference)
    accepted(checks.check_honest_selection, select_with_max)


def test_selection_rejects_known_mistakes() -> None:
    c = checks.check_honest_selection
    rejected(c, select_on_test, hint="best on test.*choose on validation")
    rejected(c, select_on_val_but_test_everything, hint="test set was scored \\d+ times")
    rejected(c, select_reports_validation, hint="VALIDATION accuracy.*optimistic|never scored")
    rejected(c, select_keeps_later_tie, hint="tie .*EARLIEST")
    rejected(c, select_returns_index, hint="not its position")


# ------------------------------------------------------------------ Exercise 3: evaluate


def evaluate_reference(model, loader, loss_fn):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    total, correct, count = 0.0, 0, 0
    try:
        with torch.no_grad():
            for x, y in loader:
                out = model(x)
                total += loss_fn(out, y).item() * len(y)
                correct += (out.argmax(1) == y).sum().item()
                count += len(y)
    finally:
        for m, was in modes:
            m.train(was)
    return total / count, correct / count


def evaluate_inference_mode_tensors(model, loader, loss_fn):
    """Correct variant: inference_mode, a sum-reduced copy of the loss, tensors returned."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    total, correct, count = torch.zeros(()), torch.zeros(()), 0
    summed = type(loss_fn)(reduction="sum", label_smoothing=loss_fn.label_smoothing)
    with torch.inference_mode():
        for x, y in loader:
            out = model(x)
            total += summed(out, y)
            correct += (out.argmax(1) == y).sum()
            count += len(y)
    for m, was in modes.items():
        m.training = was
    return total / count, correct / count


def evaluate_grad_off_globally(model, loader, loss_fn):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    torch.set_grad_enabled(False)
    total, correct, count = 0.0, 0, 0
    for x, y in loader:
        out = model(x)
        total += loss_fn(out, y).item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        count += len(y)
    for m, was in modes:
        m.train(was)
    return total / count, correct / count


def evaluate_forgets_eval(model, loader, loss_fn):
    with torch.no_grad():
        total, correct, count = 0.0, 0, 0
        for x, y in loader:
            out = model(x)
            total += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            count += len(y)
    return total / count, correct / count


def evaluate_leaves_eval_mode(model, loader, loss_fn):
    model.eval()
    with torch.no_grad():
        total, correct, count = 0.0, 0, 0
        for x, y in loader:
            out = model(x)
            total += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            count += len(y)
    return total / count, correct / count


def evaluate_restores_top_level_only(model, loader, loss_fn):
    was = model.training
    model.eval()
    result = evaluate_leaves_eval_mode(model, loader, loss_fn)
    model.train(was)
    return result


def evaluate_mean_of_batch_means(model, loader, loss_fn):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    losses, accs = [], []
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            losses.append(loss_fn(out, y).item())
            accs.append((out.argmax(1) == y).float().mean().item())
    for m, was in modes:
        m.train(was)
    return sum(losses) / len(losses), sum(accs) / len(accs)


def evaluate_ignores_loss_fn(model, loader, loss_fn):
    return evaluate_reference(model, loader, torch.nn.CrossEntropyLoss())


def evaluate_percent(model, loader, loss_fn):
    loss, acc = evaluate_reference(model, loader, loss_fn)
    return loss, 100 * acc


def evaluate_zero_grad_first(model, loader, loss_fn):
    model.zero_grad()  # "clean up" before evaluating: wipes the gradients being accumulated
    return evaluate_reference(model, loader, loss_fn)


def evaluate_optimizer_zero_grad_keeps_zeros(model, loader, loss_fn):
    torch.optim.SGD(model.parameters(), lr=0.1).zero_grad(set_to_none=False)
    return evaluate_reference(model, loader, loss_fn)


def evaluate_extra_kwarg(model, loader, loss_fn, device=None):
    """Correct variant: an extra keyword with a default."""
    return evaluate_reference(model, loader, loss_fn)


def test_evaluate_accepts_the_reference_and_variants() -> None:
    accepted(checks.check_evaluate, evaluate_reference)
    accepted(checks.check_evaluate, evaluate_inference_mode_tensors)
    accepted(checks.check_evaluate, evaluate_extra_kwarg)


def test_evaluate_must_leave_gradients_alone() -> None:
    for answer in (evaluate_zero_grad_first, evaluate_optimizer_zero_grad_keeps_zeros):
        rejected(
            checks.check_evaluate,
            answer,
            hint="wiped the gradients",
            requirement="accumulated .grad unchanged",
        )


def test_evaluate_rejects_known_mistakes() -> None:
    c = checks.check_evaluate
    rejected(c, evaluate_grad_off_globally, hint="gradients were left off globally")
    rejected(c, evaluate_forgets_eval, hint="model.eval")
    rejected(c, evaluate_leaves_eval_mode, hint="restore it afterwards")
    rejected(c, evaluate_restores_top_level_only, hint="EVERY layer in train mode")
    rejected(c, evaluate_mean_of_batch_means, hint="per-batch mean losses")
    rejected(c, evaluate_ignores_loss_fn, hint="use the `loss_fn` you were given")
    rejected(c, evaluate_percent, hint="not a percentage")


# ------------------------------------------------------------------ Exercise 4: transforms

MEAN, STD = checks.CIFAR10_MEAN, checks.CIFAR10_STD


def transforms_reference(train):
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def transforms_v2_reflect(train):
    """Correct variant: transforms.v2, reflect padding, flip before crop."""
    from torchvision.transforms import v2

    steps = (
        [v2.RandomHorizontalFlip(p=0.5), v2.RandomCrop(32, padding=4, padding_mode="reflect")]
        if train
        else []
    )
    return v2.Compose([*steps, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


def transforms_always_flip(train):
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(p=1.0)] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def transforms_vertical_flip_too(train):
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomVerticalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def transforms_no_normalize(train):
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor()])


def transforms_normalize_only_for_validation(train):
    if train:
        return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    return T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])


def transforms_augment_validation(train):
    return transforms_reference(True)


def transforms_no_flip(train):
    steps = [T.RandomCrop(32, padding=4)] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def transforms_no_padding(train):
    steps = [T.RandomCrop(32), T.RandomHorizontalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(MEAN, STD)])


def transforms_half_half(train):
    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])


SEEDS = range(20)


def test_transforms_accepts_the_reference_and_variants() -> None:
    accepted(checks.check_transforms, transforms_reference, seeds=range(20))
    accepted(checks.check_transforms, transforms_v2_reflect, seeds=SEEDS)


def test_transforms_rejects_known_mistakes() -> None:
    c = checks.check_transforms
    rejected(c, transforms_always_flip, hint="all 64 training samples were mirrored", seeds=SEEDS)
    rejected(c, transforms_vertical_flip_too, hint="upside down", seeds=SEEDS)
    rejected(c, transforms_no_normalize, hint="validation pipeline does not normalise", seeds=SEEDS)
    rejected(
        c, transforms_normalize_only_for_validation, hint="training samples are not normalised", seeds=SEEDS
    )
    rejected(c, transforms_augment_validation, hint="must not be augmented", seeds=SEEDS)
    rejected(c, transforms_no_flip, hint="none of 64 .*mirrored", seeds=SEEDS)
    rejected(c, transforms_no_padding, hint="no training sample was shifted", seeds=SEEDS)
    rejected(c, transforms_half_half, hint="mean 0.5 and std 0.5", seeds=SEEDS)


# ------------------------------------------------------------------ Exercise 3: predict the traces

RIGHT_TRACES = {
    "grad_enabled": True,
    "model_training": True,
    "bn_training": True,
    "reported_loss": 2.0,
    "true_loss": 1.6,
}
_TRACE_REQ = "five predictions made before running the code"


def test_the_notebook_shows_the_checked_evaluate_buggy() -> None:
    """The buggy evaluation the student reads is the one whose traces the check computes."""
    import ast
    import inspect
    import textwrap
    from pathlib import Path

    import nbformat

    def body(src: str) -> list[str]:
        fn = ast.parse(textwrap.dedent(src)).body[0]
        assert isinstance(fn, ast.FunctionDef)
        stmts = fn.body[1:] if isinstance(fn.body[0], ast.Expr) else fn.body  # without the docstring
        return [ast.dump(s) for s in stmts]

    nb = nbformat.read(
        Path(__file__).parents[2] / "solutions" / "14_15_training_pipeline.ipynb", as_version=4
    )
    shown = next(c.source for c in nb.cells if c.source.startswith("def evaluate_buggy"))
    assert body(shown) == body(inspect.getsource(checks.evaluate_buggy))


def test_trace_predictions_accept_right_values_in_any_spelling() -> None:
    from fractions import Fraction

    accepted(checks.check_trace_predictions, RIGHT_TRACES)
    accepted(
        checks.check_trace_predictions, {**RIGHT_TRACES, "reported_loss": 6 / 3, "true_loss": Fraction(8, 5)}
    )
    accepted(
        checks.check_trace_predictions,
        {**RIGHT_TRACES, "reported_loss": torch.tensor(2.0), "true_loss": 1.605},
    )


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (
            {**RIGHT_TRACES, "grad_enabled": False},
            r"grad_enabled: .*set_grad_enabled\(True\)",
        ),  # trusts no_grad
        ({**RIGHT_TRACES, "bn_training": False}, r"bn_training: .*EVERY submodule"),  # top-level restore only
        (
            {**RIGHT_TRACES, "model_training": False},
            r"model_training: .*was training",
        ),  # thinks eval() sticks
        ({**RIGHT_TRACES, "reported_loss": 1.6}, r"reported_loss: .*swapped|batch means"),  # no bug seen
        ({**RIGHT_TRACES, "reported_loss": 1.6, "true_loss": 2.0}, r"swapped the two losses"),
        ({**RIGHT_TRACES, "true_loss": 2.5}, r"true_loss: .*divided by ten"),  # mean of 1 and 4
        ({**RIGHT_TRACES, "bn_training": "True"}, r"True or False \(without quotes\)"),
        ({**RIGHT_TRACES, "reported_loss": "2"}, r"should be a number"),
        ({**RIGHT_TRACES, "true_loss": ...}, r"replace every \.\.\."),
        ({k: v for k, v in RIGHT_TRACES.items() if k != "bn_training"}, r"missing \['bn_training'\]"),
        ([True, True, True, 2.0, 1.6], r"give a dict"),
    ],
)
def test_trace_predictions_reject_mistakes(answer, hint) -> None:
    rejected(checks.check_trace_predictions, answer, hint=hint, requirement=_TRACE_REQ)


def test_trace_check_leaves_the_grad_mode_alone() -> None:
    with torch.no_grad():
        checks.check_trace_predictions(RIGHT_TRACES, seed=0)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_the_buggy_evaluation_itself_is_rejected() -> None:
    rejected(
        checks.check_evaluate, checks.evaluate_buggy, hint=r"evaluate", requirement="mean loss per sample"
    )
