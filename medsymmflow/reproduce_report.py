"""The tables of ``medsymmflow reproduce``: mean and spread over seeds, and the markdown report."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from medsymmflow.files import write_text_atomic
from medsymmflow.provenance import provenance_line

SUMMARY_KEYS = ("dataset", "model", "decoding", "draws")
SUMMARY_METRICS = ("acc", "auc", "balanced_accuracy", "acc_at_80", "aurc")


def summarize(rows: list[dict], keys=SUMMARY_KEYS, metrics=SUMMARY_METRICS) -> list[dict]:
    """Mean and standard deviation over seeds of each of ``metrics``, per group of rows with the same
    ``keys`` (by default every dataset, model, decoding and number of draws). A metric missing from
    some rows of a group is summarized over the rows that have it (their count in ``{metric}_n_seeds``),
    and left out where none has it."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    summary = []
    for group_key, group in groups.items():
        entry = {**dict(zip(keys, group_key, strict=True)), "n_seeds": len(group)}
        for metric in metrics:
            values = np.array([r[metric] for r in group if metric in r], dtype=float)
            if len(values):
                entry[metric] = float(values.mean())
                entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
            if 0 < len(values) < len(group):
                entry[f"{metric}_n_seeds"] = len(values)
        summary.append(entry)
    return summary


SUMMARY_COLUMNS = {
    "ACC": "acc",
    "AUC": "auc",
    "balanced ACC": "balanced_accuracy",
    "ACC at 80 % coverage": "acc_at_80",
    "AURC": "aurc",
}


def summary_table(summary: list[dict], model_header: str = "model", columns: dict = SUMMARY_COLUMNS) -> list[str]:
    """The lines of a markdown table of :func:`summarize`'s entries, mean ± standard deviation per metric;
    ``columns``: each column's header and the metric it shows."""
    lines = [
        f"| dataset | {model_header} | decoding | draws | " + " | ".join(columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for s in summary:
        cells = [plus_minus(s, m) for m in columns.values()]
        lines.append(
            f"| {s['dataset']} | {s['model']} | {s['decoding'] or '—'} | {s['draws']} | " + " | ".join(cells) + " |"
        )
    return lines


def markdown(results: dict) -> str:
    """The results as a readable markdown report."""
    p = results["provenance"]
    lines = [
        f"# MedSymmFlow vs the paper: pixel space, RGB masks, the `{results['recipe']}` recipe, test split",
        "",
        (
            f"**SMOKE RUN: tiny model, a few steps, the first {results['smoke_test_images']} test images — the numbers check the plumbing and mean nothing.**\n"
            if results["smoke"]
            else ""
        ),
        f"{provenance_line(p)} "
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
        *summary_table(results["summary"]),
    ]
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


def plus_minus(entry: dict, metric: str, digits: int = 3) -> str:
    """``mean ± std`` of a :func:`summarize` entry's metric (the mean alone for one seed, "—" if absent)."""
    if metric not in entry:
        return "—"
    spread = entry.get(f"{metric}_std")
    return f"{entry[metric]:.{digits}f}" + ("" if spread is None else f" ± {spread:.{digits}f}")


def mean_sd(values: list[float], signed: bool = False) -> str:
    """``mean ± sd`` of per-seed values (sd with ddof 1; nan for one value), with its sign for differences."""
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):{'+' if signed else ''}.3f} ± {sd:.3f}"


def write_results(out: Path, results: dict, report: str) -> None:
    """``results.json`` (ending in a newline) and the markdown ``results.md`` in ``out``, each atomically."""
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "results.md", report)


def _ref(ref: dict, key: str) -> str:
    return f"{ref[key]:.3f}" if key in ref else "—"
