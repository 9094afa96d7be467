"""The recipe issue's quality bar, read from stored recipe-study results: each bar, what was measured
(mean ± sd over seeds), by how much it is met or missed.

The bar (fast recipe, real test splits, 2-core CPU, at least 3 seeds, each run at most 10 minutes):
PneumoniaMNIST ACC >= 0.885 and AUC >= 0.95; RetinaMNIST ACC >= 0.50 and AUC >= 0.70; the small
imbalanced stand-in balanced ACC >= 0.80 and AUC >= 0.88; every set ACC above its majority rule and
AUC within 0.02 of the same-run CNN or better. Every set found in the files is checked against the
bars that hold for every set, and its ACC decided under the training split's class shares is set
beside the rule too where the files hold it.

    python benchmarks/quality_bar.py \\
        benchmarks/results/recipe_study_prior_cpu_2026-12-07/four_sets/results.json \\
        benchmarks/results/recipe_study_prior_cpu_2026-12-07/skewed/results.json \\
        --times benchmarks/results/recipe_study_shift_classify_cpu_2026-12-07/results.json \\
        --out benchmarks/results/quality_bar_cpu_2026-12-07

``--times``: studies that trained the runs the results files only loaded (a run is the same run where
its whole configuration is); each run's training seconds are read from whichever file trained it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from medsymmflow.provenance import provenance, provenance_line
from medsymmflow.reproduce_report import mean_sd, write_results

SET_BARS = {
    "pneumoniamnist": {"acc": 0.885, "auc": 0.95},
    "retinamnist": {"acc": 0.50, "auc": 0.70},
    "pneumoniamnist-small": {"balanced_accuracy": 0.80, "auc": 0.88},
}
CNN_AUC_MARGIN = 0.02  # every set: AUC within this of the same-run CNN's, or better
BUDGET_SECONDS = 600  # every run: at most 10 minutes of training on 2 CPU cores
LOADED_SECONDS = 5  # a run that took less was loaded from the cache, not trained
DRAWS = (1, 8)
NAMES = {"acc": "ACC", "auc": "AUC", "balanced_accuracy": "balanced ACC"}


def load(paths: list[Path]) -> tuple[dict, dict, dict]:
    """Rows keyed by (dataset, model, draws, seed), the later file's values added to the earlier's;
    the majority rule of each dataset; each run's configuration, keyed by (dataset, model, seed)."""
    rows, rules, configs = {}, {}, {}
    for path in paths:
        results = json.loads(Path(path).read_text())
        for row in results["rows"]:
            if row.get("decoding") in (None, "pixel_distance"):
                key = (row["dataset"], row["model"], row["draws"], row["seed"])
                rows[key] = {**rows.get(key, {}), **row}
        rules |= results["majority_rule"]
        for name, run in results.get("runs", {}).items():
            dataset, model, _, seed = name.rsplit(" ", 3)
            configs[(dataset, model, int(seed))] = run["config"]
    return rows, rules, configs


def training_seconds(paths: list[Path]) -> dict:
    """Seconds each trained run took, keyed by (dataset, its configuration as sorted JSON)."""
    seconds = {}
    for path in paths:
        for name, run in json.loads(Path(path).read_text()).get("runs", {}).items():
            if run["train_or_load_seconds"] >= LOADED_SECONDS:
                seconds[(name.rsplit(" ", 3)[0], json.dumps(run["config"], sort_keys=True))] = run[
                    "train_or_load_seconds"
                ]
    return seconds


def _per_seed(rows: dict, dataset: str, model: str, draws: int, metric: str) -> dict[int, float]:
    return {
        seed: row[metric]
        for (d, m, n, seed), row in rows.items()
        if (d, m, n) == (dataset, model, draws) and metric in row
    }


def _check(values: dict, threshold: float, above: bool = False, signed: bool = False) -> dict:
    """One bar: ``values`` per seed, met when their mean is >= ``threshold`` (``>`` when ``above``)."""
    if not values:
        return {"n_seeds": 0}
    mean = statistics.mean(values.values())
    return {
        "measured": mean_sd(list(values.values()), signed=signed),
        "mean": mean,
        "margin": mean - threshold,
        "met": mean > threshold if above else mean >= threshold,
        "n_seeds": len(values),
    }


def bars(rows: dict, rules: dict, configs: dict, seconds: dict, recipe: str, baseline: str) -> list[dict]:
    """Every bar of every dataset the recipe was measured on, at each number of draws."""
    checks = []
    for dataset in sorted({d for d, m, _, _ in rows if m == recipe}):
        for draws in DRAWS:
            one = {}
            for metric, threshold in SET_BARS.get(dataset, {}).items():
                values = _per_seed(rows, dataset, recipe, draws, metric)
                one[f"{NAMES[metric]} ≥ {threshold}"] = _check(values, threshold)
            rule = rules[dataset]["acc"]
            one[f"ACC above the majority rule ({rule:.3f})"] = _check(
                _per_seed(rows, dataset, recipe, draws, "acc"), rule, above=True
            )
            prior = _per_seed(rows, dataset, recipe, draws, "acc_prior")
            if prior:
                one[f"ACC decided under the training shares above the rule ({rule:.3f})"] = _check(
                    prior, rule, above=True
                )
            flow = _per_seed(rows, dataset, recipe, draws, "auc")
            cnn = _per_seed(rows, dataset, baseline, draws, "auc")
            paired = {seed: flow[seed] - cnn[seed] for seed in flow.keys() & cnn.keys()}
            one[f"AUC minus the same-run CNN's ≥ −{CNN_AUC_MARGIN}"] = _check(paired, -CNN_AUC_MARGIN, signed=True)
            for label, check in one.items():
                checks.append({"dataset": dataset, "bar": label, "draws": draws, **check})
        trained = {
            seed: seconds[(dataset, json.dumps(config, sort_keys=True))]
            for (d, m, seed), config in configs.items()
            if (d, m) == (dataset, recipe) and (dataset, json.dumps(config, sort_keys=True)) in seconds
        }
        check = {"n_seeds": len(trained)}
        if trained:
            slowest = max(trained.values())
            check |= {
                "measured": "–".join(sorted({f"{min(trained.values()):.0f}", f"{slowest:.0f}"}, key=float)) + " s",
                "margin": BUDGET_SECONDS - slowest,
                "met": slowest <= BUDGET_SECONDS,
            }
        checks.append({"dataset": dataset, "bar": f"training ≤ {BUDGET_SECONDS} s a run", "draws": None, **check})
    return checks


def markdown(checks: list[dict], inputs: list[str], recipe: str, baseline: str, prov: dict) -> str:
    lines = [
        "# The recipe issue's quality bar, from stored recipe-study results",
        "",
        provenance_line(prov) + " (this table's; the runs were measured by the studies read, each with its own "
        "provenance in its results.json).",
        f"Recipe `{recipe}`, same-run CNN `{baseline}`; mean ± sd over seeds, a margin is the mean minus the bar "
        "(positive: met with room). Eight draws: class distances averaged over eight noise draws (the CNN's "
        "eight: MC-dropout passes). Results read: " + ", ".join(f"`{p}`" for p in inputs) + ".",
        "",
        "| set | bar | draws | measured | margin | met | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        if not c["n_seeds"]:
            cells = ["not measured in these files", "—", "—", "0"]
        else:
            margin = f"{c['margin']:+.0f} s" if c["draws"] is None else f"{c['margin']:+.3f}"
            cells = [c["measured"], margin, "yes" if c["met"] else "**no**", str(c["n_seeds"])]
        draws = "—" if c["draws"] is None else str(c["draws"])
        lines.append(f"| {c['dataset']} | {c['bar']} | {draws} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="recipe_study results.json files")
    parser.add_argument("--times", nargs="*", type=Path, default=[], help="results.json of the studies that trained")
    parser.add_argument("--recipe", default="t1-25", help="the fast recipe's candidate name in the results")
    parser.add_argument("--baseline", default="cnn-small-shift2", help="the same-run CNN's candidate name")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.md and results.json")
    args = parser.parse_args()
    start = time.perf_counter()
    rows, rules, configs = load(args.results)
    checks = bars(rows, rules, configs, training_seconds(args.results + args.times), args.recipe, args.baseline)
    inputs = [str(p) for p in args.results + args.times]
    measured_by = {p: json.loads(Path(p).read_text()).get("provenance") for p in inputs}
    prov = provenance()
    report = markdown(checks, inputs, args.recipe, args.baseline, prov)
    print(report)
    results = dict(
        what="the recipe issue's quality bar, read from stored recipe-study results",
        recipe=args.recipe,
        baseline=args.baseline,
        inputs=inputs,
        inputs_provenance=measured_by,
        checks=checks,
        wall_seconds=time.perf_counter() - start,
        provenance=prov,
    )
    write_results(args.out, results, report)


if __name__ == "__main__":
    main()
