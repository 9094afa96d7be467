"""The latent cache: each split encoded once per codec, stored as safetensors, reused by training and evaluation.

A latent model sees latents, not pixels. :func:`split_inputs` gives a model (a :class:`SymmetricFlow`
or a CNN baseline) the inputs of a split: the images themselves for a pixel-space model, and for a
latent one (a :class:`SymmetricFlow` with a ``codec``) the scaled latents ``(e - shift) * scaling``,
``e ~ q(z | x)`` drawn once with a fixed seed. They are read from ``runs/latents/`` when a file
with the same key is there, else encoded and written (atomically). The key is a sha256 of
everything the latents depend on: the codec's fingerprint (weights and config), the md5 of the
split's image bytes, the image size, the fit, the split and the seed - so a retrained codec or
different data never reuses stale latents.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medsymmflow.config import runs_dir
from medsymmflow.data.dataset import MedMNISTData
from medsymmflow.files import atomic_path
from medsymmflow.models.autoencoder import (
    COURSE_CODEC,
    COURSE_CODEC_STEPS,
    COURSE_KL_WEIGHT,
    COURSE_MASK_SHARE,
    LatentCodec,
    train_course_codec,
)

LATENT_SEED = 0  # the draw e ~ q(z | x) of every cached image latent


def latents_dir() -> Path:
    """Where cached latents live: ``runs/latents``."""
    return runs_dir() / "latents"


def data_md5(data: MedMNISTData, split: str) -> str:
    """md5 of a split's image bytes (the data part of a cache key)."""
    return hashlib.md5(data.images(split).tobytes()).hexdigest()


def cache_key(codec: LatentCodec, data: MedMNISTData, split: str, image_size: int, fit: str, seed: int) -> str:
    """sha256 of the codec fingerprint, the data md5, size, fit, split and seed."""
    parts = {
        "codec": codec.identity,
        "data_md5": data_md5(data, split),
        "flag": data.flag,
        "size": data.size,
        "image_size": image_size,
        "fit": fit,
        "split": split,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_latents(
    codec: LatentCodec,
    data: MedMNISTData,
    split: str,
    image_size: int,
    fit: str = "pad",
    seed: int = LATENT_SEED,
    cache: str | os.PathLike | None = None,
) -> torch.Tensor:
    """The scaled latents of a split (N, C_z, S / f, S / f), encoded once and cached.

    Args:
        cache: the cache folder (default :func:`latents_dir`).
    """
    key = cache_key(codec, data, split, image_size, fit, seed)
    path = Path(cache or latents_dir()) / f"{data.flag}_{data.size}_{split}_{image_size}_{key[:20]}.safetensors"
    if path.exists():
        try:
            return load_file(path)["latents"]
        except (SafetensorError, OSError, KeyError):  # a damaged cache file is re-encoded, never trusted
            path.unlink(missing_ok=True)
    images, _ = data.tensors(split, image_size, fit)
    latents = codec.encode_images(
        images, torch.Generator().manual_seed(seed)
    )  # CPU draws: the same on any device.cpu()
    with atomic_path(path) as tmp:
        save_file({"latents": latents.contiguous()}, tmp, metadata={"key": key, "codec": codec.name})
    return latents


def course_codec(
    data: MedMNISTData,
    steps: int = COURSE_CODEC_STEPS,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[LatentCodec, list[dict]]:
    """The course codec of a dataset, trained once on its training split (32 px) and then loaded.

    Its folder, ``runs/models/codec_<flag>_<size>_<key>``, is keyed by the codec's settings, the
    steps, the seed and the training images' md5, so other data or settings train their own.
    Training is :func:`~medsymmflow.models.autoencoder.train_course_codec`; its history is kept
    beside the weights (``history.json``).

    Returns:
        ``(codec, history)``.
    """
    settings = {
        "architecture": COURSE_CODEC,
        "kl_weight": COURSE_KL_WEIGHT,
        "mask_share": COURSE_MASK_SHARE,
        "steps": steps,
        "seed": seed,
        "data_md5": data_md5(data, "train"),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:12]
    folder = (Path(root or runs_dir() / "models") / f"codec_{data.flag}_{data.size}_{key}").resolve()
    history_file = folder / "history.json"
    if (folder / "config.json").exists() and history_file.exists():
        return LatentCodec.from_pretrained(folder, device), json.loads(history_file.read_text())
    images, _ = data.tensors("train", COURSE_CODEC["sample_size"])
    codec, history = train_course_codec(images, folder, steps=steps, seed=seed, device=device, progress=progress)
    with atomic_path(history_file) as tmp:
        tmp.write_text(json.dumps(history, indent=1))
    return codec, history


def split_inputs(
    model, data: MedMNISTData, split: str, image_size: int, cache: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``model`` classifies for a split: ``(inputs, labels)``, pixels in [-1, 1] for a pixel-space
    model, cached latents (:func:`cached_latents`) for a model with a ``codec``; images reach
    ``image_size`` by the model's ``fit``."""
    codec, fit = getattr(model, "codec", None), model.fit
    if codec is None:
        return data.tensors(split, image_size, fit)
    labels = torch.as_tensor(data.labels(split))
    return cached_latents(codec, data, split, image_size, fit, cache=cache), labels
