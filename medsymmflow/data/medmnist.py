"""Official MedMNIST files: which exist, where they live, how they are verified and fetched.

Everything is driven by ``medmnist.INFO`` (labels, channels, split sizes, URL and md5
of every file), so one code path serves all 2D flags and sizes. A file is used only
after its md5 matches INFO; a download goes to a temporary file in the data folder
and is renamed into place only once its md5 checks out, so an interrupted or
corrupted download never leaves a file that looks valid.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from medmnist.info import INFO
from tqdm.auto import tqdm

from medsymmflow.config import project_dir
from medsymmflow.files import atomic_path, file_digest

logger = logging.getLogger(__name__)

SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
DATA_ENV = "MEDSYMMFLOW_DATA"
SYNTHETIC_HINT = (
    "To run without it, use the built-in synthetic twin: "
    "medsymmflow.data.load_dataset(flag, allow_synthetic=True) or "
    "medsymmflow.data.synthetic_twin(flag)."
)


class DataError(RuntimeError):
    """Base class of every data-layer error."""


class ChecksumError(DataError):
    """A file's md5 differs from the one ``medmnist.INFO`` publishes."""


class CorruptFileError(DataError):
    """A file cannot be read as a MedMNIST npz, or its contents do not match INFO."""


class DatasetUnavailableError(DataError):
    """A file is missing and could not be downloaded (offline, or download disabled)."""


def flags_2d() -> list[str]:
    """All 2D MedMNIST flags known to the installed ``medmnist`` package."""
    return [flag for flag in INFO if not flag.endswith("3d")]


def dataset_info(flag: str) -> dict:
    """The ``medmnist.INFO`` entry of a 2D flag.

    Raises:
        ValueError: for an unknown or 3D flag; the message lists the valid flags.
    """
    key = str(flag).strip().lower()
    if key not in flags_2d():
        raise ValueError(f"Unknown MedMNIST flag {flag!r}. Valid 2D flags: {', '.join(flags_2d())}.")
    return INFO[key]


def check_size(size: int) -> int:
    """Return ``size`` if MedMNIST publishes files at that resolution, else raise ValueError."""
    if size not in SIZES:
        raise ValueError(
            f"Unsupported MedMNIST size {size!r}: the official files exist at {SIZES} px. "
            "Pick one of those and resize in the Dataset (image_size=...) if you need another."
        )
    return int(size)


def file_name(flag: str, size: int = 28) -> str:
    """Official file name: ``{flag}.npz`` at 28 px, ``{flag}_{size}.npz`` otherwise."""
    key = str(flag).strip().lower()
    dataset_info(key)
    check_size(size)
    return f"{key}.npz" if size == 28 else f"{key}_{size}.npz"


def remote(flag: str, size: int = 28) -> tuple[str, str]:
    """``(url, md5)`` of the official file, read from ``medmnist.INFO``."""
    info = dataset_info(flag)
    suffix = "" if check_size(size) == 28 else f"_{size}"
    try:
        return info[f"url{suffix}"], info[f"MD5{suffix}"]
    except KeyError as error:
        raise ValueError(
            f"The installed medmnist package lists no {size}-px file for {flag!r}; "
            "upgrade medmnist (>= 3.0 knows 64/128/224 px) or use size=28."
        ) from error


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Folder that holds (or will hold) the MedMNIST files.

    Order: the ``root`` argument, else the ``MEDSYMMFLOW_DATA`` environment variable,
    else ``data/medmnist/`` in the project checkout (or in the working directory
    when the package is installed outside a checkout).
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return project_dir() / "data" / "medmnist"


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 digest of a file, read in chunks."""
    return file_digest(path, "md5", chunk_size)


def verify_md5(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``md5(path) == expected``."""
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: md5 is {actual}, but medmnist.INFO expects {expected}. "
            "The file is corrupt, truncated or not the official one; it was not used. "
            "Delete it and download it again."
        )


def download(url: str, dest: Path, md5: str, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar.

    The bytes stream into a temporary ``.part`` file beside ``dest``; only a complete
    file whose md5 equals ``md5`` is renamed to ``dest``. On any failure the
    temporary file is removed and ``dest`` is left as it was.

    Raises:
        DatasetUnavailableError: the server could not be reached or the transfer broke off.
        ChecksumError: the downloaded bytes are not the expected file.
    """
    dest = Path(dest)
    try:
        with atomic_path(dest, suffix=".part") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                written = 0
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
            if total is not None and written != total:
                raise DatasetUnavailableError(
                    f"Download of {url} broke off after {written} of {total} bytes; nothing was saved. Try again."
                )
            verify_md5(tmp, md5)
    except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
        raise DatasetUnavailableError(
            f"Could not download {dest.name} from {url} ({error}). If this machine is offline, "
            f"fetch the file elsewhere and put it at {dest} (md5 {md5}), or point "
            f"{DATA_ENV} at the folder that holds it. {SYNTHETIC_HINT}"
        ) from error
    logger.info("downloaded %s", dest)
    return dest


def fetch(
    flag: str,
    size: int = 28,
    root: str | os.PathLike | None = None,
    download_missing: bool = True,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Path of a verified official file, downloading it first if it is missing.

    Raises:
        DatasetUnavailableError: missing and not downloadable.
        ChecksumError: present (or downloaded) but its md5 differs from INFO's.
    """
    name = file_name(flag, size)
    url, md5 = remote(flag, size)
    folder = data_root(root)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            f"the data root {folder} is a file, not a folder: point --data-root (or {DATA_ENV}) "
            "at the folder that holds (or will hold) the MedMNIST .npz files."
        )
    path = folder / name
    if not path.exists():
        if not download_missing:
            raise DatasetUnavailableError(
                f"{path} does not exist and downloading is disabled. Download it from {url} "
                f"(md5 {md5}) into {path.parent}, or set {DATA_ENV}. {SYNTHETIC_HINT}"
            )
        logger.info("%s missing; downloading from %s", path, url)
        download(url, path, md5, timeout=timeout, progress=progress)
    verify_md5(path, md5)
    return path


def read_npz(path: str | os.PathLike, flag: str, size: int = 28) -> dict[str, np.ndarray]:
    """Read an npz in the official format and check it against ``medmnist.INFO``.

    Checks: keys ``{split}_images``/``{split}_labels`` for every split, uint8,
    images ``N x size x size`` (1 channel) or ``N x size x size x 3``, labels ``N x L``,
    and ``N`` equal to INFO's ``n_samples`` for each split.

    Raises:
        CorruptFileError: unreadable (e.g. truncated) file or contents that differ from INFO.
    """
    info = dataset_info(flag)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as error:
        raise CorruptFileError(
            f"{path} is not a readable npz ({type(error).__name__}: {error}); it may be "
            "truncated. Delete it and download it again."
        ) from error
    image_shape = (size, size) if info["n_channels"] == 1 else (size, size, info["n_channels"])
    problems = []
    for split in SPLITS:
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None or labels is None:
            problems.append(f"missing {split}_images or {split}_labels")
            continue
        expected_n = info["n_samples"][split]
        if images.dtype != np.uint8 or images.shape != (expected_n, *image_shape):
            problems.append(
                f"{split}_images is {images.dtype} {images.shape}, expected uint8 {(expected_n, *image_shape)}"
            )
        if labels.ndim != 2 or labels.shape[0] != expected_n:
            problems.append(f"{split}_labels has shape {labels.shape}, expected ({expected_n}, L)")
    if problems:
        raise CorruptFileError(f"{path} does not match medmnist.INFO[{flag!r}]: " + "; ".join(problems))
    return arrays
