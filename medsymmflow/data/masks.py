"""Semantic masks: how a class label becomes an image the flow can transport, and back.

MedSymmFlow (Caetano et al. 2025) encodes class ``i`` of ``K`` as a constant image
filled with a class colour:

* **RGB** (the paper's): the 64 colours whose channels take values in
  ``{0, 75, 150, 225}``; class ``i`` takes palette entry ``linspace(0, 63, K)[i]`` so the
  K colours are spread apart. The official code **truncates** the index
  (``palette_index="truncate"``, the default: K = 5 -> entries 0, 15, 31, 47, 63); this
  course first rounded it (``"round"``: 0, 16, 32, 47, 63), the palette of every checkpoint
  that does not name its own. Values are scaled to [-1, 1] by ``v / 127.5 - 1``.
* **gray**: one channel with K evenly spaced levels ``linspace(0, 255, K)``, scaled alike.

Training dequantizes a mask with uniform noise of width ``beta / 127.5`` (``beta = 4``
in 0-255 units), centred on the colour: ``m + U(-beta / 255, beta / 255)``.

Decoding turns a (predicted) mask into one distance per class; the label is
``argmin_k d_k`` and the same distances feed the uncertainty chapter. Two decodings:

* ``"pixel_distance"`` (the official code's, the default): the mean over pixels of the
  per-pixel L2 distance, ``d_k = mean_{h,w} ||m[:, h, w] - c_k||_2``;
* ``"mean_colour"``: the L2 distance of the pixel-mean colour,
  ``d_k = ||mean_{h,w} m[:, h, w] - c_k||_2`` - never larger than the pixel distance
  (the triangle inequality), as it drops the mask's spatial spread.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

LEVELS = (0, 75, 150, 225)
MODES = ("rgb", "gray")
PALETTE_INDEX = ("truncate", "round")
DECODINGS = ("pixel_distance", "mean_colour")
PAPER_PALETTE_INDEX = "truncate"  # the official code's linspace(0, 63, K).long()
PAPER_DECODING = "pixel_distance"  # the official code's mean over pixels of the per-pixel distance
MAX_CLASSES = {"rgb": len(LEVELS) ** 3, "gray": 256}
DEFAULT_BETA = 4.0


def rgb_palette() -> np.ndarray:
    """The 64 RGB colours (uint8, 64 x 3) with channel values in {0, 75, 150, 225}, R slowest."""
    return np.array(list(itertools.product(LEVELS, repeat=3)), dtype=np.uint8)


def check_task(info: dict) -> None:
    """Raise ValueError for tasks one semantic mask per image cannot encode (multi-label)."""
    if info.get("task", "").startswith("multi-label"):
        raise ValueError(
            f"{info.get('python_class', 'This dataset')} is a multi-label task; a semantic mask "
            "encodes exactly one class per image, so MedSymmFlow does not support it. "
            "Pick a multi-class, binary or ordinal flag."
        )


def mask_channels(mode: str) -> int:
    """Channels of a semantic mask: 3 for ``"rgb"``, 1 for ``"gray"``."""
    if mode not in MODES:
        raise ValueError(f"Unknown mask mode {mode!r}: expected one of {MODES}.")
    return 3 if mode == "rgb" else 1


def class_colours(n_classes: int, mode: str = "rgb", palette_index: str = PAPER_PALETTE_INDEX) -> torch.Tensor:
    """The K class colours in [-1, 1], shape (K, C).

    RGB: ``palette[index(linspace(0, 63, K))] / 127.5 - 1`` where ``index`` rounds
    (``palette_index="round"``) or truncates (``"truncate"``, the official code's
    ``linspace(0, 63, K).long()``); gray: ``linspace(0, 255, K) / 127.5 - 1``.
    """
    channels = mask_channels(mode)
    if palette_index not in PALETTE_INDEX:
        raise ValueError(f"Unknown palette_index {palette_index!r}: expected one of {PALETTE_INDEX}.")
    if not 2 <= n_classes <= MAX_CLASSES[mode]:
        raise ValueError(f"n_classes must lie in [2, {MAX_CLASSES[mode]}] for {mode!r} masks, got {n_classes}.")
    if mode == "rgb":
        positions = np.linspace(0, len(LEVELS) ** 3 - 1, n_classes)
        index = (np.round(positions) if palette_index == "round" else np.floor(positions)).astype(int)
        values = rgb_palette()[index].astype(np.float64)
    else:
        values = np.linspace(0, 255, n_classes)[:, None]
    colours = torch.as_tensor(values / 127.5 - 1.0, dtype=torch.float32)
    assert colours.shape == (n_classes, channels)
    return colours


def labels_to_masks(
    labels: torch.Tensor,
    n_classes: int,
    size: int | tuple[int, int],
    mode: str = "rgb",
    beta: float = 0.0,
    generator: torch.Generator | None = None,
    palette_index: str = PAPER_PALETTE_INDEX,
) -> torch.Tensor:
    """Constant class-colour masks, optionally dequantized.

    ``mask[n, :, h, w] = c_{labels[n]} + u[n, :, h, w]`` with ``u ~ U(-beta/255, beta/255)``
    (uniform noise of width ``beta / 127.5``); ``beta = 0`` gives exact colours.

    Args:
        labels: integer labels, shape (N,) or (N, 1).
        n_classes: K.
        size: mask side, or (height, width).
        mode: ``"rgb"`` or ``"gray"``.
        beta: dequantization width in 0-255 units (the paper trains with 4).
        generator: RNG for the noise.
        palette_index: ``"round"`` or ``"truncate"`` (see :func:`class_colours`).

    Returns:
        Float tensor (N, C, H, W) in [-1 - beta/255, 1 + beta/255].

    Raises:
        ValueError: labels outside ``[0, K)`` or not integers.
    """
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.reshape(-1).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}) for a {n_classes}-class palette; got values "
            f"from {int(labels.min())} to {int(labels.max())}."
        )
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    height, width = (size, size) if isinstance(size, int) else size
    colours = class_colours(n_classes, mode, palette_index).to(labels.device)
    masks = colours[labels][:, :, None, None].expand(-1, -1, height, width).clone()
    if beta > 0:
        device = generator.device if generator is not None else masks.device
        noise = torch.rand(masks.shape, generator=generator, device=device).to(masks.device)
        masks += (noise - 0.5) * (2 * beta / 255.0)
    return masks


def mask_distances(masks: torch.Tensor, colours: torch.Tensor, decoding: str = PAPER_DECODING) -> torch.Tensor:
    """Distance of each mask to each class colour, shape (N, K).

    ``"mean_colour"``: ``d[n, k] = || mean_{h,w} masks[n, :, h, w] - colours[k] ||_2``;
    ``"pixel_distance"`` (the official code's): ``d[n, k] = mean_{h,w} || masks[n, :, h, w] - colours[k] ||_2``.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"Unknown decoding {decoding!r}: expected one of {DECODINGS}.")
    if masks.ndim != 4 or masks.shape[1] != colours.shape[1]:
        raise ValueError(
            f"masks must be (N, C, H, W) with C = {colours.shape[1]} colour channels, got {tuple(masks.shape)}"
        )
    masks = masks.float()
    colours = colours.to(masks)
    if decoding == "pixel_distance":
        return (masks[:, None] - colours[None, :, :, None, None]).norm(dim=2).mean(dim=(2, 3))
    mean_colour = masks.mean(dim=(2, 3))
    return torch.cdist(mean_colour, colours, compute_mode="donot_use_mm_for_euclid_dist")


def masks_to_labels(masks: torch.Tensor, colours: torch.Tensor, decoding: str = PAPER_DECODING) -> torch.Tensor:
    """Nearest class colour of each mask: ``argmin_k d[n, k]``, shape (N,)."""
    return mask_distances(masks, colours, decoding).argmin(dim=1)
