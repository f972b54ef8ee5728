"""Device-aware CIFAR-10 training recipes shared by notebook 14.15 and the benchmarks (14.15).

:func:`cifar10_plan` chooses the model, epochs, batch size and learning rate from the device
found and the run mode. Every plan trains :class:`~cnnbook.models.FastCIFARNet` (whitened stem,
flip test-time augmentation) with a one-cycle schedule and label smoothing, at a width and
length the hardware affords: on a float32 laptop CPU a narrow first block and 5 epochs (the
configuration ``benchmarks/time_to_accuracy.py`` times), on a CPU with native bfloat16 twice
the epochs, on a GPU airbench94's widths for 20 epochs with mixed precision; in fast (CI) mode
a few thousand images for two epochs. A ResNet-18 (CIFAR stem) is one ``model=`` away.
:func:`estimate_seconds` times real training steps so a notebook can say how long the run will
take before it starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnbook import config, zoo
from cnnbook.arrays import ImageArrays, stratified_subset
from cnnbook.datasets import load_cifar10
from cnnbook.device import RunSettings, cpu_has_native_bf16, pick_device, run_settings, tune_cpu_allocator
from cnnbook.loaders import GPUBatchLoader


@dataclass(frozen=True)
class Plan:
    """What to train, for how long, and how.

    Attributes:
        device: The training device.
        fast: Fast (CI) mode: small subsets.
        model: "fastnet" (:class:`~cnnbook.models.FastCIFARNet`), "resnet18" (CIFAR stem)
            or "simplecnn" (the chapter's model).
        widths: FastCIFARNet block widths.
        epochs: Training epochs.
        batch_size: Images per optimisation step.
        lr: Peak learning rate (SGD with Nesterov momentum, one-cycle schedule).
        weight_decay: Weight decay.
        label_smoothing: Label smoothing of the loss.
        train_per_class: Training images per class (``None``: all 5,000).
        test_per_class: Test images per class (``None``: all 1,000).
        amp: Mixed precision as in :func:`cnnbook.device.run_settings` (``True`` also uses
            bfloat16 on CPUs that compute it natively).
        tune_malloc: Ask glibc's malloc to keep freed memory
            (:func:`cnnbook.device.tune_cpu_allocator`, process-wide) when :meth:`tune_process`
            is called; on for CPU plans, where it made training steps 1.5-2x faster.
        flip_tta: FastCIFARNet averages its logits over each image and its mirror image in
            eval mode (test-time augmentation).
    """

    device: torch.device
    fast: bool
    model: str
    widths: tuple[int, int, int]
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    train_per_class: int | None
    test_per_class: int | None
    amp: bool | None = None
    tune_malloc: bool = False
    flip_tta: bool = False

    def tune_process(self) -> bool:
        """Apply the plan's process-wide setting (glibc malloc tuning); ``True`` if applied."""
        return self.tune_malloc and tune_cpu_allocator()

    def settings(self) -> RunSettings:
        """Device settings for this plan (precision, memory layout, transfers)."""
        return run_settings(self.device, amp=self.amp)

    def fit_kwargs(self) -> dict[str, Any]:
        """The plan's arguments for :func:`cnnbook.train.fit`, to pass in one call.

        ``train.fit(model, train_loader, val_loader, **plan.fit_kwargs(), checkpoint=...)``
        trains with the plan's settings, epochs, peak learning rate, weight decay, one-cycle
        schedule and label-smoothed cross-entropy.
        """
        return {
            "settings": self.settings(),
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "schedule": "onecycle",
            "loss_fn": nn.CrossEntropyLoss(label_smoothing=self.label_smoothing),
        }

    def build_model(self, num_classes: int = 10) -> nn.Module:
        """A freshly initialised model of this plan (:func:`cnnbook.zoo.cifar_model`).

        Raises:
            ValueError: For a ``model`` that :data:`cnnbook.zoo.CIFAR_MODELS` does not know.
        """
        options = {"widths": self.widths, "flip_tta": self.flip_tta} if self._model_key() == "fastnet" else {}
        return zoo.cifar_model(self.model, num_classes, **options)

    def _model_key(self) -> str:
        return zoo.lookup(self.model, {k: k for k in zoo.CIFAR_MODELS}, "MODEL")

    def describe(self) -> str:
        """One line naming the choices.

        Raises:
            ValueError: For a ``model`` that :data:`cnnbook.zoo.CIFAR_MODELS` does not know.
        """
        key = self._model_key()
        display = zoo.CIFAR_MODELS[key][0]
        model = f"{display}{self.widths}" if key == "fastnet" else display
        data = (
            "all 50,000 training images"
            if self.train_per_class is None
            else f"{self.train_per_class * 10:,} training images"
        )
        extras = "".join(
            [
                ", flip test-time augmentation" if self.flip_tta and key == "fastnet" else "",
            ]
        )
        return (
            f"{model}, {self.epochs} epoch(s) on {data}, batch {self.batch_size}, "
            f"peak lr {self.lr}, label smoothing {self.label_smoothing}{extras} "
            f"[{self.settings().describe()}, {'fast' if self.fast else 'full'} mode]"
        )


def cifar10_plan(device: torch.device | str | None = None, fast: bool | None = None, **overrides) -> Plan:
    """The default CIFAR-10 recipe for this device and mode.

    Args:
        device: ``None`` picks CUDA, MPS or CPU.
        fast: ``None`` follows ``CNNBOOK_FAST``.
        **overrides: Any :class:`Plan` field to change (``None`` values are ignored).

    Returns:
        The :class:`Plan`.

    Raises:
        ValueError: For a ``model`` override that :data:`cnnbook.zoo.CIFAR_MODELS` does not know
            (naming the choices and the closest one).
    """
    dev = pick_device() if device is None else torch.device(device)
    fast = config.fast_mode(fast)
    # amp=True: bf16/fp16 autocast on CUDA, and bf16 on CPUs that compute it natively
    if fast:
        plan = Plan(dev, True, "fastnet", (24, 48, 96), 2, 128, 0.2, 5e-4, 0.1, 200, 100, amp=True)
        plan = replace(plan, flip_tta=True, tune_malloc=dev.type == "cpu")
    elif dev.type == "cuda":
        # airbench94's widths; not yet run on a GPU (aim: >= 94% in under a minute)
        plan = Plan(dev, False, "fastnet", (64, 256, 256), 20, 512, 0.4, 5e-4, 0.1, None, None, amp=True)
        plan = replace(plan, flip_tta=True)
    elif dev.type == "mps":
        plan = Plan(dev, False, "fastnet", (64, 128, 256), 10, 512, 0.4, 5e-4, 0.1, None, None)
        plan = replace(plan, flip_tta=True)
    elif cpu_has_native_bf16():
        # not measured in this form: a bfloat16 CPU ran 6 epochs of (32, 64, 128) in 14.15's
        # 1.3-minute run (README, 2026-11); 10 epochs aim at 85%
        plan = Plan(dev, False, "fastnet", (32, 64, 128), 10, 256, 0.4, 5e-4, 0.1, None, None, amp=True)
        plan = replace(plan, flip_tta=True, tune_malloc=True)
    else:
        # float32 laptop CPUs: the first, full-resolution block dominates the cost, so it is
        # narrow (24 channels); see the README's laptop-profile table for time and accuracy
        plan = Plan(dev, False, "fastnet", (24, 48, 96), 5, 256, 0.4, 5e-4, 0.1, None, None, amp=True)
        plan = replace(plan, flip_tta=True, tune_malloc=True)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "model" in overrides:  # a typo in MODEL fails here, naming the choices
        overrides["model"] = zoo.lookup(overrides["model"], {k: k for k in zoo.CIFAR_MODELS}, "MODEL")
    return replace(plan, **overrides)


def load_plan_data(
    plan: Plan, root: str | Path | None = None, seed: int = 0
) -> tuple[ImageArrays, ImageArrays]:
    """CIFAR-10 train and test arrays, cut to the plan's per-class subsets."""
    train, test = load_cifar10("train", root), load_cifar10("test", root)
    if plan.train_per_class is not None:
        train = stratified_subset(train, plan.train_per_class, seed)
    if plan.test_per_class is not None:
        test = stratified_subset(test, plan.test_per_class, seed)
    return train, test


def make_loaders(
    plan: Plan, train: ImageArrays, test: ImageArrays, seed: int = 0
) -> tuple[GPUBatchLoader, GPUBatchLoader]:
    """The fast whole-tensor loaders for the plan (augmented training, plain test)."""
    return (
        GPUBatchLoader(train, plan.batch_size, device=plan.device, seed=seed),
        GPUBatchLoader(test, 1000, train=False, device=plan.device),
    )


def prepare_model(plan: Plan, train: ImageArrays, seed: int = 0) -> nn.Module:
    """Build the plan's model (seeded); FastCIFARNet gets its whitening stem from ``train``."""
    from cnnbook.models import FastCIFARNet

    config.seed_everything(seed)
    model = plan.build_model(train.num_classes)
    if isinstance(model, FastCIFARNet):
        sample = stratified_subset(train, min(500, int(train.class_counts().min())), seed)
        model.init_whitening(sample.normalized())
    return model


def estimate_seconds(
    model: nn.Module,
    loader: GPUBatchLoader,
    epochs: int,
    eval_loader: GPUBatchLoader | None = None,
    settings: RunSettings | None = None,
    steps: int = 3,
) -> float:
    """Rough wall time of a run, from timing real training steps and one evaluation batch.

    ``steps`` steps of :func:`cnnbook.train.train_one_epoch` are timed after one untimed
    warm-up step, with learning rate 0 on a deep copy, so ``model`` is untouched. Evaluation
    after every epoch is timed on one batch of ``eval_loader`` in eval mode and float32, as
    :func:`cnnbook.train.evaluate` runs it (so test-time augmentation counts); both timings
    wait for the device to finish (:func:`cnnbook.timing.synchronize`).

    Args:
        model: The model to train (left untouched: a deep copy is timed).
        loader: The training loader (its epoch and the random state are restored afterwards).
        epochs: Planned epochs.
        eval_loader: Data evaluated after every epoch, or ``None``.
        settings: Device settings (``None``: chosen for the loader's device).
        steps: Timed steps.

    Returns:
        Estimated seconds.
    """
    import time

    from cnnbook.timing import synchronize
    from cnnbook.train import train_one_epoch

    settings = settings or run_settings(loader.device)
    probe = settings.place(copy.deepcopy(model))
    opt = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=0.0)
    rng, epoch = torch.get_rng_state(), loader.epoch
    loss_fn = nn.CrossEntropyLoss()
    try:
        train_one_epoch(probe, loader, opt, loss_fn, settings=settings, max_steps=1)  # warm-up
        loader.set_epoch(epoch)
        steps = min(steps, len(loader))
        timed = train_one_epoch(probe, loader, opt, loss_fn, settings=settings, max_steps=steps)
        total = epochs * loader.num_samples * timed.seconds / timed.count
        if eval_loader is not None:
            probe.eval()
            x, _ = next(settings.batches(eval_loader))
            with torch.no_grad():
                probe(x)  # warm-up
                synchronize(settings.device)
                start = time.perf_counter()
                probe(x)
                synchronize(settings.device)
                per_eval_image = (time.perf_counter() - start) / len(x)
            total += epochs * per_eval_image * eval_loader.num_samples
    finally:
        torch.set_rng_state(rng)
        loader.set_epoch(epoch)
    return total
