"""The ``medsymmflow`` command line (also ``python -m medsymmflow``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medsymmflow import config


def _course(args: argparse.Namespace) -> int:
    from medsymmflow.course import find_notebooks, run_notebook

    if args.profile:
        os.environ[config.PROFILE_ENV] = args.profile  # the kernels inherit it
    notebooks = [Path(p) for p in args.notebooks] or find_notebooks(args.folder)
    profile = config.profile().name
    out_dir = Path(args.out) / profile
    print(f"Running {len(notebooks)} notebook(s) in the {profile!r} profile -> {out_dir}", flush=True)
    failures = 0
    total = 0.0
    for notebook in notebooks:
        run = run_notebook(notebook, out_dir, timeout=args.timeout)
        total += run.seconds
        status = "ok" if run.ok else f"FAILED: {run.error}"
        failures += not run.ok
        print(f"{notebook.name:<48} {run.seconds:8.1f} s  {status}", flush=True)
    print(f"{'total':<48} {total:8.1f} s  {len(notebooks) - failures} ok, {failures} failed")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsymmflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    course = commands.add_parser("course", help="execute every notebook headless, timed, with rendered copies")
    course.add_argument("notebooks", nargs="*", help="notebooks to run (default: every NN_*.ipynb in --folder)")
    course.add_argument("--folder", default="notebooks", help="folder of the chapters (default: notebooks)")
    course.add_argument("--out", default="runs/course", help="where executed .ipynb and .html copies go")
    course.add_argument("--profile", choices=config.PROFILES, help="override MEDSYMMFLOW_PROFILE")
    course.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    course.set_defaults(run=_course)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
