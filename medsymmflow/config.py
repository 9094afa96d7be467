"""Run profiles, device choice and seeding shared by every notebook and command.

Two profiles exist:

* ``fast``: sized so every notebook finishes in minutes on a 2-core laptop CPU;
* ``full``: sized for one GPU, to reproduce the paper's numbers.

The default is ``full`` when CUDA is available and ``fast`` otherwise; the
``MEDSYMMFLOW_PROFILE`` environment variable overrides it. ``MEDSYMMFLOW_EPOCHS`` sets the
``full`` recipe's training epochs (default 100, a tenth of the paper's 1000), so that
notebooks can reuse the checkpoints of a shorter ``medsymmflow reproduce`` run.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

PROFILE_ENV = "MEDSYMMFLOW_PROFILE"
PROFILES = ("fast", "full")
EPOCHS_ENV = "MEDSYMMFLOW_EPOCHS"
FULL_EPOCHS = 100
PAPER_EPOCHS = 1000  # what the authors trained; the full recipe does a tenth of it
COURSE_WEIGHTS_ENV = "MEDSYMMFLOW_COURSE_WEIGHTS"  # "0": train the course's models instead of loading the shipped ones

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """A named run profile.

    Attributes:
        name: ``"fast"`` (CPU minutes) or ``"full"`` (GPU: the paper's models and recipe, 100 epochs by default).
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ValueError(
                f"Unknown profile {self.name!r}: expected one of {PROFILES}. "
                f"Set {PROFILE_ENV}=fast or {PROFILE_ENV}=full."
            )

    @property
    def is_fast(self) -> bool:
        """True for the CPU-minutes profile."""
        return self.name == "fast"

    def pick(self, fast: T, full: T) -> T:
        """Return the value of a knob for this profile.

        Example: ``steps = profile.pick(fast=400, full=20_000)``.
        """
        return fast if self.is_fast else full


def profile(name: str | None = None) -> Profile:
    """Choose the run profile.

    Args:
        name: ``"fast"`` or ``"full"``; if None, read ``MEDSYMMFLOW_PROFILE``,
            else ``full`` when CUDA is available and ``fast`` otherwise.

    Returns:
        The chosen :class:`Profile`.

    Raises:
        ValueError: if the name (or the environment variable) is not a profile.
    """
    if name is None:
        name = os.environ.get(PROFILE_ENV, "").strip().lower() or None
    if name is None:
        name = "full" if torch.cuda.is_available() else "fast"
    chosen = Profile(name)
    logger.info("profile: %s", chosen.name)
    return chosen


def full_epochs() -> int:
    """Training epochs of the ``full`` recipe: ``MEDSYMMFLOW_EPOCHS`` if set, else 100.

    Raises:
        ValueError: the variable is not a positive integer.
    """
    value = os.environ.get(EPOCHS_ENV, "").strip()
    if not value:
        return FULL_EPOCHS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{EPOCHS_ENV} must be a positive integer (training epochs of the full recipe), got {value!r}")
    return int(value)


def project_dir() -> Path:
    """The project checkout this package lives in, or the working directory when installed elsewhere."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").exists() else Path.cwd()


def runs_dir() -> Path:
    """Where checkpoints and executed notebooks go: ``runs/`` in the project (ignored by git)."""
    return project_dir() / "runs"


def course_weights_dir() -> Path | None:
    """The course's shipped checkpoints, ``course_weights/`` in the project; None when
    ``MEDSYMMFLOW_COURSE_WEIGHTS`` is ``0`` (or ``false``/``no``/``off``): then every run trains here."""
    if os.environ.get(COURSE_WEIGHTS_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    return project_dir() / "course_weights"


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: CUDA, then Apple MPS, then the CPU.

    Args:
        prefer: an explicit device string (``"cpu"``, ``"cuda:1"``...) to use instead.

    Returns:
        The chosen ``torch.device``.
    """
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) for a reproducible run.

    Args:
        seed: a non-negative integer.

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``, for code that prefers an
        explicit generator over the global one.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))
