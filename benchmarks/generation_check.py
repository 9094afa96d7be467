"""Does a recipe lever change what the flow generates? Euler samples of trained runs, judged by one CNN.

A lever chosen for classification (e.g. ``--shift``) also changes the generator. For every flow run
given, this generates ``--per-class`` images a class at each Euler NFE with the run's own seed
(:func:`medsymmflow.generation.nfe_sweep`) and scores them with one fixed real-trained CNN, the
``--judge``: agreement (does the image carry its class?) and the Fréchet distance in the judge's
features, beside its real-vs-real floor. Groups are compared seed by seed with the first group.

    python benchmarks/generation_check.py --judge runs/models/CNN_RUN \\
        --group recipe runs/models/RUN_SEED0 ... --group shift2 runs/models/RUN_SEED0 ... \\
        --out benchmarks/results/generation_check_shift_cpu_DATE
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from medsymmflow import generation
from medsymmflow.checkpoints import load_checkpoint
from medsymmflow.models.baselines import BASELINES
from medsymmflow.provenance import provenance
from medsymmflow.report import data_for_checkpoint
from medsymmflow.reproduce_report import mean_sd, write_results

METRICS = ("agreement", "frechet")


def check(groups: dict[str, list[Path]], judge: Path, nfes, per_class: int, data_root=None) -> dict:
    origin, start = provenance(), time.perf_counter()
    classifier, judge_meta = load_checkpoint(judge / "best")
    if judge_meta["config"]["preset"] not in BASELINES:
        raise SystemExit(f"the judge must be a CNN run ({', '.join(BASELINES)}), got {judge.name}")
    rows = []
    for group, runs in groups.items():
        for run in runs:
            model, meta = load_checkpoint(run / "best")
            config = meta["config"]
            data = data_for_checkpoint(meta, data_root)
            if data.flag != judge_meta["config"]["dataset"]:
                raise SystemExit(f"{run.name} is a {data.flag} run; the judge {judge.name} is not")
            sweep = generation.nfe_sweep(
                model, classifier, data, per_class, config["image_size"], nfes, ("euler",), config["seed"], cas_nfes=()
            )
            for row in sweep:
                scores = {k: row[k] for k in ("nfe", *METRICS, "frechet_floor")}
                rows.append({"group": group, "run": run.name, "seed": config["seed"], **scores})
                print(
                    f"{group} seed {config['seed']} NFE {row['nfe']}: "
                    + ", ".join(f"{k} {row[k]:.3f}" for k in METRICS)
                )
    return {
        "what": "Euler samples of each run, scored by one real-trained CNN (agreement, Fréchet distance)",
        "judge": judge.name,
        "per_class": per_class,
        "rows": rows,
        "wall_seconds": time.perf_counter() - start,
        "provenance": origin,
    }


def markdown(results: dict) -> str:
    groups = list(dict.fromkeys(r["group"] for r in results["rows"]))
    first = {(r["seed"], r["nfe"]): r for r in results["rows"] if r["group"] == groups[0]}
    lines = [
        f"# Generation check (judge {results['judge']}, {results['per_class']} images a class, Euler)",
        "",
        f"mean ± sd over seeds; Δ: paired by seed with `{groups[0]}`.",
        "",
        "| group | NFE | seeds | agreement | Fréchet | floor | Δ agreement | Δ Fréchet |",
        "|---|---|---|---|---|---|---|---|",
    ]

    for group in groups:
        for nfe in sorted({r["nfe"] for r in results["rows"] if r["group"] == group}):
            cell = sorted(
                (r for r in results["rows"] if (r["group"], r["nfe"]) == (group, nfe)), key=lambda r: r["seed"]
            )
            paired = [(r, first.get((r["seed"], nfe))) for r in cell]
            deltas = (
                ["", ""]
                if group == groups[0]
                else [mean_sd([r[m] - base[m] for r, base in paired], signed=True) for m in METRICS]
                if all(base for _, base in paired)
                else ["no paired run", "no paired run"]
            )
            lines.append(
                f"| {group} | {nfe} | {','.join(str(r['seed']) for r in cell)} | "
                + " | ".join(
                    [mean_sd([r[m] for r in cell]) for m in METRICS] + [mean_sd([r["frechet_floor"] for r in cell])]
                )
                + " | "
                + " | ".join(deltas)
                + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", type=Path, required=True, help="a real-trained CNN run folder")
    parser.add_argument(
        "--group", nargs="+", action="append", required=True, metavar=("NAME", "RUN"), help="a name, then run folders"
    )
    parser.add_argument("--nfes", nargs="+", type=int, default=[1, 4, 25])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="runs/generation_check")
    args = parser.parse_args()
    groups = {name: [Path(run) for run in runs] for name, *runs in args.group}
    results = check(groups, args.judge, tuple(args.nfes), args.per_class, args.data_root)
    report = markdown(results)
    write_results(Path(args.out), results, report)
    print(report)


if __name__ == "__main__":
    main()
