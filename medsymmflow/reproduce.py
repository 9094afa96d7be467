"""Reproduce the paper's pixel-space results on one GPU (``medsymmflow reproduce``).

For each dataset and seed:

1. train the course's ``full`` recipe (:func:`medsymmflow.train.course_config`: the paper's
   ``paper-pixel`` UNet at 32 px, official palette, AdamW 4e-4, batch 64, cosine with
   warm-up, EMA, bf16 on CUDA) for ``epochs`` epochs, keeping the checkpoint with the best
   validation AUC (the test split is never looked at while training);
2. classify the test split with one Euler step and **one** mask-noise draw (the paper's
   protocol) and with ``draws`` draws, each with the official decoding (mean over pixels
   of the per-pixel colour distance) and with the mean-colour variant;
3. train torchvision's ResNet-18 (28/32 px variant) with the same trainer, data, sampling
   and number of steps, and evaluate it alike (MC dropout for the draws);
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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medsymmflow import config
from medsymmflow.data import MedMNISTData, load_dataset
from medsymmflow.data.masks import DECODINGS
from medsymmflow.provenance import provenance
from medsymmflow.train import (
    TrainConfig,
    Trainer,
    course_config,
    evaluate_split,
    read_checkpoint_meta,
    run_dir,
    train_or_load,
)
from medsymmflow.uncertainty import accuracy_at_coverage, aurc, predicted_class_distance

logger = logging.getLogger(__name__)

DEFAULT_DATASETS = ("pneumoniamnist", "retinamnist")
# The same-run discriminative baseline of each recipe (the notebooks use the same pairs).
BASELINES = {"full": "resnet18", "fast": "cnn-small"}
BASELINE_NAMES = {"resnet18": "ResNet-18 (same trainer)", "cnn-small": "small CNN (same trainer)"}
PROBE_STEPS = 100
SMOKE_PROBE_STEPS = 5
SMOKE_TEST_IMAGES = 96  # --smoke classifies only the first images of the test split
SMOKE_DRAWS = 2
# Validation, checkpoints and evaluation on top of the training steps (a guess, checked by the report's wall times).
OVERHEAD = 1.15

# Test-split reference numbers (DESIGN.md): the paper's RGB-28 MedSymmFlow (the authors' result
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


class BudgetError(RuntimeError):
    """The requested run would not finish within the time budget."""


@dataclass
class Plan:
    """How long the run will take, from the probe."""

    epochs: int
    requested_epochs: int
    seconds_per_step: dict[str, float]
    steps: dict[str, int]
    estimated_seconds: float
    budget_seconds: float | None
    message: str = ""


@dataclass
class Settings:
    """What to reproduce and how."""

    datasets: tuple[str, ...] = DEFAULT_DATASETS
    seeds: tuple[int, ...] = (0,)
    epochs: int = config.FULL_EPOCHS
    draws: int = 8
    recipe: str = "full"
    smoke: bool = False
    data_root: str | None = None
    overrides: dict = field(default_factory=dict)


def model_configs(dataset: str, settings: Settings, seed: int, epochs: int) -> dict[str, TrainConfig]:
    """The MedSymmFlow and baseline configurations of one run: the recipe's (``fast`` ignores
    ``epochs``), or with ``smoke`` a tiny model for a few steps."""
    recipe = config.Profile(settings.recipe)
    if settings.smoke:
        tiny = dict(
            preset="tiny",
            image_size=28,
            steps=20,
            batch_size=16,
            warmup_steps=2,
            checkpoint_every=10,
            allow_synthetic=True,
        )
        flow = course_config(dataset, recipe, seed=seed, **{**tiny, **settings.overrides})
    else:
        flow = course_config(dataset, recipe, epochs=epochs, seed=seed, **settings.overrides)
    baseline = TrainConfig(**{**flow.to_dict(), "preset": BASELINES[settings.recipe]})
    return {"MedSymmFlow": flow, BASELINE_NAMES[baseline.preset]: baseline}


def probe_seconds_per_step(
    train_config: TrainConfig, data: MedMNISTData, steps: int = PROBE_STEPS, warmup: int = 3
) -> float:
    """Wall seconds per training step, timed over ``steps`` steps after ``warmup`` untimed ones."""
    probe = TrainConfig(
        **{**train_config.to_dict(), "steps": warmup + steps, "checkpoint_every": 10 * (warmup + steps)}
    )
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(probe, folder, data=data, progress=False)
        trainer.train(until_step=warmup)
        _synchronize()
        start = time.perf_counter()
        trainer.train(until_step=warmup + steps)
        _synchronize()
        return (time.perf_counter() - start) / steps


def plan_epochs(
    seconds_per_step: dict[str, float],
    steps: dict[str, int],
    n_seeds: int,
    requested_epochs: int,
    budget_seconds: float | None,
    fit_budget: bool,
) -> Plan:
    """Check that the run fits the budget, or (``fit_budget``) find how many epochs do.

    The estimate is ``sum_datasets steps * sum_models seconds_per_step * seeds * OVERHEAD``, with
    ``steps`` each dataset's training steps at ``requested_epochs`` (steps grow linearly with epochs).

    Raises:
        BudgetError: the run does not fit and ``fit_budget`` is False, or not even one epoch fits.
    """
    estimate = sum(steps.values()) * sum(seconds_per_step.values()) * n_seeds * OVERHEAD
    per_epoch = estimate / requested_epochs
    plan = Plan(requested_epochs, requested_epochs, seconds_per_step, steps, estimate, budget_seconds)
    if budget_seconds is None or estimate <= budget_seconds:
        plan.message = f"{requested_epochs} epochs: about {estimate:.0f} s" + (
            f" of the {budget_seconds:.0f} s budget" if budget_seconds else ""
        )
        return plan
    fitting = int(budget_seconds // per_epoch)
    too_long = f"{requested_epochs} epochs would take about {estimate:.0f} s ({per_epoch:.1f} s an epoch), over the {budget_seconds:.0f} s budget"
    if not fit_budget:
        raise BudgetError(
            f"{too_long}. Give more time, fewer datasets or seeds, or --fit-budget to train {fitting} epochs instead."
        )
    if fitting < 1:
        raise BudgetError(f"{too_long}; not even one epoch fits.")
    plan.epochs, plan.estimated_seconds = fitting, fitting * per_epoch
    plan.message = f"{too_long}: training {fitting} epochs instead (about {plan.estimated_seconds:.0f} s)"
    return plan


def evaluate_test(model, data: MedMNISTData, image_size: int, draws: int, seed: int, limit: int | None = None) -> dict:
    """Test-split ACC, AUC, balanced accuracy, accuracy at 80 % coverage and AURC (the paper's
    uncertainty: the distance to the predicted class), plus the seconds it took.
    ``limit``: classify only the first ``limit`` test images (smoke runs)."""
    images, labels = data.tensors("test", image_size)
    images, labels = images[:limit], labels[:limit]
    start = time.perf_counter()
    metrics, result = evaluate_split(model, images, labels, data.info["task"], n_samples=draws, seed=seed)
    seconds = time.perf_counter() - start
    correct = (result.labels == labels).numpy()
    proxy = predicted_class_distance(result.distances).numpy()
    return {
        "acc": metrics["acc"],
        "auc": metrics["auc"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "per_class_recall": metrics["per_class_recall"],
        "acc_at_80": accuracy_at_coverage(correct, proxy)[0.8],
        "aurc": aurc(correct, proxy),
        "n_images": len(labels),
        "seconds": seconds,
    }


def majority_rule(data: MedMNISTData) -> dict:
    """Always answer the most frequent training class: its test accuracy (AUC 0.5, balanced accuracy 1/K)."""
    train_counts = np.bincount(data.labels("train"), minlength=data.n_classes)
    majority = int(train_counts.argmax())
    return {
        "class": majority,
        "class_name": data.class_names[majority],
        "acc": float(np.mean(data.labels("test") == majority)),
        "balanced_accuracy": 1.0 / data.n_classes,
    }


def run_one(
    dataset: str, data: MedMNISTData, settings: Settings, seed: int, epochs: int, models_dir: Path | None
) -> dict:
    """Train (or load) both models of one dataset and seed and evaluate them on the test split."""
    rows, phases, runs = [], {}, {}
    for name, train_config in model_configs(dataset, settings, seed, epochs).items():
        start = time.perf_counter()
        model, meta = train_or_load(train_config, data, progress=False, root=models_dir)
        phases[f"train {name}"] = time.perf_counter() - start
        last = read_checkpoint_meta(
            run_dir(train_config, data.synthetic, models_dir) / "last"
        )  # best/ holds the history up to its step
        runs[name] = {
            "config": meta["config"],
            "best_step": meta["best_step"],
            "step": last["step"],
            "history": last["history"],
        }
        is_flow = train_config.preset not in BASELINE_NAMES
        for decoding in DECODINGS if is_flow else (None,):
            if decoding is not None:
                model.decoding = decoding
            for draws in sorted({1, min(settings.draws, SMOKE_DRAWS) if settings.smoke else settings.draws}):
                start = time.perf_counter()
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
    datasets = {
        flag: load_dataset(flag, root=settings.data_root, allow_synthetic=settings.smoke, seed=0)
        for flag in settings.datasets
    }
    phases: dict[str, float] = {}
    plan = None
    epochs = settings.epochs
    if budget_seconds is not None:
        flag = settings.datasets[0]
        start = time.perf_counter()
        probe_steps = SMOKE_PROBE_STEPS if settings.smoke else PROBE_STEPS
        seconds_per_step = {
            name: probe_seconds_per_step(c, datasets[flag], probe_steps)
            for name, c in model_configs(flag, settings, 0, 1).items()
        }
        phases["probe"] = time.perf_counter() - start
        steps = {f: model_configs(f, settings, 0, settings.epochs)["MedSymmFlow"].steps for f in settings.datasets}
        plan = plan_epochs(
            seconds_per_step,
            steps,
            len(settings.seeds),
            settings.epochs,
            budget_seconds - phases["probe"],
            fit_budget and not settings.smoke and settings.recipe == "full",
        )
        epochs = plan.epochs
        logger.warning("reproduce: %s", plan.message)
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
        "synthetic_data": {flag: data.synthetic for flag, data in datasets.items()},
        "epochs": epochs,
        "requested_epochs": settings.epochs,
        "paper_epochs": 1000,
        "seeds": list(settings.seeds),
        "draws": settings.draws,
        "plan": None if plan is None else {k: v for k, v in plan.__dict__.items()},
        "rows": rows,
        "summary": summarize(rows),
        "majority_rule": majority,
        "references": {f: REFERENCES.get(f, {}) for f in settings.datasets},
        "runs": runs,
        "wall_seconds": {"total": time.perf_counter() - started, **phases},
        "provenance": provenance(),
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(markdown(results))
    return results


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every (dataset, model, decoding, draws)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"], row["decoding"], row["draws"]), []).append(row)
    summary = []
    for (dataset, model, decoding, draws), group in groups.items():
        entry = {"dataset": dataset, "model": model, "decoding": decoding, "draws": draws, "n_seeds": len(group)}
        for metric in ("acc", "auc", "balanced_accuracy", "acc_at_80", "aurc"):
            values = np.array([r[metric] for r in group], dtype=float)
            entry[metric] = float(values.mean())
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        summary.append(entry)
    return summary


def markdown(results: dict) -> str:
    """The results as a readable markdown report."""
    p = results["provenance"]
    lines = [
        f"# MedSymmFlow vs the paper: pixel space, RGB masks, the `{results['recipe']}` recipe, test split",
        "",
        (
            f"**SMOKE RUN: tiny model, a few steps, the first {SMOKE_TEST_IMAGES} test images — the numbers check the plumbing and mean nothing.**\n"
            if results["smoke"]
            else ""
        ),
        f"Device: {p['device']}. Commit {p['commit']}, medsymmflow {p['medsymmflow']}, torch {p['torch']}, diffusers {p['diffusers']}. "
        f"{_training(results)} (the paper: {results['paper_epochs']} epochs); seeds {results['seeds']}; "
        f"total wall time {results['wall_seconds']['total']:.0f} s.",
    ]
    if results["plan"]:
        lines.append(f"Budget: {results['plan']['message']}.")
    lines += [
        "",
        "Checkpoint chosen on the validation split (AUC); one Euler step from t = 1; the paper's protocol is one noise draw and the "
        "official decoding (`pixel_distance`: mean over pixels of the per-pixel colour distance). AUC is MedMNIST's. "
        "Mean ± standard deviation over seeds (a single seed shows no spread).",
        "",
        "| dataset | model | decoding | draws | ACC | AUC | balanced ACC | ACC at 80 % coverage | AURC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["summary"]:
        cells = [_cell(s, m) for m in ("acc", "auc", "balanced_accuracy", "acc_at_80", "aurc")]
        lines.append(
            f"| {s['dataset']} | {s['model']} | {s['decoding'] or '—'} | {s['draws']} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "References (test split):",
        "",
        "| dataset | majority rule ACC | paper MedSymmFlow RGB-28 ACC (1000 epochs) | paper ACC at 80 % | MedMNIST v2 ResNet-18 (28) ACC / AUC |",
        "|---|---|---|---|---|",
    ]
    for flag, ref in results["references"].items():
        m = results["majority_rule"][flag]
        resnet = f"{ref['resnet18_v2_acc']:.3f} / {ref['resnet18_v2_auc']:.3f}" if "resnet18_v2_acc" in ref else "—"
        lines.append(
            f"| {flag} | {m['acc']:.3f} ({m['class_name'][:30]}) | {_ref(ref, 'paper_acc')} | {_ref(ref, 'paper_acc_at_80')} | {resnet} |"
        )
    lines += ["", "Wall time per phase (s):", ""] + [f"- {k}: {v:.1f}" for k, v in results["wall_seconds"].items()]
    return "\n".join(lines) + "\n"


def _training(results: dict) -> str:
    steps = sorted({row["steps"] for row in results["rows"]})
    if results["recipe"] == "full" and not results["smoke"]:
        return f"Epochs: {results['epochs']}"
    return f"Training steps: {', '.join(map(str, steps))}"


def _cell(summary: dict, metric: str) -> str:
    std = summary[f"{metric}_std"]
    return f"{summary[metric]:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _ref(ref: dict, key: str) -> str:
    return f"{ref[key]:.3f}" if key in ref else "—"


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
