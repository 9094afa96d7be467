"""Model weights on disk: safetensors files written atomically.

A save goes to a temporary file beside the target and is renamed over it only when
complete, so a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import nn


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_model(model, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights saved by :func:`save_weights` into ``model`` (shapes must match exactly)."""
    load_model(model, path, strict=True)
    return model
