"""Evaluation and sample reports written by the command line (``evaluate``, ``sample``, ``demo``)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from medsymmflow import viz
from medsymmflow.data import MedMNISTData, load_dataset, synthetic_twin
from medsymmflow.evaluate import classify_validation, evaluate_split, prior_decision
from medsymmflow.files import write_text_atomic
from medsymmflow.latents import split_inputs
from medsymmflow.metrics import distance_scores
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.provenance import data_identity, provenance
from medsymmflow.recipes import training_prior
from medsymmflow.uncertainty import (
    accuracy_at_coverage,
    accuracy_coverage,
    aurc,
    excess_aurc,
    expected_calibration_error,
    fit_temperature,
    predicted_class_distance,
    uncertainty_scores,
)

logger = logging.getLogger(__name__)


def data_for_checkpoint(meta: dict, root=None) -> MedMNISTData:
    """The dataset a checkpoint was trained on: the real files, or the same synthetic twin."""
    config = meta["config"]
    if meta.get("synthetic_data"):
        return synthetic_twin(config["dataset"], config["size"], config["seed"])
    return load_dataset(config["dataset"], config["size"], root=root)


def classify_and_calibrate(
    model,
    data: MedMNISTData,
    image_size: int,
    split: str,
    n_samples: int = 1,
    steps: int = 1,
    solver: str = "euler",
    seed: int = 0,
    prior=None,
) -> dict:
    """Classify ``split`` and fit a temperature on the validation split (drawn with ``seed + 1``).

    Returns:
        ``metrics`` (MedMNIST), ``result`` (the classification), ``correct``,
        ``temperature``, ``confidence`` (max of ``softmax(-d / T)`` for T = 1 and the fitted T),
        ``under_training_prior`` (the same images decided under ``prior``, class counts or shares,
        :func:`~medsymmflow.evaluate.prior_decision`, with the ``prior`` normalized; ``None``
        without one) and ``seconds`` spent classifying ``split``.
    """
    task = data.info["task"]
    images, labels = split_inputs(model, data, split, image_size)
    start = time.perf_counter()
    metrics, result = evaluate_split(model, images, labels, task, n_samples, steps, solver, seed=seed)
    seconds = time.perf_counter() - start
    val_result, val_labels = classify_validation(model, data, image_size, n_samples, steps, solver, seed)
    temperature = fit_temperature(val_result.distances, val_labels)
    confidence = {t: distance_scores(result.distances, t).max(dim=1).values.numpy() for t in (1.0, temperature)}
    under_prior = None
    if prior is not None:
        prior = np.asarray(prior, dtype=float)
        under_prior = prior_decision(val_result, val_labels, result, labels, prior, task)
        under_prior["prior"] = (prior / prior.sum()).tolist()
    return {
        "metrics": metrics,
        "under_training_prior": under_prior,
        "result": result,
        "correct": (result.labels == labels).numpy(),
        "temperature": temperature,
        "confidence": confidence,
        "seconds": seconds,
    }


def evaluate_to_files(
    model: SymmetricFlow,
    meta: dict,
    data: MedMNISTData,
    split: str,
    out_dir: Path,
    n_samples: int = 1,
    steps: int = 1,
    solver: str = "euler",
    seed: int = 0,
) -> dict:
    """Classify a split and write its report into ``out_dir``; return the metrics.

    Files (``{tag}`` = ``{split}_{n}draw(s)``, plus ``_{decoding}`` when the model's decoding is not
    its checkpoint's): ``metrics_{tag}.json`` (ACC, AUC, balanced
    accuracy, confusion matrix, accuracy at 100/90/80/50 % coverage, AURC, E-AURC, ECE before
    and after a temperature fitted on the validation split; ``under_training_prior``: ACC, AUC and balanced
    accuracy of the decisions under the training split's class shares,
    :func:`~medsymmflow.recipes.training_prior`), ``risk_coverage_{tag}.csv``,
    ``confusion_{tag}.png``, ``accuracy_coverage_{tag}.png`` and ``reliability_{tag}.png``.
    The uncertainty is the paper's: the distance to the predicted class colour.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    prior = training_prior(meta["config"], data.class_counts("train"))
    scored = classify_and_calibrate(
        model, data, meta["config"]["image_size"], split, n_samples, steps, solver, seed, prior
    )
    metrics, correct, temperature = scored["metrics"], scored["correct"], scored["temperature"]
    confidence = scored["confidence"]
    proxy = predicted_class_distance(scored["result"].distances).numpy()
    coverage, accuracy = accuracy_coverage(correct, proxy)
    decoding = getattr(model, "decoding", None)
    own = decoding in (None, meta["config"].get("decoding", decoding))  # another decoding gets its own files
    tag = f"{split}_{n_samples}draw{'s' if n_samples > 1 else ''}" + ("" if own else f"_{decoding}")
    title = f"{data.title}, {split} split, {steps} {solver} step(s), {n_samples} draw(s)"
    result = {
        "dataset": data.flag,
        "synthetic_data": data.synthetic,
        "split": split,
        "n_images": len(correct),
        "n_samples": n_samples,
        "steps": steps,
        "solver": solver,
        "checkpoint_step": meta["step"],
        **metrics,
        "uncertainty": "distance of the predicted mask to the predicted class colour",
        "accuracy_at_coverage": {f"{c:.2f}": a for c, a in accuracy_at_coverage(correct, proxy).items()},
        "aurc": aurc(correct, proxy),
        "excess_aurc": excess_aurc(correct, proxy),
        "temperature_fitted_on_val": temperature,
        "under_training_prior": scored["under_training_prior"],
        "ece": expected_calibration_error(confidence[1.0], correct),
        "ece_after_temperature": expected_calibration_error(confidence[temperature], correct),
        "seconds": scored["seconds"],
        "images_per_second": len(correct) / scored["seconds"],
        "decoding": getattr(model, "decoding", None),
        "provenance": {**provenance(), "seed": seed, "data": data_identity(data), "checkpoint_step": meta["step"]},
    }
    write_text_atomic(out_dir / f"metrics_{tag}.json", json.dumps(result, indent=2) + "\n")
    _write_figures(out_dir, tag, title, data, metrics, coverage, accuracy, confidence, correct, temperature)
    return result


def generation_to_files(
    model: SymmetricFlow,
    meta: dict,
    data: MedMNISTData,
    classifier,
    classifier_name: str,
    out_dir: Path,
    n_per_class: int,
    nfes,
    solvers,
    cas: bool = True,
    seed: int = 0,
) -> dict:
    """Measure a generator with :func:`medsymmflow.generation.nfe_sweep` (classifier agreement, CAS,
    Fréchet distance in ``classifier``'s features beside its real-vs-real floor) for each solver and
    NFE, and write ``generation.json`` and ``generation.md`` into ``out_dir``; return the results.

    ``classifier`` is a CNN trained on ``data``'s real training images (``classifier_name`` says
    which, for the report); ``cas=False`` skips CAS, which trains a CNN per row.
    """
    from medsymmflow import generation  # trains CNNs: imported only when generation is measured

    size = meta["config"]["image_size"]
    rows = generation.nfe_sweep(model, classifier, data, n_per_class, size, nfes, solvers, seed, None if cas else ())
    smallest = {}
    for metric in ("cas", "agreement"):
        try:
            smallest[metric] = generation.smallest_nfe_within(rows, metric=metric)
        except ValueError:  # no 25-step Euler row to compare with
            smallest[metric] = None
    result = {
        "dataset": data.flag,
        "synthetic_data": data.synthetic,
        "checkpoint_step": meta["step"],
        "mask_mode": meta["config"]["mask_mode"],
        "classifier": classifier_name,
        "n_per_class": rows[0]["n_generated"] // data.n_classes,
        "rows": rows,
        "smallest_nfe_within_1_point_of_25_euler": smallest,
        "frechet_note": "Fréchet distance in the real-trained classifier's penultimate features, not FID",
        "provenance": {**provenance(), "seed": seed, "data": data_identity(data), "checkpoint_step": meta["step"]},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "generation.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out_dir / "generation.md", generation_table(result))
    return result


def generation_table(result: dict) -> str:
    """The markdown report of :func:`generation_to_files`."""
    lines = [
        f"# Generation metrics: {result['dataset']}{' (SYNTHETIC TWIN)' if result['synthetic_data'] else ''}, "
        f"step {result['checkpoint_step']}",
        "",
        f"{result['n_per_class']} images per class; classifier: {result['classifier']}. "
        f"FD: {result['frechet_note']}; its floor is the distance between two real samples of the same size.",
        "",
        "| solver | NFE | agreement | CAS | FD | FD floor | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cas = f"{r['cas']:.3f}" if "cas" in r else "—"
        lines.append(
            f"| {r['solver']} | {r['nfe']} | {r['agreement']:.3f} | {cas} | {r['frechet']:.3g} "
            f"| {r['frechet_floor']:.3g} | {r['generate_seconds']:.1f} |"
        )
    for metric, found in result["smallest_nfe_within_1_point_of_25_euler"].items():
        if found and sum(metric in r for r in result["rows"]) > 1:  # more than 25 Euler steps to compare
            lines.append(f"\nSmallest NFE whose {metric} is within 1 point of 25 Euler steps: {found[0]} ({found[1]}).")
    return "\n".join(lines) + "\n"


def _write_figures(out_dir, tag, title, data, metrics, coverage, accuracy, confidence, correct, temperature) -> None:
    """The risk-coverage CSV and the confusion, accuracy-coverage and reliability figures of an evaluation."""
    every = max(len(coverage) // 20, 1)
    rows = ["coverage,accuracy,risk"] + [
        f"{c:.4f},{a:.4f},{1 - a:.4f}"
        for c, a in zip(coverage[every - 1 :: every], accuracy[every - 1 :: every], strict=True)
    ]
    write_text_atomic(out_dir / f"risk_coverage_{tag}.csv", "\n".join(rows) + "\n")
    viz.confusion_figure(metrics["confusion_matrix"], data.class_names, title).savefig(
        out_dir / f"confusion_{tag}.png", dpi=120
    )
    viz.accuracy_coverage_figure({"distance to predicted class colour": (coverage, accuracy)}, title).savefig(
        out_dir / f"accuracy_coverage_{tag}.png", dpi=120
    )
    reliability = {
        "T = 1": (confidence[1.0], correct),
        f"T = {temperature:.3g} (fitted on val)": (confidence[temperature], correct),
    }
    viz.reliability_figure(reliability, title).savefig(out_dir / f"reliability_{tag}.png", dpi=120)
    plt.close("all")


def sample_grid(
    model: SymmetricFlow,
    meta: dict,
    classes: list[int],
    per_class: int,
    path: Path,
    steps: int = 25,
    solver: str = "euler",
    seed: int = 0,
    title: str = "",
) -> Path:
    """Generate ``per_class`` images of each class and save them as one PNG grid (a row per class)."""
    n_classes = meta["n_classes"]
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise ValueError(
            f"class {bad[0]} does not exist: this model has classes 0 … {n_classes - 1} ({', '.join(meta['class_names'])})"
        )
    labels = torch.tensor(classes).repeat_interleave(per_class)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    images = model.generate(
        labels.to(device), meta["config"]["image_size"], steps, solver, generator=generator
    ).images.cpu()
    fig, ax = plt.subplots(figsize=(per_class * 0.7 + 2.5, len(classes) * 0.7 + 0.8))
    ax.imshow(viz.grid_image(images, nrow=per_class))
    step = meta["config"]["image_size"] + 1
    ax.set_yticks([step * (i + 0.5) for i in range(len(classes))])
    ax.set_yticklabels([f"{c}: {meta['class_names'][c][:24]}" for c in classes], fontsize=8)
    ax.set_xticks([])
    ax.set_title(title or f"generated, {steps} {solver} steps", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def selective_comparison(
    models: dict, data: MedMNISTData, image_size: int, n_samples: int = 8, seed: int = 0, split: str = "test"
) -> tuple[list[dict], dict]:
    """Side-by-side selective prediction of several models on one dataset.

    Each model classifies ``split`` and the validation split with ``n_samples`` draws (mask
    noise for MedSymmFlow, MC dropout for a baseline); a temperature is fitted on validation. The
    models are taken to have learned equal classes, as the course's do (class-balanced sampling):
    their decisions under the training split's class shares add those shares.

    Returns:
        ``(rows, details)``: one row per (model, uncertainty score) with ACC, AUC, balanced
        accuracy, ECE before/after temperature, AURC, E-AURC and accuracy at 100/90/80/50 %
        coverage; ``details[model]`` holds ``result`` (the classification), ``correct``,
        ``scores``, ``temperature``, ``confidence`` and ``under_training_prior`` (ACC, AUC and
        balanced accuracy of the decisions under the training split's class shares).
    """
    rows, details = [], {}
    prior = training_prior({}, data.class_counts("train"))  # the course's runs learn equal classes
    for name, model in models.items():
        scored = classify_and_calibrate(model, data, image_size, split, n_samples, seed=seed, prior=prior)
        metrics, correct, temperature, confidence = (
            scored["metrics"],
            scored["correct"],
            scored["temperature"],
            scored["confidence"],
        )
        scores = uncertainty_scores(scored["result"].distances, scored["result"].sample_distances)
        details[name] = {
            "result": scored["result"],
            "correct": correct,
            "scores": scores,
            "temperature": temperature,
            "confidence": confidence,
            "under_training_prior": scored["under_training_prior"],
        }
        for score_name, score in scores.items():
            at = accuracy_at_coverage(correct, score)
            rows.append(
                {
                    "model": name,
                    "score": score_name,
                    "ACC": metrics["acc"],
                    "AUC": metrics["auc"],
                    "balanced ACC": metrics["balanced_accuracy"],
                    "ECE": expected_calibration_error(confidence[1.0], correct),
                    "ECE (T fitted on val)": expected_calibration_error(confidence[temperature], correct),
                    "AURC": aurc(correct, score),
                    "E-AURC": excess_aurc(correct, score),
                    **{f"ACC@{int(c * 100)}%": a for c, a in at.items()},
                }
            )
    return rows, details


def summary_line(m: dict) -> str:
    """One line of a metrics dict: ACC, AUC, balanced accuracy, accuracy at 80 % coverage, speed, and
    ACC and balanced accuracy under the training split's class shares where measured."""
    line = (
        f"ACC {m['acc']:.3f}, AUC {m['auc']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
        f"accuracy at 80% coverage {m['accuracy_at_coverage']['0.80']:.3f} ({m['n_images']} images, "
        f"{m['images_per_second']:.0f} images/s)"
    )
    if m.get("under_training_prior"):
        p = m["under_training_prior"]
        line += f"; decided under the training split's class shares: ACC {p['acc']:.3f}, balanced accuracy {p['balanced_accuracy']:.3f}"
    return line
