"""Classify a whole split in batches and score it with the MedMNIST metrics."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from medsymmflow.errors import NonFiniteError
from medsymmflow.latents import split_inputs
from medsymmflow.metrics import classification_metrics, distance_scores
from medsymmflow.models.baselines import CNNClassifier
from medsymmflow.models.symmflow import Classification, SymmetricFlow
from medsymmflow.uncertainty import fit_temperature, prior_adjusted


def reading(model: SymmetricFlow | CNNClassifier, **choices: str | None) -> AbstractContextManager:
    """``model.reading(**choices)`` for a flow (see :meth:`SymmetricFlow.reading`); a classifier
    has one reading, so for it every choice must be ``None`` and nothing changes.

    Raises:
        ValueError: a choice was asked of a model that has none.
    """
    if isinstance(model, SymmetricFlow):
        return model.reading(**choices)
    asked = {name: value for name, value in choices.items() if value is not None}
    if asked:
        raise ValueError(f"a {type(model).__name__} has one reading; it cannot be read with {asked}")
    return nullcontext(model)


def evaluate_split(
    model: SymmetricFlow | CNNClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    task: str,
    n_samples: int = 1,
    steps: int = 1,
    solver: str = "euler",
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[dict, Classification]:
    """Classify a split in batches and compute the MedMNIST metrics.

    Returns:
        ``(metrics, classification)``: the classification of every image (labels, distances
        averaged over the draws, the draws' distances and, for MedSymmFlow, the mean
        predicted masks), on the CPU.

    Raises:
        NonFiniteError: the model's class distances (or logits) are NaN or infinite.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        parts.append(model.classify(batch, steps, solver, n_samples, generator))
    result = Classification(
        torch.cat([p.labels for p in parts]).cpu(),
        torch.cat([p.distances for p in parts]).cpu(),
        torch.cat([p.sample_distances for p in parts], dim=1).cpu(),
        None if parts[0].masks is None else torch.cat([p.masks for p in parts]).cpu(),
    )
    if not bool(torch.isfinite(result.distances).all()):
        raise NonFiniteError("the model's outputs are NaN or infinite: its weights have diverged")
    return classification_metrics(labels.numpy(), distance_scores(result.distances).numpy(), task), result


def classify_validation(
    model, data, image_size: int, n_samples: int = 1, steps: int = 1, solver: str = "euler", seed: int = 0
) -> tuple[Classification, torch.Tensor]:
    """The validation split classified for fitting a temperature or a prior decision on it:
    ``(classification, labels)``, its noise drawn with ``seed + 1`` so that it is not the noise of
    the split evaluated with ``seed``."""
    images, labels = split_inputs(model, data, "val", image_size)
    _, result = evaluate_split(model, images, labels, data.info["task"], n_samples, steps, solver, seed=seed + 1)
    return result, labels


def prior_decision(val: Classification, val_labels, result: Classification, labels, prior, task: str) -> dict:
    """``result``'s images decided under a class ``prior`` (K shares or counts; the training split's
    for a test split drawn like it): ``argmin_k d_k / T - log π_k``, Bayes' rule for a model trained on
    class-balanced batches (:func:`~medsymmflow.uncertainty.prior_adjusted`), with ``T`` fitted on the
    validation classification ``val``.

    Returns ``acc``, ``auc`` and ``balanced_accuracy`` of those decisions (scores ``softmax(-d')``),
    and the ``temperature``.
    """
    temperature = fit_temperature(val.distances, val_labels, prior=prior)
    adjusted = prior_adjusted(result.distances, temperature, prior)
    metrics = classification_metrics(torch.as_tensor(labels).numpy(), distance_scores(adjusted).numpy(), task)
    return {name: metrics[name] for name in ("acc", "auc", "balanced_accuracy")} | {"temperature": temperature}
