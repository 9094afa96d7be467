"""Velocity networks: named presets of ``diffusers.UNet2DModel``.

A flow-matching network maps ``(z_t, t)`` with ``t in [0, 1]`` to a velocity of the same
shape as ``z_t``. ``UNet2DModel`` embeds its timestep sinusoidally with frequencies tuned
for diffusion's integer steps 0 ... 1000, so :class:`VelocityUNet` feeds it ``1000 t``.

Presets (``in_channels`` = image channels + mask channels):

* ``tiny``: blocks (32, 64, 64), 1 res block each, attention only in the middle block (diffusers'
  default, at 7 x 7) - CPU minutes; with two down-samplings it runs natively at 28 px (28 -> 14 -> 7).
* ``tiny-narrow``: ``tiny`` with half its channels at 28 x 28 and 14 x 14 (16, 32, 64; 8 groups, so
  two channels a group as in ``tiny``; 0.64M parameters), where most of a step's convolution time
  goes: its 600-step runs took 183-189 s on a 2-core CPU, ``tiny``'s about 400 s. It classified
  worse than ``tiny`` on PneumoniaMNIST, RetinaMNIST and the small stand-in (3 seeds each;
  ``benchmarks/results/recipe_study_narrow_cpu_2026-12-06/``).
* ``tiny-wide``: ``tiny`` with 128 channels at its 7 x 7 level and middle block (and so at the
  upsampler to 14 x 14; 2.5M parameters instead of 1.1M): more room where the whole image is
  seen. On PneumoniaMNIST it classified no better than ``tiny``; its 600-step runs took 585-614 s
  on a 2-core CPU, ``tiny``'s 392-406 s on the same machine that day
  (``benchmarks/results/recipe_study_wide_cpu_2026-12-06/`` and ``recipe_study_maskonly_cpu_2026-12-06/``).
* ``paper-pixel``: 64 channels, multipliers (1, 2, 2, 2), 2 res blocks, attention at
  16 x 16 (the paper's pixel-space model, 32 px).
* ``paper-latent``: the same at 128 channels, for 4 x 32 x 32 VAE latents.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

TIME_SCALE = 1000.0


def _tiny(channels: tuple[int, int, int], groups: int = 16) -> dict:
    return {
        "block_out_channels": channels,
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        "norm_num_groups": groups,
    }


def _paper(width: int) -> dict:
    return {
        "block_out_channels": (width, 2 * width, 2 * width, 2 * width),
        "layers_per_block": 2,
        # 32 px input: resolutions 32, 16, 8, 4; attention at 16 x 16 only.
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        "norm_num_groups": 32,
    }


PRESETS: dict[str, dict] = {
    "tiny": _tiny((32, 64, 64)),
    "tiny-narrow": _tiny((16, 32, 64), groups=8),
    "tiny-wide": _tiny((32, 64, 128)),
    "paper-pixel": _paper(64),
    "paper-latent": _paper(128),
}


def make_unet(
    preset: str, in_channels: int, out_channels: int | None = None, sample_size: int = 32, dropout: float = 0.0
) -> UNet2DModel:
    """A ``UNet2DModel`` from a named preset; ``dropout`` in its residual blocks (0: none).

    Raises:
        ValueError: unknown preset, or an input size the preset cannot halve enough times.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown UNet preset {preset!r}: expected one of {tuple(PRESETS)}.")
    settings = PRESETS[preset]
    downsamplings = len(settings["block_out_channels"]) - 1
    if sample_size % (2**downsamplings):
        raise ValueError(
            f"preset {preset!r} halves the image {downsamplings} times, so the size must be a multiple of "
            f"{2**downsamplings}; got {sample_size} (pad 28 px images to 32)."
        )
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels or in_channels,
        dropout=dropout,
        **settings,
    )


class VelocityUNet(nn.Module):
    """``v(z, t) = UNet(z, 1000 t)``: a ``UNet2DModel`` as a flow-matching velocity field."""

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(z, t * TIME_SCALE).sample
