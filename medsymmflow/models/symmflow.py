"""MedSymmFlow: one velocity network that transports an image and its semantic mask together.

The network sees the channel concatenation ``[x_t, y_t]`` at one shared time ``t`` and
predicts both velocities. With the linear path of chapter 1 (``sigma_min = 1e-4``):

* image, noise -> data:  ``x_t = (1 - (1 - sigma_min) t) xi_x + t x``,
  target ``x - (1 - sigma_min) xi_x``;
* mask, data -> noise:   ``y_t = (1 - (1 - sigma_min) t) y + t xi_y``,
  target ``xi_y - (1 - sigma_min) y``;
* loss = ``w * MSE_image + (1 - w) * MSE_mask`` with ``w = image_weight`` (0.7 in the paper).

At ``t = 0`` the state is ``[noise, mask]``; at ``t = 1`` it is ``[image, noise]``. So

* **generation** integrates ``t: 0 -> 1`` from ``[xi_x, mask(class)]`` and keeps the image;
* **classification** integrates ``t: 1 -> 0`` from ``[x, xi_y]`` (the paper: one Euler step)
  and decodes the mask to the nearest class colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medsymmflow.data.masks import (
    DECODINGS,
    DEFAULT_BETA,
    GRAY_BETA,
    PAPER_DECODING,
    PAPER_PALETTE_INDEX,
    class_colours,
    labels_to_masks,
    mask_channels,
    mask_distances,
)
from medsymmflow.flow.paths import SIGMA_MIN, ot_path, sample_time
from medsymmflow.flow.solvers import integrate

DEFAULT_IMAGE_WEIGHT = 0.7  # w of the loss in the paper's runs


@dataclass
class LossParts:
    """The symmetric loss and its two terms."""

    total: torch.Tensor
    image: torch.Tensor
    mask: torch.Tensor


@dataclass
class Classification:
    """Result of :meth:`SymmetricFlow.classify`.

    Attributes:
        labels: predicted classes ``argmin_k distances[:, k]``, shape (N,).
        distances: per-class distances of the predicted mask (the model's ``decoding``),
            averaged over the noise draws, shape (N, K).
        sample_distances: the distances of every draw, shape (S, N, K).
        masks: the predicted masks averaged over the draws, shape (N, C_mask, H, W)
            (None for the discriminative baselines, which predict no mask).
    """

    labels: torch.Tensor
    distances: torch.Tensor
    sample_distances: torch.Tensor
    masks: torch.Tensor | None


@dataclass
class Generation:
    """Result of :meth:`SymmetricFlow.generate`: images in about [-1, 1] and, if asked, the
    joint trajectory ``[x_t, y_t]`` of shape (steps + 1, N, C_image + C_mask, H, W)."""

    images: torch.Tensor
    trajectory: torch.Tensor | None


class SymmetricFlow(nn.Module):
    """The MedSymmFlow model around a velocity network ``v(z, t)`` on ``[x, y]`` channels.

    Args:
        velocity: network mapping ``(z, t)`` with ``z`` of ``image_channels + mask channels``
            channels to a velocity of the same shape; kept as ``self.net``.
        image_channels: C of the images (1 gray, 3 RGB).
        n_classes: K.
        mask_mode: ``"rgb"`` (the paper), ``"gray"`` (the paper's gray ablation) or ``"onehot"``.
        image_weight: ``w`` of the loss (0.7 in the paper).
        sigma_min: end width of the linear path.
        beta: RGB mask dequantization width in 0-255 units (4 in the paper); gray masks use the
            paper's width when ``beta > 0``.
        palette_index: ``"truncate"`` (the official code's) or ``"round"`` palette entries.
        decoding: how :meth:`classify` turns a predicted mask into class distances, one of
            :data:`~medsymmflow.data.masks.DECODINGS`; an attribute, so one set of weights can
            be evaluated with each.
        gray_beta: scale of gray masks (see :func:`~medsymmflow.data.masks.class_colours`).
        classify_share: share of each training batch drawn at ``t = 1``, the time one-step
            classification starts from, instead of ``t ~ U(0, 1)`` (0 in the paper).
    """

    def __init__(
        self,
        velocity: nn.Module,
        image_channels: int,
        n_classes: int,
        mask_mode: str = "rgb",
        image_weight: float = DEFAULT_IMAGE_WEIGHT,
        sigma_min: float = SIGMA_MIN,
        beta: float = DEFAULT_BETA,
        palette_index: str = PAPER_PALETTE_INDEX,
        decoding: str = PAPER_DECODING,
        gray_beta: float = GRAY_BETA,
        classify_share: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= image_weight <= 1.0:
            raise ValueError(f"image_weight must lie in [0, 1], got {image_weight}")
        if not 0.0 <= classify_share <= 1.0:
            raise ValueError(f"classify_share must lie in [0, 1], got {classify_share}")
        if decoding not in DECODINGS:
            raise ValueError(f"Unknown decoding {decoding!r}: expected one of {DECODINGS}.")
        self.net = velocity
        self.image_channels = image_channels
        self.mask_channels = mask_channels(mask_mode, n_classes)
        self.n_classes = n_classes
        self.mask_mode = mask_mode
        self.image_weight = image_weight
        self.sigma_min = sigma_min
        self.beta = beta
        self.palette_index = palette_index
        self.decoding = decoding
        self.gray_beta = gray_beta
        self.classify_share = classify_share
        self.register_buffer("colours", class_colours(n_classes, mask_mode, palette_index, gray_beta), persistent=False)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The joint velocity ``v([x_t, y_t], t)``."""
        return self.net(z, t)

    def masks(
        self, labels: torch.Tensor, size: int, beta: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Semantic masks of ``labels`` at ``size`` px on the model's device."""
        return labels_to_masks(
            labels.to(self.colours.device),
            self.n_classes,
            size,
            self.mask_mode,
            beta,
            generator,
            self.palette_index,
            self.gray_beta,
        )

    def loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        t: torch.Tensor | None = None,
        image_noise: torch.Tensor | None = None,
        mask_noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossParts:
        """The symmetric flow-matching loss ``w * MSE_image + (1 - w) * MSE_mask``.

        Random inputs (``t``, ``image_noise``, ``mask_noise``, the dequantization noise)
        are drawn from ``generator`` unless given; ``t ~ U(0, 1)``, except that a share
        ``classify_share`` of the batch is set to ``t = 1``.
        """
        self._check_images(images)
        n, size = images.shape[0], images.shape[-1]
        device = images.device
        masks = self.masks(labels, size, self.beta, generator)
        if t is None:
            t = sample_time(n, generator, device)
            if self.classify_share > 0:
                t = torch.where(sample_time(n, generator, device) < self.classify_share, torch.ones_like(t), t)
        if image_noise is None:
            image_noise = _randn(images.shape, generator, device)
        if mask_noise is None:
            mask_noise = _randn(masks.shape, generator, device)
        image_path = ot_path(image_noise, images, t, self.sigma_min)  # noise -> data
        mask_path = ot_path(masks, mask_noise, t, self.sigma_min)  # data -> noise
        predicted = self(torch.cat([image_path.z_t, mask_path.z_t], dim=1), t)
        image_loss = torch.mean((predicted[:, : self.image_channels] - image_path.velocity) ** 2)
        mask_loss = torch.mean((predicted[:, self.image_channels :] - mask_path.velocity) ** 2)
        total = self.image_weight * image_loss + (1 - self.image_weight) * mask_loss
        return LossParts(total, image_loss, mask_loss)

    @torch.no_grad()
    def generate(
        self,
        labels: torch.Tensor,
        size: int,
        steps: int = 25,
        solver: str = "euler",
        return_trajectory: bool = False,
        generator: torch.Generator | None = None,
    ) -> Generation:
        """Images of the given classes: integrate ``t: 0 -> 1`` from ``[xi_x, mask(label)]``."""
        masks = self.masks(labels, size)
        noise = _randn((len(masks), self.image_channels, size, size), generator, masks.device)
        solution = integrate(self, torch.cat([noise, masks], dim=1), 0.0, 1.0, steps, solver, return_trajectory)
        return Generation(solution.z[:, : self.image_channels], solution.trajectory)

    @torch.no_grad()
    def classify(
        self,
        images: torch.Tensor,
        steps: int = 1,
        solver: str = "euler",
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Classification:
        """Classify images: integrate ``t: 1 -> 0`` from ``[x, xi_y]`` and decode the mask.

        With ``n_samples > 1`` the per-class distances are averaged over that many mask
        noise draws ``xi_y`` before taking the nearest class.
        """
        self._check_images(images)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        size = images.shape[-1]
        all_distances, mask_sum = [], 0.0
        for _ in range(n_samples):
            mask_noise = _randn((len(images), self.mask_channels, size, size), generator, images.device)
            solution = integrate(self, torch.cat([images, mask_noise], dim=1), 1.0, 0.0, steps, solver)
            predicted = solution.z[:, self.image_channels :]
            all_distances.append(mask_distances(predicted, self.colours, self.decoding))
            mask_sum = mask_sum + predicted
        sample_distances = torch.stack(all_distances)
        distances = sample_distances.mean(dim=0)
        return Classification(distances.argmin(dim=1), distances, sample_distances, mask_sum / n_samples)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != self.image_channels:
            raise ValueError(
                f"images must be (N, {self.image_channels}, H, W) for this model, got {tuple(images.shape)}"
            )


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)
