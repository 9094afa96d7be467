import math

import numpy as np
import pytest
import torch

from medsymmflow.flow import SOLVERS, integrate
from medsymmflow.flow.solvers import TABLEAUS


def _exponential(rate=1.3):
    return lambda z, t: rate * z


def _linear_in_time():
    """dz/dt = A z + b(t) with A a rotation-damping matrix: a non-autonomous linear field."""
    a = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)

    def field(z, t):
        return z @ a.T + torch.stack([torch.cos(3 * t), torch.sin(3 * t)], dim=1)

    return field


def _reference(field, z0, t_start, t_end):
    return integrate(field, z0, t_start, t_end, steps=4096, method="rk4").z


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("direction", [(0.0, 1.0), (1.0, 0.0)])
def test_convergence_order(method, direction):
    t_start, t_end = direction
    z0 = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=torch.float64)
    for field, exact in [
        (_exponential(), z0 * math.exp(1.3 * (t_end - t_start))),
        (_linear_in_time(), _reference(_linear_in_time(), z0, t_start, t_end)),
    ]:
        steps = [8, 16, 32]
        errors = [(integrate(field, z0, t_start, t_end, n, method).z - exact).abs().max().item() for n in steps]
        orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        expected = TABLEAUS[method].order
        assert abs(orders[-1] - expected) < 0.25, (method, orders)


@pytest.mark.parametrize("method", SOLVERS)
def test_forward_then_backward_returns_the_start(method):
    field = _linear_in_time()
    z0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    there = integrate(field, z0, 0.0, 1.0, steps=1000, method=method).z
    back = integrate(field, there, 1.0, 0.0, steps=1000, method=method).z
    tolerance = {1: 2e-2, 2: 1e-4, 4: 1e-9}[TABLEAUS[method].order]
    assert (back - z0).abs().max() < tolerance


@pytest.mark.parametrize("method, stages", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_nfe_is_counted_exactly(method, stages):
    calls = []

    def field(z, t):
        calls.append(t.clone())
        return -z

    solution = integrate(field, torch.ones(3, 2), steps=7, method=method)
    assert solution.nfe == len(calls) == 7 * stages
    assert all(t.shape == (3,) for t in calls)


def test_shapes_trajectory_and_times_for_images():
    z = torch.randn(4, 2, 8, 8)
    solution = integrate(lambda z, t: -z, z, 1.0, 0.0, steps=5, method="heun", return_trajectory=True)
    assert solution.z.shape == z.shape
    assert solution.trajectory.shape == (6, 4, 2, 8, 8)
    assert torch.equal(solution.trajectory[0], z) and torch.equal(solution.trajectory[-1], solution.z)
    assert torch.allclose(solution.times, torch.linspace(1, 0, 6, dtype=torch.float64))
    assert integrate(lambda z, t: -z, z, steps=5).trajectory is None


def test_one_euler_step_is_one_evaluation_at_the_start_time():
    seen = []
    z = torch.ones(2, 1)
    out = integrate(lambda z, t: seen.append(t) or torch.full_like(z, 3.0), z, 1.0, 0.0, steps=1).z
    assert torch.equal(seen[0], torch.ones(2)) and torch.allclose(out, torch.full_like(z, -2.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "rk45"}, "Unknown solver 'rk45'.*euler.*rk4"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"steps": 2.5}, "steps must be an integer >= 1"),
        ({"t_start": -0.1}, r"t_start must lie in \[0, 1\]"),
        ({"t_end": 1.2}, r"t_end must lie in \[0, 1\]"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        integrate(lambda z, t: z, torch.zeros(1, 2), **kwargs)
