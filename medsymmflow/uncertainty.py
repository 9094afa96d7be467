"""Uncertainty scores, selective prediction and calibration.

Every function takes plain tensors or arrays, so the same code scores MedSymmFlow and the
discriminative baselines. Convention: an **uncertainty** is higher for inputs the model
should answer last; a **confidence** is a probability in [0, 1].

Scores from MedSymmFlow's per-class mask distances ``d`` (N x K; chapter 0):

* the paper's proxy ``u = min_k d_k``: how far the predicted mask lies from the colour of
  the class it decodes to (0 for a perfect mask);
* ``negative_margin = -(d_(2) - d_(1))``: a small gap between the two nearest classes means
  the mask sits between two colours.

From S noise draws per image (``sample_distances``, S x N x K, ``classify(n_samples=S)``):

* majority vote over the draws' labels, and the **vote entropy** ``H = -sum_k p_k log p_k``
  of the vote shares (0 when unanimous, ``log K`` when evenly split): do different noise
  draws give different answers?
* **distance spread**: the standard deviation of each class distance over the draws,
  averaged over classes: how much the predicted mask moves when only the noise changes.
"""

from __future__ import annotations

import numpy as np
import torch

COVERAGES = (1.0, 0.9, 0.8, 0.5)


def predicted_class_distance(distances: torch.Tensor) -> torch.Tensor:
    """The paper's uncertainty ``u_n = min_k d[n, k]``: distance to the predicted class colour."""
    return distances.min(dim=1).values


def negative_margin(distances: torch.Tensor) -> torch.Tensor:
    """``-(d_(2) - d_(1))``: minus the gap between the nearest and second-nearest class."""
    nearest = torch.topk(distances, 2, dim=1, largest=False).values
    return -(nearest[:, 1] - nearest[:, 0])


def vote_counts(sample_distances: torch.Tensor) -> torch.Tensor:
    """Votes per class over S draws: ``counts[n, k] = #{s : argmin_j d[s, n, j] = k}``, shape (N, K)."""
    n_classes = sample_distances.shape[-1]
    votes = sample_distances.argmin(dim=-1)  # (S, N)
    return torch.nn.functional.one_hot(votes, n_classes).sum(dim=0)


def majority_vote(sample_distances: torch.Tensor) -> torch.Tensor:
    """The most voted class per image; ties go to the class with the smaller mean distance."""
    counts = vote_counts(sample_distances).double()
    mean_distance = sample_distances.double().mean(dim=0)
    return (counts - 1e-9 * mean_distance / (1 + mean_distance.max())).argmax(dim=1)


def vote_entropy(sample_distances: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the vote shares ``p_k = counts_k / S``: 0 if unanimous, ``log K`` if uniform."""
    shares = vote_counts(sample_distances).double() / sample_distances.shape[0]
    return -(shares * torch.log(shares.clamp(min=1e-300))).sum(dim=1)


def distance_spread(sample_distances: torch.Tensor) -> torch.Tensor:
    """Std over the S draws of each class distance, averaged over the K classes, shape (N,)."""
    return sample_distances.double().std(dim=0, unbiased=False).mean(dim=1)


def _as_pair(correct, uncertainty) -> tuple[np.ndarray, np.ndarray]:
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    uncertainty = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    if correct.size == 0 or uncertainty.size == 0:
        raise ValueError("correct and uncertainty must not be empty")
    if correct.shape != uncertainty.shape:
        raise ValueError(
            f"correct and uncertainty must have the same length, got {correct.size} and {uncertainty.size}"
        )
    if not np.isfinite(uncertainty).all():
        raise ValueError("uncertainty contains NaN or infinite values")
    return correct, uncertainty


def accuracy_coverage(correct, uncertainty) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy on the answered inputs when the most uncertain are rejected first.

    Keeping the ``m`` least uncertain inputs gives coverage ``m / N`` and accuracy
    ``(number correct among them) / m``. Inputs with equal uncertainty cannot be told apart,
    so within a tie the count is its expectation under a random order: a tie group of size
    ``g`` with ``c`` correct adds ``c / g`` per kept member.

    Returns:
        ``(coverage, accuracy)``, each of length N, coverage rising from 1/N to 1.
    """
    correct, uncertainty = _as_pair(correct, uncertainty)
    order = np.argsort(uncertainty, kind="stable")
    u, c = uncertainty[order], correct[order]
    _, starts, sizes = np.unique(u, return_index=True, return_counts=True)
    group_mean = np.repeat(np.add.reduceat(c, starts) / sizes, sizes)
    kept = np.arange(1, len(c) + 1)
    return kept / len(c), np.cumsum(group_mean) / kept


def risk_coverage(correct, uncertainty) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, selective risk = 1 - accuracy)`` of :func:`accuracy_coverage`."""
    coverage, accuracy = accuracy_coverage(correct, uncertainty)
    return coverage, 1.0 - accuracy


def aurc(correct, uncertainty) -> float:
    """Area under the risk-coverage curve: ``(1/N) sum_m risk(m / N)`` (Geifman et al.); lower is better."""
    return float(risk_coverage(correct, uncertainty)[1].mean())


def excess_aurc(correct, uncertainty) -> float:
    """AURC minus that of the ideal ranking (every correct input before every error)."""
    correct, uncertainty = _as_pair(correct, uncertainty)
    return aurc(correct, uncertainty) - aurc(correct, 1.0 - correct)


def accuracy_at_coverage(correct, uncertainty, coverages=COVERAGES) -> dict[float, float]:
    """Accuracy when answering the ``ceil(c * N)`` least uncertain inputs, for each coverage ``c`` in (0, 1]."""
    bad = [c for c in coverages if not 0 < c <= 1]
    if bad:
        raise ValueError(f"coverages must lie in (0, 1], got {bad}")
    _, accuracy = accuracy_coverage(correct, uncertainty)
    return {float(c): float(accuracy[int(np.ceil(c * len(accuracy) - 1e-9)) - 1]) for c in coverages}


def _log_prior(prior, n_classes: int) -> torch.Tensor:
    """``log π`` of a class prior given as shares or counts (normalized here), checked."""
    prior = torch.as_tensor(prior, dtype=torch.float64).reshape(-1)
    if len(prior) != n_classes or not bool(torch.isfinite(prior).all()) or bool((prior <= 0).any()):
        raise ValueError(f"the prior needs {n_classes} positive, finite class shares or counts, got {prior.tolist()}")
    return torch.log(prior / prior.sum())


def negative_log_likelihood(
    distances: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, prior=None
) -> float:
    """Mean ``-log softmax(-d / T)[label]``; with a class ``prior``, of ``softmax(-d / T + log π)``."""
    logits = -torch.as_tensor(distances).double() / temperature
    if prior is not None:
        logits = logits + _log_prior(prior, logits.shape[1])
    log_p = torch.log_softmax(logits, dim=1)
    return float(-log_p.gather(1, torch.as_tensor(labels).long().reshape(-1, 1)).mean())


def fit_temperature(
    distances: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (1e-3, 1e3), prior=None
) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(-d / T)`` (with a class ``prior``, of
    ``softmax(-d / T + log π)``, the posterior :func:`prior_adjusted` reads); fit it on the
    **validation** split.

    A one-dimensional bounded search over ``log T`` (scipy's ``minimize_scalar``).
    """
    from scipy.optimize import minimize_scalar

    distances, labels = torch.as_tensor(distances), torch.as_tensor(labels)
    if len(distances) == 0 or len(distances) != len(labels):
        raise ValueError(f"need matching, non-empty distances and labels, got {len(distances)} and {len(labels)}")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(distances, labels, float(np.exp(log_t)), prior),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
    )
    return float(np.exp(result.x))


def prior_adjusted(distances: torch.Tensor, temperature: float, prior) -> torch.Tensor:
    """Class distances for decisions under a class prior ``π``: ``d'_k = d_k / T - log π_k``.

    A model trained on class-balanced batches reads ``softmax(-d / T)`` as the posterior under equal
    class priors, ``p_bal(k | x) ∝ p(x | k)``. Under the prior ``π``, Bayes' rule gives
    ``p_π(k | x) ∝ π_k p_bal(k | x) = softmax(-d')_k`` (Saerens et al., 2002; "logit adjustment",
    Menon et al., 2021), so ``argmin_k d'_k`` is the decision with the highest expected accuracy on
    images drawn with those class shares, and ``softmax(-d')`` their probabilities. With ``π`` the
    training split's shares it suits a test split drawn like the training split; plain
    ``argmin_k d_k`` suits one with equal classes (it maximises balanced accuracy). Fit ``T`` on the
    validation split with the same prior (:func:`fit_temperature`). ``prior``: K shares or counts.
    """
    distances = torch.as_tensor(distances).double()
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return distances / temperature - _log_prior(prior, distances.shape[1])


def reliability_bins(confidence, correct, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width confidence bins: ``count``, mean ``confidence`` and ``accuracy`` per bin (NaN if empty)."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct, _ = _as_pair(correct, confidence)
    if confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("confidence must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, n_bins) / count
        accuracy = np.bincount(index, correct, n_bins) / count
    return {"edges": np.linspace(0, 1, n_bins + 1), "count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width bins."""
    bins = reliability_bins(confidence, correct, n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float((bins["count"][filled] / bins["count"].sum() * gaps).sum())


def uncertainty_scores(distances: torch.Tensor, sample_distances: torch.Tensor) -> dict[str, np.ndarray]:
    """Every uncertainty score of one classification (higher = answer later).

    For a :class:`~medsymmflow.models.baselines.CNNClassifier` the "distances" are ``-log p``:
    the nearest distance is then ``-log`` of the maximum softmax probability, and the vote and
    spread scores come from MC-dropout passes instead of mask-noise draws.
    """
    scores = {
        "nearest distance": predicted_class_distance(distances),
        "negative margin": negative_margin(distances),
    }
    if sample_distances.shape[0] > 1:
        scores["vote entropy"] = vote_entropy(sample_distances)
        scores["distance spread"] = distance_spread(sample_distances)
    return {name: score.double().numpy() for name, score in scores.items()}
