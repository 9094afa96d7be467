"""Procedural datasets in the official MedMNIST npz format, with known ambiguity.

Each class ``k`` of ``K`` is an oriented grating under a soft round window: angle
``theta_k = pi * k / K``, a class-specific frequency and, for 3-channel sets, a
class tint. Random phase, window position and pixel noise make every image unique.

A fraction of samples is deliberately ambiguous: their image is the blend
``w * pattern(label) + (1 - w) * pattern(partner)`` with ``w ~ U(0.45, 0.55)``, so
the image fits two classes almost equally well and the label is close to a coin
flip. Which samples are ambiguous (and their partner class) is recorded, so later
chapters can check that a model's uncertainty rises exactly there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")
CHUNK = 2048


@dataclass
class SyntheticArrays:
    """A generated dataset.

    Attributes:
        arrays: the official keys ``{split}_images`` (uint8, N x H x W[ x 3]) and
            ``{split}_labels`` (uint8, N x 1); ``np.savez(path, **arrays)`` writes
            a file in exactly the official format.
        ambiguous: per split, a bool array marking the blended samples.
        partner: per split, the second class blended into each sample (-1 if none).
    """

    arrays: dict[str, np.ndarray]
    ambiguous: dict[str, np.ndarray]
    partner: dict[str, np.ndarray]


def class_patterns(
    labels: np.ndarray, n_classes: int, n_channels: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Float images in [0, 1] of shape (N, size, size, n_channels), one pattern per label."""
    n = len(labels)
    coords = (np.arange(size) + 0.5) / size - 0.5
    y, x = np.meshgrid(coords, coords, indexing="ij")
    theta = np.pi * labels / n_classes
    frequency = 3.0 + 1.5 * (labels % 3)
    phase = rng.uniform(0, 2 * np.pi, n)
    centre = rng.uniform(-0.08, 0.08, (n, 2))
    along = x[None] * np.cos(theta)[:, None, None] + y[None] * np.sin(theta)[:, None, None]
    grating = 0.5 + 0.5 * np.cos(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    radius2 = (x[None] - centre[:, 0, None, None]) ** 2 + (y[None] - centre[:, 1, None, None]) ** 2
    window = np.exp(-radius2 / (2 * 0.28**2))
    pattern = (0.15 + 0.85 * grating) * window
    if n_channels == 1:
        return pattern[..., None]
    hue = 2 * np.pi * labels / n_classes
    tint = 0.65 + 0.35 * np.cos(hue[:, None] + np.array([0.0, 2.1, 4.2])[None, :])
    return pattern[..., None] * tint[:, None, None, :]


def make_synthetic(
    n_classes: int,
    n_channels: int = 1,
    size: int = 28,
    n_samples: dict[str, int] | None = None,
    ambiguous_fraction: float = 0.1,
    noise: float = 0.06,
    seed: int = 0,
) -> SyntheticArrays:
    """Generate a MedMNIST-format dataset, deterministic given ``seed``.

    Args:
        n_classes: number of classes K (>= 2).
        n_channels: 1 (gray) or 3 (RGB).
        size: image side in pixels.
        n_samples: images per split; default 1000 / 200 / 400.
        ambiguous_fraction: share of blended, deliberately ambiguous samples in [0, 1).
        noise: standard deviation of the Gaussian pixel noise, in [0, 1] units.
        seed: the seed; each split draws from its own child stream.

    Returns:
        The arrays in the official format plus the recorded ambiguity.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    if n_channels not in (1, 3):
        raise ValueError(f"n_channels must be 1 or 3 like MedMNIST, got {n_channels}")
    if not 0 <= ambiguous_fraction < 1:
        raise ValueError(f"ambiguous_fraction must lie in [0, 1), got {ambiguous_fraction}")
    n_samples = n_samples or {"train": 1000, "val": 200, "test": 400}
    if set(n_samples) != set(SPLITS) or min(n_samples.values()) < 1:
        raise ValueError(f"n_samples needs a positive count for each of {SPLITS}, got {n_samples}")
    arrays, ambiguous, partner = {}, {}, {}
    for split, stream in zip(SPLITS, np.random.SeedSequence(seed).spawn(len(SPLITS)), strict=True):
        rng = np.random.default_rng(stream)
        n = n_samples[split]
        labels = rng.integers(0, n_classes, n)
        is_ambiguous = rng.random(n) < ambiguous_fraction
        other = (labels + rng.integers(1, n_classes, n)) % n_classes
        weight = np.where(is_ambiguous, rng.uniform(0.45, 0.55, n), 1.0)
        images = np.empty((n, size, size, n_channels), dtype=np.uint8)
        for start in range(0, n, CHUNK):
            part = slice(start, start + CHUNK)
            w = weight[part, None, None, None]
            blend = w * class_patterns(labels[part], n_classes, n_channels, size, rng) + (1 - w) * class_patterns(
                other[part], n_classes, n_channels, size, rng
            )
            blend = blend + rng.normal(0.0, noise, blend.shape)
            images[part] = np.clip(np.rint(blend * 255), 0, 255).astype(np.uint8)
        arrays[f"{split}_images"] = images[..., 0] if n_channels == 1 else images
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
        ambiguous[split] = is_ambiguous
        partner[split] = np.where(is_ambiguous, other, -1)
    return SyntheticArrays(arrays, ambiguous, partner)
