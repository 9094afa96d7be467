"""The course's runs: models trained once and shared by the chapters, and the notebook runner.

:func:`train_or_load` gives a chapter the model of a configuration, training it the first
time (or resuming an interrupted run) and loading it afterwards; every cached run is keyed
by its full configuration and its kind of data (:func:`run_dir`). The fast profile's real-data
runs also ship with the project, in ``course_weights/`` (:func:`export_course_weights`, listed
with their SHA-256 and provenance in its ``manifest.json``), so a chapter that needs one loads it
in seconds instead of training it for minutes; ``MEDSYMMFLOW_COURSE_WEIGHTS=0`` trains instead.

:func:`run_notebook` executes a chapter headless, timed, with executed and HTML copies: what
``make course`` (``medsymmflow course``) runs, a teacher's one command to check that the
whole course runs on their machine in the chosen profile.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from queue import Empty

from medsymmflow.checkpoints import CheckpointError, load_checkpoint, read_checkpoint_meta, settings_key, swap_in
from medsymmflow.config import COURSE_WEIGHTS_ENV, course_weights_dir, get_device, profile, runs_dir
from medsymmflow.data import MedMNISTData, load_dataset
from medsymmflow.files import atomic_path, file_digest
from medsymmflow.models.baselines import CNNClassifier
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.provenance import provenance
from medsymmflow.recipes import TrainConfig, run_identity
from medsymmflow.train import Trainer

logger = logging.getLogger(__name__)


def run_dir(config: TrainConfig, synthetic: bool = False, root: Path | None = None) -> Path:
    """A readable, unique folder for a configuration (and kind of data):
    ``<root>/<dataset>[-synthetic]_<preset>_<size>px_<steps>steps_seed<seed>_<hash>``, root ``runs/models`` by default."""
    digest = settings_key(run_identity(config))
    data = f"{config.dataset}-synthetic" if synthetic else config.dataset
    return (
        root or runs_dir() / "models"
    ) / f"{data}_{config.preset}_{config.image_size}px_{config.steps}steps_seed{config.seed}_{digest}"


MANIFEST = "manifest.json"
SHIPPED = ("best/config.json", "best/ema.safetensors", "last/config.json")  # what a shipped run keeps


def _restore_advice(folder: Path) -> str:
    return f"restore it (git checkout -- {folder}), or set {COURSE_WEIGHTS_ENV}=0 to train the run here instead"


def read_manifest(folder: Path) -> dict:
    """``folder/manifest.json``: ``{"exported": provenance, "runs": {name: entry}}`` (see :func:`export_course_weights`).

    Raises:
        CheckpointError: it is not JSON, lacks those keys, or a run's entry lacks the SHA-256 of a
            shipped file.
    """
    file = folder / MANIFEST
    try:
        manifest = json.loads(file.read_text())
        runs, exported = manifest.get("runs"), manifest.get("exported")
        if not isinstance(runs, dict) or not isinstance(exported, dict) or "commit" not in exported:
            raise KeyError("expected 'runs' and 'exported' with its 'commit'")
        for name, entry in runs.items():
            if not isinstance(entry, dict) or set(entry.get("sha256") or {}) != set(SHIPPED):
                raise KeyError(f"{name}: expected the SHA-256 of {', '.join(SHIPPED)}")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{file} is damaged ({type(error).__name__}: {error}): {_restore_advice(folder)}."
        ) from error
    return manifest


def shipped_run(name: str, folder: Path | None = None) -> Path | None:
    """The shipped copy of run ``name`` in ``folder`` (default :func:`~medsymmflow.config.course_weights_dir`),
    or None when there is no manifest, it does not list the run, or shipped weights are switched off.

    Raises:
        CheckpointError: the manifest is damaged, or a file of the run is missing or not the one it lists
            (SHA-256).
    """
    folder = folder or course_weights_dir()
    if folder is None or not (folder / MANIFEST).exists():
        return None
    entry = read_manifest(folder)["runs"].get(name)
    if entry is None:
        return None
    for file, digest in entry["sha256"].items():
        path = folder / name / file
        if not path.is_file() or file_digest(path) != digest:
            raise CheckpointError(
                f"{path} is missing or not the file {MANIFEST} lists (SHA-256 {digest[:12]}...): {_restore_advice(folder)}."
            )
    return folder / name


def train_or_load(
    config: TrainConfig, data: MedMNISTData | None = None, progress: bool = True, root: Path | None = None
) -> tuple[SymmetricFlow | CNNClassifier, dict]:
    """Load the best checkpoint of exactly this configuration and data if one exists, else train it
    (resuming an interrupted run). ``root``: the folder of cached runs (see :func:`run_dir`).

    With the default root, a run not started there is first looked up among the shipped ones
    (:func:`shipped_run`), which are read and never written; ``progress`` prints where it came from.

    Returns:
        ``(model on the default device in eval mode, checkpoint metadata)``: the best checkpoint's
        metadata (its ``step`` is the step picked on validation), except ``history``, the whole
        run's validation record from ``last/`` (``best/`` holds it only up to its own step), and
        ``source``: the folder it was loaded from.
    """
    data = data or load_dataset(config.dataset, config.size, allow_synthetic=config.allow_synthetic, seed=config.seed)
    folder = run_dir(config, data.synthetic, root)
    try:
        finished = read_checkpoint_meta(folder / "last")["step"] >= config.steps
    except FileNotFoundError:  # never started
        finished = None
    shipped = shipped_run(folder.name) if finished is None and root is None else None
    if shipped is not None:
        folder = shipped
    elif not finished:  # a run killed after its first validation has a best/ but must still resume to config.steps
        resume = finished is not None
        Trainer(config, folder, data=data, resume=resume, overwrite=not resume, progress=progress).train()
    model, meta = load_checkpoint(folder / "best", expected=config, device=get_device())
    meta = {**meta, "history": read_checkpoint_meta(folder / "last")["history"], "source": str(folder)}
    if shipped is not None and progress:
        exported = read_manifest(shipped.parent)["exported"]
        print(
            f"loaded the shipped checkpoint {shipped.parent.name}/{shipped.name}: the course's own run, exported at "
            f"commit {exported['commit']} on {exported['device']} ({COURSE_WEIGHTS_ENV}=0 trains it here instead)"
        )
    return model, meta


def shipping_problems(run: Path, out: Path | None = None) -> list[str]:
    """Why run folder ``run`` cannot be shipped (into ``out``); empty when it can. It must be finished,
    on real data, in pixel space (a latent run names its codec by a local path), in a folder named as
    :func:`run_dir` names it, outside ``out``, with all of :data:`SHIPPED`."""
    meta = read_checkpoint_meta(run / "last")
    config = TrainConfig(**meta["config"])
    problems = [
        f"step {meta['step']} of {config.steps}" if meta["step"] < config.steps else "",
        "synthetic data" if meta["synthetic_data"] else "",
        f"latent (codec {config.codec})" if config.codec else "",
        f"its folder is not named {run_dir(config).name}" if run.name != run_dir(config).name else "",
        f"it lies inside {out}" if out is not None and run.resolve().is_relative_to(out.resolve()) else "",
        *(f"no {name}" for name in SHIPPED if not (run / name).is_file()),
    ]
    return [problem for problem in problems if problem]


def export_course_weights(runs: list[Path], out: Path) -> dict:
    """Make ``out`` ship exactly ``runs``: copy each run's :data:`SHIPPED` files (the best EMA weights,
    their metadata, the whole run's history) to ``out/<run_dir name>``, remove the run folders of a
    previous export that are not among them, and write ``out/manifest.json``: each run's files'
    SHA-256, size, dataset, preset, steps and best step, and the exporting environment's provenance.

    Every run is checked (:func:`shipping_problems`) before anything is written. Each run is copied
    beside its final folder and then swapped in.

    Raises:
        ValueError: a run that cannot be shipped, and why; nothing is written then.

    Returns:
        The manifest written.
    """
    for run in runs:
        problems = shipping_problems(run, out)
        if problems:
            raise ValueError(
                f"{run} cannot be shipped ({'; '.join(problems)}): only finished real-data pixel-space runs of the course are"
            )
    metas = {run: read_checkpoint_meta(run / "last") for run in runs}
    manifest = {"exported": provenance(), "runs": {}}
    for run, meta in metas.items():
        tmp = out / f".{run.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for name in SHIPPED:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / name, tmp / name)
        swap_in(tmp, out / run.name)
        manifest["runs"][run.name] = {
            "dataset": meta["config"]["dataset"],
            "preset": meta["config"]["preset"],
            "steps": meta["config"]["steps"],
            "best_step": read_checkpoint_meta(run / "best")["step"],
            "sha256": {name: file_digest(out / run.name / name) for name in SHIPPED},
            "bytes": (out / run.name / "best" / "ema.safetensors").stat().st_size,
        }
    for folder in out.iterdir():  # runs of a previous export that this one does not ship
        if (folder / "best").is_dir() and folder.name not in manifest["runs"]:
            shutil.rmtree(folder)
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


@dataclass
class NotebookRun:
    """Outcome of one executed notebook."""

    notebook: Path
    seconds: float
    error: str | None
    executed: Path
    html: Path
    stalled: bool = False
    late_replies: int = 0  # execute replies that reached the client late (see :class:`SlicedReplies`)

    @property
    def ok(self) -> bool:
        return self.error is None


def find_notebooks(folder: str | os.PathLike) -> list[Path]:
    """The chapters in ``folder``, in order (``00_...``, ``01_...``)."""
    notebooks = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {folder}")
    return notebooks


class StallWatch(threading.Thread):
    """Kill a kernel that sits idle while a cell waits for it, so a lost kernel message fails fast.

    While a cell runs, the kernel process's CPU time is read every few seconds; if it grows by
    less than ``IDLE_CPU_SECONDS`` over ``seconds``, the kernel has finished (or is stuck waiting)
    while the client still waits for its reply. The kernel is killed: the client then stops with
    a dead-kernel error at once instead of waiting out the cell timeout, and ``stalled_cell``
    says where.
    """

    IDLE_CPU_SECONDS = 0.5
    POLL_SECONDS = 5.0

    def __init__(self, seconds: float):
        super().__init__(daemon=True)
        self.seconds, self.stalled_cell = seconds, None
        self.cell, self.pid = None, None
        self.done = threading.Event()

    def cell_started(self, cell_index: int, pid: int | None) -> None:
        self.cell, self.pid = cell_index, pid

    def cell_finished(self) -> None:
        self.cell = None

    def run(self) -> None:
        import psutil

        watched = None  # (cell, pid, cpu seconds, since)
        while not self.done.wait(self.POLL_SECONDS):
            cell, pid = self.cell, self.pid
            if cell is None or pid is None:
                watched = None
                continue
            try:
                process = psutil.Process(pid)
                cpu = sum(process.cpu_times()[:2]) + sum(sum(c.cpu_times()[:2]) for c in process.children(True))
            except psutil.Error:
                continue
            now = time.monotonic()
            if watched is None or watched[:2] != (cell, pid) or cpu - watched[2] > self.IDLE_CPU_SECONDS:
                watched = (cell, pid, cpu, now)
            elif now - watched[3] > self.seconds:
                self.stalled_cell = cell
                logger.error(
                    "cell %s: the kernel has been idle for %.0f s while the cell waited; killing it",
                    cell,
                    now - watched[3],
                )
                process.kill()
                watched = None


class SlicedReplies:
    """Wait for kernel messages in short slices, so a missed socket wake-up costs seconds, not the cell.

    nbclient awaits each message in one ``zmq.asyncio`` poll of up to the cell timeout (the
    execute reply) or with no timeout at all (IOPub). That poll watches libzmq's edge-triggered
    descriptor; when the wake-up is missed, the message sits unread in the client's socket
    until the poll's own timeout, whose final level check then finds it. Measured here: chapter
    2's widget-explorer cell ran about 1 s, and in 8 of 30 runs its reply, sent on time by the
    kernel (the header's date), reached the client about 4 s later, exactly at the end of a
    5 s slice (``benchmarks/results/runner_stall_cpu_2026-11-28``); a single poll of the cell
    timeout had stalled the course there. Installed on a started client's shell and IOPub
    channels, this caps every poll at ``SLICE_SECONDS`` and keeps waiting up to the caller's
    own timeout. ``late`` records ``(cell, seconds)`` for every execute reply that reached the
    client more than ``LATE_SECONDS`` after the kernel sent it.
    """

    SLICE_SECONDS = 5.0
    LATE_SECONDS = 1.0

    def __init__(self, watch: StallWatch):
        self.watch = watch
        self.late: list[tuple[int, float]] = []

    def install(self, client) -> None:
        """Wrap the started client's shell and IOPub ``get_msg`` (an nbclient ``on_notebook_start`` hook)."""
        for channel in (client.kc.shell_channel, client.kc.iopub_channel):
            channel.get_msg = self.sliced(channel.get_msg)

    def sliced(self, get_msg):
        """``get_msg`` waiting in slices of at most ``SLICE_SECONDS``, ``timeout`` seconds in all (``None``: no limit)."""

        async def get_msg_in_slices(timeout: float | None = None) -> dict:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = self.SLICE_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    message = await get_msg(timeout=min(self.SLICE_SECONDS, left))
                except Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
                    continue
                if message.get("msg_type") == "execute_reply":
                    self._note_lag(message)
                return message

        return get_msg_in_slices

    def _note_lag(self, message: dict) -> None:
        sent = message.get("header", {}).get("date")
        lag = (datetime.now(timezone.utc) - sent).total_seconds() if isinstance(sent, datetime) else 0.0
        if lag > self.LATE_SECONDS:
            self.late.append((self.watch.cell, lag))
            logger.warning(
                "cell %s: its reply reached the client %.1f s after the kernel sent it", self.watch.cell, lag
            )


def run_notebook(notebook: Path, out_dir: Path, timeout: int = 3600, stall_seconds: float = 180) -> NotebookRun:
    """Execute one notebook in its own folder; save the executed copy and an HTML copy.

    A failing cell stops execution; the partly executed notebook is still written,
    with the error in place, so the reader sees where it broke. ``timeout``: seconds a cell
    may run; ``stall_seconds``: seconds a kernel may sit idle while a cell waits for it
    (see :class:`StallWatch`) before the notebook fails as stalled.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    watch = StallWatch(stall_seconds)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
        on_cell_start=lambda cell, cell_index: watch.cell_started(cell_index, _kernel_pid(client)),
        on_cell_executed=lambda cell, cell_index, execute_reply: watch.cell_finished(),
        on_notebook_start=lambda notebook: slices.install(client),
    )
    slices = SlicedReplies(watch)
    start = time.perf_counter()
    error = None
    watch.start()
    try:
        client.execute()
    except CellExecutionError as failure:
        failed_cell = next(
            (i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            "?",
        )
        error = f"cell {failed_cell}: {failure.ename}: {failure.evalue}".strip()
    except DeadKernelError as failure:
        error = (
            f"cell {watch.stalled_cell}: stalled: the kernel sat idle for {stall_seconds:.0f} s while the cell "
            "waited for its reply (a lost kernel message); the kernel was stopped"
            if watch.stalled_cell is not None
            else f"the kernel died ({failure})"
        )
    finally:
        watch.done.set()
    seconds = time.perf_counter() - start
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(execution_stamp(seconds, error)))
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    html = executed.with_suffix(".html")
    nbformat.write(nb, executed)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")
    return NotebookRun(notebook, seconds, error, executed, html, watch.stalled_cell is not None, len(slices.late))


def execution_stamp(seconds: float, error: str | None = None) -> str:
    """The note that heads an executed copy: which run produced the outputs below it."""
    from medsymmflow.provenance import provenance

    origin = provenance()
    commit = origin["commit"] + (" with uncommitted changes" if origin["uncommitted_changes"] else "")
    outcome = f"**stopped with an error** ({error})" if error else "every cell ran"
    return (
        f"> Executed by `medsymmflow course` on {origin['date']}: profile **{profile().name}**, "
        f"device {origin['device']}, commit {commit}, torch {origin['torch']}; {seconds:.0f} s, {outcome}. "
        'Each chapter prints the data it used ("data: ...") where it loads it.'
    )


def _kernel_pid(client) -> int | None:
    """The kernel process of an nbclient client started by a local provisioner, if any."""
    process = getattr(getattr(client.km, "provisioner", None), "process", None)
    return getattr(process, "pid", None)
