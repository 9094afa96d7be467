"""The ``medsymmflow`` command line (also ``python -m medsymmflow``).

    medsymmflow train     --dataset pneumoniamnist --steps 600 --out runs/train/pneumonia [--resume]
    medsymmflow evaluate  runs/train/pneumonia/best --split test [--n-samples 8]
    medsymmflow sample    runs/train/pneumonia/best --class 1 --n 16 --out samples.png
    medsymmflow demo      [--out runs/demo]
    medsymmflow course    [notebooks ...]
    medsymmflow reproduce [--datasets pneumoniamnist retinamnist] [--epochs 100] [--time-budget S --fit-budget] [--smoke]

Multi-GPU or multi-node: ``accelerate launch -m medsymmflow train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from medsymmflow import config

DEMO_STEPS = 600
DEMO_DRAWS = 8


def _course(args: argparse.Namespace) -> int:
    from medsymmflow.course import find_notebooks, run_notebook

    if args.profile:
        os.environ[config.PROFILE_ENV] = args.profile  # the kernels inherit it
    notebooks = [Path(p) for p in args.notebooks] or find_notebooks(args.folder)
    profile = config.profile().name
    out_dir = Path(args.out) / profile
    print(f"Running {len(notebooks)} notebook(s) in the {profile!r} profile -> {out_dir}", flush=True)
    failures = 0
    total = 0.0
    for notebook in notebooks:
        run = run_notebook(notebook, out_dir, timeout=args.timeout)
        total += run.seconds
        status = "ok" if run.ok else f"FAILED: {run.error}"
        failures += not run.ok
        print(f"{notebook.name:<48} {run.seconds:8.1f} s  {status}", flush=True)
    print(f"{'total':<48} {total:8.1f} s  {len(notebooks) - failures} ok, {failures} failed")
    return 1 if failures else 0


def _train_config(args: argparse.Namespace):
    from medsymmflow.train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return TrainConfig(**given)


def _train(args: argparse.Namespace) -> int:
    from medsymmflow.data import load_dataset
    from medsymmflow.train import Trainer

    train_config = _train_config(args)
    if args.resume and not (Path(args.out) / "last").exists() and not (Path(args.out) / "last.old").exists():
        raise FileNotFoundError(f"--resume: no checkpoint in {args.out}/last to resume from")
    data = load_dataset(
        train_config.dataset,
        train_config.size,
        root=args.data_root,
        allow_synthetic=train_config.allow_synthetic,
        seed=train_config.seed,
    )
    trainer = Trainer(train_config, args.out, data=data, resume=args.resume)
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        print(json.dumps({"step": result.step, "best_step": result.best_step, "history": result.history}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from medsymmflow.report import data_for_checkpoint, evaluate_to_files
    from medsymmflow.train import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint, device=config.get_device())
    data = data_for_checkpoint(meta, args.data_root)
    out_dir = Path(args.out or Path(args.checkpoint) / "evaluation")
    result = evaluate_to_files(
        model, meta, data, args.split, out_dir, args.n_samples, args.steps, args.solver, args.seed
    )
    print(_summary(result))
    print(f"wrote {out_dir}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from medsymmflow.report import sample_grid
    from medsymmflow.train import load_checkpoint

    model, meta = load_checkpoint(args.checkpoint, device=config.get_device())
    classes = [args.class_index] if args.class_index is not None else list(range(meta["n_classes"]))
    path = sample_grid(model, meta, classes, args.n, Path(args.out), args.steps, args.solver, args.seed)
    print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from medsymmflow.data import load_dataset
    from medsymmflow.report import evaluate_to_files, sample_grid
    from medsymmflow.train import TrainConfig, Trainer, load_checkpoint

    start = time.perf_counter()
    out = Path(args.out)
    train_config = TrainConfig(dataset=args.dataset, steps=args.steps, seed=args.seed, allow_synthetic=True)
    data = load_dataset(
        train_config.dataset, train_config.size, root=args.data_root, allow_synthetic=True, seed=args.seed
    )
    banner = (
        "SYNTHETIC TWIN — the real data could not be loaded; numbers below are NOT about real images"
        if data.synthetic
        else "real data, md5 verified"
    )
    print(f"MedSymmFlow demo: {data.title} ({banner})", flush=True)
    result = Trainer(train_config, out / "checkpoints", data=data, resume=args.resume).train()
    model, meta = load_checkpoint(result.best_dir, device=config.get_device())
    print(
        f"trained {result.step} steps in {time.perf_counter() - start:.0f} s; best validation checkpoint: step {result.best_step}",
        flush=True,
    )
    lines = []
    for draws in (1, DEMO_DRAWS):
        metrics = evaluate_to_files(model, meta, data, "test", out, n_samples=draws, seed=args.seed)
        lines.append(f"- test, one Euler step, {draws} noise draw(s): " + _summary(metrics))
        print(lines[-1], flush=True)
    sample_grid(
        model,
        meta,
        list(range(data.n_classes)),
        8,
        out / "samples.png",
        seed=args.seed,
        title=f"generated {data.title}, 25 Euler steps",
    )
    seconds = time.perf_counter() - start
    report = [
        f"# MedSymmFlow demo: {data.title}",
        "",
        f"Data: {banner}.",
        f"Model: `{train_config.preset}` UNet, {train_config.image_size} px, {result.step} steps, batch {train_config.batch_size}, seed {args.seed}; "
        f"checkpoint chosen on the validation split (step {result.best_step}).",
        "",
        "Test split (classification: one Euler step from t = 1 to 0, per-class distances averaged over the draws):",
        "",
        *lines,
        "",
        f"Files: `metrics_test_*.json`, `confusion_test_*.png`, `accuracy_coverage_test_*.png`, `samples.png`, `checkpoints/`. Total time {seconds:.0f} s.",
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print(f"wrote {out}/report.md and figures in {seconds:.0f} s")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from medsymmflow.reproduce import BudgetError, Settings, reproduce

    settings = Settings(
        datasets=tuple(args.datasets),
        seeds=tuple(args.seeds),
        epochs=args.epochs,
        draws=args.draws,
        smoke=args.smoke,
        data_root=args.data_root,
    )
    out = Path(args.out)
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


def _summary(m: dict) -> str:
    return (
        f"ACC {m['acc']:.3f}, AUC {m['auc']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
        f"accuracy at 80% coverage {m['accuracy_at_coverage']['0.80']:.3f} ({m['n_images']} images, {m['images_per_second']:.0f} images/s)"
    )


def build_parser() -> argparse.ArgumentParser:
    from medsymmflow import __version__
    from medsymmflow.flow.solvers import SOLVERS
    from medsymmflow.models.unet import PRESETS

    parser = argparse.ArgumentParser(
        prog="medsymmflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"medsymmflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a MedSymmFlow model")
    train.add_argument("--dataset", help="MedMNIST flag (default pneumoniamnist)")
    train.add_argument("--size", type=int, choices=(28, 64, 128, 224), help="resolution of the MedMNIST file")
    train.add_argument("--image-size", dest="image_size", type=int, help="model input size (28 native, 32 padded)")
    train.add_argument("--preset", choices=tuple(PRESETS))
    train.add_argument("--mask-mode", dest="mask_mode", choices=("rgb", "gray"))
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--ema-decay", dest="ema_decay", type=float)
    train.add_argument("--image-weight", dest="image_weight", type=float)
    train.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    train.add_argument("--balanced", action=argparse.BooleanOptionalAction, help="class-balanced sampling (default on)")
    train.add_argument("--flip", action=argparse.BooleanOptionalAction, help="random horizontal flips (default off)")
    train.add_argument("--seed", type=int)
    train.add_argument(
        "--allow-synthetic",
        dest="allow_synthetic",
        action="store_true",
        default=None,
        help="use the synthetic twin if the data is unavailable",
    )
    train.add_argument("--out", required=True, help="output folder (checkpoints last/ and best/)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last")
    train.add_argument("--data-root", help="folder of the MedMNIST files (default: MEDSYMMFLOW_DATA or data/medmnist)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="metrics, confusion matrix and accuracy-coverage of a checkpoint")
    evaluate.add_argument("checkpoint", help="a checkpoint folder (…/best or …/last)")
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument(
        "--n-samples", dest="n_samples", type=int, default=1, help="mask-noise draws averaged per image"
    )
    evaluate.add_argument("--steps", type=int, default=1, help="solver steps from t = 1 to 0 (paper: 1)")
    evaluate.add_argument("--solver", choices=SOLVERS, default="euler")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="output folder (default CHECKPOINT/evaluation)")
    evaluate.add_argument("--data-root")
    evaluate.set_defaults(run=_evaluate)

    sample = commands.add_parser("sample", help="generate images of a class as a PNG grid")
    sample.add_argument("checkpoint")
    sample.add_argument("--class", dest="class_index", type=int, help="class index (default: every class)")
    sample.add_argument("--n", type=int, default=8, help="images per class")
    sample.add_argument("--steps", type=int, default=25)
    sample.add_argument("--solver", choices=SOLVERS, default="euler")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default="samples.png")
    sample.set_defaults(run=_sample)

    demo = commands.add_parser("demo", help="train the tiny model, classify the test split, generate, write a report")
    demo.add_argument("--dataset", default="pneumoniamnist")
    demo.add_argument("--steps", type=int, default=DEMO_STEPS)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo")
    demo.add_argument("--data-root")
    demo.set_defaults(run=_demo)

    course = commands.add_parser("course", help="execute every notebook headless, timed, with rendered copies")
    course.add_argument("notebooks", nargs="*", help="notebooks to run (default: every NN_*.ipynb in --folder)")
    course.add_argument("--folder", default="notebooks", help="folder of the chapters (default: notebooks)")
    course.add_argument("--out", default="runs/course", help="where executed .ipynb and .html copies go")
    course.add_argument("--profile", choices=config.PROFILES, help="override MEDSYMMFLOW_PROFILE")
    course.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    course.set_defaults(run=_course)
    from medsymmflow.reproduce import DEFAULT_DATASETS

    reproduce = commands.add_parser(
        "reproduce", help="train the full recipe and a same-run ResNet-18, compare with the paper (GPU)"
    )
    reproduce.add_argument(
        "--datasets", nargs="+", default=list(DEFAULT_DATASETS), help="MedMNIST flags (default: %(default)s)"
    )
    reproduce.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed; tables show mean ± std")
    reproduce.add_argument(
        "--epochs",
        type=int,
        default=config.full_epochs(),
        help="training epochs (default %(default)s; the paper: 1000)",
    )
    reproduce.add_argument(
        "--draws", type=int, default=8, help="mask-noise draws of the second evaluation (the paper: 1)"
    )
    reproduce.add_argument(
        "--time-budget",
        dest="time_budget",
        type=float,
        help="seconds: time 100 steps first and stop unless the run fits",
    )
    reproduce.add_argument(
        "--fit-budget",
        dest="fit_budget",
        action="store_true",
        help="train fewer epochs to fit --time-budget instead of stopping",
    )
    reproduce.add_argument(
        "--smoke", action="store_true", help="tiny model, a few steps: checks the pipeline in about a minute on a CPU"
    )
    reproduce.add_argument("--out", default="runs/reproduce", help="folder for results.md and results.json")
    reproduce.add_argument(
        "--models",
        help="folder of the checkpoints (default: runs/models, shared with the notebooks; OUT/models with --smoke)",
    )
    reproduce.add_argument("--data-root")
    reproduce.set_defaults(run=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    from medsymmflow.data import DataError
    from medsymmflow.train import ConfigMismatchError

    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("n", "n_samples", "steps", "epochs", "draws"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, DataError, ConfigMismatchError) as error:
        print(f"medsymmflow {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
