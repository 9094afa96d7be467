"""Models: velocity networks (UNet presets) and the symmetric image-mask flow."""

from medsymmflow.models.symmflow import Classification, Generation, LossParts, SymmetricFlow
from medsymmflow.models.unet import PRESETS, VelocityUNet, make_unet

__all__ = ["PRESETS", "Classification", "Generation", "LossParts", "SymmetricFlow", "VelocityUNet", "make_unet"]
