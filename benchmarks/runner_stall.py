"""How often does the notebook runner lose a kernel reply? Run one notebook many times and count.

    python benchmarks/runner_stall.py notebooks/02_symmetric_transport.ipynb --repeats 10

Each repeat executes the notebook with the course runner (:func:`medsymmflow.course.run_notebook`:
``StallWatch`` + ``SlicedReplies``) in the current profile, and records its seconds, how many
execute replies reached the runner late (a missed socket wake-up that the old single poll would
have waited on until the stall watch stopped the kernel), and whether the watch had to stop it. The kernel runs under this interpreter, so running the
script from another environment (e.g. one with ``ipykernel<7``) compares kernel versions.
Writes ``results.md`` and ``results.json`` (provenance: commit and the Jupyter stack's versions)
under ``--out``. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

from medsymmflow import config
from medsymmflow.course import run_notebook
from medsymmflow.files import write_text_atomic
from medsymmflow.provenance import provenance

STACK = ("ipykernel", "jupyter_client", "nbclient", "pyzmq", "tornado", "ipywidgets")


def run(notebook: Path, repeats: int, stall_seconds: float, out: Path) -> dict:
    import zmq

    rows = []
    start = time.perf_counter()
    for repeat in range(repeats):
        result = run_notebook(notebook, out / "executed", stall_seconds=stall_seconds)
        rows.append(
            {
                "repeat": repeat,
                "seconds": round(result.seconds, 1),
                "ok": result.ok,
                "late_replies": result.late_replies,
                "stalled": result.stalled,
                "error": result.error,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {
        "what": "repeated executions of one notebook by the course runner: lost kernel replies",
        "notebook": notebook.name,
        "profile": config.profile().name,
        "stall_seconds": stall_seconds,
        "rows": rows,
        "wall_seconds": time.perf_counter() - start,
        "stack": {name: version(name) for name in STACK} | {"libzmq": zmq.zmq_version()},
        "provenance": provenance(),
    }


def markdown(results: dict) -> str:
    rows, stack = results["rows"], results["stack"]
    seconds = sorted(r["seconds"] for r in rows)
    lines = [
        f"# Runner stall probe: {results['notebook']} × {len(rows)} ({results['profile']} profile)",
        "",
        "Stack: " + ", ".join(f"{name} {v}" for name, v in stack.items()) + ".",
        f"Commit {results['provenance']['commit']}; {results['provenance']['device']}; "
        f"wall time {results['wall_seconds']:.0f} s.",
        "",
        f"- passed: {sum(r['ok'] for r in rows)} of {len(rows)}",
        f"- runs where a reply reached the client late (a missed wake-up, picked up at the slice's end): "
        f"{sum(r['late_replies'] > 0 for r in rows)}",
        f"- stopped by the stall watch ({results['stall_seconds']:.0f} s idle): {sum(r['stalled'] for r in rows)}",
        f"- seconds per run: min {seconds[0]:.1f}, median {seconds[len(seconds) // 2]:.1f}, max {seconds[-1]:.1f}",
        "",
        "| repeat | seconds | ok | late replies | stalled |",
        "|---|---|---|---|---|",
        *(f"| {r['repeat']} | {r['seconds']} | {r['ok']} | {r['late_replies']} | {r['stalled']} |" for r in rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--stall-timeout", type=float, default=120, help="seconds idle before the watch stops a kernel")
    parser.add_argument("--out", type=Path, default=Path("runs/runner_stall"))
    args = parser.parse_args()
    results = run(args.notebook, args.repeats, args.stall_timeout, args.out)
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "results.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
