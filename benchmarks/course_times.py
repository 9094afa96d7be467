"""Each chapter's time in the fast profile, cold and cached, read from one ``make test`` log.

    bash .ci/run 2>&1 | tee ci.log          # in a fresh clone: nothing trained yet
    python benchmarks/course_times.py ci.log --out benchmarks/results/course_times_cpu_DATE

``make test`` runs the notebooks twice, which gives both numbers of the README's chapter table:

- **cold**: ``make test-notebooks`` executes every chapter under nbval in course order with an empty
  ``runs/models/`` (on a fresh clone), so a chapter pays for every model it is the first to need.
  Its ``--durations=0`` report lists every cell's seconds (setup, call and teardown); a chapter's
  cold time is their sum.
- **cached**: ``make book`` then executes every chapter again with the course runner (``medsymmflow
  course``), loading the models the first pass trained; the runner prints each chapter's seconds.

Chapter times follow the machine's speed, which differs between machines of one kind (the same
chapters have taken 60 % longer on one 2-core VM than on another). So the script also times the
machine: ``--probe-steps`` training steps of chapter 2's model (the fast recipe on PneumoniaMNIST,
validation excluded), ``--probe-repeats`` times, right after reading the log. Run it on the machine
that wrote the log, with nothing else running, and compare chapter times across logs only beside
their seconds per step.

Not a test: prints the table and writes ``results.md`` and ``results.json`` (provenance: commit,
versions, device; the log's name and total; the probe) to ``--out``. Run it in the clone that wrote
the log, so the commit it records is the one that was timed.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

from medsymmflow import config
from medsymmflow.data import load_dataset
from medsymmflow.provenance import provenance, provenance_line
from medsymmflow.recipes import course_config
from medsymmflow.reproduce_report import write_results

# "12.34s call     notebooks/02_symmetric_transport.ipynb::Cell 5"
NBVAL_DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+notebooks/(\d\d_[\w-]+)\.ipynb::")
# "02_symmetric_transport.ipynb                         54.2 s  ok"
RUNNER_LINE = re.compile(r"^(\d\d_[\w-]+)\.ipynb\s+([\d.]+) s\s+(\S.*)$")


def parse_log(text: str) -> dict:
    """``{chapter: {"cold": seconds, "cached": seconds, "cached_status": text}}`` from a ``make test`` log.

    Raises:
        ValueError: the log holds no nbval durations or no runner lines (not a ``make test`` log, or
            one cut off before both passes ran).
    """
    cold: dict[str, float] = defaultdict(float)
    cached: dict[str, tuple[float, str]] = {}
    for line in text.splitlines():
        if match := NBVAL_DURATION.match(line):
            cold[match[2]] += float(match[1])
        elif match := RUNNER_LINE.match(line.strip()):
            cached[match[1]] = (float(match[2]), match[3].strip())  # a rerun chapter keeps its last line
    if not cold or not cached:
        missing = "nbval's --durations report" if not cold else "the course runner's per-chapter lines"
        raise ValueError(f"the log lacks {missing}: give the whole output of `make test`")
    chapters = sorted(set(cold) | set(cached))
    return {
        name: {
            "cold": round(cold[name], 1) if name in cold else None,
            "cached": cached[name][0] if name in cached else None,
            "cached_status": cached[name][1] if name in cached else None,
        }
        for name in chapters
    }


def probe_speed(steps: int, repeats: int) -> dict:
    """Seconds per training step of chapter 2's model on this machine: ``repeats`` runs of ``steps``
    steps (seeds 0, 1, ...), each after five untimed ones, never reaching a validation."""
    runs = [course_config("pneumoniamnist", config.profile("fast"), seed=seed) for seed in range(repeats)]
    if not 1 <= steps < runs[0].checkpoint_every - 5:
        raise ValueError(f"--probe-steps must be 1 to {runs[0].checkpoint_every - 6}: more would time a validation")
    from bench_train_step import time_trainer  # a sibling script: on the path when this one is run

    data = load_dataset("pneumoniamnist")
    per_repeat = [time_trainer(run, data, steps) / 1000 for run in runs]
    return {
        "what": "s per training step, fast recipe on PneumoniaMNIST (tiny UNet, 28 px, batch 64)",
        "steps": steps,
        "s_per_step": [round(s, 3) for s in per_repeat],
        "mean": round(statistics.mean(per_repeat), 3),
        "sd": round(statistics.stdev(per_repeat), 3) if repeats > 1 else None,
    }


def markdown(results: dict) -> str:
    origin = results["provenance"]
    lines = [
        "# Chapter times, fast profile: cold (nbval, nothing cached) and cached (the course runner)",
        "",
        f"{provenance_line(origin)} Read from `{results['log']}`.",
        "",
        "| chapter | cold (s) | cached (s) | within 5 min cold | runner |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["chapters"].items():
        cold = "—" if row["cold"] is None else f"{row['cold']:.0f}"
        cached = "—" if row["cached"] is None else f"{row['cached']:.0f}"
        fits = "—" if row["cold"] is None else ("yes" if row["cold"] <= 300 else "no")
        lines.append(f"| {name} | {cold} | {cached} | {fits} | {row['cached_status'] or '—'} |")
    total = results["total_cold"], results["total_cached"]
    lines += ["", f"Sum: {total[0]:.0f} s cold, {total[1]:.0f} s cached.", ""]
    if probe := results.get("probe"):
        spread = f" ± {probe['sd']:.3f}" if probe["sd"] is not None else ""
        lines += [
            f"Machine speed, probed after the log: {probe['mean']:.3f}{spread} s per training step of chapter 2's "
            f"model ({len(probe['s_per_step'])} runs of {probe['steps']} steps: {probe['s_per_step']}).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="the whole output of `make test` (e.g. of `bash .ci/run`)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--probe-steps", type=int, default=30, help="timed steps a probe run (0: no probe)")
    parser.add_argument("--probe-repeats", type=int, default=3)
    args = parser.parse_args()
    chapters = parse_log(args.log.read_text(errors="replace"))
    results = {
        "what": "seconds per chapter in the fast profile: cold under nbval, then cached under the course runner",
        "log": args.log.name,
        "chapters": chapters,
        "total_cold": sum(r["cold"] or 0 for r in chapters.values()),
        "total_cached": sum(r["cached"] or 0 for r in chapters.values()),
        "provenance": provenance(),
    }
    if args.probe_steps > 0:
        results["probe"] = probe_speed(args.probe_steps, args.probe_repeats)
    report = markdown(results)
    print(report)
    write_results(args.out, results, report)


if __name__ == "__main__":
    main()
