"""Will a run fit its time? Time a few training steps, then plan the epochs (``reproduce --time-budget``)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import torch

from medsymmflow.data import MedMNISTData
from medsymmflow.recipes import TrainConfig
from medsymmflow.train import Trainer

PROBE_STEPS = 100
# Validation, checkpoints and evaluation on top of the training steps (a guess, checked by the report's wall times).
OVERHEAD = 1.15


class BudgetError(RuntimeError):
    """The requested run would not finish within the time budget."""


@dataclass
class Plan:
    """How long the run will take, from the probe."""

    epochs: int
    requested_epochs: int
    seconds_per_step: dict[str, float]
    steps: dict[str, int]
    estimated_seconds: float
    budget_seconds: float | None
    message: str = ""


def probe_seconds_per_step(
    train_config: TrainConfig, data: MedMNISTData, steps: int = PROBE_STEPS, warmup: int = 3
) -> float:
    """Wall seconds per training step, timed over ``steps`` steps after ``warmup`` untimed ones."""
    probe = TrainConfig(
        **{**train_config.to_dict(), "steps": warmup + steps, "checkpoint_every": 10 * (warmup + steps)}
    )
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(probe, folder, data=data, progress=False)
        trainer.train(until_step=warmup)
        _synchronize()
        start = time.perf_counter()
        trainer.train(until_step=warmup + steps)
        _synchronize()
        return (time.perf_counter() - start) / steps


def plan_epochs(
    seconds_per_step: dict[str, float],
    steps: dict[str, int],
    n_seeds: int,
    requested_epochs: int,
    budget_seconds: float | None,
    fit_budget: bool,
) -> Plan:
    """Check that the run fits the budget, or (``fit_budget``) find how many epochs do.

    The estimate is ``sum_datasets steps * sum_models seconds_per_step * seeds * OVERHEAD``, with
    ``steps`` each dataset's training steps at ``requested_epochs`` (steps grow linearly with epochs).

    Raises:
        BudgetError: the run does not fit and ``fit_budget`` is False, or not even one epoch fits.
    """
    estimate = sum(steps.values()) * sum(seconds_per_step.values()) * n_seeds * OVERHEAD
    per_epoch = estimate / requested_epochs
    plan = Plan(requested_epochs, requested_epochs, seconds_per_step, steps, estimate, budget_seconds)
    if budget_seconds is None or estimate <= budget_seconds:
        plan.message = f"{requested_epochs} epochs: about {estimate:.0f} s" + (
            f" of the {budget_seconds:.0f} s budget" if budget_seconds else ""
        )
        return plan
    fitting = int(budget_seconds // per_epoch)
    too_long = f"{requested_epochs} epochs would take about {estimate:.0f} s ({per_epoch:.1f} s an epoch), over the {budget_seconds:.0f} s budget"
    if not fit_budget:
        raise BudgetError(
            f"{too_long}. Give more time, fewer datasets or seeds, or --fit-budget to train {fitting} epochs instead."
        )
    if fitting < 1:
        raise BudgetError(f"{too_long}; not even one epoch fits.")
    plan.epochs, plan.estimated_seconds = fitting, fitting * per_epoch
    plan.message = f"{too_long}: training {fitting} epochs instead (about {plan.estimated_seconds:.0f} s)"
    return plan


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
