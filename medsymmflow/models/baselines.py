"""Discriminative baselines at MedMNIST's input sizes."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18


def small_resnet18(in_channels: int, n_classes: int) -> nn.Module:
    """torchvision's ResNet-18 adapted to 28/32 px inputs, as in the MedMNIST v2 benchmark:
    a 3 x 3 stride-1 first convolution and no max-pool, so small images are not shrunk 4x at once."""
    model = resnet18(num_classes=n_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
