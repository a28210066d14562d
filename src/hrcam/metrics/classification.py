"""Classification metrics: accuracy, top-k accuracy, macro/micro precision, recall and F1.

All functions take predictions as logits or probabilities ``(N, C)`` and integer labels ``(N,)``
(NumPy arrays or tensors) and return plain Python floats, so they go straight into JSON logs.
A confusion matrix is the only state, so a training loop can also accumulate it batch by batch
with :class:`ClassificationMeter` (and sum it across processes under DDP).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import to_numpy

__all__ = ["ClassificationMeter", "classification_report", "confusion_matrix", "topk_accuracy"]


def _check(scores: np.ndarray, labels: np.ndarray) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C) logits or probabilities, got shape {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(
            f"labels must be (N,) = ({scores.shape[0]},) to match scores, got shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {scores.shape[1] - 1}] for {scores.shape[1]} classes, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )


def topk_accuracy(scores, labels, k: int = 5) -> float:
    """Share of rows whose label is among the ``k`` highest scores (ties broken by index)."""
    scores, labels = to_numpy(scores), to_numpy(labels).astype(np.int64)
    _check(scores, labels)
    if labels.size == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(predicted, labels, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 matrix; row = true class, column = predicted class."""
    predicted = to_numpy(predicted).astype(np.int64).ravel()
    labels = to_numpy(labels).astype(np.int64).ravel()
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def _report_from_confusion(cm: np.ndarray) -> dict[str, float]:
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Macro averages run over the classes present in the labels, as scikit-learn's
    # ``labels=np.unique(y_true)`` does; a class never seen has no defined recall.
    present = actual > 0
    total = cm.sum()
    micro = float(tp.sum() / total) if total else float("nan")
    return {
        "accuracy": micro,
        "macro_precision": float(precision[present].mean()) if present.any() else float("nan"),
        "macro_recall": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        # With one label per sample, micro precision = micro recall = micro F1 = accuracy.
        "micro_precision": micro,
        "micro_recall": micro,
        "micro_f1": micro,
    }


def classification_report(scores, labels, *, k: int = 5) -> dict[str, float]:
    """Accuracy, top-``k`` accuracy, macro/micro precision, recall and F1.

    Example::

        >>> report = classification_report(np.eye(3), np.array([0, 1, 2]))
        >>> report["accuracy"], report["macro_f1"]
        (1.0, 1.0)
    """
    scores, labels = to_numpy(scores), to_numpy(labels).astype(np.int64)
    _check(scores, labels)
    cm = confusion_matrix(scores.argmax(axis=1), labels, scores.shape[1])
    report = _report_from_confusion(cm)
    report[f"top{k}_accuracy"] = topk_accuracy(scores, labels, k=k)
    report["num_samples"] = int(labels.size)
    return report


@dataclass
class ClassificationMeter:
    """Accumulates a confusion matrix and top-k hits over batches.

    ``state()`` returns a flat int64 array that can be summed across processes
    (``torch.distributed.all_reduce``) and loaded back with ``load_state``.
    """

    num_classes: int
    k: int = 5
    confusion: np.ndarray = field(init=False)
    topk_hits: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, scores, labels) -> None:
        scores, labels = to_numpy(scores), to_numpy(labels).astype(np.int64)
        _check(scores, labels)
        self.confusion += confusion_matrix(scores.argmax(axis=1), labels, self.num_classes)
        k = min(self.k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        self.topk_hits += int((top == labels[:, None]).any(axis=1).sum())

    def state(self) -> np.ndarray:
        return np.concatenate([self.confusion.ravel(), [self.topk_hits]])

    def load_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.int64)
        self.confusion = state[:-1].reshape(self.num_classes, self.num_classes).copy()
        self.topk_hits = int(state[-1])

    def compute(self) -> dict[str, float]:
        report = _report_from_confusion(self.confusion)
        n = int(self.confusion.sum())
        report[f"top{self.k}_accuracy"] = self.topk_hits / n if n else float("nan")
        report["num_samples"] = n
        return report
