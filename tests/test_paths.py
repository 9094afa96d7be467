import pytest
import torch

from medsymmflow.flow import SIGMA_MIN, flow_matching_loss, ot_path, sample_time


def _pair(shape=(5, 3, 4, 4)):
    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


def test_endpoints():
    z0, z1 = _pair()
    n = len(z0)
    assert torch.equal(ot_path(z0, z1, torch.zeros(n, dtype=torch.float64)).z_t, z0)
    end = ot_path(z0, z1, torch.ones(n, dtype=torch.float64), sigma_min=0.1).z_t
    assert torch.allclose(end, z1 + 0.1 * z0)
    assert torch.allclose(ot_path(z0, z1, torch.ones(n, dtype=torch.float64), sigma_min=0.0).z_t, z1)


def test_target_is_the_time_derivative_of_the_path():
    z0, z1 = _pair()
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    eps = 1e-6
    for sigma_min in (0.0, SIGMA_MIN, 0.2):
        finite_difference = (ot_path(z0, z1, t + eps, sigma_min).z_t - ot_path(z0, z1, t - eps, sigma_min).z_t) / (
            2 * eps
        )
        assert torch.allclose(ot_path(z0, z1, t, sigma_min).velocity, finite_difference, atol=1e-8)


def test_closed_form_values():
    z0 = torch.tensor([[2.0]])
    z1 = torch.tensor([[4.0]])
    sample = ot_path(z0, z1, torch.tensor([0.5]), sigma_min=0.5)
    # (1 - 0.5 * 0.5) * 2 + 0.5 * 4 = 3.5; velocity 4 - 0.5 * 2 = 3
    assert sample.z_t.item() == pytest.approx(3.5) and sample.velocity.item() == pytest.approx(3.0)


def test_loss_is_zero_for_the_exact_conditional_field():
    z0, z1 = _pair((8, 2))
    t = torch.linspace(0, 1, 8, dtype=torch.float64)
    exact = lambda z, tt: z1 - (1 - SIGMA_MIN) * z0  # noqa: E731 (knows the pairing)
    assert flow_matching_loss(exact, z1, z0, t).item() == 0.0
    zero = lambda z, tt: torch.zeros_like(z)  # noqa: E731
    assert torch.isclose(flow_matching_loss(zero, z1, z0, t), ((z1 - (1 - SIGMA_MIN) * z0) ** 2).mean())


def test_sample_time_range_and_seed():
    t = sample_time(1000, torch.Generator().manual_seed(1))
    assert t.shape == (1000,) and 0 <= t.min() and t.max() < 1
    assert torch.equal(t, sample_time(1000, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize(
    "t, kwargs, match",
    [
        (torch.tensor([1.5, 0.5]), {}, r"t must lie in \[0, 1\]"),
        (torch.tensor([-0.1, 0.5]), {}, r"t must lie in \[0, 1\]"),
        (torch.tensor([0.5]), {}, r"t must have shape \(2,\)"),
        (torch.tensor([0.5, 0.5]), {"sigma_min": 1.0}, "sigma_min"),
    ],
)
def test_bad_input(t, kwargs, match):
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=match):
        ot_path(z, z, t, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        ot_path(z, torch.zeros(2, 4), torch.zeros(2))
