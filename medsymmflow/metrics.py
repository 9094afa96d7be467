"""Metrics: distribution distances for generated samples; ACC/AUC for classification."""

from __future__ import annotations

import numpy as np
import torch


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between two equal-size sample sets (N, D).

    ``SW_1(a, b) = E_theta W_1(<a, theta>, <b, theta>)`` over random unit directions
    ``theta``; in one dimension ``W_1`` between equal-size samples is the mean absolute
    difference of the sorted values. Zero iff the projected samples coincide.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (N, D) with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    projected_a = torch.sort(a.double() @ theta, dim=0).values
    projected_b = torch.sort(b.double() @ theta, dim=0).values
    return (projected_a - projected_b).abs().mean()


def distance_scores(distances: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Class scores from mask distances: ``softmax(-d / temperature)`` over the K classes.

    Smaller distance, higher score; rows sum to 1. The argmax equals the nearest class,
    so ACC does not depend on the temperature; for two classes the score of class 1 is
    ``sigmoid((d_0 - d_1) / temperature)``, a monotone map, so binary AUC does not either.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return torch.softmax(-distances.double() / temperature, dim=1)


def classification_metrics(labels, scores, task: str) -> dict:
    """ACC and AUC as the MedMNIST benchmark defines them, plus balanced accuracy.

    MedMNIST (``medmnist.evaluator``): for ``binary-class`` tasks ACC thresholds the score
    of class 1 at 0.5 and AUC is the ROC AUC of that score; otherwise ACC is the accuracy
    of the argmax and AUC the mean one-vs-rest ROC AUC over classes. Multi-label tasks are
    not supported (see :func:`medsymmflow.data.masks.check_task`).

    Args:
        labels: true classes (N,).
        scores: class scores (N, K), e.g. :func:`distance_scores`.
        task: the ``task`` entry of ``medmnist.INFO``.

    Returns:
        ``acc``, ``auc``, ``balanced_accuracy``, ``per_class_recall`` (list) and
        ``confusion_matrix`` (K x K list, rows = true class).
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or len(s) != len(y) or len(y) == 0:
        raise ValueError(f"scores must be (N, K) with N = len(labels) = {len(y)} > 0, got {s.shape}")
    if task.startswith("multi-label"):
        raise ValueError("multi-label tasks are not supported by MedSymmFlow's one-mask-per-image encoding")
    n_classes = s.shape[1]
    if task == "binary-class":
        predicted = (s[:, -1] > 0.5).astype(int)
        auc = roc_auc_score(y, s[:, -1])
    else:
        predicted = s.argmax(axis=1)
        auc = float(np.mean([roc_auc_score(y == k, s[:, k]) for k in range(n_classes)]))
    matrix = confusion_matrix(y, predicted, labels=list(range(n_classes)))
    recall = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "acc": float(accuracy_score(y, predicted)),
        "auc": float(auc),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "per_class_recall": recall.tolist(),
        "confusion_matrix": matrix.tolist(),
    }


def reconstruction_quality(original: torch.Tensor, reconstructed: torch.Tensor) -> dict:
    """Mean PSNR and SSIM (scikit-image's) of reconstructions of images in [-1, 1] (data range 2),
    per image then averaged: ``PSNR = 10 log10(2^2 / MSE)``; SSIM over the channels."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if original.shape != reconstructed.shape or original.ndim != 4:
        raise ValueError(
            f"expected two (N, C, H, W) batches of one shape, got {tuple(original.shape)} and {tuple(reconstructed.shape)}"
        )
    a = original.detach().float().cpu().numpy()
    b = reconstructed.detach().float().cpu().clamp(-1, 1).numpy()
    psnr = [peak_signal_noise_ratio(x, y, data_range=2.0) for x, y in zip(a, b, strict=True)]
    ssim = [structural_similarity(x, y, data_range=2.0, channel_axis=0) for x, y in zip(a, b, strict=True)]
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}
