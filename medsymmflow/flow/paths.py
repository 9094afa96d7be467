"""The linear (optimal-transport) conditional probability path of flow matching.

Between a *source* sample ``z0`` and a *target* sample ``z1`` (Lipman et al. 2023):

    z_t = (1 - (1 - sigma_min) t) z0 + t z1,        t in [0, 1]
    u_t = d z_t / dt = z1 - (1 - sigma_min) z0

At ``t = 0`` the path sits at ``z0``; at ``t = 1`` at ``z1 + sigma_min z0``: a Gaussian of
width ``sigma_min`` around the target when ``z0`` is standard noise. Training regresses
a network ``v(z_t, t)`` on ``u_t``:

    L = E_{t ~ U(0,1), z0, z1} || v(z_t, t) - u_t ||^2

MedSymmFlow reuses the same path in both directions: the image goes noise -> data
(``z0 = noise``, ``z1 = image``) and the mask goes data -> noise (``z0 = mask``,
``z1 = noise``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

SIGMA_MIN = 1e-4


@dataclass
class PathSample:
    """A point on the conditional path and the velocity that moves it.

    Attributes:
        t: times, shape (N,).
        z_t: the point ``(1 - (1 - sigma_min) t) z0 + t z1``.
        velocity: the target ``z1 - (1 - sigma_min) z0``.
    """

    t: torch.Tensor
    z_t: torch.Tensor
    velocity: torch.Tensor


def sample_time(n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` times drawn from U(0, 1), shape (N,)."""
    if generator is not None:
        return torch.rand(n, generator=generator, device=generator.device).to(device)
    return torch.rand(n, device=device)


def broadcast_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape times (N,) to (N, 1, ..., 1) so they scale samples shaped like ``like``."""
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def ot_path(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, sigma_min: float = SIGMA_MIN) -> PathSample:
    """Point and target velocity of the linear path from ``z0`` (t = 0) to ``z1`` (t = 1).

    ``z_t = (1 - (1 - sigma_min) t) z0 + t z1`` and ``u_t = z1 - (1 - sigma_min) z0``.

    Args:
        z0: source samples (N, ...).
        z1: target samples, same shape.
        t: times (N,) in [0, 1].
        sigma_min: width of the path's end point around ``z1``.

    Raises:
        ValueError: mismatched shapes, times outside [0, 1] or a negative sigma_min.
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if t.shape != (z0.shape[0],):
        raise ValueError(f"t must have shape ({z0.shape[0]},), one time per sample, got {tuple(t.shape)}")
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"t must lie in [0, 1], got values from {t.min().item():.3g} to {t.max().item():.3g}")
    if not 0 <= sigma_min < 1:
        raise ValueError(f"sigma_min must lie in [0, 1), got {sigma_min}")
    tb = broadcast_time(t, z0)
    z_t = (1 - (1 - sigma_min) * tb) * z0 + tb * z1
    velocity = z1 - (1 - sigma_min) * z0
    return PathSample(t, z_t, velocity)


def flow_matching_loss(
    velocity_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    noise: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    sigma_min: float = SIGMA_MIN,
) -> torch.Tensor:
    """Conditional flow-matching loss for noise -> data: ``mean || v(z_t, t) - u_t ||^2``.

    Args:
        velocity_model: ``v(z, t)`` with ``t`` of shape (N,).
        data: target samples ``z1``.
        noise: source samples ``z0`` (default: standard normal).
        t: times (default: U(0, 1)).
        sigma_min: see :func:`ot_path`.
    """
    noise = torch.randn_like(data) if noise is None else noise
    t = sample_time(len(data), device=data.device) if t is None else t
    path = ot_path(noise, data, t, sigma_min)
    return torch.mean((velocity_model(path.z_t, t) - path.velocity) ** 2)
