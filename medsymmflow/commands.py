"""What each ``medsymmflow`` command does, given its parsed arguments (the parser is in :mod:`medsymmflow.cli`).

Each function returns the exit code; errors are raised and reported by :mod:`medsymmflow.errors`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from medsymmflow import config
from medsymmflow.files import check_writable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def course(args: argparse.Namespace) -> int:
    from medsymmflow.course import find_notebooks, run_notebook

    if args.profile:
        os.environ[config.PROFILE_ENV] = args.profile  # the kernels inherit it
    notebooks = [Path(p) for p in args.notebooks] or find_notebooks(args.folder)
    profile = config.profile().name
    out_dir = check_writable(Path(args.out) / profile)
    print(f"Running {len(notebooks)} notebook(s) in the {profile!r} profile -> {out_dir}", flush=True)
    failures = 0
    total = 0.0
    for notebook in notebooks:
        run = run_notebook(notebook, out_dir, timeout=args.timeout, stall_seconds=args.stall_timeout)
        if run.stalled:  # a message lost between kernel and client, not the notebook's fault: one more try
            print(
                f"{notebook.name:<48} {run.seconds:8.1f} s  {run.error}{_late(run)}; running it once more", flush=True
            )
            total += run.seconds
            run = run_notebook(notebook, out_dir, timeout=args.timeout, stall_seconds=args.stall_timeout)
        total += run.seconds
        status = "ok" if run.ok else f"FAILED: {run.error}"
        failures += not run.ok
        print(f"{notebook.name:<48} {run.seconds:8.1f} s  {status}{_late(run)}", flush=True)
    print(f"{'total':<48} {total:8.1f} s  {len(notebooks) - failures} ok, {failures} failed")
    return 1 if failures else 0


def _late(run) -> str:
    return f" ({run.late_replies} kernel reply(ies) reached the runner late)" if run.late_replies else ""


def train_config(args: argparse.Namespace):
    """The flags given, on top of ``--recipe``'s configuration when one is named."""
    from medsymmflow.recipes import TrainConfig, course_config

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    dataset = given.pop("dataset", TrainConfig.dataset)

    def make(**settings) -> TrainConfig:
        if args.recipe:
            return course_config(dataset, config.Profile(args.recipe), **settings)
        return TrainConfig(dataset=dataset, **settings)

    if "size" in given and "image_size" not in given:  # a larger file alone brings its own input size
        given["image_size"] = max(given["size"], make().image_size)
    return make(**given)


def train(args: argparse.Namespace) -> int:
    from medsymmflow.checkpoints import prepare_run
    from medsymmflow.data import load_dataset
    from medsymmflow.train import Trainer

    run_config = train_config(args)
    prepare_run(Path(args.out), run_config, args.resume, args.overwrite, args.extend)  # before any work
    data = load_dataset(
        run_config.dataset,
        run_config.size,
        root=args.data_root,
        allow_synthetic=run_config.allow_synthetic,
        seed=run_config.seed,
    )
    trainer = Trainer(run_config, args.out, data=data, resume=args.resume, overwrite=args.overwrite, extend=args.extend)
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        print(json.dumps({"step": result.step, "best_step": result.best_step, "history": result.history}, indent=2))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from medsymmflow.checkpoints import checkpoint_dir, load_checkpoint
    from medsymmflow.evaluate import reading
    from medsymmflow.report import data_for_checkpoint, evaluate_to_files, summary_line

    _check_generation_flags(args)
    checkpoint = checkpoint_dir(Path(args.checkpoint))  # a missing checkpoint stops here, before any folder is made
    model, meta = load_checkpoint(checkpoint, device=config.get_device())
    if (args.generation or args.decoding) and not hasattr(model, "generate"):
        what = "generate images" if args.generation else "take a mask --decoding"
        raise ValueError(f"{checkpoint} is a classifier ({meta['config']['preset']}): it cannot {what}")
    data = data_for_checkpoint(meta, args.data_root)
    classifier = _load_classifier(args.classifier, meta, data) if args.classifier else None
    out_dir = check_writable(args.out or checkpoint.parent / f"evaluation_{checkpoint.name}")
    with reading(model, decoding=args.decoding):  # None keeps the checkpoint's own decoding
        result = evaluate_to_files(
            model, meta, data, args.split, out_dir, args.n_samples, args.steps, args.solver, args.seed
        )
        print(summary_line(result))
        if args.generation:
            from medsymmflow.generation import REFERENCE_NFE, REFERENCE_SOLVER, per_class
            from medsymmflow.report import generation_table, generation_to_files

            classifier = classifier or _train_classifier(meta, data)
            n_per_class = args.per_class or per_class(data.n_classes)
            nfes, solvers = args.nfes or [REFERENCE_NFE], args.solvers or [REFERENCE_SOLVER]
            generated = generation_to_files(
                model, meta, data, *classifier, out_dir, n_per_class, nfes, solvers, args.cas, args.seed
            )
            print(generation_table(generated), end="")
    print(f"wrote {out_dir}")
    return 0


def _check_generation_flags(args: argparse.Namespace) -> None:
    """Generation flags need ``--generation``, and every solver must make at least one of ``--nfes``."""
    from medsymmflow.flow.solvers import TABLEAUS

    given = [
        f"--{name.replace('_', '-')}" for name in ("classifier", "per_class", "nfes", "solvers") if getattr(args, name)
    ]
    given += [] if args.cas else ["--no-cas"]
    if given and not args.generation:
        raise ValueError(f"{', '.join(given)} only apply with --generation")
    if not args.generation:
        return
    from medsymmflow.generation import REFERENCE_NFE, REFERENCE_SOLVER

    nfes = args.nfes or [REFERENCE_NFE]
    for solver in args.solvers or [REFERENCE_SOLVER]:
        stages = len(TABLEAUS[solver].b)
        if max(nfes) < stages:
            raise ValueError(
                f"{solver} makes {stages} network evaluations a step: --nfes {' '.join(map(str, nfes))} is too few"
            )


def _load_classifier(path: str, meta: dict, data) -> tuple:
    """``(classifier, its description)``: the CNN checkpoint at ``path``, checked to fit ``meta``'s
    model (same data, classes and image size)."""
    from medsymmflow.checkpoints import load_checkpoint
    from medsymmflow.models.baselines import CNNClassifier

    classifier, cmeta = load_checkpoint(path, device=config.get_device())
    if not isinstance(classifier, CNNClassifier):
        raise ValueError(
            f"--classifier {path} is not a CNN classifier checkpoint (its preset is {cmeta['config']['preset']!r})"
        )
    wanted = {
        "dataset": data.flag,
        "synthetic_data": data.synthetic,
        "n_classes": data.n_classes,
        "image_size": meta["config"]["image_size"],
    }
    found = {
        "dataset": cmeta["config"]["dataset"],
        "synthetic_data": bool(cmeta.get("synthetic_data")),
        "n_classes": cmeta["n_classes"],
        "image_size": cmeta["config"]["image_size"],
    }
    differ = [f"{k} {found[k]!r} (the model's: {wanted[k]!r})" for k in wanted if found[k] != wanted[k]]
    if differ:
        raise ValueError(f"--classifier {path} does not fit this model: " + "; ".join(differ))
    return classifier, f"{cmeta['config']['preset']} at {path}"


def _train_classifier(meta: dict, data) -> tuple:
    """``(classifier, its description)``: the fast recipe's ``cnn-small`` beside ``meta``'s flow
    (:func:`~medsymmflow.recipes.same_run_baseline`, sized by ``data``'s training split: for the
    course's fast flows, their same-run CNN), trained once on the real training split and cached
    with the course's runs."""
    from medsymmflow.course import train_or_load
    from medsymmflow.recipes import TrainConfig, same_run_baseline

    flow = TrainConfig(**{**meta["config"], "allow_synthetic": data.synthetic})
    settings = same_run_baseline(flow, config.Profile("fast"), n_train=len(data.arrays["train_labels"]))
    classifier, classifier_meta = train_or_load(settings, data)
    return classifier, f"cnn-small, fast recipe, trained on the real training split ({classifier_meta['source']})"


def sample(args: argparse.Namespace) -> int:
    from medsymmflow.checkpoints import load_checkpoint
    from medsymmflow.report import sample_grid

    out = Path(args.out)
    if out.is_dir() or out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"--out {out} must name an image file ending in one of {', '.join(IMAGE_SUFFIXES)}")
    check_writable(out.parent)
    model, meta = load_checkpoint(args.checkpoint, device=config.get_device())
    classes = [args.class_index] if args.class_index is not None else list(range(meta["n_classes"]))
    path = sample_grid(model, meta, classes, args.n, out, args.steps, args.solver, args.seed)
    print(f"wrote {path}")
    return 0


def codec(args: argparse.Namespace) -> int:
    from medsymmflow.data import load_dataset
    from medsymmflow.latents import course_codec
    from medsymmflow.models.autoencoder import COURSE_CODEC_STEPS

    data = load_dataset(args.dataset, root=args.data_root, allow_synthetic=args.allow_synthetic, seed=args.seed)
    trained, history = course_codec(data, steps=args.steps or COURSE_CODEC_STEPS, seed=args.seed)
    print(json.dumps({"codec": trained.name, "scaling_factor": trained.scaling_factor, "last": history[-1]}, indent=2))
    return 0


def demo(args: argparse.Namespace) -> int:
    from medsymmflow.demo import run_demo

    run_demo(args.dataset, args.steps, args.seed, Path(args.out), args.overwrite, args.data_root, say=say)
    return 0


def say(line: str) -> None:
    print(line, flush=True)


def reproduce(args: argparse.Namespace) -> int:
    from medsymmflow.budget import BudgetError
    from medsymmflow.reproduce import Settings, reproduce

    settings = Settings(
        datasets=tuple(args.datasets),
        seeds=tuple(args.seeds),
        epochs=args.epochs or config.full_epochs(),
        draws=args.draws,
        recipe=args.recipe,
        smoke=args.smoke,
        data_root=args.data_root,
    )
    out = check_writable(args.out)
    models = Path(args.models) if args.models else (out / "models" if args.smoke else None)
    try:
        results = reproduce(
            settings, out, budget_seconds=args.time_budget, fit_budget=args.fit_budget, models_dir=models
        )
    except BudgetError as error:
        print(f"medsymmflow reproduce: stopped before training: {error}", file=sys.stderr)
        return 3
    print((out / "results.md").read_text())
    print(f"wrote {out}/results.md and results.json in {results['wall_seconds']['total']:.0f} s")
    return 0
