"""Ship the fast profile's course runs with the project: copy them into ``course_weights/``.

    MEDSYMMFLOW_COURSE_WEIGHTS=0 make course            # in a fresh clone: every chapter trains its runs
    .venv/bin/python scripts/export_course_weights.py   # then copy its real-data runs and write the manifest

Every finished real-data run in ``--runs`` (default ``runs/models``) is copied: its best EMA
weights, their metadata and the whole run's validation history
(:func:`medsymmflow.course.export_course_weights`); synthetic-data runs, unfinished runs and the
latent chapter's codec and latent runs stay out (a latent run names its codec by a local path). Run it in a fresh clone, so that ``runs/models`` holds only what
the course itself trained, at the commit the manifest records. ``tests/test_course_weights.py``
fails when a chapter's run is missing from the manifest, e.g. after a recipe change: export again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medsymmflow.checkpoints import read_checkpoint_meta
from medsymmflow.config import project_dir
from medsymmflow.course import export_course_weights


def course_runs(folder: Path) -> list[Path]:
    """The finished real-data pixel-space runs in ``folder`` (checkpoint folders with a ``last/``), by name."""
    runs = []
    for run in sorted(p for p in folder.iterdir() if (p / "last" / "config.json").exists()):
        meta = read_checkpoint_meta(run / "last")
        if not meta["synthetic_data"] and meta["step"] >= meta["config"]["steps"] and not meta["config"]["codec"]:
            runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=project_dir() / "runs" / "models")
    parser.add_argument("--out", type=Path, default=project_dir() / "course_weights")
    args = parser.parse_args()
    runs = course_runs(args.runs)
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
