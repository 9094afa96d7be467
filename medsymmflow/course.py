"""Execute the course's notebooks headless, timing each, and write rendered copies.

Used by ``make course`` (``medsymmflow course``): a teacher's one command to check
that the whole course runs on their machine in the chosen profile.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


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
