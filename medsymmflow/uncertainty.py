"""Uncertainty from the predicted mask, and selective prediction.

The paper's proxy: the distance from the predicted mask's mean colour to the colour of
the class it decodes to, ``u = min_k d_k``. A perfect mask sits on its class colour
(``u = 0``); the further it strays, the less the model should be trusted. Rejecting the
most uncertain inputs first and measuring accuracy on the rest gives the
accuracy-coverage (risk-coverage) curve.
"""

from __future__ import annotations

import numpy as np
import torch


def predicted_class_distance(distances: torch.Tensor) -> torch.Tensor:
    """The paper's uncertainty ``u_n = min_k d[n, k]``: distance to the predicted class colour."""
    return distances.min(dim=1).values


def accuracy_coverage(correct, uncertainty) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy on the kept inputs when the most uncertain are rejected first.

    Sort by ``uncertainty`` ascending; keeping the ``m`` most certain inputs gives coverage
    ``m / N`` and accuracy ``mean(correct[:m])``.

    Returns:
        ``(coverage, accuracy)``, each of length N, coverage rising from 1/N to 1.
    """
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    uncertainty = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    if correct.size == 0 or correct.shape != uncertainty.shape:
        raise ValueError(f"correct and uncertainty must be non-empty and of equal length, got {correct.shape} and {uncertainty.shape}")
    order = np.argsort(uncertainty, kind="stable")
    kept = np.arange(1, len(correct) + 1)
    return kept / len(correct), np.cumsum(correct[order]) / kept
