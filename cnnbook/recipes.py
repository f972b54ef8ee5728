"""Device-aware CIFAR-10 training recipes shared by notebook 14.15 and the benchmarks (14.15).

:func:`cifar10_plan` chooses the model, epochs, batch size and learning rate from the device
found and the run mode: on a GPU a ResNet-18 (CIFAR stem) for 30 epochs with mixed precision;
on a CPU the small :class:`~cnnbook.models.FastCIFARNet` for a few epochs (the configuration
``benchmarks/time_to_accuracy.py`` times); in fast (CI) mode a few thousand images for one or
two epochs. :func:`estimate_seconds` times a few real training steps so a notebook can say how
long the run will take before it starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from cnnbook import config
from cnnbook.data import GPUBatchLoader, ImageArrays, load_cifar10, stratified_subset
from cnnbook.device import RunSettings, pick_device, run_settings, tune_cpu_allocator


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

    def tune_process(self) -> bool:
        """Apply the plan's process-wide setting (glibc malloc tuning); ``True`` if applied."""
        return self.tune_malloc and tune_cpu_allocator()

    def settings(self) -> RunSettings:
        """Device settings for this plan (precision, memory layout, transfers)."""
        return run_settings(self.device, amp=self.amp)

    def build_model(self, num_classes: int = 10) -> nn.Module:
        """A freshly initialised model of this plan."""
        from cnnbook import models

        if self.model == "fastnet":
            return models.FastCIFARNet(num_classes, widths=self.widths)
        if self.model == "resnet18":
            return models.resnet18(num_classes=num_classes, stem="cifar")
        if self.model == "simplecnn":
            return models.SimpleCNN(num_classes)
        raise ValueError(f"Unknown model {self.model!r}; use 'fastnet', 'resnet18' or 'simplecnn'.")

    def describe(self) -> str:
        """One line naming the choices."""
        model = (
            f"FastCIFARNet{self.widths}"
            if self.model == "fastnet"
            else {"resnet18": "ResNet-18 (CIFAR stem)", "simplecnn": "SimpleCNN"}[self.model]
        )
        data = (
            "all 50,000 training images"
            if self.train_per_class is None
            else f"{self.train_per_class * 10:,} training images"
        )
        return (
            f"{model}, {self.epochs} epoch(s) on {data}, batch {self.batch_size}, "
            f"peak lr {self.lr}, label smoothing {self.label_smoothing} "
            f"[{self.settings().describe()}"
            + (" | malloc keeps freed memory (tune_process)" if self.tune_malloc else "")
            + f", {'fast' if self.fast else 'full'} mode]"
        )


def cifar10_plan(device: torch.device | str | None = None, fast: bool | None = None, **overrides) -> Plan:
    """The default CIFAR-10 recipe for this device and mode.

    Args:
        device: ``None`` picks CUDA, MPS or CPU.
        fast: ``None`` follows ``CNNBOOK_FAST``.
        **overrides: Any :class:`Plan` field to change (``None`` values are ignored).

    Returns:
        The :class:`Plan`.
    """
    dev = pick_device() if device is None else torch.device(device)
    fast = config.fast_mode(fast)
    # amp=True: bf16/fp16 autocast on CUDA, and bf16 on CPUs that compute it natively
    if fast:
        plan = Plan(
            dev,
            True,
            "fastnet",
            (32, 64, 128),
            2,
            128,
            0.2,
            5e-4,
            0.1,
            200,
            100,
            amp=True,
            tune_malloc=dev.type == "cpu",
        )
    elif dev.type == "cuda":
        plan = Plan(dev, False, "resnet18", (64, 128, 256), 30, 512, 0.2, 5e-4, 0.1, None, None, amp=True)
    elif dev.type == "mps":
        plan = Plan(dev, False, "fastnet", (64, 128, 256), 10, 512, 0.4, 5e-4, 0.1, None, None)
    else:
        plan = Plan(
            dev,
            False,
            "fastnet",
            (32, 64, 128),
            6,
            256,
            0.4,
            5e-4,
            0.1,
            None,
            None,
            amp=True,
            tune_malloc=True,
        )
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


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
    eval_images: int = 0,
    settings: RunSettings | None = None,
    steps: int = 3,
) -> float:
    """Rough wall time of a run, from timing ``steps`` real training steps on a copy.

    The steps are :func:`cnnbook.train.train_one_epoch` cut short (one untimed warm-up step
    first), with learning rate 0 on a deep copy, so ``model`` is untouched. Evaluation is
    counted as a third of a training step per image (forward pass only).

    Args:
        model: The model to train (left untouched: a deep copy is timed).
        loader: The training loader (its random state is restored afterwards).
        epochs: Planned epochs.
        eval_images: Images evaluated after every epoch.
        settings: Device settings (``None``: chosen for the loader's device).
        steps: Timed steps.

    Returns:
        Estimated seconds.
    """
    from cnnbook.train import train_one_epoch

    settings = settings or run_settings(loader.device)
    probe = (
        copy.deepcopy(model)
        .to(settings.device)
        .to(memory_format=(torch.channels_last if settings.channels_last else torch.preserve_format))
    )
    opt = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=0.0)
    rng, epoch = torch.get_rng_state(), loader.epoch
    loss_fn = nn.CrossEntropyLoss()
    train_one_epoch(probe, loader, opt, loss_fn, settings=settings, max_steps=1)  # warm-up
    timed = train_one_epoch(probe, loader, opt, loss_fn, settings=settings, max_steps=min(steps, len(loader)))
    torch.set_rng_state(rng)
    loader.set_epoch(epoch)
    per_image = timed.seconds / timed.count
    return epochs * per_image * (loader.num_samples + eval_images / 3)
