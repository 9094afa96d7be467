"""Paired differences between recipe-study candidates and the fast recipe's runs of the same seeds.

Training here is deterministic, so a candidate's run and the recipe's run of the same dataset and
seed differ only by the candidate's setting: the per-seed difference d_s = m(candidate, s) - m(recipe, s)
has a smaller spread than either run's metric. This prints, for every candidate row of the given
``results.json`` files, mean ± standard deviation (ddof 1) over seeds of ACC, AUC and balanced ACC,
and of d_s against the ``--baseline`` model's rows (by default from the same files; ``--baseline-from``
names the results that hold them when a study did not retrain the recipe).

    python benchmarks/paired.py benchmarks/results/recipe_study_X/results.json \\
        --baseline-from benchmarks/results/recipe_study_regularizers_cpu_2026-12-03/results.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from medsymmflow.reproduce_report import mean_sd

METRICS = ("acc", "auc", "balanced_accuracy")


def load_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for row in json.loads(Path(path).read_text())["rows"]:
            rows.append({**row, "source": Path(path).parent.name})
    return rows


def paired_table(rows: list[dict], baseline_rows: list[dict], baseline: str) -> list[str]:
    """Markdown lines: one per (dataset, model, decoding, draws) of ``rows`` other than ``baseline``."""
    reference = {
        (r["dataset"], r["draws"], r["seed"]): r
        for r in baseline_rows
        if r["model"] == baseline and r.get("decoding") in (None, "pixel_distance")
    }
    groups = defaultdict(list)
    for row in rows:
        if row["model"] != baseline or row.get("decoding") not in (None, "pixel_distance"):
            groups[(row["dataset"], row["model"], row.get("decoding"), row["draws"], row["source"])].append(row)
    lines = [
        "| set | candidate | decoding | draws | seeds | ACC | AUC | balanced ACC | Δ ACC | Δ AUC | Δ balanced | results |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, model, decoding, draws, source), group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r["seed"])
        pairs = [(r, reference.get((dataset, draws, r["seed"]))) for r in group]
        cells = [mean_sd([r[m] for r in group]) for m in METRICS]
        if all(base is not None for _, base in pairs):
            deltas = [mean_sd([r[m] - base[m] for r, base in pairs], signed=True) for m in METRICS]
        else:
            deltas = ["no paired run"] * len(METRICS)
        seeds = ",".join(str(r["seed"]) for r in group)
        lines.append(
            f"| {dataset} | {model} | {decoding or '-'} | {draws} | {seeds} | "
            + " | ".join(cells + deltas)
            + f" | {source} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="recipe_study results.json files")
    parser.add_argument("--baseline", default="t1-25", help="the model the candidates are paired with")
    parser.add_argument(
        "--baseline-from",
        nargs="*",
        type=Path,
        default=[],
        help="results.json holding its rows (a seed found in several: the last file's)",
    )
    args = parser.parse_args()
    rows = load_rows(args.results)
    baseline_rows = load_rows(args.baseline_from) if args.baseline_from else rows
    print("\n".join(paired_table(rows, baseline_rows, args.baseline)))


if __name__ == "__main__":
    main()
