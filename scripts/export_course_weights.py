"""Ship the fast profile's course runs with the project: copy them into ``course_weights/``.

    MEDSYMMFLOW_COURSE_WEIGHTS=0 make course            # in a fresh clone: every chapter trains its runs
    .venv/bin/python scripts/export_course_weights.py   # then ship its real-data runs and write the manifest

The export ships exactly the runs it is given (:func:`medsymmflow.course.export_course_weights`:
each run's best EMA weights, their metadata and the whole run's validation history; the folders of
runs it does not ship are removed from ``course_weights/``). Given no run folders, it takes every
finished real-data pixel-space run in ``--runs`` (default ``runs/models``), so run it so in a fresh
clone, where ``runs/models`` holds only what the course trained; elsewhere, name the runs (e.g. the
four that ``course_weights/README.md`` lists). ``tests/test_course_weights.py`` fails when a
chapter's run is not shipped, e.g. after a recipe change: export again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medsymmflow.config import project_dir
from medsymmflow.course import export_course_weights, shipping_problems


def course_runs(folder: Path) -> list[Path]:
    """The runs in ``folder`` (checkpoint folders with a ``last/``) that can be shipped, by name."""
    runs = sorted(p for p in folder.iterdir() if (p / "last" / "config.json").exists())
    return [run for run in runs if not shipping_problems(run)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=project_dir() / "runs" / "models")
    parser.add_argument("--out", type=Path, default=project_dir() / "course_weights")
    parser.add_argument("run", nargs="*", type=Path, help="run folders to ship (default: every one in --runs)")
    args = parser.parse_args()
    runs = args.run or (course_runs(args.runs) if args.runs.is_dir() else [])
    if not runs:
        raise SystemExit(
            f"no finished real-data runs in {args.runs}: run `MEDSYMMFLOW_COURSE_WEIGHTS=0 make course` first"
        )
    manifest = export_course_weights(runs, args.out)
    for name in (run.name for run in runs):
        entry = manifest["runs"][name]
        print(f"{name}: {entry['bytes'] / 1e6:.1f} MB, best step {entry['best_step']} of {entry['steps']}")
    print(f"{len(runs)} runs, {sum(e['bytes'] for e in manifest['runs'].values()) / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
