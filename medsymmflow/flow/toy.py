"""Two-dimensional toy distributions for learning flow matching by eye.

Every sampler returns a float tensor (n, 2), roughly inside [-3, 3]^2, and draws from
the given ``torch.Generator`` so samples are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.08) -> torch.Tensor:
    """Two interleaved half circles (scikit-learn's ``make_moons``), centred and scaled by 1.5."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    return points + noise * torch.randn(n, 2, generator=generator)


def eight_gaussians(
    n: int, generator: torch.Generator | None = None, radius: float = 2.0, std: float = 0.15
) -> torch.Tensor:
    """Eight Gaussians of width ``std`` evenly spaced on a circle of ``radius``."""
    component = torch.randint(0, 8, (n,), generator=generator)
    angle = component * (2 * math.pi / 8)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + std * torch.randn(n, 2, generator=generator)


def checkerboard(n: int, generator: torch.Generator | None = None, squares: int = 4, side: float = 4.0) -> torch.Tensor:
    """Uniform on the dark squares of a ``squares x squares`` board of width ``side``."""
    cell = side / squares
    col = torch.randint(0, squares, (n,), generator=generator)
    row = 2 * torch.randint(0, squares // 2, (n,), generator=generator) + (col % 2)
    offset = torch.rand(n, 2, generator=generator) * cell
    return torch.stack([col * cell, row * cell], dim=1) + offset - side / 2


TOYS: dict[str, Callable[..., torch.Tensor]] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples of the named toy distribution."""
    if name not in TOYS:
        raise ValueError(f"Unknown toy distribution {name!r}: expected one of {tuple(TOYS)}.")
    return TOYS[name](n, generator)
