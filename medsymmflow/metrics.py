"""Metrics: distribution distances for generated samples."""

from __future__ import annotations

import torch


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between two equal-size sample sets (N, D).

    ``SW_1(a, b) = E_theta W_1(<a, theta>, <b, theta>)`` over random unit directions
    ``theta``; in one dimension ``W_1`` between equal-size samples is the mean absolute
    difference of the sorted values. Zero iff the projected samples coincide.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (N, D) with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    projected_a = torch.sort(a.double() @ theta, dim=0).values
    projected_b = torch.sort(b.double() @ theta, dim=0).values
    return (projected_a - projected_b).abs().mean()
