"""Checkpoints on disk: atomic writes, checkpoint folders, and reading them back.

A weights file (:func:`save_weights`, used by the notebooks) is written atomically
(:func:`medsymmflow.files.atomic_path`); a checkpoint folder (``last/``,
``best/``: ``ema.safetensors``, ``config.json`` and, in ``last/``, the training state) is
written under a temporary name and swapped in whole (:func:`swap_in`). Either way a crash
mid-save leaves the previous version loadable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from medsymmflow.config import runs_dir
from medsymmflow.files import atomic_path
from medsymmflow.models.baselines import CNNClassifier
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.recipes import MODEL_FIELDS, ConfigMismatchError, TrainConfig, build_model, config_differences

# Fields added to TrainConfig after checkpoints were written, with the value those checkpoints used.
LEGACY_DEFAULTS = {"palette_index": "round", "decoding": "mean_colour", "gray_beta": 2.0}


def settings_key(settings: dict) -> str:
    """Eight hex digits that change whenever any setting does: ``sha1(sorted JSON)[:8]``."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def cached_weights_path(name: str, settings: dict, synthetic: bool) -> Path:
    """Where a notebook keeps the weights it trained: ``runs/checkpoints/<name>[-synthetic]_<key>.safetensors``,
    keyed by every setting that shaped them and by the kind of data, so a changed knob trains anew."""
    return (
        runs_dir() / "checkpoints" / f"{name}{'-synthetic' if synthetic else ''}_{settings_key(settings)}.safetensors"
    )


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors), atomically."""
    with atomic_path(path) as tmp:
        save_model(model, tmp, metadata=metadata)
    return Path(path)


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights saved by :func:`save_weights` into ``model`` (shapes must match exactly)."""
    load_model(model, path, strict=True)
    return model


def checkpoint_dir(path: Path) -> Path:
    """The folder to read: ``path``, or its previous version if a swap was interrupted."""
    path = Path(path)
    if (path / "config.json").exists():
        return path
    previous = path.with_name(path.name + ".old")
    if (previous / "config.json").exists():
        return previous
    raise FileNotFoundError(f"no checkpoint at {path} (expected {path / 'config.json'})")


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a checkpoint folder; config fields it predates get the value it was trained with."""
    meta = json.loads((checkpoint_dir(Path(path)) / "config.json").read_text())
    meta["config"] = {**LEGACY_DEFAULTS, **meta["config"]}
    return meta


def load_checkpoint(
    path: str | os.PathLike, expected: TrainConfig | None = None, device: str | torch.device = "cpu"
) -> tuple[SymmetricFlow | CNNClassifier, dict]:
    """Load a checkpoint folder's EMA weights into a new model.

    Args:
        path: a ``last/`` or ``best/`` folder.
        expected: if given, refuse a checkpoint whose model fields differ from it.
        device: where to put the model.

    Returns:
        ``(model in eval mode, metadata from config.json)``.

    Raises:
        ConfigMismatchError: the saved model fields differ from ``expected``'s.
    """
    folder = checkpoint_dir(Path(path))
    meta = read_checkpoint_meta(folder)
    if expected is not None:
        differences = config_differences(meta["config"], expected.to_dict(), MODEL_FIELDS)
        if differences:
            raise ConfigMismatchError(
                f"checkpoint {folder} does not match the requested model: " + "; ".join(differences)
            )
    config = TrainConfig(**meta["config"])
    model = build_model(config, meta["n_classes"], meta["image_channels"])
    model.net.load_state_dict(load_file(folder / "ema.safetensors"))
    return model.to(device).eval(), meta


def swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp``; if interrupted, ``final.old`` still holds the previous one."""
    previous = final.with_name(final.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(tmp, final)
    shutil.rmtree(previous, ignore_errors=True)
