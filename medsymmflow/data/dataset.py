"""One MedMNIST dataset in memory (real or its synthetic twin) and its torch ``Dataset``.

Images become float tensors in [-1, 1], ``C x H x W``: ``x = pixel / 127.5 - 1``, then
padded (28 -> 32, pad value -1 = black, as the paper does) or resized to the model size.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medsymmflow.data import medmnist as files
from medsymmflow.data.synthetic import make_synthetic

FITS = ("pad", "resize")


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [-1, 1]: ``x / 127.5 - 1``."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images as in the official files, got {x.dtype}")
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) images in about [-1, 1] -> uint8 as the official files store them,
    (N, H, W) for one channel and (N, H, W, C) otherwise: ``clip(round((x + 1) 127.5), 0, 255)``.
    The inverse of :func:`to_float` on its outputs; how a generated image is saved."""
    if images.ndim != 4:
        raise ValueError(f"expected float images (N, C, H, W), got shape {tuple(images.shape)}")
    x = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return (x[:, 0] if x.shape[1] == 1 else x.permute(0, 2, 3, 1)).numpy()


def fit_size(images: torch.Tensor, image_size: int, fit: str = "pad") -> torch.Tensor:
    """Bring (N, C, H, W) images in [-1, 1] to ``image_size`` px.

    ``fit="pad"`` pads symmetrically with -1 (black), e.g. 28 -> 32 as in the paper;
    ``fit="resize"`` resamples bilinearly with antialiasing (e.g. 224 -> 256).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    height, width = images.shape[-2:]
    if (height, width) == (image_size, image_size):
        return images
    if fit == "resize":
        return F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    if image_size < max(height, width):
        raise ValueError(
            f"cannot pad {height}x{width} images down to {image_size} px; use fit='resize' or a larger image_size"
        )
    top, left = (image_size - height) // 2, (image_size - width) // 2
    return F.pad(images, (left, image_size - width - left, top, image_size - height - top), value=-1.0)


def shift_images(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each of (N, C, H, W) images by its own whole-pixel offset ``(dy, dx)`` (``offsets``: (N, 2)
    ints): its content moves up by ``dy`` and left by ``dx`` rows and columns (down and right when negative),

    ``out[n, :, y, x] = images[n, :, clamp(y + dy, 0, H - 1), clamp(x + dx, 0, W - 1)]``: the edge rows
    and columns are repeated into the uncovered border, as torchvision's ``pad(padding_mode="edge")``
    then ``crop`` at ``(s + dy, s + dx)`` give, but with one offset per image in a single indexing.
    """
    n, _, height, width = images.shape
    rows = (torch.arange(height, device=offsets.device) + offsets[:, :1]).clamp(0, height - 1)  # (N, H)
    cols = (torch.arange(width, device=offsets.device) + offsets[:, 1:]).clamp(0, width - 1)  # (N, W)
    picked = images[
        torch.arange(n, device=offsets.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
    ]  # (N, H, W, C)
    return picked.permute(0, 3, 1, 2).contiguous()


@dataclass
class MedMNISTData:
    """A MedMNIST dataset held in memory, real or synthetic.

    Attributes:
        flag: the MedMNIST flag, e.g. ``"pneumoniamnist"``.
        size: native image side (28, 64, 128 or 224).
        info: the flag's ``medmnist.INFO`` entry.
        arrays: official keys ``{split}_images`` / ``{split}_labels``.
        synthetic: True when this is the procedural twin, not the real data.
        ambiguous: for synthetic data, per split, which samples are deliberately ambiguous.
    """

    flag: str
    size: int
    info: dict
    arrays: dict[str, np.ndarray]
    synthetic: bool = False
    ambiguous: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The dataset's display name, e.g. ``PneumoniaMNIST``."""
        return self.info["python_class"]

    @property
    def title(self) -> str:
        """Name for figure titles; says SYNTHETIC loudly when it is not the real data."""
        return f"{self.name} (SYNTHETIC TWIN, not real data)" if self.synthetic else self.name

    @property
    def source(self) -> str:
        """One line saying which data this is, for the head of a notebook or report."""
        if self.synthetic:
            return f"the synthetic twin of {self.name} at {self.size} px (procedural stand-in, not real data)"
        return f"real {self.name} at {self.size} px (the official MedMNIST file, md5-checked on load)"

    @property
    def n_classes(self) -> int:
        return len(self.info["label"])

    @property
    def n_channels(self) -> int:
        return int(self.info["n_channels"])

    @property
    def class_names(self) -> list[str]:
        return [self.info["label"][str(i)] for i in range(self.n_classes)]

    def images(self, split: str) -> np.ndarray:
        """uint8 images of a split, as stored."""
        return self.arrays[f"{_check_split(split)}_images"]

    def labels(self, split: str) -> np.ndarray:
        """Integer labels (N,) of a split (N x L for multi-label tasks)."""
        labels = self.arrays[f"{_check_split(split)}_labels"].astype(np.int64)
        return labels[:, 0] if labels.shape[1] == 1 else labels

    def class_counts(self, split: str) -> np.ndarray:
        """Images per class in a split, shape (K,)."""
        return np.bincount(self.labels(split), minlength=self.n_classes)

    def tensors(self, split: str, image_size: int | None = None, fit: str = "pad") -> tuple[torch.Tensor, torch.Tensor]:
        """A whole split as ``(images (N, C, S, S) in [-1, 1], labels (N,))`` tensors."""
        images = fit_size(to_float(self.images(split)), image_size or self.size, fit)
        return images, torch.as_tensor(self.labels(split))

    def dataset(
        self, split: str, image_size: int | None = None, fit: str = "pad", flip: bool = False
    ) -> MedMNISTDataset:
        """A torch ``Dataset`` over one split (see :class:`MedMNISTDataset`)."""
        return MedMNISTDataset(self, split, image_size or self.size, fit, flip)


class MedMNISTDataset(Dataset):
    """Items ``(image, label)``: image float (C, S, S) in [-1, 1], label an int.

    Args:
        data: the dataset in memory.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: model input side (28 -> 32 pads by 2 px each side).
        fit: ``"pad"`` or ``"resize"`` (see :func:`fit_size`).
        flip: random horizontal flips (p = 0.5), for training.
    """

    def __init__(self, data: MedMNISTData, split: str, image_size: int, fit: str = "pad", flip: bool = False):
        self.images = data.images(split)
        self.labels = data.labels(split)
        self.image_size, self.fit, self.flip = image_size, fit, flip
        fit_size(to_float(self.images[:1]), image_size, fit)  # fail now, not in a worker

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = fit_size(to_float(self.images[index : index + 1]), self.image_size, self.fit)[0]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[index])


def _check_split(split: str) -> str:
    if split not in files.SPLITS:
        raise ValueError(f"Unknown split {split!r}: expected one of {files.SPLITS}.")
    return split


def load_medmnist(
    flag: str,
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
) -> MedMNISTData:
    """Load a real MedMNIST dataset: locate (or download), verify md5, read and check it."""
    info = files.dataset_info(flag)
    path = files.fetch(flag, size, root, download_missing=download, progress=progress)
    arrays = files.read_npz(path, flag, size)
    return MedMNISTData(flag.strip().lower(), size, info, arrays)


def synthetic_twin(
    flag: str, size: int = 28, seed: int = 0, max_per_split: int | None = None, ambiguous_fraction: float = 0.1
) -> MedMNISTData:
    """A procedural stand-in with the flag's classes, channels and split sizes.

    Args:
        flag: the MedMNIST flag to imitate.
        size: image side (any size >= 8 px: the images are procedural).
        seed: generator seed (deterministic).
        max_per_split: cap each split's size (None keeps INFO's counts).
        ambiguous_fraction: share of deliberately ambiguous samples.
    """
    info = files.dataset_info(flag)
    if size < 8:
        raise ValueError(f"synthetic images need at least 8 px, got {size}")
    counts = {s: min(n, max_per_split or n) for s, n in info["n_samples"].items()}
    generated = make_synthetic(
        len(info["label"]), info["n_channels"], size, counts, ambiguous_fraction=ambiguous_fraction, seed=seed
    )
    return MedMNISTData(
        flag.strip().lower(), size, info, generated.arrays, synthetic=True, ambiguous=generated.ambiguous
    )


def load_dataset(
    flag: str = "pneumoniamnist",
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = True,
    allow_synthetic: bool = False,
    seed: int = 0,
) -> MedMNISTData:
    """Load the real dataset, or, only if it is unavailable and ``allow_synthetic``, its twin.

    Only a missing, undownloadable file falls back; a file that fails its md5 or is
    corrupt is always an error. The fallback is announced with a warning and the
    returned data says ``synthetic=True`` (and SYNTHETIC in its ``title``).
    """
    try:
        return load_medmnist(flag, size, root, download)
    except files.DatasetUnavailableError as error:
        if not allow_synthetic:
            raise
        message = (
            f"REAL DATA UNAVAILABLE: {error}\n>>> Using the SYNTHETIC twin of {flag} instead. "
            "Every number and figure below is about synthetic images, not real patients. <<<"
        )
        warnings.warn(message, stacklevel=2)
        return synthetic_twin(flag, size, seed)
