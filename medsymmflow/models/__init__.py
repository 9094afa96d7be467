"""Models: velocity networks (UNet presets)."""

from medsymmflow.models.unet import PRESETS, VelocityUNet, make_unet

__all__ = ["PRESETS", "VelocityUNet", "make_unet"]
