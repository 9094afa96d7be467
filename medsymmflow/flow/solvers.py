"""Fixed-step explicit Runge-Kutta solvers for ``dz/dt = v(z, t)``, forward or backward in t.

One loop serves every method; a method is its Butcher tableau ``(a, b, c)``. With step
``h`` (negative when integrating from t = 1 down to 0) and stages

    k_i = v(z + h * sum_j a_ij k_j,  t + c_i h),      z_next = z + h * sum_i b_i k_i,

Euler (order 1, 1 evaluation a step), midpoint and Heun (order 2, 2 evaluations) and the
classical RK4 (order 4, 4 evaluations) follow. NFE, the number of network evaluations,
is ``steps * stages``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit Runge-Kutta method and its order of accuracy."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int


TABLEAUS = {
    "euler": Tableau(a=((),), b=(1.0,), c=(0.0,), order=1),
    "midpoint": Tableau(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5), order=2),
    "heun": Tableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2),
    "rk4": Tableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
        order=4,
    ),
}
SOLVERS = tuple(TABLEAUS)


@dataclass
class Solution:
    """Result of :func:`integrate`.

    Attributes:
        z: the state at ``t_end``.
        times: the step times ``t_start = t_0, ..., t_steps = t_end``, shape (steps + 1,).
        trajectory: the states at ``times``, shape (steps + 1, *z.shape), if requested.
        nfe: number of velocity evaluations made.
    """

    z: torch.Tensor
    times: torch.Tensor
    trajectory: torch.Tensor | None
    nfe: int


def integrate(
    velocity: Velocity,
    z: torch.Tensor,
    t_start: float = 0.0,
    t_end: float = 1.0,
    steps: int = 25,
    method: str = "euler",
    return_trajectory: bool = False,
) -> Solution:
    """Integrate ``dz/dt = velocity(z, t)`` from ``t_start`` to ``t_end`` in equal steps.

    ``velocity`` receives ``t`` as a tensor of shape (N,) (one time per sample, all
    equal), as flow-matching networks expect. ``t_end < t_start`` integrates backward.

    Args:
        velocity: the vector field ``v(z, t)``.
        z: the start state, shape (N, ...).
        t_start: start time in [0, 1].
        t_end: end time in [0, 1].
        steps: number of steps (>= 1).
        method: one of ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``.
        return_trajectory: keep the state after every step.

    Raises:
        ValueError: unknown method, steps < 1, or times outside [0, 1].
    """
    if method not in TABLEAUS:
        raise ValueError(f"Unknown solver {method!r}: expected one of {SOLVERS}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (flow time), got {value}")
    tableau = TABLEAUS[method]
    times = torch.linspace(float(t_start), float(t_end), steps + 1, dtype=torch.float64)
    h = (float(t_end) - float(t_start)) / steps
    trajectory = [z] if return_trajectory else None
    nfe = 0
    for step in range(steps):
        t = times[step].item()
        stages: list[torch.Tensor] = []
        for a_row, c in zip(tableau.a, tableau.c, strict=True):
            z_stage = z
            for a_ij, k_j in zip(a_row, stages, strict=False):
                if a_ij:
                    z_stage = z_stage + h * a_ij * k_j
            t_stage = torch.full((z.shape[0],), t + c * h, dtype=z.dtype, device=z.device)
            stages.append(velocity(z_stage, t_stage))
            nfe += 1
        z = z + h * sum(b_i * k_i for b_i, k_i in zip(tableau.b, stages, strict=True) if b_i)
        if trajectory is not None:
            trajectory.append(z)
    return Solution(z, times, torch.stack(trajectory) if trajectory is not None else None, nfe)
