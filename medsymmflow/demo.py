"""The demo (``make demo``, ``medsymmflow demo``): train, classify, generate, report, in minutes on a CPU."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from medsymmflow.checkpoints import existing_checkpoints, load_checkpoint
from medsymmflow.config import Profile, get_device
from medsymmflow.data import load_dataset
from medsymmflow.files import write_text_atomic
from medsymmflow.recipes import ConfigMismatchError, course_config
from medsymmflow.report import evaluate_to_files, sample_grid, summary_line
from medsymmflow.reproduce import majority_rule
from medsymmflow.train import Trainer

logger = logging.getLogger(__name__)

DEMO_DRAWS = 8  # the demo's second evaluation averages the class distances over this many noise draws


def run_demo(
    dataset: str,
    steps: int | None,
    seed: int,
    out: Path,
    overwrite: bool = False,
    data_root=None,
    say=logger.info,
) -> Path:
    """The demo: train the ``fast`` recipe (:func:`~medsymmflow.recipes.course_config`; ``steps``, if
    given, replaces the steps it sizes by the flag's official training split), pick the checkpoint on validation,
    classify the test split with one and with ``DEMO_DRAWS`` noise draws, generate every class,
    and write ``out/report.md``.

    A run already in ``out`` is continued (or, when finished, reused) unless ``overwrite``.

    ``say`` receives one line per stage (the CLI prints them). Returns the report's path.
    """
    start = time.perf_counter()
    overrides = {} if steps is None else {"steps": steps}
    train_config = course_config(dataset, Profile("fast"), seed=seed, allow_synthetic=True, **overrides)
    data = load_dataset(train_config.dataset, train_config.size, root=data_root, allow_synthetic=True, seed=seed)
    banner = (
        "SYNTHETIC TWIN — the real data could not be loaded; numbers below are NOT about real images"
        if data.synthetic
        else "real data, md5 verified"
    )
    say(f"MedSymmFlow demo: {data.title} ({banner})")
    folder = out / "checkpoints"
    resume = not overwrite and any(name.startswith("last") for name in existing_checkpoints(folder))
    try:
        result = Trainer(train_config, folder, data=data, resume=resume, overwrite=overwrite).train()
    except ConfigMismatchError as error:
        raise ConfigMismatchError(
            f"the demo in {out} was run with other settings ({'; '.join(error.differences)}): "
            "use another --out, or --overwrite to replace it",
            error.differences,
        ) from error
    model, meta = load_checkpoint(result.best_dir, device=get_device())
    say(
        f"trained {result.step} steps in {time.perf_counter() - start:.0f} s; best validation checkpoint: step {result.best_step}"
    )
    lines = []
    for draws in (1, DEMO_DRAWS):
        metrics = evaluate_to_files(model, meta, data, "test", out, n_samples=draws, seed=seed)
        lines.append(f"- test, one Euler step, {draws} noise draw(s): " + summary_line(metrics))
        say(lines[-1])
    rule = majority_rule(data)
    lines.append(
        f'- the majority rule (always "{rule["class_name"]}", the training split\'s most frequent class): '
        f"ACC {rule['acc']:.3f}, balanced accuracy {rule['balanced_accuracy']:.3f}"
    )
    say(lines[-1])
    title = f"generated {data.title}, 25 Euler steps"
    sample_grid(model, meta, list(range(data.n_classes)), 8, out / "samples.png", seed=seed, title=title)
    seconds = time.perf_counter() - start
    report = [
        f"# MedSymmFlow demo: {data.title}",
        "",
        f"Data: {banner}.",
        f"Model: `{train_config.preset}` UNet, {train_config.image_size} px, {result.step} steps, "
        f"batch {train_config.batch_size}, {train_config.classify_share:.0%} of each batch at t = 1{shifts(train_config)}, "
        f"seed {seed}, "
        f"decoding `{train_config.decoding}`; "
        f"checkpoint chosen on the validation split (step {result.best_step}).",
        "",
        "Test split (classification: one Euler step from t = 1 to 0, per-class distances averaged over the draws; "
        "each image gets the class whose colour is nearest, which suits a test split with equal classes, and, "
        "decided under the training split's class shares, Bayes' rule for one drawn like the training split):",
        "",
        *lines,
        "",
        "Files: `metrics_test_*.json`, `confusion_test_*.png`, `accuracy_coverage_test_*.png`, `samples.png`, "
        f"`checkpoints/`. Total time {seconds:.0f} s.",
    ]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(report) + "\n")
    say(f"wrote {path} and figures in {seconds:.0f} s")
    return path


def shifts(config) -> str:
    """How a run shifts its training images, as the demo's report words it ("" without shifts)."""
    if not config.shift:
        return ""
    which = "those images" if config.shift_scope == "classify" else "all images"
    return f", {which} shifted by up to {config.shift} px"
