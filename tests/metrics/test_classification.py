import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from hrcam.metrics.classification import (
    ClassificationMeter,
    classification_report,
    topk_accuracy,
)


def test_hand_computed_report():
    # true:      0 0 1 1 2
    # predicted: 0 1 1 1 0
    scores = np.array([[9, 1, 0], [1, 9, 0], [0, 9, 1], [0, 9, 1], [9, 0, 1]], float)
    labels = np.array([0, 0, 1, 1, 2])
    r = classification_report(scores, labels, k=2)
    assert r["accuracy"] == pytest.approx(3 / 5)
    # precision: class0 1/2, class1 2/3, class2 0 (never predicted) -> macro 7/18
    assert r["macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    # recall: class0 1/2, class1 1, class2 0 -> macro 1/2
    assert r["macro_recall"] == pytest.approx(0.5)
    # top-2: row 4's label 2 is second (score 1 vs 0) -> all hit except none -> 5/5
    assert r["top2_accuracy"] == pytest.approx(1.0)
    assert r["micro_f1"] == r["accuracy"]


def test_matches_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 7))
    labels = rng.integers(0, 7, size=300)
    r = classification_report(scores, labels)
    pred = scores.argmax(1)
    assert r["macro_precision"] == pytest.approx(
        precision_score(labels, pred, average="macro", zero_division=0)
    )
    assert r["macro_recall"] == pytest.approx(
        recall_score(labels, pred, average="macro", zero_division=0)
    )
    assert r["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro", zero_division=0))
    assert r["micro_f1"] == pytest.approx(f1_score(labels, pred, average="micro"))


def test_meter_accumulates_like_one_shot():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(100, 10))
    labels = rng.integers(0, 10, size=100)
    meter = ClassificationMeter(10, k=5)
    for i in range(0, 100, 32):
        meter.update(scores[i : i + 32], labels[i : i + 32])
    assert meter.compute() == pytest.approx(classification_report(scores, labels, k=5))
    other = ClassificationMeter(10)
    other.load_state(meter.state())
    assert other.compute() == meter.compute()


def test_topk_and_bad_input():
    assert topk_accuracy(np.array([[0.1, 0.5, 0.4]]), np.array([2]), k=1) == 0.0
    assert topk_accuracy(np.array([[0.1, 0.5, 0.4]]), np.array([2]), k=2) == 1.0
    with pytest.raises(ValueError, match="labels must lie in"):
        classification_report(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        classification_report(np.zeros(3), np.array([0, 1, 2]))
