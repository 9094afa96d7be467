"""Where a number came from: commit, package versions, device and date, for every results file."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import torch

from medsymmflow import __version__, config

COMMIT_ENV = "MEDSYMMFLOW_COMMIT"


def provenance() -> dict:
    """Commit (``MEDSYMMFLOW_COMMIT`` if set, else git), versions, device and date of this run.

    A copy of the working tree (e.g. on a lent GPU machine) may carry no ``.git``, or a stale
    one: the caller can then say which commit it is through ``MEDSYMMFLOW_COMMIT``.
    """
    import accelerate
    import diffusers

    device = config.get_device()
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    given = os.environ.get(COMMIT_ENV)
    changes = None if given else _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")
    return {
        "commit": given or _git("rev-parse", "--short", "HEAD"),
        "commit_source": f"${COMMIT_ENV}" if given else "git",
        "uncommitted_changes": changes,
        "medsymmflow": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "device": name,
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def provenance_line(p: dict) -> str:
    """The one-sentence header every results report opens with, from :func:`provenance`'s dict.

    ``Device: cpu (x86_64, 2 threads). Commit c17a939 + uncommitted changes, medsymmflow 0.1.0,
    torch 2.14.1, diffusers 0.42.1.`` The commit is flagged when the tree differed from it, so a
    number is never credited to code it was not run on.
    """
    dirty = " + uncommitted changes" if p.get("uncommitted_changes") else ""
    return (
        f"Device: {p['device']}. Commit {p['commit']}{dirty}, medsymmflow {p['medsymmflow']}, "
        f"torch {p['torch']}, diffusers {p['diffusers']}."
    )


def _git(*args: str) -> str:
    try:
        command = ["git", *args]
        return subprocess.run(
            command, capture_output=True, text=True, check=True, cwd=config.project_dir()
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_identity(data) -> dict:
    """Which data a number is about: the flag, size and the official file's md5 (checked on load), or the twin."""
    from medsymmflow.data.medmnist import remote

    identity = {"flag": data.flag, "size": data.size, "synthetic": data.synthetic}
    if not data.synthetic:
        identity["md5"] = remote(data.flag, data.size)[1]
    return identity
