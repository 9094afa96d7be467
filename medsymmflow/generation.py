"""Generation metrics that need no download, and how they change with the solver and its NFE.

A model that generates images of a requested class is judged here by three numbers, each
computed with classifiers the course trains itself (nothing is downloaded):

* **Classifier agreement**: a classifier trained on real images labels the generated ones;
  the agreement is the share it labels with the requested class (also per class). It asks
  "does the image look like its class to a model of the real data?".
* **CAS**, the classification accuracy score (Ravuri & Vinyals 2019): a classifier trained on
  generated images *only*, tested on the real test split. It asks "do the generated images
  carry what tells the classes apart?". Compare it with the same function given as many real
  training images (the score CAS aims for; chapter 4 computes both).
* **A Fréchet distance in the features of the real-trained classifier** (the input of its last
  linear layer). Fit a Gaussian ``N(mu, S)`` to each set of features; then

      FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}).

  This is FID's formula (Heusel et al. 2017) in another network's features, so it is *not*
  FID: FID needs Inception weights that cannot be downloaded here, and its values cannot be
  compared with published FIDs. A finite sample never gives 0, so each value stands beside its
  **floor**: the distance between two disjoint real samples of the same size. Both real samples
  come from the training split (the only one large enough on every set), on which the classifier
  was trained, so the floor is on the optimistic side.

:func:`nfe_sweep` measures all three for each solver and number of network evaluations (NFE).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsymmflow.checkpoints import load_checkpoint
from medsymmflow.config import Profile, get_device
from medsymmflow.data.dataset import MedMNISTData, to_uint8
from medsymmflow.evaluate import evaluate_split
from medsymmflow.flow.solvers import TABLEAUS
from medsymmflow.models.baselines import CNNClassifier
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.recipes import course_config
from medsymmflow.train import Trainer

NFES = (1, 2, 4, 8, 16, 25)
REFERENCE_NFE, REFERENCE_SOLVER = 25, "euler"  # the course's generation: 25 Euler steps, what fewer NFE are held to
GENERATED = 500  # images generated per model by default, spread evenly over the classes (ceil(500 / K) each)
# The CAS classifier's steps (validated halfway): half the fast recipe's 300-step floor, about 50 s on
# a 2-core CPU; the same for every row, so CAS values are comparable with each other (not with the
# same-run CNN, which trains longer, on shifted images).
CAS_STEPS = {"steps": 150, "checkpoint_every": 75}
SWEEP_SOLVERS = ("euler", "midpoint", "heun")
BATCH = 256


def solver_steps(nfe: int, solver: str) -> int | None:
    """Steps of ``solver`` that make at most ``nfe`` network evaluations: ``nfe // stages``, or None
    when ``nfe`` is below its stages (a Heun step costs two evaluations)."""
    stages = len(TABLEAUS[solver].b)
    return nfe // stages if nfe >= stages else None


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def generate_per_class(
    model: SymmetricFlow, n_per_class: int, size: int, steps: int = 25, solver: str = "euler", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_per_class`` images of every class, class by class: ``(images (N, C, S, S) clipped to
    [-1, 1], on the CPU; requested labels (N,))``, reproducible from ``seed``."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    labels = torch.arange(model.n_classes).repeat_interleave(n_per_class)
    device = _device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    images = [
        model.generate(labels[i : i + BATCH].to(device), size, steps, solver, generator=generator).images.cpu()
        for i in range(0, len(labels), BATCH)
    ]
    return torch.cat(images).clamp(-1.0, 1.0), labels


def classifier_agreement(classifier: CNNClassifier, images: torch.Tensor, requested: torch.Tensor) -> dict:
    """Share of generated ``images`` that a real-trained ``classifier`` labels as the ``requested``
    class: ``agreement`` (all images) and ``per_class`` (NaN for a class not requested)."""
    if len(images) != len(requested) or len(images) == 0:
        raise ValueError(f"need one requested label per image, got {len(images)} images and {len(requested)} labels")
    device = _device(classifier)
    predicted = torch.cat(
        [classifier.classify(images[i : i + BATCH].to(device)).labels.cpu() for i in range(0, len(images), BATCH)]
    )
    requested = requested.cpu()
    hit = (predicted == requested).double()
    per_class = [
        float(hit[requested == k].mean()) if bool((requested == k).any()) else float("nan")
        for k in range(classifier.n_classes)
    ]
    return {"agreement": float(hit.mean()), "per_class": per_class}


@torch.no_grad()
def classifier_features(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The classifier's penultimate features: the input of its last ``nn.Linear``, shape (N, D),
    computed in eval mode (dropout off) on the CPU."""
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the classifier has no nn.Linear layer whose input could serve as features")
    captured: list[torch.Tensor] = []
    hook = linears[-1].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].cpu()))
    was_training, device = classifier.training, _device(classifier)
    classifier.eval()
    try:
        for i in range(0, len(images), BATCH):
            classifier(images[i : i + BATCH].to(device))
    finally:
        hook.remove()
        classifier.train(was_training)
    return torch.cat(captured).double()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` between Gaussians fitted to two
    feature sets (N_a, D) and (N_b, D) (unbiased covariances). The trace of the square root is
    ``sum_i sqrt(lambda_i)`` over the eigenvalues of the symmetric ``S_a^{1/2} S_b S_a^{1/2}``,
    which has the same eigenvalues as ``S_a S_b``."""
    a, b = (np.asarray(f, dtype=np.float64) for f in (features_a, features_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"features must be (N, D) with the same D and N >= 2 each, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    mean_term = float(((a.mean(0) - b.mean(0)) ** 2).sum())
    return mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def real_halves(
    data: MedMNISTData, n_per_class: int, size: int, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Two disjoint class-balanced samples of real training images at ``size`` px, class by class,
    up to ``n_per_class`` of each class each (fewer where a class has under ``2 n_per_class``):
    ``((images, labels), (images, labels))``, the reference a generated set is compared with and the
    second sample that measures the floor."""
    images, labels = data.tensors("train", size)
    rng = np.random.default_rng(seed)
    halves: tuple[list, list] = ([], [])
    for k in range(data.n_classes):
        index = rng.permutation(np.flatnonzero(labels.numpy() == k))
        take = min(n_per_class, len(index) // 2)
        halves[0].append(index[:take])
        halves[1].append(index[take : 2 * take])
    return tuple((images[np.concatenate(h)], labels[np.concatenate(h)]) for h in halves)


def classification_accuracy_score(
    images: torch.Tensor,
    labels: torch.Tensor,
    real: MedMNISTData,
    seed: int = 0,
    val_share: float = 0.15,
    profile: Profile | None = None,
    **overrides,
) -> dict:
    """CAS: train the course's small CNN (:func:`~medsymmflow.recipes.course_config` of ``profile``,
    default ``fast``, with ``preset="cnn-small"``, sized by the images it trains on) on ``(images,
    labels)`` only, a ``val_share`` of them held out to pick its checkpoint, and test it on
    ``real``'s test split. Unless ``overrides`` say otherwise it trains :data:`CAS_STEPS`.

    The images pass through uint8 (:func:`~medsymmflow.data.dataset.to_uint8`), as saved images
    would. ``overrides`` change the CNN's recipe. Returns the test split's
    ``acc`` (the CAS), ``auc`` and ``balanced_accuracy``, the CNN's ``steps`` and ``seconds``.
    """
    if len(images) != len(labels) or images.ndim != 4:
        raise ValueError(f"need images (N, C, H, W) and N labels, got {tuple(images.shape)} and {len(labels)}")
    if not 0 < val_share < 1:
        raise ValueError(f"val_share must lie in (0, 1), got {val_share}")
    start = time.perf_counter()
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = max(1, round(val_share * len(images)))
    stored, stored_labels = to_uint8(images), labels.numpy().reshape(-1, 1)
    arrays = {
        "train_images": stored[order[n_val:]],
        "train_labels": stored_labels[order[n_val:]],
        "val_images": stored[order[:n_val]],
        "val_labels": stored_labels[order[:n_val]],
        "test_images": real.images("test"),
        "test_labels": real.arrays["test_labels"],
    }
    size = images.shape[-1]
    generated = MedMNISTData(real.flag, size, real.info, arrays, synthetic=real.synthetic)
    config = course_config(
        real.flag,
        profile or Profile("fast"),
        n_train=len(order) - n_val,
        preset="cnn-small",
        image_size=size,
        seed=seed,
        allow_synthetic=real.synthetic,
        **{**CAS_STEPS, **overrides},
    )
    if config.batch_size > len(order) - n_val:  # a small generated set: one batch is the whole set
        config = dataclasses.replace(config, batch_size=len(order) - n_val)
    with tempfile.TemporaryDirectory(prefix="medsymmflow-cas-") as folder:
        result = Trainer(config, Path(folder), data=generated, progress=False).train()
        model, _ = load_checkpoint(result.best_dir, device=get_device())
    test_images, test_labels = real.tensors("test", size)
    metrics, _ = evaluate_split(model, test_images, test_labels, real.info["task"], seed=seed)
    return {
        "acc": metrics["acc"],
        "auc": metrics["auc"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "steps": config.steps,
        "seconds": time.perf_counter() - start,
    }


def nfe_sweep(
    model: SymmetricFlow,
    classifier: CNNClassifier,
    real: MedMNISTData,
    n_per_class: int,
    size: int,
    nfes=NFES,
    solvers=SWEEP_SOLVERS,
    seed: int = 0,
    cas_nfes=None,
) -> list[dict]:
    """The three metrics for each solver and NFE: one row per (solver, NFE) with
    :func:`solver_steps` (an NFE below a solver's stages is skipped, one that rounds to steps already
    made is not repeated; the row records the NFE it really made). ``n_per_class`` is capped at
    half the smallest class of the real training split, so that the generated set and both real
    samples hold the same number of each class; every row carries the Fréchet floor of that size.

    Args:
        model: the generator.
        classifier: a classifier trained on real images (agreement and features).
        real: the real data (training images for the Fréchet reference, test split for CAS).
        n_per_class: generated images per class (and real images per class in each sample).
        size: image side to generate at.
        nfes: network evaluations to try.
        solvers: solver names (see :data:`~medsymmflow.flow.solvers.TABLEAUS`).
        seed: seed of the generation noise, the real samples and the CAS classifiers.
        cas_nfes: the NFEs (as made) whose rows also get a CAS (it trains a CNN per row: the slow
            part); None (the default) for every row, ``()`` for none.
    """
    n_per_class = min(n_per_class, int(real.class_counts("train").min()) // 2)  # as many of each class as real
    (reference, _), (second, _) = real_halves(real, n_per_class, size, seed)
    reference_features = classifier_features(classifier, reference)
    floor = frechet_distance(reference_features, classifier_features(classifier, second))
    rows = []
    for solver in solvers:
        done = set()
        for nfe in nfes:
            steps = solver_steps(nfe, solver)
            if steps is None or steps in done:
                continue
            done.add(steps)
            start = time.perf_counter()
            images, labels = generate_per_class(model, n_per_class, size, steps, solver, seed)
            seconds = time.perf_counter() - start
            agreement = classifier_agreement(classifier, images, labels)
            row = {
                "solver": solver,
                "steps": steps,
                "nfe": steps * len(TABLEAUS[solver].b),
                "agreement": agreement["agreement"],
                "per_class_agreement": agreement["per_class"],
                "frechet": frechet_distance(classifier_features(classifier, images), reference_features),
                "frechet_floor": floor,
                "n_generated": len(images),
                "generate_seconds": seconds,
            }
            if cas_nfes is None or row["nfe"] in cas_nfes:
                row["cas"] = classification_accuracy_score(images, labels, real, seed)["acc"]
            rows.append(row)
    return rows


def smallest_nfe_within(
    rows: list[dict], tolerance: float = 0.01, metric: str = "cas", reference_nfe: int = REFERENCE_NFE
):
    """The smallest NFE (and its solver) whose ``metric``, a score where higher is better (``"cas"`` or
    ``"agreement"``), is at least 25-step Euler's (``reference_nfe``) minus ``tolerance``; rows without
    the metric are ignored. Returns ``(nfe, solver)``."""
    if metric not in ("cas", "agreement"):
        raise ValueError(f"metric must be 'cas' or 'agreement' (higher is better), got {metric!r}")
    rows = [r for r in rows if metric in r]
    reference = [r for r in rows if r["solver"] == REFERENCE_SOLVER and r["nfe"] == reference_nfe]
    if not reference:
        raise ValueError(f"the sweep has no {reference_nfe}-step Euler row with {metric} to compare with")
    target = reference[0][metric] - tolerance
    return min((r["nfe"], r["solver"]) for r in rows if r[metric] >= target)


def per_class(n_classes: int, total: int = GENERATED) -> int:
    """Images of each class when about ``total`` are spread over ``n_classes``: ``ceil(total / K)``."""
    return math.ceil(total / n_classes)
