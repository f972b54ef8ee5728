"""cnnbook.metrics against scikit-learn, for image labels and pixel masks alike."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import recall_score

from cnnbook import metrics, segmentation, train


def test_confusion_matrix_and_per_class_metrics_match_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (300,), generator=g)
    preds = torch.where(torch.rand(300, generator=g) < 0.6, labels, torch.randint(0, 4, (300,), generator=g))
    cm = metrics.confusion_matrix(preds, labels, 4)
    assert cm.dtype == torch.int64
    assert cm.tolist() == sk_confusion(labels, preds).tolist()
    torch.testing.assert_close(
        metrics.per_class_accuracy(cm), torch.tensor(recall_score(labels, preds, average=None))
    )
    masks = metrics.confusion_matrix(preds.view(3, 10, 10), labels.view(3, 10, 10), 4)
    assert torch.equal(masks, cm)  # pixels count like images


def test_absent_classes_and_one_implementation() -> None:
    cm = metrics.confusion_matrix(torch.tensor([0, 0, 2]), torch.tensor([0, 1, 1]), 3)
    assert cm.tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 0]]
    recall = metrics.per_class_accuracy(cm)
    assert recall[:2].tolist() == [1.0, 0.0]
    assert torch.isnan(recall[2])  # class 2 never true
    assert not hasattr(train, "confusion_matrix")  # one import path: cnnbook.metrics
    assert not hasattr(train, "per_class_accuracy")
    assert segmentation.confusion_matrix is metrics.confusion_matrix


def test_confusion_matrix_errors() -> None:
    with pytest.raises(ValueError, match=r"differ; pass class ids"):
        metrics.confusion_matrix(torch.zeros(4, 3), torch.zeros(4), 3)
    with pytest.raises(ValueError, match=r"labels hold ids outside 0\.\.2"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        metrics.confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
