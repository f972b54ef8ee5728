"""The chapter's architectures side by side: size, compute, latency and accuracy (section 14.17).

:data:`ARCHITECTURES` lists every network of the chapter with how to build it and where its
published ImageNet top-1 accuracy comes from. :func:`count_row` counts parameters and
multiply-accumulates (MACs) without allocating any weights (the model is built on PyTorch's
``meta`` device); :func:`measure` adds a CPU latency at batch 1, measured on the machine it
runs on with :func:`cnnbook.timing.time_forward`.

Where the accuracies come from:

* torchvision's weight enums carry the figures they were evaluated at, offline, in
  ``weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]`` (single 224 px centre crop, ImageNet-1K
  validation set). We use the ``IMAGENET1K_V1`` weights. These are *not* one recipe: each
  row's :attr:`Architecture.recipe` says how its weights were trained, from torchvision's own
  description of them (``meta["_docs"]``): simple re-trainings close to the paper for AlexNet,
  VGG, the ResNets and the MobileNets, weights ported from the paper for EfficientNet-B0, a
  modified DeiT recipe for ViT-B/16 and torchvision's 2021 "new recipe" for ConvNeXt-T. The
  networks built by :mod:`cnnbook.models` (AlexNet, VGG-16, ResNet-18/50) have exactly
  torchvision's architecture (the tests compare them), so torchvision's figure applies.
* EfficientNet-Lite0 is not in torchvision. Its 75.1 % (FP32) is the figure in the table of
  the authors' EfficientNet-lite README (``tensorflow/tpu``,
  ``models/official/efficientnet/lite/README.md``); the weights :mod:`cnnbook.models.efficientnet`
  loads are a conversion of that checkpoint.
* LeNet-5 was built for 32 x 32 digits and has no ImageNet accuracy (``None``).

MACs follow :mod:`cnnbook.summary` (conv, linear and attention products; one MAC = one multiply
plus one add). torchvision's "GFLOPS" column holds the same numbers.

:data:`CIFAR_MODELS` and :func:`cifar_model` are the one place that turns a model *name* into a
CIFAR-10 network (section 14.15's ``MODEL`` parameter), and :data:`IMAGENET_BACKBONES` the one
place that turns a backbone name into its untrained ImageNet network (sections 14.9 and 14.10,
through :mod:`cnnbook.pretrained`); :func:`lookup` gives every name lookup the same clear
error, naming the choices and the closest one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from cnnbook.modules import count_parameters
from cnnbook.summary import count_macs
from cnnbook.timing import Timing, time_forward

if TYPE_CHECKING:  # matplotlib loads only when a plot is drawn (cnnbook.pretrained imports this)
    from matplotlib.figure import Figure

__all__ = [
    "ARCHITECTURES",
    "LITE0_TOP1",
    "LITE0_TOP1_SOURCE",
    "TORCHVISION_SOURCE",
    "CIFAR_MODELS",
    "IMAGENET_BACKBONES",
    "ArchRow",
    "Architecture",
    "add_latency",
    "architecture",
    "build",
    "cifar_model",
    "count_row",
    "format_table",
    "lookup",
    "measure",
    "plot_tradeoffs",
    "torchvision_weights",
]

TORCHVISION_SOURCE = 'torchvision weights metadata (IMAGENET1K_V1, meta["_metrics"])'
LITE0_TOP1 = 75.1
LITE0_TOP1_SOURCE = "EfficientNet-lite README, tensorflow/tpu (FP32 checkpoint)"

T = TypeVar("T")


def lookup(name: str, choices: Mapping[str, T], what: str = "model") -> T:
    """Look ``name`` up in ``choices`` (case-insensitive), or fail with a clear error.

    Args:
        name: The name asked for.
        choices: Known names and what they stand for.
        what: What a name names, for the message (e.g. ``"MODEL"``).

    Returns:
        The value stored under ``name``.

    Raises:
        ValueError: Naming every choice and, when there is one, the closest match.
    """
    by_lower = {k.lower(): k for k in choices}
    key = by_lower.get(str(name).lower())
    if key is not None:
        return choices[key]
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.5)
    hint = f" Did you mean {by_lower[close[0]]!r}?" if close else ""
    known = ", ".join(repr(k) for k in choices)
    raise ValueError(f"Unknown {what} {name!r}; choose one of {known}.{hint}")


def _tv(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from torchvision import models as tvm

        return getattr(tvm, name)(weights=None)

    make.__name__ = f"torchvision.models.{name}"
    return make


def _cnnbook(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from cnnbook import models

        return getattr(models, name)()

    make.__name__ = f"cnnbook.models.{name}"
    return make


@dataclass(frozen=True)
class Architecture:
    """One network of the chapter.

    Attributes:
        name: Display name, e.g. ``"ResNet-50"``.
        year: Year of the paper that introduced it.
        idea: What it brought, in a few words.
        section: The section notebook that teaches it, e.g. ``"14.6"``.
        builder: Builds the model with random weights (no download).
        input_shape: The input of one image, ``(1, C, H, W)``.
        weights_enum: Name of torchvision's weight enum holding its published accuracy (or
            ``None``).
        top1_fixed: Accuracy taken from elsewhere when there is no torchvision entry.
        top1_source_fixed: Where ``top1_fixed`` comes from.
        recipe: How the weights behind :attr:`top1` were trained, in a few words (from
            torchvision's description of them, ``meta["_docs"]``, or the authors' README).
    """

    name: str
    year: int
    idea: str
    section: str
    builder: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int] = (1, 3, 224, 224)
    weights_enum: str | None = None
    top1_fixed: float | None = None
    top1_source_fixed: str = ""
    recipe: str = ""

    @property
    def top1(self) -> float | None:
        """Published ImageNet-1K top-1 accuracy in percent (``None`` if there is none)."""
        if self.weights_enum is not None:
            return float(torchvision_weights(self.weights_enum).meta["_metrics"]["ImageNet-1K"]["acc@1"])
        return self.top1_fixed

    @property
    def top1_source(self) -> str:
        """Where :attr:`top1` comes from."""
        if self.weights_enum is not None:
            return f"{TORCHVISION_SOURCE}: {self.weights_enum}"
        return self.top1_source_fixed or "none (not an ImageNet model)"


def torchvision_weights(enum_name: str):  # a torchvision WeightsEnum member
    """The ``IMAGENET1K_V1`` member of a torchvision weight enum (metadata only, no download).

    Args:
        enum_name: E.g. ``"ResNet50_Weights"``.

    Returns:
        ``torchvision.models.<enum_name>.IMAGENET1K_V1``.
    """
    from torchvision import models as tvm

    enum = getattr(tvm, enum_name, None)
    if enum is None:
        raise ValueError(f"torchvision.models has no weight enum {enum_name!r}.")
    return enum.IMAGENET1K_V1


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "LeNet-5",
        1998,
        "conv + pool stacks, trained end to end",
        "14.6",
        _cnnbook("LeNet5"),
        (1, 1, 32, 32),
        top1_source_fixed="none (a 32x32 digit model, never trained on ImageNet)",
        recipe="not trained on ImageNet",
    ),
    Architecture(
        "AlexNet",
        2012,
        "ReLU, dropout, GPU training at scale",
        "14.6",
        _cnnbook("AlexNet"),
        weights_enum="AlexNet_Weights",
        recipe="torchvision re-training, simplified paper recipe",
    ),
    Architecture(
        "VGG-16",
        2014,
        "only 3x3 convolutions, deep and uniform",
        "14.6",
        _cnnbook("vgg16"),
        weights_enum="VGG16_Weights",
        recipe="torchvision re-training, simplified recipe",
    ),
    Architecture(
        "ResNet-18",
        2015,
        "skip connections (basic blocks)",
        "14.6",
        _cnnbook("resnet18"),
        weights_enum="ResNet18_Weights",
        recipe="torchvision re-training, simple paper-like recipe",
    ),
    Architecture(
        "ResNet-50",
        2015,
        "bottleneck blocks with 1x1 convolutions",
        "14.7",
        _cnnbook("resnet50"),
        weights_enum="ResNet50_Weights",
        recipe="torchvision re-training, simple paper-like recipe",
    ),
    Architecture(
        "MobileNetV2",
        2018,
        "inverted residuals, depthwise convolutions",
        "14.8",
        _tv("mobilenet_v2"),
        weights_enum="MobileNet_V2_Weights",
        recipe="torchvision re-training, simple recipe",
    ),
    Architecture(
        "MobileNetV3-L",
        2019,
        "searched blocks, squeeze-excitation, hard-swish",
        "14.12",
        _tv("mobilenet_v3_large"),
        weights_enum="MobileNet_V3_Large_Weights",
        recipe="torchvision re-training, simple recipe",
    ),
    Architecture(
        "EfficientNet-B0",
        2019,
        "compound scaling of a searched base",
        "14.12",
        _tv("efficientnet_b0"),
        weights_enum="EfficientNet_B0_Weights",
        recipe="ported from the paper's own weights",
    ),
    Architecture(
        "EfficientNet-Lite0",
        2020,
        "B0 for edge devices: no SE, ReLU6",
        "14.12",
        _cnnbook("efficientnet_lite0"),
        top1_fixed=LITE0_TOP1,
        top1_source_fixed=LITE0_TOP1_SOURCE,
        recipe="the authors' own checkpoint",
    ),
    Architecture(
        "ConvNeXt-T",
        2022,
        "a CNN modernised with transformer design choices",
        "14.14",
        _tv("convnext_tiny"),
        weights_enum="ConvNeXt_Tiny_Weights",
        recipe="torchvision's 2021 new recipe (modified)",
    ),
    Architecture(
        "ViT-B/16",
        2020,
        "a transformer on 16x16 patches, no convolutions after the stem",
        "14.14",
        _tv("vit_b_16"),
        weights_enum="ViT_B_16_Weights",
        recipe="modified DeiT recipe (2021)",
    ),
)


def architecture(name: str) -> Architecture:
    """Look an entry of :data:`ARCHITECTURES` up by name (case-insensitive).

    Raises:
        ValueError: Naming the known architectures (see :func:`lookup`).
    """
    return lookup(name, {a.name: a for a in ARCHITECTURES}, "architecture")


def _fastnet(
    num_classes: int, widths: tuple[int, int, int] = (64, 256, 256), flip_tta: bool = False
) -> nn.Module:
    from cnnbook.models import FastCIFARNet

    return FastCIFARNet(num_classes, widths=widths, flip_tta=flip_tta)


def _resnet18_cifar(num_classes: int) -> nn.Module:
    from cnnbook.models import resnet18

    return resnet18(num_classes=num_classes, stem="cifar")


def _simplecnn(num_classes: int) -> nn.Module:
    from cnnbook.models import SimpleCNN

    return SimpleCNN(num_classes)


CIFAR_MODELS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "fastnet": ("FastCIFARNet", _fastnet),
    "resnet18": ("ResNet-18 (CIFAR stem)", _resnet18_cifar),
    "simplecnn": ("SimpleCNN", _simplecnn),
}
"""CIFAR-10 networks by name (section 14.15's ``MODEL``): display name and builder."""


def _torchvision_resnet18(num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(num_classes=num_classes)


def _efficientnet_lite0(num_classes: int) -> nn.Module:
    from cnnbook.models.efficientnet import efficientnet_lite0

    return efficientnet_lite0(num_classes=num_classes)


IMAGENET_BACKBONES: dict[str, tuple[str, Callable[[int], nn.Module]]] = {
    "resnet18": ("ResNet-18 (torchvision)", _torchvision_resnet18),
    "efficientnet_lite0": ("EfficientNet-Lite0", _efficientnet_lite0),
}
"""The pretrained backbones of :mod:`cnnbook.pretrained` by name (a bundle's ``name``): display
name and a builder ``builder(num_classes)`` of the same network with random weights."""


def cifar_model(name: str, num_classes: int = 10, **options: object) -> nn.Module:
    """Build a CIFAR-10 network by name, with a clear error for an unknown name.

    Args:
        name: A key of :data:`CIFAR_MODELS` (case-insensitive): ``"fastnet"``, ``"resnet18"``
            or ``"simplecnn"``.
        num_classes: Output classes.
        **options: Passed to the builder (``widths=``, ``flip_tta=`` for ``"fastnet"``).

    Returns:
        The freshly initialised model.

    Raises:
        ValueError: For an unknown name (naming the choices), or options the model does not take.
    """
    _, builder = lookup(name, CIFAR_MODELS, "MODEL")
    try:
        return builder(num_classes, **options)
    except TypeError as exc:
        raise ValueError(f"MODEL {name!r} does not take the options {sorted(options)}: {exc}") from None


def build(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """Build an architecture with random weights, in eval mode.

    Args:
        name: A name from :data:`ARCHITECTURES`.
        device: ``"meta"`` builds the structure without allocating weights (fast, enough for
            counting parameters and MACs); ``"cpu"`` builds a runnable model.

    Returns:
        The model in eval mode.
    """
    arch = architecture(name)
    with torch.device(device):
        model = arch.builder()
    return model.eval()


@dataclass(frozen=True)
class ArchRow:
    """One row of the comparison table.

    Attributes:
        name: Architecture name.
        year: Year introduced.
        params: Number of parameters.
        macs: Multiply-accumulates of one forward pass at ``input_shape``.
        input_shape: The input it was counted (and timed) at, ``(1, C, H, W)``.
        top1: Published ImageNet-1K top-1 accuracy in percent, or ``None``.
        top1_source: Where ``top1`` comes from.
        latency_ms: Median CPU latency at batch 1 in milliseconds, or ``None`` if not measured.
        latency: The full :class:`~cnnbook.timing.Timing`, or ``None``.
        recipe: How the weights behind ``top1`` were trained (see :attr:`Architecture.recipe`).
    """

    name: str
    year: int
    params: int
    macs: int
    input_shape: tuple[int, int, int, int]
    top1: float | None
    top1_source: str
    latency_ms: float | None = None
    latency: Timing | None = None
    recipe: str = ""


def count_row(name: str) -> ArchRow:
    """Parameters and MACs of one architecture, counted on the meta device (no weights).

    Args:
        name: A name from :data:`ARCHITECTURES`.

    Returns:
        The row, without latency.
    """
    arch = architecture(name)
    model = build(name, "meta")
    return ArchRow(
        arch.name,
        arch.year,
        count_parameters(model),
        count_macs(model, arch.input_shape),
        arch.input_shape,
        arch.top1,
        arch.top1_source,
        recipe=arch.recipe,
    )


def add_latency(
    rows: Sequence[ArchRow],
    time_names: Iterable[str] | None = None,
    *,
    repeats: int = 5,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[ArchRow]:
    """Time some counted rows on this machine's CPU (batch 1, ``torch.inference_mode``).

    Args:
        rows: Rows from :func:`count_row`.
        time_names: Which of them to time (default: all); the others are returned unchanged.
        repeats: Timed forward passes per model (the median is reported).
        warmup: Untimed passes first.
        progress: Called with each architecture's name before it is timed.

    Returns:
        New rows, in the same order, with ``latency_ms`` and ``latency`` filled in for the
        timed ones.

    Raises:
        ValueError: If ``repeats`` < 1, ``warmup`` < 0, or a name in ``time_names`` is not
            among the rows.
    """
    names = [r.name for r in rows]
    timed = set(names if time_names is None else (architecture(n).name for n in time_names))
    if not timed <= set(names):
        raise ValueError(f"time_names {sorted(timed - set(names))} are not in names.")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}.")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}.")
    out = []
    for row in rows:
        if row.name in timed:
            if progress is not None:
                progress(row.name)
            model = build(row.name, "cpu")
            timing = time_forward(model, torch.randn(row.input_shape), repeats=repeats, warmup=warmup)
            row = replace(row, latency_ms=timing.median_ms, latency=timing)
            del model
        out.append(row)
    return out


def measure(
    names: Iterable[str] | None = None,
    *,
    time_names: Iterable[str] | None = None,
    repeats: int = 5,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[ArchRow]:
    """Count architectures (:func:`count_row`) and time some of them (:func:`add_latency`).

    Args:
        names: Architectures to include (default: all of :data:`ARCHITECTURES`, in order).
        time_names: Which of them to time (default: all of ``names``); the others get
            ``latency_ms=None``.
        repeats: Timed forward passes per model (the median is reported).
        warmup: Untimed passes first.
        progress: Called with each architecture's name before it is timed.

    Returns:
        One :class:`ArchRow` per name, in the order given.

    Raises:
        ValueError: As :func:`add_latency`.
    """
    names = [a.name for a in ARCHITECTURES] if names is None else [architecture(n).name for n in names]
    return add_latency(
        [count_row(n) for n in names], time_names, repeats=repeats, warmup=warmup, progress=progress
    )


def format_table(rows: Sequence[ArchRow]) -> str:
    """The rows as fixed-width text: year, parameters, GMACs, latency (ms), top-1 (%), recipe.

    Args:
        rows: Rows from :func:`measure` or :func:`count_row`.

    Returns:
        The table (print it).
    """
    header = (
        f"{'architecture':<19} {'year':>4} {'params':>12} {'GMACs':>7} {'input':>7} "
        f"{'CPU ms':>8} {'top-1 %':>7}  {'training recipe of the weights'}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        size = f"{r.input_shape[-2]}x{r.input_shape[-1]}"
        lat = "-" if r.latency_ms is None else f"{r.latency_ms:.1f}"
        acc = "-" if r.top1 is None else f"{r.top1:.1f}"
        lines.append(
            f"{r.name:<19} {r.year:>4} {r.params:>12,} {r.macs / 1e9:>7.3f} {size:>7} {lat:>8} {acc:>7}"
            f"  {r.recipe or '-'}"
        )
    return "\n".join(lines)


def plot_tradeoffs(rows: Sequence[ArchRow], title: str = "") -> Figure:
    """Top-1 accuracy against GMACs and against measured CPU latency, both on log x axes.

    Rows without an accuracy are left out of both panels; rows without a latency are left
    out of the second (its title says how many).

    Args:
        rows: Rows from :func:`measure`.
        title: Figure title.

    Returns:
        The figure (two panels).
    """
    import matplotlib.pyplot as plt

    from cnnbook.plots import PALETTE

    with_acc = [r for r in rows if r.top1 is not None]
    timed = [r for r in with_acc if r.latency_ms is not None]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, data, x_of, label in (
        (axes[0], with_acc, lambda r: r.macs / 1e9, "multiply-adds per image (GMACs, log scale)"),
        (axes[1], timed, lambda r: r.latency_ms, "CPU latency at batch 1 (ms, log scale)"),
    ):
        for r in data:
            ax.scatter(x_of(r), r.top1, s=30 + 250 * math.sqrt(r.params / 140e6), alpha=0.7, color=PALETTE[0])
            ax.annotate(r.name, (x_of(r), r.top1), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("ImageNet top-1 (%, published)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("accuracy vs compute (marker area ~ parameters)")
    missing = len(with_acc) - len(timed)
    axes[1].set_title("accuracy vs measured latency" + (f" ({missing} not timed)" if missing else ""))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
