"""The chapter's decision guide for choosing an architecture, as a function and a widget
(section 14.17).

:func:`recommend` walks the guide of section 14.17: the task first (segmentation and
detection have their own defaults), then, for classification (and for the backbone of the
other tasks), three questions in order:

1. Is inference speed critical (real time, edge device)? -> MobileNetV3 or EfficientNet-Lite.
2. Is the dataset large (more than ``large_dataset`` images, 100,000 by default)?
   -> EfficientNet-B4/B5 or ConvNeXt-Base.
3. Are pretrained weights available for the domain? -> ResNet-50 or EfficientNet-B0,
   fine-tuned; otherwise ResNet-18, adding capacity as needed.

Every answer carries the reasons that led to it and the path through the guide, so a test can
check that each branch is reached. :class:`DecisionWidget` puts ipywidgets controls around it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["LARGE_DATASET", "TASKS", "DecisionWidget", "Recommendation", "recommend"]

TASKS = ("classification", "segmentation", "detection")
LARGE_DATASET = 100_000


@dataclass(frozen=True)
class Recommendation:
    """What to start with, and why.

    Attributes:
        architecture: The recommended network (for segmentation and detection, the overall
            model, e.g. ``"U-Net"``).
        reasons: One sentence per decision taken, in order.
        backbone: For segmentation and detection: the feature extractor the classification
            branch of the guide picks (``None`` for classification).
        path: The answers taken through the guide, e.g.
            ``("task=classification", "latency-critical=no", "large=no", "pretrained=yes")``.
    """

    architecture: str
    reasons: tuple[str, ...]
    backbone: str | None = None
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = self.architecture + (f" (backbone: {self.backbone})" if self.backbone else "")
        return head + "\n" + "\n".join(f"  - {r}" for r in self.reasons)


def _flag(value: object, name: str) -> bool:
    # bool and numpy.bool_ are fine; 0/1, "yes", None are not (they hide mistakes)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number of images, got {value!r} ({type(value).__name__}).")
    if int(value) < 0:
        raise ValueError(f"{name} must be at least 0, got {value}.")
    return int(value)


def _classification(
    latency_critical: bool, dataset_size: int, pretrained_for_domain: bool, large_dataset: int
) -> tuple[str, list[str], list[str]]:
    if latency_critical:
        return (
            "MobileNetV3 or EfficientNet-Lite",
            [
                "Inference speed is critical: depthwise separable blocks (14.8) give the best "
                "accuracy per millisecond among the measured networks (see the table)."
            ],
            ["latency-critical=yes"],
        )
    path = ["latency-critical=no"]
    if dataset_size > large_dataset:
        return (
            "EfficientNet-B4/B5 or ConvNeXt-Base",
            [
                f"Speed is not the constraint and {dataset_size:,} images (more than "
                f"{large_dataset:,}) can feed a large model without it overfitting; start "
                f"from ImageNet weights all the same (14.9)."
            ],
            [*path, "large=yes"],
        )
    path.append("large=no")
    small = (
        f"{dataset_size:,} images is not a large dataset (at most {large_dataset:,}), "
        f"so capacity must be bought with prior knowledge rather than data."
    )
    if pretrained_for_domain:
        return (
            "ResNet-50 or EfficientNet-B0, fine-tuned",
            [
                small,
                "Pretrained weights exist for the domain: fine-tune them (14.9); "
                "EfficientNet-B0 reaches ResNet-50's accuracy with a tenth of its MACs.",
            ],
            [*path, "pretrained=yes"],
        )
    return (
        "ResNet-18, adding capacity as needed",
        [
            small,
            "No pretrained weights for the domain: start small so the model does not "
            "memorise the data, and grow it only while the validation score improves (14.15).",
        ],
        [*path, "pretrained=no"],
    )


def recommend(
    latency_critical: bool,
    dataset_size: int,
    pretrained_for_domain: bool,
    task: str = "classification",
    *,
    large_dataset: int = LARGE_DATASET,
) -> Recommendation:
    """Recommend a starting architecture following section 14.17's guide.

    Args:
        latency_critical: Must it run in real time or on an edge device?
        dataset_size: Number of labelled training images (>= 0).
        pretrained_for_domain: Are pretrained weights available for images like yours?
        task: ``"classification"``, ``"segmentation"`` or ``"detection"`` (case-insensitive).
        large_dataset: A dataset counts as large when it has *more than* this many images.

    Returns:
        The :class:`Recommendation`. For segmentation and detection, ``backbone`` is what the
        classification guide picks for the same constraints.

    Raises:
        TypeError: If a flag is not a bool or a count is not an integer.
        ValueError: If a count is negative or ``task`` is unknown.
    """
    latency_critical = _flag(latency_critical, "latency_critical")
    pretrained_for_domain = _flag(pretrained_for_domain, "pretrained_for_domain")
    dataset_size = _count(dataset_size, "dataset_size")
    large_dataset = _count(large_dataset, "large_dataset")
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, one of {TASKS}, got {task!r}.")
    key = task.strip().lower()
    if key not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")

    choice, reasons, path = _classification(
        latency_critical, dataset_size, pretrained_for_domain, large_dataset
    )
    path = [f"task={key}", *path]
    if key == "classification":
        return Recommendation(choice, tuple(reasons), None, tuple(path))
    if key == "segmentation":
        return Recommendation(
            "U-Net",
            (
                "Segmentation: U-Net's encoder-decoder with skip concatenations (14.13) is "
                "the default starting point, above all in medical imaging.",
                f"Its encoder follows the classification guide: {choice}.",
                *reasons,
            ),
            choice,
            tuple(path),
        )
    if latency_critical:
        return Recommendation(
            "YOLOv8",
            (
                "Detection in real time: a single-stage detector (14.13) predicts boxes "
                "in one pass; YOLOv8 has the best speed-accuracy trade-off of the family.",
                f"Backbone by the classification guide: {choice}.",
                *reasons,
            ),
            choice,
            tuple(path),
        )
    return Recommendation(
        "Faster R-CNN",
        (
            "Detection where speed is secondary: a two-stage detector (14.13) with a "
            "ResNet or EfficientNet backbone is the more accurate choice.",
            f"Backbone by the classification guide: {choice}.",
            *reasons,
        ),
        choice,
        tuple(path),
    )


class DecisionWidget:
    """ipywidgets controls around :func:`recommend`; the answer updates as they change.

    Display it as the last expression of a cell (tag the cell ``nbval-ignore-output``).

    Args:
        latency_critical: Initial value of the checkbox.
        dataset_size: Initial number of images.
        pretrained_for_domain: Initial value of the checkbox.
        task: Initial task.
    """

    def __init__(
        self,
        latency_critical: bool = False,
        dataset_size: int = 5_000,
        pretrained_for_domain: bool = True,
        task: str = "classification",
    ) -> None:
        import ipywidgets as W

        self.latency = W.Checkbox(
            value=latency_critical, description="latency-critical (real time / edge)", indent=False
        )
        self.size = W.BoundedIntText(value=dataset_size, min=0, max=10**10, step=1000, description="images:")
        self.pretrained = W.Checkbox(
            value=pretrained_for_domain, description="pretrained weights exist for my domain", indent=False
        )
        self.task = W.Dropdown(options=list(TASKS), value=task, description="task:")
        self.answer = W.HTML()
        for control in (self.latency, self.size, self.pretrained, self.task):
            control.observe(self._on_change, names="value")
        self.box = W.VBox([self.task, self.latency, self.size, self.pretrained, self.answer])
        self.update()

    @property
    def recommendation(self) -> Recommendation:
        """The recommendation for the current settings."""
        return recommend(self.latency.value, int(self.size.value), self.pretrained.value, self.task.value)

    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute the recommendation and show it."""
        from html import escape

        rec = self.recommendation
        backbone = f" <i>(backbone: {escape(rec.backbone)})</i>" if rec.backbone else ""
        items = "".join(f"<li>{escape(r)}</li>" for r in rec.reasons)
        self.answer.value = (
            f"<b>Start with: {escape(rec.architecture)}</b>{backbone}"
            f"<ul>{items}</ul><small>path: {escape(' → '.join(rec.path))}</small>"
        )

    def _repr_mimebundle_(self, **kwargs):  # delegate to the widget
        return self.box._repr_mimebundle_(**kwargs)
