"""Atomic file writes: the one home of "write beside the target, then rename over it".

A reader (or a crash) sees either the old file or the complete new one, never a part:
the bytes go to a temporary file in the target's folder (same file system, so the
final :func:`os.replace` is atomic) that is deleted if anything fails before the rename.
:func:`file_digest` is the one home of a file's checksum (the data's md5, the shipped runs' SHA-256).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on a clean exit rename it to ``dest``.

    If the block raises, the temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it, before any work starts.

    Raises:
        NotADirectoryError: ``folder`` (or a parent) is a file.
        PermissionError: the folder cannot be created or written (read-only disk, permissions).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder; choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (FileExistsError, NotADirectoryError) as error:
        raise NotADirectoryError(f"cannot create {folder}: a folder above it is a file, not a folder") from error
    except OSError as error:
        raise PermissionError(f"cannot write to {folder}: {error.strerror or error}") from error
    return folder


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file (any :mod:`hashlib` algorithm), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
