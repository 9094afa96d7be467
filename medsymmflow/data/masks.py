"""Semantic masks: how a class label becomes an image the flow can transport, and back.

MedSymmFlow (Caetano et al. 2025) encodes class ``i`` of ``K`` as a constant image
filled with a class colour:

* **RGB** (the paper's): the 64 colours whose channels take values in
  ``{0, 75, 150, 225}``; class ``i`` takes palette entry ``linspace(0, 63, K)[i]`` so the
  K colours are spread apart. The official code **truncates** the index
  (``palette_index="truncate"``, the default: K = 5 -> entries 0, 15, 31, 47, 63); this
  course first rounded it (``"round"``: 0, 16, 32, 47, 63), the palette of every checkpoint
  that does not name its own. Values are scaled to [-1, 1] by ``v / 127.5 - 1``.
* **gray** (the paper's gray ablation, official ``rgb_mask=False``): one channel; class
  ``i`` becomes the level ``(beta_g / 2) (2 i / (K - 1) - 1)``, so with the official
  ``beta_g = 15`` (:data:`GRAY_BETA`) the levels span -7.5 ... 7.5, ``beta_g / (K - 1)`` apart.
  ``gray_beta = 2`` gives K evenly spaced levels in [-1, 1], the gray masks of checkpoints
  that do not name their own ``gray_beta``.
* **onehot** (not in the paper): K channels, class ``k`` is +1 in channel ``k`` and -1
  elsewhere. Every pair of classes is ``2 sqrt(2)`` apart and no class lies between two others,
  so the one-step estimate ``E[y | x] = sum_k p(k | x) c_k`` decodes (by ``"mean_colour"``) to
  ``argmax_k p(k | x)``, the Bayes rule, for any K; the palette's geometry is gone.

Training dequantizes a mask with centred uniform noise: RGB and one-hot of width ``beta / 127.5``
(``beta = 4`` in 0-255 units), ``m + U(-beta / 255, beta / 255)``; gray of width
``(beta_g / 2) / (K - 1)``, a quarter of the level spacing either way (the official code's).

Decoding turns a (predicted) mask into one distance per class; the label is
``argmin_k d_k`` and the same distances feed the uncertainty chapter. Three decodings:

* ``"pixel_distance"`` (the official code's for RGB, the default there): the mean over
  pixels of the per-pixel L2 distance, ``d_k = mean_{h,w} ||m[:, h, w] - c_k||_2``;
* ``"mean_colour"`` (the official code's for gray): the L2 distance of the pixel-mean colour,
  ``d_k = ||mean_{h,w} m[:, h, w] - c_k||_2`` - never larger than the pixel distance
  (the triangle inequality), as it drops the mask's spatial spread;
* ``"pixel_vote"``: each pixel votes for its nearest colour;
  ``d_k = 1 - (share of pixels voting k)``, so ``argmin_k d_k`` is the majority vote
  (the official code's "mode" label; ties go to the lower class).

Gray distances are measured in label units (divided by the level spacing), so the
official gray decoding ``v = (mean / (beta_g / 2) * 0.5 + 0.5)(K - 1)``,
``label = clamp(round(v))``, ``d_i = |v - i|`` is exactly ``"mean_colour"``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

LEVELS = (0, 75, 150, 225)
MODES = ("rgb", "gray", "onehot")
PALETTE_INDEX = ("truncate", "round")
DECODINGS = ("pixel_distance", "mean_colour", "pixel_vote")
PAPER_PALETTE_INDEX = "truncate"  # the official code's linspace(0, 63, K).long()
# Each mode's own decoding: the official code's for RGB (the mean over pixels of the per-pixel
# distance) and gray (the distance of the pixel mean); for one-hot the distance of the pixel
# mean, whose argmin is the largest mean channel.
MODE_DECODINGS = {"rgb": "pixel_distance", "gray": "mean_colour", "onehot": "mean_colour"}
PAPER_DECODING = MODE_DECODINGS["rgb"]
MAX_CLASSES = {"rgb": len(LEVELS) ** 3, "gray": 256, "onehot": 64}
DEFAULT_BETA = 4.0  # the paper's; 0 measured no better (benchmarks/results/recipe_study_beta_w_cpu_2026-12-03/)
GRAY_BETA = 15.0  # the official gray masks' beta_g: levels span +-beta_g / 2


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


def mask_channels(mode: str, n_classes: int) -> int:
    """Channels of a semantic mask: 3 for ``"rgb"``, 1 for ``"gray"``, K for ``"onehot"``."""
    if mode not in MODES:
        raise ValueError(f"Unknown mask mode {mode!r}: expected one of {MODES}.")
    return {"rgb": 3, "gray": 1, "onehot": n_classes}[mode]


def class_colours(
    n_classes: int, mode: str = "rgb", palette_index: str = PAPER_PALETTE_INDEX, gray_beta: float = GRAY_BETA
) -> torch.Tensor:
    """The K class colours, shape (K, C).

    RGB (in [-1, 1]): ``palette[index(linspace(0, 63, K))] / 127.5 - 1`` where ``index``
    rounds (``palette_index="round"``) or truncates (``"truncate"``, the official code's
    ``linspace(0, 63, K).long()``); gray: ``(gray_beta / 2) (2 i / (K - 1) - 1)``, i = 0 ... K - 1;
    one-hot: ``2 e_i - 1``.
    """
    channels = mask_channels(mode, n_classes)
    if palette_index not in PALETTE_INDEX:
        raise ValueError(f"Unknown palette_index {palette_index!r}: expected one of {PALETTE_INDEX}.")
    if not 2 <= n_classes <= MAX_CLASSES[mode]:
        raise ValueError(f"n_classes must lie in [2, {MAX_CLASSES[mode]}] for {mode!r} masks, got {n_classes}.")
    if mode == "rgb":
        positions = np.linspace(0, len(LEVELS) ** 3 - 1, n_classes)
        index = (np.round(positions) if palette_index == "round" else np.floor(positions)).astype(int)
        values = rgb_palette()[index].astype(np.float64) / 127.5 - 1.0
    elif mode == "onehot":
        values = 2 * np.eye(n_classes) - 1
    else:
        if not gray_beta > 0:
            raise ValueError(f"gray_beta must be positive, got {gray_beta}")
        values = (gray_beta / 2) * (2 * np.arange(n_classes)[:, None] / (n_classes - 1) - 1)
    colours = torch.as_tensor(values, dtype=torch.float32)
    assert colours.shape == (n_classes, channels)
    return colours


def centre_separation(
    n_classes: int, mode: str = "rgb", palette_index: str = PAPER_PALETTE_INDEX, gray_beta: float = GRAY_BETA
) -> float:
    """The smallest distance between two class centres, ``min_{j != k} ||c_j - c_k||_2``, in mask
    values: the scale of the unit Gaussian noise the flow mixes masks with. One-hot: ``2 sqrt(2)``
    for every K; gray: the level spacing ``gray_beta / (K - 1)``; RGB: set by the palette."""
    colours = class_colours(n_classes, mode, palette_index, gray_beta).double()
    distances = torch.cdist(colours, colours).fill_diagonal_(float("inf"))
    return float(distances.min())


def dequantization_width(n_classes: int, mode: str, beta: float, gray_beta: float = GRAY_BETA) -> float:
    """Width of the centred uniform noise added to training masks: RGB and one-hot ``beta / 127.5``;
    gray ``(gray_beta / 2) / (K - 1)`` when ``beta > 0`` (``beta = 0`` turns it off)."""
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    if mode != "gray" or beta == 0:
        return beta / 127.5
    return (gray_beta / 2) / (n_classes - 1)


def labels_to_masks(
    labels: torch.Tensor,
    n_classes: int,
    size: int | tuple[int, int],
    mode: str = "rgb",
    beta: float = 0.0,
    generator: torch.Generator | None = None,
    palette_index: str = PAPER_PALETTE_INDEX,
    gray_beta: float = GRAY_BETA,
) -> torch.Tensor:
    """Constant class-colour masks, optionally dequantized.

    ``mask[n, :, h, w] = c_{labels[n]} + u[n, :, h, w]`` with ``u`` centred uniform noise of
    :func:`dequantization_width` (RGB: ``U(-beta/255, beta/255)``); ``beta = 0`` gives exact colours.

    Args:
        labels: integer labels, shape (N,) or (N, 1).
        n_classes: K.
        size: mask side, or (height, width).
        mode: ``"rgb"`` or ``"gray"``.
        beta: RGB dequantization width in 0-255 units (the paper trains with 4); for gray
            masks only ``beta > 0`` matters (the width is the paper's, set by ``gray_beta``).
        generator: RNG for the noise.
        palette_index: ``"round"`` or ``"truncate"`` (see :func:`class_colours`).
        gray_beta: scale of the gray levels (see :func:`class_colours`).

    Returns:
        Float tensor (N, C, H, W).

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
    noise_width = dequantization_width(n_classes, mode, beta, gray_beta)
    height, width = (size, size) if isinstance(size, int) else size
    colours = class_colours(n_classes, mode, palette_index, gray_beta).to(labels.device)
    masks = colours[labels][:, :, None, None].expand(-1, -1, height, width).clone()
    if noise_width > 0:
        device = generator.device if generator is not None else masks.device
        noise = torch.rand(masks.shape, generator=generator, device=device).to(masks.device)
        masks += (noise - 0.5) * noise_width
    return masks


def mask_distances(masks: torch.Tensor, colours: torch.Tensor, decoding: str = PAPER_DECODING) -> torch.Tensor:
    """Distance of each mask to each class colour, shape (N, K).

    ``"pixel_distance"``: ``d[n, k] = mean_{h,w} || masks[n, :, h, w] - colours[k] ||_2``;
    ``"mean_colour"``: ``d[n, k] = || mean_{h,w} masks[n, :, h, w] - colours[k] ||_2``;
    ``"pixel_vote"``: ``d[n, k] = 1 - mean_{h,w} [argmin_j ||masks[n, :, h, w] - colours[j]|| = k]``.
    One-channel (gray) colours are evenly spaced levels; their distances are divided by the
    spacing, i.e. measured in label units.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"Unknown decoding {decoding!r}: expected one of {DECODINGS}.")
    if masks.ndim != 4 or masks.shape[1] != colours.shape[1]:
        raise ValueError(
            f"masks must be (N, C, H, W) with C = {colours.shape[1]} colour channels, got {tuple(masks.shape)}"
        )
    masks = masks.float()
    colours = colours.to(masks)
    unit = (colours[1] - colours[0]).abs().item() if colours.shape[1] == 1 else 1.0
    if decoding == "mean_colour":
        return torch.cdist(masks.mean(dim=(2, 3)), colours, compute_mode="donot_use_mm_for_euclid_dist") / unit
    pixel = (masks[:, None] - colours[None, :, :, None, None]).norm(dim=2)  # (N, K, H, W)
    if decoding == "pixel_distance":
        return pixel.mean(dim=(2, 3)) / unit
    votes = torch.nn.functional.one_hot(pixel.argmin(dim=1), len(colours)).float().mean(dim=(1, 2))
    return 1.0 - votes


def centre_distances(masks: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Distance of each mask to each class centre when the centres are images, not colours, shape (N, K):
    ``d[n, k] = mean_{h,w} || masks[n, :, h, w] - centres[k, :, h, w] ||_2`` - ``"pixel_distance"`` with a
    centre that may vary across pixels (the class-colour masks' latents, which a codec does not keep constant).
    """
    if masks.ndim != 4 or centres.ndim != 4 or masks.shape[1:] != centres.shape[1:]:
        raise ValueError(
            f"masks (N, C, H, W) and centres (K, C, H, W) must agree in C, H, W; got {tuple(masks.shape)} "
            f"and {tuple(centres.shape)}"
        )
    masks = masks.float()
    return (masks[:, None] - centres.to(masks)[None]).norm(dim=2).mean(dim=(2, 3))


def posterior_mix_distances(posteriors: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Distance of the posterior mix to every class centre, shape (N, K) (or (K,) for one posterior).

    The best one-step mask is ``E[y | x] = sum_j p(j | x) c_j`` (chapter 2), and decoding picks the centre
    nearest to it: ``d[n, k] = || sum_j p[n, j] c_j - c_k ||_2``, in the centres' own units (for gray not
    divided by the level spacing: the nearest centre is the same). With K > 2 RGB and gray centres the
    nearest can be a class of low probability; with one-hot centres it is always ``argmax_k p[n, k]``.
    """
    if posteriors.shape[-1] != len(centres):
        raise ValueError(f"posteriors over {posteriors.shape[-1]} classes, but {len(centres)} centres")
    mix = posteriors.to(centres) @ centres
    return (mix[..., None, :] - centres).norm(dim=-1)


def masks_to_labels(masks: torch.Tensor, colours: torch.Tensor, decoding: str = PAPER_DECODING) -> torch.Tensor:
    """Nearest class colour of each mask: ``argmin_k d[n, k]``, shape (N,)."""
    return mask_distances(masks, colours, decoding).argmin(dim=1)
