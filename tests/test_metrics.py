import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC

from medsymmflow.metrics import classification_metrics, distance_scores


def _scores(n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    distances = torch.tensor(rng.random((n, k)) + np.eye(k)[labels] * -0.3)
    return labels, distance_scores(distances).numpy()


@pytest.mark.parametrize("task, k", [("binary-class", 2), ("multi-class", 8), ("ordinal-regression", 5)])
def test_acc_and_auc_match_medmnist_evaluator(task, k):
    labels, scores = _scores(300, k, k)
    ours = classification_metrics(labels, scores, task)
    assert ours["acc"] == pytest.approx(getACC(labels[:, None], scores, task))
    assert ours["auc"] == pytest.approx(getAUC(labels[:, None], scores, task))


def test_distance_scores_are_a_softmax_of_negative_distances():
    d = torch.tensor([[0.0, 1.0], [2.0, 0.5]])
    s = distance_scores(d)
    assert torch.allclose(s.sum(1), torch.ones(2, dtype=torch.float64))
    assert s[0, 1].item() == pytest.approx(1 / (1 + np.e))
    assert torch.equal(s.argmax(1), d.argmin(1))
    with pytest.raises(ValueError, match="temperature must be positive"):
        distance_scores(d, 0.0)


def test_confusion_matrix_recall_and_balanced_accuracy():
    labels = np.array([0, 0, 0, 1])
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.9, 0.1]])  # always class 0
    m = classification_metrics(labels, scores, "binary-class")
    assert m["acc"] == 0.75 and m["balanced_accuracy"] == 0.5
    assert m["per_class_recall"] == [1.0, 0.0]
    assert m["confusion_matrix"] == [[3, 0], [1, 0]]


def test_bad_input():
    with pytest.raises(ValueError, match="scores must be"):
        classification_metrics(np.array([0, 1]), np.zeros((3, 2)), "binary-class")
    with pytest.raises(ValueError, match="multi-label"):
        classification_metrics(np.array([0, 1]), np.zeros((2, 2)), "multi-label, binary-class")
