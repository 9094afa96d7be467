"""Reproduce the paper's pixel-space results on one GPU (``medsymmflow reproduce``).

For each dataset and seed:

1. train the course's ``full`` recipe (:func:`medsymmflow.recipes.course_config`: the paper's
   ``paper-pixel`` UNet at 32 px, official palette, AdamW 4e-4, batch 64, cosine with
   warm-up, EMA, bf16 on CUDA) for ``epochs`` epochs, keeping the checkpoint with the best
   validation AUC (the test split is never looked at while training);
2. classify the test split with one Euler step and **one** mask-noise draw (the paper's
   protocol) and with ``draws`` draws, each with the official decoding (mean over pixels
   of the per-pixel colour distance) and with the mean-colour and pixel-vote variants;
3. train a discriminative baseline (the ``full`` recipe: torchvision's ResNet-18, 28/32 px
   variant; ``fast``: the small CNN) with the same trainer, data, sampling, shifts and number
   of steps, and evaluate it alike (MC dropout for the draws);
4. put both beside the paper (RGB-28), MedMNIST v2's ResNet-18 and the majority-class rule.

Writes ``results.json`` (every number, the validation history, provenance: commit,
versions, device, seeds, epochs, wall time per phase) and ``results.md`` (the tables).
``smoke=True`` runs the same pipeline with a tiny model and a few steps (CPU, about a
minute) to check the plumbing; its numbers mean nothing.

Before training, :func:`probe_seconds_per_step` times 100 steps of each model, and
:func:`plan_epochs` says whether the run fits a time budget (or how many epochs do).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsymmflow import config
from medsymmflow.budget import PROBE_STEPS, Plan, plan_epochs, probe_seconds_per_step
from medsymmflow.course import train_or_load
from medsymmflow.data import MedMNISTData, load_dataset
from medsymmflow.data.masks import DECODINGS
from medsymmflow.evaluate import classify_validation, evaluate_split, prior_decision, reading
from medsymmflow.files import write_text_atomic
from medsymmflow.latents import split_inputs
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.provenance import provenance
from medsymmflow.recipes import TrainConfig, course_config
from medsymmflow.reproduce_report import markdown, summarize
from medsymmflow.uncertainty import accuracy_at_coverage, aurc, predicted_class_distance

logger = logging.getLogger(__name__)

DEFAULT_DATASETS = ("pneumoniamnist", "retinamnist")
# The same-run discriminative baseline of each recipe (the notebooks use the same pairs).
BASELINES = {"full": "resnet18", "fast": "cnn-small"}
BASELINE_NAMES = {"resnet18": "ResNet-18 (same trainer)", "cnn-small": "small CNN (same trainer)"}
SMOKE_PROBE_STEPS = 5
SMOKE_TEST_IMAGES = 96  # --smoke classifies only the first images of the test split
SMOKE_DRAWS = 2

# Test-split reference numbers: the paper's RGB-28 MedSymmFlow (the authors' result
# arrays, mean of 5 runs; ACC at 80 % coverage where published) and MedMNIST v2's ResNet-18 (28).
REFERENCES = {
    "pneumoniamnist": {
        "paper_acc": 0.8824,
        "paper_acc_at_80": 0.920,
        "resnet18_v2_acc": 0.854,
        "resnet18_v2_auc": 0.944,
    },
    "retinamnist": {"paper_acc": 0.5125, "paper_acc_at_80": 0.559, "resnet18_v2_acc": 0.524, "resnet18_v2_auc": 0.717},
    "dermamnist": {"paper_acc": 0.7859},
    "bloodmnist": {"paper_acc": 0.9792},
}


@dataclass
class Settings:
    """What to reproduce and how."""

    datasets: tuple[str, ...] = DEFAULT_DATASETS
    seeds: tuple[int, ...] = (0,)
    epochs: int = field(default_factory=config.full_epochs)
    draws: int = 8
    recipe: str = "full"
    smoke: bool = False
    data_root: str | None = None


def model_configs(dataset: str, settings: Settings, seed: int, epochs: int) -> dict[str, TrainConfig]:
    """The MedSymmFlow and baseline configurations of one run: the recipe's (``fast`` ignores
    ``epochs``), or with ``smoke`` a tiny model for a few steps."""
    recipe = config.Profile(settings.recipe)
    smoke = (
        dict(
            preset="tiny",
            image_size=28,
            steps=20,
            batch_size=16,
            warmup_steps=2,
            checkpoint_every=10,
            allow_synthetic=True,
        )
        if settings.smoke
        else {}
    )
    flow = course_config(dataset, recipe, epochs=epochs, seed=seed, **smoke)
    baseline = course_config(
        dataset,
        recipe,
        epochs=epochs,
        seed=seed,
        **{**smoke, "preset": BASELINES[settings.recipe], "shift": flow.shift},
    )
    return {"MedSymmFlow": flow, BASELINE_NAMES[baseline.preset]: baseline}


def evaluate_test(
    model,
    data: MedMNISTData,
    image_size: int,
    draws: int,
    seed: int,
    limit: int | None = None,
    prior=None,
) -> dict:
    """Test-split ACC, AUC, balanced accuracy, accuracy at 80 % coverage and AURC (the paper's
    uncertainty: the distance to the predicted class), plus the seconds it took.
    ``limit``: classify only the first ``limit`` test images (smoke runs).
    ``prior``: class counts or shares to decide under as well (for the training split's, see
    :func:`~medsymmflow.recipes.training_prior`): adds ``acc_prior``, ``auc_prior`` and
    ``balanced_accuracy_prior`` (:func:`~medsymmflow.evaluate.prior_decision`, its temperature
    ``temperature_prior`` fitted on the validation split, classified with ``seed + 1``)."""
    images, labels = split_inputs(model, data, "test", image_size)
    images, labels = images[:limit], labels[:limit]
    task = data.info["task"]
    start = time.perf_counter()
    metrics, result = evaluate_split(model, images, labels, task, n_samples=draws, seed=seed)
    seconds = time.perf_counter() - start
    correct = (result.labels == labels).numpy()
    proxy = predicted_class_distance(result.distances).numpy()
    scores = {
        "acc": metrics["acc"],
        "auc": metrics["auc"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "per_class_recall": metrics["per_class_recall"],
        "acc_at_80": accuracy_at_coverage(correct, proxy)[0.8],
        "aurc": aurc(correct, proxy),
        "n_images": len(labels),
        "seconds": seconds,
    }
    if prior is not None:
        val_result, val_labels = classify_validation(model, data, image_size, n_samples=draws, seed=seed)
        decided = prior_decision(val_result, val_labels, result, labels, prior, task)
        scores |= {f"{name}_prior": value for name, value in decided.items()}
    return scores


def majority_rule(data: MedMNISTData) -> dict:
    """Always answer the most frequent training class: its test accuracy (AUC 0.5, balanced accuracy 1/K)."""
    majority = int(data.class_counts("train").argmax())
    return {
        "class": majority,
        "class_name": data.class_names[majority],
        "acc": float(np.mean(data.labels("test") == majority)),
        "balanced_accuracy": 1.0 / data.n_classes,
    }


def probe_and_plan(
    settings: Settings, data: MedMNISTData, budget_seconds: float, fit_budget: bool, start: float
) -> Plan:
    """Time the first dataset's steps of each model, then :func:`plan_epochs` with what is left of the budget."""
    probe_steps = SMOKE_PROBE_STEPS if settings.smoke else PROBE_STEPS
    configs = model_configs(data.flag, settings, 0, 1)
    seconds_per_step = {name: probe_seconds_per_step(c, data, probe_steps) for name, c in configs.items()}
    steps = {f: model_configs(f, settings, 0, settings.epochs)["MedSymmFlow"].steps for f in settings.datasets}
    left = budget_seconds - (time.perf_counter() - start)
    fit = fit_budget and not settings.smoke and settings.recipe == "full"  # only the full recipe counts epochs
    return plan_epochs(seconds_per_step, steps, len(settings.seeds), settings.epochs, left, fit)


def run_one(
    dataset: str, data: MedMNISTData, settings: Settings, seed: int, epochs: int, models_dir: Path | None
) -> dict:
    """Train (or load) both models of one dataset and seed and evaluate them on the test split."""
    rows, phases, runs = [], {}, {}
    for name, train_config in model_configs(dataset, settings, seed, epochs).items():
        start = time.perf_counter()
        model, meta = train_or_load(train_config, data, progress=False, root=models_dir)
        phases[f"train {name}"] = time.perf_counter() - start
        runs[name] = {
            "config": meta["config"],
            "best_step": meta["best_step"],
            "step": meta["history"][-1]["step"],
            "history": meta["history"],
        }
        for decoding in DECODINGS if isinstance(model, SymmetricFlow) else (None,):
            for draws in sorted({1, min(settings.draws, SMOKE_DRAWS) if settings.smoke else settings.draws}):
                start = time.perf_counter()
                with reading(model, decoding=decoding):
                    scores = evaluate_test(
                        model, data, train_config.image_size, draws, seed, SMOKE_TEST_IMAGES if settings.smoke else None
                    )
                phases[f"test {name} {decoding or ''} {draws} draw(s)".replace("  ", " ")] = time.perf_counter() - start
                rows.append(
                    {
                        "model": name,
                        "decoding": decoding,
                        "draws": draws,
                        "seed": seed,
                        "steps": train_config.steps,
                        "epochs": epochs,
                        "best_step": meta["best_step"],
                        **scores,
                    }
                )
        del model
    return {"rows": rows, "phases": phases, "runs": runs}


def reproduce(
    settings: Settings,
    out_dir: str | Path,
    budget_seconds: float | None = None,
    fit_budget: bool = False,
    models_dir: str | Path | None = None,
) -> dict:
    """Run the whole reproduction and write ``results.json`` and ``results.md`` into ``out_dir``.

    Args:
        settings: datasets, seeds, epochs, draws, smoke.
        out_dir: where the results go (created; nothing else in it is touched).
        budget_seconds: if given, probe the step time first and check the run fits.
        fit_budget: train fewer epochs to fit the budget instead of stopping.
        models_dir: where checkpoints go (default: ``runs/models``, shared with the notebooks).

    Returns:
        The ``results.json`` content.

    Raises:
        BudgetError: see :func:`plan_epochs` (raised before any training).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models_dir = Path(models_dir) if models_dir else None
    started = time.perf_counter()
    origin = provenance()  # read before the run: the checkout may change while it trains
    datasets = {
        flag: load_dataset(flag, root=settings.data_root, allow_synthetic=settings.smoke, seed=0)
        for flag in settings.datasets
    }
    phases: dict[str, float] = {}
    plan = None
    if budget_seconds is not None:
        start = time.perf_counter()
        plan = probe_and_plan(settings, datasets[settings.datasets[0]], budget_seconds, fit_budget, start)
        phases["probe"] = time.perf_counter() - start
        logger.warning("reproduce: %s", plan.message)
    epochs = plan.epochs if plan else settings.epochs
    rows, runs, majority = [], {}, {}
    for flag, data in datasets.items():
        majority[flag] = majority_rule(data)
        for seed in settings.seeds:
            one = run_one(flag, data, settings, seed, epochs, models_dir)
            rows += [{"dataset": flag, **row} for row in one["rows"]]
            runs[f"{flag} seed {seed}"] = one["runs"]
            phases.update({f"{flag} seed {seed}: {k}": v for k, v in one["phases"].items()})
    results = {
        "what": f"MedSymmFlow (pixel, RGB masks) vs a same-run {BASELINE_NAMES[BASELINES[settings.recipe]]}, test split",
        "recipe": settings.recipe,
        "smoke": settings.smoke,
        "smoke_test_images": SMOKE_TEST_IMAGES if settings.smoke else None,
        "synthetic_data": {flag: data.synthetic for flag, data in datasets.items()},
        "epochs": epochs,
        "requested_epochs": settings.epochs,
        "paper_epochs": config.PAPER_EPOCHS,
        "seeds": list(settings.seeds),
        "draws": settings.draws,
        "plan": None if plan is None else {k: v for k, v in plan.__dict__.items()},
        "rows": rows,
        "summary": summarize(rows),
        "majority_rule": majority,
        "references": {f: REFERENCES.get(f, {}) for f in settings.datasets},
        "runs": runs,
        "wall_seconds": {"total": time.perf_counter() - started, **phases},
        "provenance": origin,
    }
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out_dir / "results.md", markdown(results))
    return results
