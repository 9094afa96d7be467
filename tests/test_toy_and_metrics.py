import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from medsymmflow.flow import TOYS, sample_toy
from medsymmflow.metrics import sliced_wasserstein


@pytest.mark.parametrize("name", TOYS)
def test_toys_are_2d_reproducible_and_bounded(name):
    a = sample_toy(name, 500, torch.Generator().manual_seed(0))
    b = sample_toy(name, 500, torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b)
    assert a.abs().max() < 3.5 and a.std(0).min() > 0.3


def test_eight_gaussians_sit_on_their_circle():
    points = sample_toy("eight_gaussians", 4000, torch.Generator().manual_seed(0))
    assert abs(points.norm(dim=1).mean().item() - 2.0) < 0.05


def test_checkerboard_only_fills_dark_squares():
    points = sample_toy("checkerboard", 4000, torch.Generator().manual_seed(0))
    cells = torch.floor(points + 2.0).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()


def test_unknown_toy():
    with pytest.raises(ValueError, match="Unknown toy distribution 'spiral'"):
        sample_toy("spiral", 10)


def test_sliced_wasserstein_agrees_with_scipy_in_one_dimension():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 1, generator=g), 2 + torch.randn(300, 1, generator=g)
    ours = sliced_wasserstein(a, b, n_projections=4, generator=g).item()  # any unit direction in 1D is +-1
    assert ours == pytest.approx(wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy()), rel=1e-6)


def test_sliced_wasserstein_zero_for_identical_and_grows_with_shift():
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    assert sliced_wasserstein(x, x).item() == 0.0
    near, far = (sliced_wasserstein(x, x + s, generator=torch.Generator().manual_seed(2)).item() for s in (0.1, 1.0))
    # shifting by s along (1, 1) moves each projection by s * (theta_1 + theta_2): E|.| = s * 2 * sqrt(2)/pi
    assert far == pytest.approx(10 * near, rel=1e-6)
    assert far == pytest.approx(2 * np.sqrt(2) / np.pi, rel=0.1)


def test_sliced_wasserstein_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(torch.zeros(3, 2), torch.zeros(4, 2))
