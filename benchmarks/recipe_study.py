"""Recipe study: candidate changes to the fast recipe, each over several seeds, on the real test splits.

    python benchmarks/recipe_study.py --datasets retinamnist --candidates paper onehot t1-25 --seeds 0 1 2

Every candidate is the course's ``fast`` recipe (:func:`medsymmflow.recipes.course_config`)
with a few fields changed; ``cnn-small`` is the same-run discriminative baseline (same
trainer, steps and data). Each run is evaluated on the test split with one noise draw and
with 8, with its configuration's own decoding, beside the majority rule. Not a test: it
prints the table and writes ``results.md`` and ``results.json`` (provenance: commit,
versions, device, seeds, wall time per run) to ``--out``. Trained models are cached in
``--models`` (keyed by their full configuration), so a rerun only evaluates.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medsymmflow import config
from medsymmflow.course import train_or_load
from medsymmflow.data import load_dataset
from medsymmflow.files import write_text_atomic
from medsymmflow.provenance import provenance
from medsymmflow.recipes import course_config
from medsymmflow.reproduce import evaluate_test, majority_rule
from medsymmflow.reproduce_report import summarize, summary_table

# Each candidate: the fields it changes in the fast recipe.
CANDIDATES = {
    "paper": {},  # the fast recipe as it is: RGB masks, t ~ U(0, 1)
    "onehot": {"mask_mode": "onehot"},
    "gray": {"mask_mode": "gray"},
    "t1-25": {"classify_share": 0.25},
    "onehot+t1-25": {"mask_mode": "onehot", "classify_share": 0.25},
    "steps-x2": {"steps": 600, "checkpoint_every": 150},
    "cnn-small": {"preset": "cnn-small"},
}
DRAWS = (1, 8)


def run(datasets, candidates, seeds, models: Path, data_root) -> dict:
    rows, runs, majority, start = [], {}, {}, time.perf_counter()
    origin = provenance()  # read before the run: the checkout may change while it trains
    for flag in datasets:
        data = load_dataset(flag, root=data_root)
        majority[flag] = majority_rule(data)
        for seed in seeds:
            for name in candidates:
                train_config = course_config(flag, config.Profile("fast"), seed=seed, **CANDIDATES[name])
                began = time.perf_counter()
                model, meta = train_or_load(train_config, data, progress=False, root=models)
                seconds = time.perf_counter() - began
                runs[f"{flag} {name} seed {seed}"] = {
                    "config": meta["config"],
                    "best_step": meta["best_step"],
                    "train_or_load_seconds": seconds,
                }
                for draws in DRAWS:
                    scores = evaluate_test(model, data, train_config.image_size, draws, seed)
                    rows.append(
                        {
                            "dataset": flag,
                            "model": name,
                            "decoding": getattr(model, "decoding", None),
                            "draws": draws,
                            "seed": seed,
                            **scores,
                        }
                    )
                    print(f"{flag} {name} seed {seed} {draws} draw(s): ACC {scores['acc']:.3f} AUC {scores['auc']:.3f}")
    return {
        "what": "fast-recipe candidates vs the same-run small CNN and the majority rule, test split",
        "candidates": {name: CANDIDATES[name] for name in candidates},
        "seeds": list(seeds),
        "rows": rows,
        "summary": summarize(rows),
        "majority_rule": majority,
        "runs": runs,
        "wall_seconds": time.perf_counter() - start,
        "provenance": origin,
    }


def markdown(results: dict) -> str:
    p = results["provenance"]
    lines = [
        "# Recipe study: fast-recipe candidates, test split",
        "",
        f"Device: {p['device']}. Commit {p['commit']}, torch {p['torch']}. Seeds {results['seeds']}; "
        f"total wall time {results['wall_seconds']:.0f} s. Mean ± standard deviation over seeds.",
        "",
        "Candidates (fields changed in the fast recipe): "
        + "; ".join(f"`{n}` {c or '(none)'}" for n, c in results["candidates"].items()),
        "",
        *summary_table(results["summary"], model_header="candidate"),
    ]
    lines += ["", "| dataset | majority rule ACC | balanced ACC |", "|---|---|---|"]
    for flag, rule in results["majority_rule"].items():
        lines.append(f"| {flag} | {rule['acc']:.3f} ({rule['class_name']}) | {rule['balanced_accuracy']:.3f} |")
    lines += ["", "Seconds to train (or load) each run:", ""]
    lines += [
        f"- {name}: {r['train_or_load_seconds']:.0f} s, best step {r['best_step']}"
        for name, r in results["runs"].items()
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "retinamnist"])
    parser.add_argument("--candidates", nargs="+", choices=tuple(CANDIDATES), default=["paper", "onehot", "cnn-small"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", default="runs/models", help="cache of trained runs (shared with the notebooks)")
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="runs/recipe_study")
    args = parser.parse_args()
    results = run(args.datasets, args.candidates, args.seeds, Path(args.models), args.data_root)
    out = Path(args.out)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
