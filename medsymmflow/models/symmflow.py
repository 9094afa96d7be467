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

**Latent MedSymmFlow** is the same model with a ``codec`` (:class:`~medsymmflow.models.autoencoder.LatentCodec`):
``x`` and ``y`` are then scaled VAE latents ``z_x`` (a sample of ``q(z | x)``) and ``z_y`` (the mode of
the RGB mask's posterior), the network sees ``[z_x, z_y]``, classification decodes the predicted
mask latent to pixels before the colour distances (the paper's) - or, with ``mask_space="latent"``,
compares it with the class-colour latents without decoding - and generation decodes the image latent.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from medsymmflow.data.masks import (
    DECODINGS,
    DEFAULT_BETA,
    GRAY_BETA,
    PAPER_DECODING,
    PAPER_PALETTE_INDEX,
    centre_distances,
    class_colours,
    labels_to_masks,
    mask_channels,
    mask_distances,
)
from medsymmflow.flow.paths import SIGMA_MIN, ot_path, sample_time
from medsymmflow.flow.solvers import integrate

DEFAULT_IMAGE_WEIGHT = 0.7  # w of the loss in the paper's runs; 0.5 measured worse (recipe_study_beta_w_cpu_2026-12-03)
MASK_SPACES = ("pixel", "latent")  # where a latent model compares its predicted mask with the class colours
MASK_BANK = 16  # dequantized masks encoded per class: a latent model's training masks are drawn from them


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
            :data:`~medsymmflow.data.masks.DECODINGS`; one set of weights can be evaluated with
            each (:meth:`reading` switches it for a ``with`` block).
        gray_beta: scale of gray masks (see :func:`~medsymmflow.data.masks.class_colours`).
        classify_share: share of each training batch drawn at ``t = 1``, the time one-step
            classification starts from, instead of ``t ~ U(0, 1)`` (0 in the paper).
        classify_mask_only: the samples at ``t = 1`` train the mask term only. There the network
            sees ``x_1 = x + sigma_min xi_x``, so the image target ``x - (1 - sigma_min) xi_x`` is the
            input plus noise it cannot predict: its share of the image term is mostly gradient noise.
            The image term is then the mean over the samples with ``t < 1`` (see :meth:`loss`).
        codec: a latent codec for latent MedSymmFlow (None: pixel space). Its inputs are then scaled
            image latents, and ``image_channels`` is the channel count of the *pixel* images.
        image_size: the pixel side the codec encodes (needed with a codec, for the mask latents).
        fit: how images reach that side, ``"pad"`` or ``"resize"`` (see :func:`~medsymmflow.data.fit_size`).
        mask_space: with a codec, ``"pixel"`` decodes the predicted mask latent before the colour
            distances (the paper's); ``"latent"`` measures :func:`~medsymmflow.data.masks.centre_distances`
            to the class-colour latents, skipping the decoder. Switched, like ``decoding``, by :meth:`reading`.
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
        codec: nn.Module | None = None,
        image_size: int | None = None,
        mask_space: str = "pixel",
        fit: str = "pad",
        classify_mask_only: bool = False,
    ):
        super().__init__()
        if not 0.0 <= image_weight <= 1.0:
            raise ValueError(f"image_weight must lie in [0, 1], got {image_weight}")
        if not 0.0 <= classify_share <= 1.0:
            raise ValueError(f"classify_share must lie in [0, 1], got {classify_share}")
        _check_reading(decoding, mask_space)
        self.net = velocity
        self.pixel_channels = image_channels
        self.image_channels = image_channels
        self.mask_channels = mask_channels(mask_mode, n_classes)
        self.mask_space = mask_space
        self.codec = codec
        self.fit = fit
        self.n_classes = n_classes
        self.mask_mode = mask_mode
        self.image_weight = image_weight
        self.sigma_min = sigma_min
        self.beta = beta
        self.palette_index = palette_index
        self.decoding = decoding
        self.gray_beta = gray_beta
        self.classify_share = classify_share
        self.classify_mask_only = classify_mask_only
        self.register_buffer("colours", class_colours(n_classes, mask_mode, palette_index, gray_beta), persistent=False)
        if codec is not None:
            self._encode_class_masks(codec, image_size)

    def _encode_class_masks(self, codec, image_size: int | None) -> None:
        """The class-colour latents (K, C_z, h, w) and a bank of :data:`MASK_BANK` dequantized ones per class."""
        if self.mask_mode != "rgb":
            raise ValueError(
                f"latent MedSymmFlow encodes RGB masks with the image codec; mask_mode {self.mask_mode!r} cannot "
                "pass through it. Use mask_mode='rgb'."
            )
        if image_size is None:
            raise ValueError("a latent model needs image_size, the pixel side its codec encodes")
        codec.requires_grad_(False)
        self.latent_size = codec.latent_size(image_size)
        self.image_channels = self.mask_channels = codec.latent_channels
        labels = torch.arange(self.n_classes).repeat_interleave(MASK_BANK)
        generator = torch.Generator().manual_seed(0)
        exact = labels_to_masks(
            torch.arange(self.n_classes), self.n_classes, image_size, "rgb", 0.0, None, self.palette_index
        )
        bank = labels_to_masks(labels, self.n_classes, image_size, "rgb", self.beta, generator, self.palette_index)
        self.register_buffer("mask_centres", codec.encode_masks(exact), persistent=False)
        self.register_buffer(
            "mask_bank",
            codec.encode_masks(bank).reshape(self.n_classes, MASK_BANK, *self.mask_centres.shape[1:]),
            persistent=False,
        )

    @contextmanager
    def reading(self, decoding: str | None = None, mask_space: str | None = None):
        """Classify with another ``decoding`` and/or ``mask_space`` inside a ``with`` block.

        The same weights read each way (``with model.reading(decoding="mean_colour"): ...``); the
        model's own reading comes back when the block ends, also when it raises.
        """
        own = self.decoding, self.mask_space
        decoding = own[0] if decoding is None else decoding
        mask_space = own[1] if mask_space is None else mask_space
        _check_reading(decoding, mask_space)
        self.decoding, self.mask_space = decoding, mask_space
        try:
            yield self
        finally:
            self.decoding, self.mask_space = own

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The joint velocity ``v([x_t, y_t], t)``."""
        return self.net(z, t)

    def masks(
        self, labels: torch.Tensor, size: int, beta: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Semantic masks of ``labels`` at ``size`` px on the model's device.

        With a codec, their latents at the latent side ``size``: the class-colour latents when
        ``beta = 0``, else a random member of each class's bank of dequantized mask latents.
        """
        if self.codec is not None:
            if size != self.latent_size:
                raise ValueError(
                    f"this latent model's masks are {self.latent_size} x {self.latent_size} latents, not {size}"
                )
            labels = labels.to(self.mask_centres.device).reshape(-1).long()
            if beta == 0:
                return self.mask_centres[labels]
            device = generator.device if generator is not None else labels.device
            pick = torch.randint(MASK_BANK, (len(labels),), generator=generator, device=device).to(labels.device)
            return self.mask_bank[labels, pick]
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
        weights: torch.Tensor | None = None,
        classify_images: torch.Tensor | None = None,
    ) -> LossParts:
        """The symmetric flow-matching loss ``w * MSE_image + (1 - w) * MSE_mask``.

        Random inputs (``t``, ``image_noise``, ``mask_noise``, the dequantization noise)
        are drawn from ``generator`` unless given; ``t ~ U(0, 1)``, except that a share
        ``classify_share`` of the batch is set to ``t = 1``. With ``classify_mask_only``,
        ``MSE_image = sum_i 1[t_i < 1] e_i / max(1, sum_i 1[t_i < 1])``, ``e_i`` sample i's mean
        squared image error: the samples at ``t = 1`` drop out, and each other one weighs
        ``N / #{t_i < 1}`` times as much as in the paper's mean (4/3 with a quarter at ``t = 1``).
        Per-image ``weights`` ``a_i`` (class weights: the trainer's ``class_weighted_loss``) make
        both terms weighted means, ``MSE = (1/N) sum_i a_i e_i`` (with ``classify_mask_only``, the
        image term ``sum_i 1[t_i < 1] a_i e_i / max(1, sum_i 1[t_i < 1])``); none: every ``a_i = 1``.
        ``classify_images`` (the shape of ``images``: the trainer's shifted copies) replace ``images``
        where ``t_i = 1``, so only the inputs of one-step classification see them.
        """
        self._check_images(images)
        if classify_images is not None and classify_images.shape != images.shape:
            raise ValueError(
                f"classify_images must have the shape of images {tuple(images.shape)}, got {tuple(classify_images.shape)}"
            )
        n, size = images.shape[0], images.shape[-1]
        check_loss_weights(weights, n)
        device = images.device
        masks = self.masks(labels, size, self.beta, generator)
        if t is None:
            t = sample_time(n, generator, device)
            if self.classify_share > 0:
                t = torch.where(sample_time(n, generator, device) < self.classify_share, torch.ones_like(t), t)
        if classify_images is not None:
            images = torch.where((t == 1).view(-1, 1, 1, 1), classify_images, images)
        if image_noise is None:
            image_noise = _randn(images.shape, generator, device)
        if mask_noise is None:
            mask_noise = _randn(masks.shape, generator, device)
        image_path = ot_path(image_noise, images, t, self.sigma_min)  # noise -> data
        mask_path = ot_path(masks, mask_noise, t, self.sigma_min)  # data -> noise
        predicted = self(torch.cat([image_path.z_t, mask_path.z_t], dim=1), t)
        image_error = (predicted[:, : self.image_channels] - image_path.velocity) ** 2
        mask_error = (predicted[:, self.image_channels :] - mask_path.velocity) ** 2
        if self.classify_mask_only:
            trained = (t < 1).to(image_error.dtype)
            per_image = image_error.flatten(1).mean(dim=1)
            if weights is not None:
                per_image = per_image * weights
            image_loss = (per_image * trained).sum() / trained.sum().clamp(min=1)
        else:
            image_loss = _mean_error(image_error, weights)
        mask_loss = _mean_error(mask_error, weights)
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
        """Images of the given classes at ``size`` px: integrate ``t: 0 -> 1`` from ``[xi_x, mask(label)]``.

        A latent model integrates at its latent side and decodes the image latents (gray data: the
        mean of the decoded channels, :meth:`~medsymmflow.models.autoencoder.LatentCodec.decode_images`);
        ``trajectory`` then holds latents.
        """
        state_size = size if self.codec is None else self.codec.latent_size(size)
        masks = self.masks(labels, state_size)
        noise = _randn((len(masks), self.image_channels, state_size, state_size), generator, masks.device)
        solution = integrate(self, torch.cat([noise, masks], dim=1), 0.0, 1.0, steps, solver, return_trajectory)
        images = solution.z[:, : self.image_channels]
        if self.codec is not None:
            images = self.codec.decode_images(images, self.pixel_channels)
        return Generation(images, solution.trajectory)

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
        noise draws ``xi_y`` before taking the nearest class. A latent model takes image latents
        (:func:`medsymmflow.latents.split_inputs`) and returns decoded masks (latent ones with
        ``mask_space="latent"``).
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
            if self.codec is not None and self.mask_space == "latent":
                all_distances.append(centre_distances(predicted, self.mask_centres))
            else:
                predicted = predicted if self.codec is None else self.codec.decode(predicted)
                all_distances.append(mask_distances(predicted, self.colours, self.decoding))
            mask_sum = mask_sum + predicted
        sample_distances = torch.stack(all_distances)
        distances = sample_distances.mean(dim=0)
        return Classification(distances.argmin(dim=1), distances, sample_distances, mask_sum / n_samples)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != self.image_channels:
            what = "images" if self.codec is None else "image latents (see medsymmflow.latents.split_inputs)"
            raise ValueError(
                f"{what} must be (N, {self.image_channels}, H, W) for this model, got {tuple(images.shape)}"
            )


def _mean_error(error: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``(1/N) sum_i a_i e_i``, ``e_i`` image i's mean of ``error``; without weights, the plain mean."""
    return torch.mean(error) if weights is None else torch.mean(weights * error.flatten(1).mean(dim=1))


def check_loss_weights(weights: torch.Tensor | None, n: int) -> None:
    """Per-image loss weights are ``None`` or one number per image of the batch, shape ``(n,)``."""
    if weights is not None and tuple(weights.shape) != (n,):
        raise ValueError(f"weights must hold one number per image, shape ({n},); got {tuple(weights.shape)}")


def _check_reading(decoding: str, mask_space: str) -> None:
    if decoding not in DECODINGS:
        raise ValueError(f"Unknown decoding {decoding!r}: expected one of {DECODINGS}.")
    if mask_space not in MASK_SPACES:
        raise ValueError(f"Unknown mask_space {mask_space!r}: expected one of {MASK_SPACES}.")


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)
