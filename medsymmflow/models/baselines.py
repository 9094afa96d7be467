"""Discriminative baselines, behind the same interface as :class:`SymmetricFlow`.

A :class:`CNNClassifier` has ``loss(images, labels, generator, weights)`` and
``classify(images, steps, solver, n_samples, generator)``, so the same trainer, evaluation,
uncertainty and report code serve it and MedSymmFlow side by side. Its per-class
"distances" are negative log-probabilities, ``d_k = -log p_k``; hence

* the nearest class is the most probable one;
* ``softmax(-d / T) = softmax(logits / T)``: temperature scaling is unchanged;
* the paper's proxy ``min_k d_k = -log max_k p_k`` ranks inputs exactly like the maximum
  softmax probability (MSP), the standard baseline score;
* ``n_samples > 1`` runs MC dropout (Gal & Ghahramani 2016): dropout stays on, and the
  distances are ``-log`` of the probabilities averaged over the passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import resnet18

from medsymmflow.models.symmflow import Classification, check_loss_weights


@dataclass
class CrossEntropy:
    """The baseline's training loss (``total``, as the trainer expects)."""

    total: torch.Tensor


def small_resnet18(in_channels: int, n_classes: int, dropout: float = 0.2) -> nn.Module:
    """torchvision's ResNet-18 adapted to 28/32 px, as in the MedMNIST v2 benchmark: a 3 x 3
    stride-1 first convolution and no max-pool; dropout before the classifier for MC dropout."""
    model = resnet18(num_classes=n_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, n_classes))
    return model


def small_cnn(in_channels: int, n_classes: int, width: int = 32, dropout: float = 0.2) -> nn.Module:
    """A four-block CNN (about the tiny UNet's size) for CPU-minute comparisons."""

    def block(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(8, c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.GroupNorm(8, c_out),
            nn.SiLU(),
        )

    return nn.Sequential(
        block(in_channels, width),
        nn.MaxPool2d(2),
        block(width, 2 * width),
        nn.MaxPool2d(2),
        block(2 * width, 4 * width),
        nn.MaxPool2d(2),
        block(4 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * width, n_classes),
    )


BASELINES = {"resnet18": small_resnet18, "cnn-small": small_cnn}


class CNNClassifier(nn.Module):
    """A softmax classifier with MedSymmFlow's interface (see the module docstring).

    Args:
        net: maps images (N, C, H, W) to logits (N, K).
        image_channels: C.
        n_classes: K.
        fit: how the data's images reach the input side, ``"pad"`` or ``"resize"``
            (see :func:`~medsymmflow.data.fit_size`), as for :class:`~medsymmflow.models.SymmetricFlow`.
    """

    def __init__(self, net: nn.Module, image_channels: int, n_classes: int, fit: str = "pad"):
        super().__init__()
        self.net = net
        self.image_channels = image_channels
        self.n_classes = n_classes
        self.fit = fit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        weights: torch.Tensor | None = None,
    ) -> CrossEntropy:
        """Cross-entropy of the logits, ``mean_i w_i CE_i`` with per-image ``weights`` (default 1);
        ``generator`` is unused: the loss draws no noise."""
        check_loss_weights(weights, len(images))
        if weights is None:
            return CrossEntropy(nn.functional.cross_entropy(self(images), labels))
        per_image = nn.functional.cross_entropy(self(images), labels, reduction="none")
        return CrossEntropy(torch.mean(weights * per_image))

    @torch.no_grad()
    def classify(
        self,
        images: torch.Tensor,
        steps: int = 1,
        solver: str = "euler",
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Classification:
        """Class "distances" ``-log p``; ``n_samples > 1`` averages the probabilities of that many
        MC-dropout passes, whose dropout masks are drawn from ``generator`` (the global RNG is left
        as it was). ``steps`` and ``solver`` exist for interface parity and are ignored."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        was_training = self.training
        self.eval()
        if n_samples > 1:
            for module in self.modules():
                if isinstance(module, nn.Dropout):
                    module.train()
        seed = (
            None
            if generator is None
            else int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        )
        with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
            log_p = torch.stack([torch.log_softmax(self(images), dim=1) for _ in range(n_samples)])
        self.train(was_training)
        mean_p = log_p.exp().mean(dim=0)
        distances = -torch.log(mean_p.clamp(min=1e-12))
        return Classification(distances.argmin(dim=1), distances, -log_p, None)
