"""Evaluation and sample reports written by the command line (``evaluate``, ``sample``, ``demo``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the command line has no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from medsymmflow import viz  # noqa: E402
from medsymmflow.data import MedMNISTData, load_dataset, synthetic_twin  # noqa: E402
from medsymmflow.models.symmflow import SymmetricFlow  # noqa: E402
from medsymmflow.train import evaluate_split  # noqa: E402
from medsymmflow.uncertainty import accuracy_coverage, predicted_class_distance  # noqa: E402

COVERAGES = (1.0, 0.9, 0.8, 0.5)


def data_for_checkpoint(meta: dict, root=None) -> MedMNISTData:
    """The dataset a checkpoint was trained on: the real files, or the same synthetic twin."""
    config = meta["config"]
    if meta.get("synthetic_data"):
        return synthetic_twin(config["dataset"], config["size"], config["seed"])
    return load_dataset(config["dataset"], config["size"], root=root)


def evaluate_to_files(model: SymmetricFlow, meta: dict, data: MedMNISTData, split: str, out_dir: Path, n_samples: int = 1, steps: int = 1, solver: str = "euler", seed: int = 0) -> dict:
    """Classify a split; write ``metrics_{split}_{n}draws.json``, a confusion matrix and an
    accuracy-coverage plot into ``out_dir``; return the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images, labels = data.tensors(split, meta["config"]["image_size"])
    start = time.perf_counter()
    metrics, distances = evaluate_split(model, images, labels, data.info["task"], n_samples, steps, solver, seed=seed)
    seconds = time.perf_counter() - start
    correct = (distances.argmin(1) == labels).numpy()
    coverage, accuracy = accuracy_coverage(correct, predicted_class_distance(distances).numpy())
    at = {f"{c:.2f}": float(accuracy[int(np.ceil(c * len(accuracy))) - 1]) for c in COVERAGES}
    tag = f"{split}_{n_samples}draw{'s' if n_samples > 1 else ''}"
    title = f"{data.title}, {split} split, {steps} {solver} step(s), {n_samples} draw(s)"
    result = {
        "dataset": data.flag,
        "synthetic_data": data.synthetic,
        "split": split,
        "n_images": len(labels),
        "n_samples": n_samples,
        "steps": steps,
        "solver": solver,
        "checkpoint_step": meta["step"],
        **metrics,
        "accuracy_at_coverage": at,
        "seconds": seconds,
        "images_per_second": len(labels) / seconds,
    }
    (out_dir / f"metrics_{tag}.json").write_text(json.dumps(result, indent=2))
    viz.confusion_figure(metrics["confusion_matrix"], data.class_names, title).savefig(out_dir / f"confusion_{tag}.png", dpi=120)
    viz.accuracy_coverage_figure({"distance to predicted class colour": (coverage, accuracy)}, title).savefig(out_dir / f"accuracy_coverage_{tag}.png", dpi=120)
    plt.close("all")
    return result


def sample_grid(model: SymmetricFlow, meta: dict, classes: list[int], per_class: int, path: Path, steps: int = 25, solver: str = "euler", seed: int = 0, title: str = "") -> Path:
    """Generate ``per_class`` images of each class and save them as one PNG grid (a row per class)."""
    n_classes = meta["n_classes"]
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"class {bad[0]} does not exist: this model has classes 0 … {n_classes - 1} ({', '.join(meta['class_names'])})")
    labels = torch.tensor(classes).repeat_interleave(per_class)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    images = model.generate(labels.to(device), meta["config"]["image_size"], steps, solver, generator=generator).images.cpu()
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
