"""Confusion matrix and per-class metrics, shared by classification and segmentation.

:func:`confusion_matrix` counts ``cm[true, predicted]`` (rows are the truth, as in
scikit-learn) for class ids of any shape: one id per image (14.15, 14.16) or per pixel (14.13).
The per-class recall is read from it by :func:`per_class_accuracy` (``diag / row sums``);
segmentation's IoU is :func:`cnnbook.segmentation.iou_per_class`. This is the one import path
for both (``from cnnbook.metrics import confusion_matrix, per_class_accuracy``).
"""

from __future__ import annotations

import torch

__all__ = ["confusion_matrix", "per_class_accuracy"]


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``cm[true, predicted]``.

    Args:
        predictions: Predicted class ids, any shape, e.g. ``(N,)`` or ``(N, H, W)``.
        labels: True class ids, the same shape.
        num_classes: Number of classes ``K``.

    Returns:
        int64 ``(K, K)`` on the CPU; entry ``[t, p]`` counts items of class ``t`` predicted ``p``.

    Raises:
        ValueError: If the shapes differ, ``K`` is not positive, or an id is outside ``0..K-1``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive; got {num_classes}.")
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and labels "
            f"{tuple(labels.shape)} differ; pass class ids (take "
            "logits.argmax(1) first)."
        )
    pred, true = predictions.reshape(-1).long().cpu(), labels.reshape(-1).long().cpu()
    for name, ids in (("predictions", pred), ("labels", true)):
        if ids.numel() and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(f"{name} hold ids outside 0..{num_classes - 1}.")
    counts = torch.bincount(true * num_classes + pred, minlength=num_classes**2)
    return counts.view(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Recall of each class: ``diag / row sums``, float64 ``(K,)`` on the CPU (``nan``: absent class)."""
    cm = cm.cpu().double()
    return cm.diagonal() / cm.sum(1)
