"""The course's runs: models trained once and shared by the chapters, and the notebook runner.

:func:`train_or_load` gives a chapter the model of a configuration, training it the first
time (or resuming an interrupted run) and loading it afterwards; every cached run is keyed
by its full configuration and its kind of data (:func:`run_dir`).

:func:`run_notebook` executes a chapter headless, timed, with executed and HTML copies: what
``make course`` (``medsymmflow course``) runs, a teacher's one command to check that the
whole course runs on their machine in the chosen profile.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from medsymmflow.checkpoints import load_checkpoint, read_checkpoint_meta, settings_key
from medsymmflow.config import get_device, runs_dir
from medsymmflow.data import MedMNISTData, load_dataset
from medsymmflow.models.baselines import CNNClassifier
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.recipes import TrainConfig
from medsymmflow.train import Trainer

logger = logging.getLogger(__name__)


def run_dir(config: TrainConfig, synthetic: bool = False, root: Path | None = None) -> Path:
    """A readable, unique folder for a configuration (and kind of data):
    ``<root>/<dataset>[-synthetic]_<preset>_<size>px_<steps>steps_seed<seed>_<hash>``, root ``runs/models`` by default."""
    digest = settings_key(config.to_dict())
    data = f"{config.dataset}-synthetic" if synthetic else config.dataset
    return (
        root or runs_dir() / "models"
    ) / f"{data}_{config.preset}_{config.image_size}px_{config.steps}steps_seed{config.seed}_{digest}"


def train_or_load(
    config: TrainConfig, data: MedMNISTData | None = None, progress: bool = True, root: Path | None = None
) -> tuple[SymmetricFlow | CNNClassifier, dict]:
    """Load the best checkpoint of exactly this configuration and data if one exists, else train it
    (resuming an interrupted run). ``root``: the folder of cached runs (see :func:`run_dir`).

    Returns:
        ``(model on the default device in eval mode, checkpoint metadata)``; the metadata's
        ``history`` holds the validation record of the training run.
    """
    data = data or load_dataset(config.dataset, config.size, allow_synthetic=config.allow_synthetic, seed=config.seed)
    folder = run_dir(config, data.synthetic, root)
    try:
        finished = read_checkpoint_meta(folder / "last")["step"] >= config.steps
    except FileNotFoundError:  # never started
        finished = None
    if not finished:  # a run killed after its first validation has a best/ but must still resume to config.steps
        resume = finished is not None
        Trainer(config, folder, data=data, resume=resume, overwrite=not resume, progress=progress).train()
    return load_checkpoint(folder / "best", expected=config, device=get_device())


@dataclass
class NotebookRun:
    """Outcome of one executed notebook."""

    notebook: Path
    seconds: float
    error: str | None
    executed: Path
    html: Path

    @property
    def ok(self) -> bool:
        return self.error is None


def find_notebooks(folder: str | os.PathLike) -> list[Path]:
    """The chapters in ``folder``, in order (``00_...``, ``01_...``)."""
    notebooks = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {folder}")
    return notebooks


def run_notebook(notebook: Path, out_dir: Path, timeout: int = 3600) -> NotebookRun:
    """Execute one notebook in its own folder; save the executed copy and an HTML copy.

    A failing cell stops execution; the partly executed notebook is still written,
    with the error in place, so the reader sees where it broke.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as failure:
        failed_cell = next(
            (i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            "?",
        )
        error = f"cell {failed_cell}: {failure.ename}: {failure.evalue}".strip()
    seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    html = executed.with_suffix(".html")
    nbformat.write(nb, executed)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")
    return NotebookRun(notebook, seconds, error, executed, html)
