"""Checkpoints on disk: atomic writes, checkpoint folders, and reading them back.

A weights file (:func:`save_weights`, used by the notebooks) is written atomically
(:func:`medsymmflow.files.atomic_path`); a checkpoint folder (``last/``,
``best/``: ``ema.safetensors``, ``config.json`` and, in ``last/``, the training state) is
written under a temporary name and swapped in whole (:func:`swap_in`). Either way a crash
mid-save leaves the previous version loadable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_model
from torch import nn

from medsymmflow import __version__
from medsymmflow.config import runs_dir
from medsymmflow.files import atomic_path, check_writable
from medsymmflow.models.baselines import CNNClassifier
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.recipes import MODEL_FIELDS, NEUTRAL, ConfigMismatchError, TrainConfig, build_model, config_differences

# Fields added to TrainConfig after checkpoints were written, with the value those checkpoints used.
# Checkpoints written before the fields of recipes.NEUTRAL used their neutral values (fit "pad" and no
# codec before latent models); three older fields had other values that changed what a run trains.
LEGACY_DEFAULTS = {**NEUTRAL, "palette_index": "round", "decoding": "mean_colour", "gray_beta": 2.0}


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


# What can go wrong when a damaged file is read back (torch.load's truncated zip is a RuntimeError).
DAMAGED = (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError, SafetensorError)
CHECKPOINTS = ("last", "best", "last.old", "best.old")  # the folders a run writes (.old: mid-swap)
REQUIRED_META = ("config", "step", "n_classes", "image_channels")


class CheckpointError(RuntimeError):
    """A checkpoint file is damaged, incomplete or does not fit the model it is loaded into."""


def damaged(file: Path, error: BaseException, advice: str = "") -> CheckpointError:
    """A :class:`CheckpointError` that names the file, what is wrong with it, and what to do."""
    folder = file.parent
    advice = advice or (
        f"Use the run's other checkpoint ({folder.with_name('best' if folder.name.startswith('last') else 'last')}) "
        "if it is intact, or train again."
    )
    return CheckpointError(f"{file} is damaged or incomplete ({type(error).__name__}: {error}). {advice}")


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a checkpoint folder; config fields it predates get the value it was trained with.

    Raises:
        FileNotFoundError: no checkpoint there.
        CheckpointError: ``config.json`` is not JSON, lacks a required key, or names config
            fields this version does not know.
    """
    file = checkpoint_dir(Path(path)) / "config.json"
    try:
        meta = json.loads(file.read_text())
        missing = [key for key in REQUIRED_META if key not in meta]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
    except DAMAGED as error:
        raise damaged(file, error) from error
    unknown = set(meta["config"]) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise CheckpointError(
            f"{file} has config fields this medsymmflow ({__version__}) does not know: {', '.join(sorted(unknown))}. "
            f"It was written by another version (its own: {meta.get('medsymmflow_version', 'unknown')}) or edited: "
            "load it with that version, or remove the fields."
        )
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
        CheckpointError: a file of the checkpoint is damaged or does not fit the model.
    """
    folder = checkpoint_dir(Path(path))
    meta = read_checkpoint_meta(folder)
    if expected is not None:
        differences = config_differences(meta["config"], expected.to_dict(), MODEL_FIELDS)
        if differences:
            raise ConfigMismatchError(
                f"checkpoint {folder} does not match the requested model: " + "; ".join(differences)
            )
    try:
        config = TrainConfig(**meta["config"])
    except ValueError as error:
        raise damaged(folder / "config.json", error) from error
    model = build_model(config, meta["n_classes"], meta["image_channels"])
    codec = getattr(model, "codec", None)
    if codec is not None and meta.get("codec", {}).get("identity") not in (None, codec.identity):
        raise ConfigMismatchError(
            f"checkpoint {folder} was trained on the latents of another codec than the one {config.codec} holds now "
            "(its weights or architecture changed since); put the codec it was trained with back at that path (or edit "
            "config.codec in the checkpoint's config.json to where it now lies), or train the model again"
        )
    load_state(model.net, folder / "ema.safetensors")
    return model.to(device).eval(), meta


def load_state(net: nn.Module, file: Path, advice: str = "") -> None:
    """Load a safetensors state dict into ``net``; a damaged or mismatched file is a :class:`CheckpointError`."""
    try:
        state = load_file(file)
    except DAMAGED as error:
        raise damaged(file, error, advice) from error
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).strip().splitlines()]
        raise CheckpointError(
            f"{file} does not fit the model that {file.parent / 'config.json'} describes "
            f"({lines[1] if len(lines) > 1 else lines[0]}): the two come from different runs. "
            f"{advice or 'Restore the matching files or train again.'}"
        ) from error


def existing_checkpoints(out_dir: Path) -> list[str]:
    """The checkpoint folders (of :data:`CHECKPOINTS`) that ``out_dir`` holds."""
    return [name for name in CHECKPOINTS if (Path(out_dir) / name / "config.json").exists()]


def prepare_run(out_dir: Path, config: TrainConfig, resume: bool, overwrite: bool, extend: bool) -> TrainConfig:
    """Refuse, before any work, an output folder that cannot be written or would lose a run.

    Returns the configuration to train with: on ``resume``, the saved run's ``restart_at``;
    with ``extend`` and more ``steps`` than the saved run's, a new cosine from the step it reached.
    """
    check_writable(out_dir)
    existing = existing_checkpoints(out_dir)
    if existing and not (resume or overwrite):
        raise FileExistsError(
            f"{out_dir} already holds a training run ({', '.join(n + '/' for n in existing)}); continue it with --resume "
            "(resume=True) or replace it with --overwrite (overwrite=True)"
        )
    if resume and not any(name.startswith("last") for name in existing):
        raise FileNotFoundError(f"nothing to resume: no checkpoint in {out_dir / 'last'}")
    if extend and not resume:
        raise ValueError("--extend continues a saved run: use it with --resume")
    if not resume:
        return config
    saved = read_checkpoint_meta(out_dir / "last")
    restart = saved["config"]["restart_at"]
    if extend and config.steps != saved["config"]["steps"]:
        if config.steps <= saved["step"]:
            raise ValueError(f"--extend: steps ({config.steps}) must exceed the step the run reached ({saved['step']})")
        restart = saved["step"]
    return dataclasses.replace(config, restart_at=restart)


def swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp``; if interrupted, ``final.old`` still holds the previous one."""
    previous = final.with_name(final.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(tmp, final)
    shutil.rmtree(previous, ignore_errors=True)
