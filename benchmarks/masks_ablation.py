"""Mask-encoding ablation: RGB (the paper's) vs gray (the paper's ablation) vs one-hot, every decoding,
with the same recipe and budget, beside the same-run CNN and the majority rule; plus generation metrics.

    python benchmarks/masks_ablation.py --datasets pneumoniamnist synthetic-dermamnist --seeds 0 1 2
    python benchmarks/masks_ablation.py --datasets pneumoniamnist --sweep   # + the NFE x solver sweep of RGB

The paper's claim under test: RGB masks beat gray masks in ACC and AUC, most on sets with many
classes. Datasets as in ``recipe_study.py``: any MedMNIST flag whose files are present (e.g.
``dermamnist``, ``bloodmnist`` where a user has them) and ``synthetic-FLAG``, the procedural twin
(K = 7 for ``synthetic-dermamnist``, K = 8 for ``synthetic-bloodmnist``).

Every model is the course's ``fast`` recipe with only the mask mode changed (the study's
candidates ``t1-25``, ``gray+t1-25``, ``onehot+t1-25``), trained or loaded through the same cache
as the study and the notebooks. Each is evaluated on the test split with one noise draw (the
paper's protocol) under each of the three decodings. Generation (on unless ``--no-generation``):
``ceil(500 / K)`` images of each class per model (fewer where the real training split has under
twice that many of a class), by 25 Euler steps, scored by
:mod:`medsymmflow.generation` (agreement with the same-run CNN, CAS, Fréchet distance in that CNN's
features beside its floor). ``--sweep`` adds, for the RGB models, every solver at NFE 1 ... 25
(CAS for Euler at :data:`CAS_NFES` only, as it trains a CNN per row; the other solvers at
:data:`OTHER_NFES`).
Not a test: prints the tables and writes ``results.md`` and ``results.json`` (provenance: commit,
versions, device, seeds, wall time) to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from medsymmflow.data.masks import DECODINGS, MODE_DECODINGS, MODES, centre_separation
from medsymmflow.generation import GENERATED, NFES, SWEEP_SOLVERS, nfe_sweep, per_class, smallest_nfe_within
from medsymmflow.provenance import provenance, provenance_line
from medsymmflow.reproduce import evaluate_test, majority_rule
from medsymmflow.reproduce_report import plus_minus, summarize, summary_table, write_results

_spec = importlib.util.spec_from_file_location("recipe_study", Path(__file__).with_name("recipe_study.py"))
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)

MODE_CANDIDATES = {"rgb": "t1-25", "gray": "gray+t1-25", "onehot": "onehot+t1-25"}
# the recipe's same-run CNN, with its flows' shifts; the committed results before 2026-12-07 ran the
# recipe without shifts, beside the unshifted "cnn-small"
BASELINE = "cnn-small-shift2"
CAS_NFES = (2, 8, 25)  # the sweep's Euler rows that also get a CAS (each trains a CNN)
OTHER_NFES = (2, 4, 8)  # the other solvers' NFEs in the sweep (at 16 and more every solver is close to 25 Euler steps)
GENERATION_METRICS = ("agreement", "cas", "frechet", "frechet_floor")


def run(
    datasets, modes, seeds, models: Path, data_root, generation: bool, cas: bool, sweep: bool, sweep_solvers, out=None
) -> dict:
    """The ablation; with ``out``, the results so far are written there after every seed."""
    rows, generated, sweeps, runs, majority, separation = [], [], [], {}, {}, {}
    origin, start = provenance(), time.perf_counter()

    def results() -> dict:
        return {
            "what": "mask encodings x decodings, fast recipe, test split, one noise draw; generation metrics",
            "candidates": {mode: study.CANDIDATES[MODE_CANDIDATES[mode]] for mode in modes},
            "seeds": list(seeds),
            "rows": rows,
            "summary": summarize(rows),
            "generated_per_model": GENERATED,
            "generation": generated,
            "generation_summary": summarize(generated, ("dataset", "mode"), GENERATION_METRICS),
            "sweep": sweeps,
            "sweep_summary": summarize(sweeps, ("dataset", "solver", "nfe"), GENERATION_METRICS),
            "smallest_nfe_within_1_point": _smallest(sweeps),
            "rgb_minus_gray": _paired(rows),
            "centre_separation": separation,
            "majority_rule": majority,
            "runs": runs,
            "wall_seconds": time.perf_counter() - start,
            "provenance": origin,
        }

    for flag in datasets:
        data = study.load_study_dataset(flag, data_root)
        majority[flag] = majority_rule(data)
        separation[flag] = {mode: centre_separation(data.n_classes, mode) for mode in modes}
        n_per_class = per_class(data.n_classes)
        for seed in seeds:
            cnn, record = study.train_candidate(flag, data, BASELINE, seed, models)
            runs[f"{flag} {BASELINE} seed {seed}"] = record
            scores = evaluate_test(cnn, data, record["config"]["image_size"], 1, seed)
            rows.append({"dataset": flag, "model": BASELINE, "decoding": None, "draws": 1, "seed": seed, **scores})
            for mode in modes:
                model, record = study.train_candidate(flag, data, MODE_CANDIDATES[mode], seed, models)
                runs[f"{flag} {mode} seed {seed}"] = record
                size = record["config"]["image_size"]
                for decoding in DECODINGS:
                    with model.reading(decoding=decoding):
                        scores = evaluate_test(model, data, size, 1, seed)
                    rows.append(
                        {"dataset": flag, "model": mode, "decoding": decoding, "draws": 1, "seed": seed, **scores}
                    )
                    print(f"{flag} {mode} {decoding} seed {seed}: ACC {scores['acc']:.3f} AUC {scores['auc']:.3f}")
                if not generation:
                    continue
                full = sweep and mode == "rgb"
                began = time.perf_counter()
                nfes, cas_nfes = (NFES, CAS_NFES) if full else ((25,), (25,))
                swept = nfe_sweep(model, cnn, data, n_per_class, size, nfes, ("euler",), seed, cas_nfes if cas else ())
                if full:  # the other solvers without CAS, which trains a CNN per row
                    others = [s for s in sweep_solvers if s != "euler"]
                    swept += nfe_sweep(model, cnn, data, n_per_class, size, OTHER_NFES, others, seed, cas_nfes=())
                swept = [{"dataset": flag, "mode": mode, "seed": seed, **row} for row in swept]
                generated += [r for r in swept if (r["solver"], r["nfe"]) == ("euler", 25)]
                sweeps += swept if full else []
                print(f"{flag} {mode} seed {seed}: generation metrics in {time.perf_counter() - began:.0f} s")
            if out is not None:
                current = results()
                write_results(out, current, markdown(current))
    return results()


def _smallest(sweeps: list[dict]) -> dict:
    """Per dataset and seed: the smallest NFE whose CAS is within 1 point of 25-step Euler's."""
    found = {}
    for key in sorted({(r["dataset"], r["seed"]) for r in sweeps}):
        rows = [r for r in sweeps if (r["dataset"], r["seed"]) == key and "cas" in r]
        if rows:
            found[f"{key[0]} seed {key[1]}"] = smallest_nfe_within(rows)
    return found


def _paired(rows: list[dict]) -> list[dict]:
    """RGB minus gray (each with its own decoding), paired by seed: mean and spread of the differences."""
    own = {(r["dataset"], r["model"], r["seed"]): r for r in rows if r["decoding"] == MODE_DECODINGS.get(r["model"])}
    result = []
    for dataset in sorted({r["dataset"] for r in rows}):
        seeds = sorted(s for d, m, s in own if d == dataset and m == "rgb" and (d, "gray", s) in own)
        if not seeds:
            continue
        entry = {"dataset": dataset, "n_seeds": len(seeds)}
        for metric in ("acc", "auc", "balanced_accuracy"):
            diff = np.array([own[(dataset, "rgb", s)][metric] - own[(dataset, "gray", s)][metric] for s in seeds])
            entry[metric] = float(diff.mean())
            entry[f"{metric}_std"] = float(diff.std(ddof=1)) if len(diff) > 1 else None
        result.append(entry)
    return result


def markdown(results: dict) -> str:
    p = results["provenance"]
    lines = [
        "# Mask-encoding ablation: RGB vs gray vs one-hot, fast recipe, test split",
        "",
        f"{provenance_line(p)} Seeds {results['seeds']}; "
        f"total wall time {results['wall_seconds']:.0f} s. Mean ± standard deviation over seeds; one noise draw.",
        "",
        "Models (fields set in the fast recipe): " + "; ".join(f"`{m}` {c}" for m, c in results["candidates"].items()),
        "",
        *summary_table(results["summary"], model_header="mask"),
    ]
    if results["rgb_minus_gray"]:  # only when both masks ran
        lines += [
            "",
            "## RGB minus gray (each with its own decoding), paired by seed",
            "",
            "| dataset | seeds | ΔACC | ΔAUC | Δbalanced ACC |",
            "|---|---|---|---|---|",
        ]
    for e in results["rgb_minus_gray"]:
        lines.append(
            f"| {e['dataset']} | {e['n_seeds']} | {plus_minus(e, 'acc')} | {plus_minus(e, 'auc')} | {plus_minus(e, 'balanced_accuracy')} |"
        )
    lines += [
        "",
        "## Generation (25 Euler steps)",
        "",
        "Agreement: share the same-run CNN labels as the requested class. CAS: test accuracy of a CNN "
        "trained on the generated images only. FD: Fréchet distance in the same-run CNN's features "
        "(not FID), beside its floor (two real samples of the same size). Images: generated per model, "
        f"about {results['generated_per_model']} spread evenly over the classes, fewer where the rarest class "
        "has under twice its share of real training images.",
        "",
        "| dataset | mask | seeds | images | agreement | CAS | FD | FD floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    images = {(g["dataset"], g["mode"]): g["n_generated"] for g in results["generation"]}
    for e in results["generation_summary"]:
        lines.append(
            f"| {e['dataset']} | {e['mode']} | {e['n_seeds']} | {images[e['dataset'], e['mode']]} | "
            f"{plus_minus(e, 'agreement')} | {plus_minus(e, 'cas')} | "
            f"{plus_minus(e, 'frechet', 2)} | {plus_minus(e, 'frechet_floor', 2)} |"
        )
    if results["sweep_summary"]:
        lines += ["", "## NFE x solver (RGB models)", "", "| dataset | solver | NFE | agreement | CAS | FD |"]
        lines.append("|---|---|---|---|---|---|")
        for e in results["sweep_summary"]:
            lines.append(
                f"| {e['dataset']} | {e['solver']} | {e['nfe']} | {plus_minus(e, 'agreement')} | {plus_minus(e, 'cas')} | "
                f"{plus_minus(e, 'frechet', 2)} |"
            )
        lines += ["", "Smallest Euler NFE whose CAS is within 1 point of 25-step Euler's:", ""]
        lines += [
            f"- {key}: NFE {nfe} ({solver})" for key, (nfe, solver) in results["smallest_nfe_within_1_point"].items()
        ]
    modes = " / ".join(next(iter(results["centre_separation"].values()), {}))
    lines += ["", f"| dataset | majority rule ACC | smallest centre distance ({modes}) |", "|---|---|---|"]
    for flag, rule in results["majority_rule"].items():
        gaps = " / ".join(f"{v:.2f}" for v in results["centre_separation"][flag].values())
        lines.append(f"| {flag} | {rule['acc']:.3f} ({rule['class_name']}) | {gaps} |")
    return "\n".join(lines + study.run_lines(results["runs"])) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["pneumoniamnist", "retinamnist", "synthetic-dermamnist", "synthetic-bloodmnist"],
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", default="runs/models", help="cache of trained runs (shared with the notebooks)")
    parser.add_argument("--data-root")
    parser.add_argument("--no-generation", dest="generation", action="store_false", help="skip generation metrics")
    parser.add_argument("--no-cas", dest="cas", action="store_false", help="skip CAS (it trains a CNN per row)")
    parser.add_argument(
        "--sweep", action="store_true", help="for the RGB models: Euler at NFE 1 ... 25, the other solvers at 2, 4, 8"
    )
    parser.add_argument(
        "--sweep-solvers", nargs="+", choices=SWEEP_SOLVERS, default=list(SWEEP_SOLVERS), help="(Euler always runs)"
    )
    parser.add_argument("--out", default="runs/masks_ablation")
    args = parser.parse_args()
    results = run(
        args.datasets,
        args.modes,
        args.seeds,
        Path(args.models),
        args.data_root,
        args.generation,
        args.cas,
        args.sweep,
        args.sweep_solvers,
        Path(args.out),
    )
    print(markdown(results))


if __name__ == "__main__":
    main()
