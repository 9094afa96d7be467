"""The ``medsymmflow`` command line (also ``python -m medsymmflow``).

    medsymmflow train     --dataset pneumoniamnist --steps 600 --out runs/train/pneumonia [--resume]
    medsymmflow evaluate  runs/train/pneumonia/best --split test [--n-samples 8]
    medsymmflow sample    runs/train/pneumonia/best --class 1 --n 16 --out samples.png
    medsymmflow codec     --dataset pneumoniamnist   (then: train --codec FOLDER --image-size 32)
    medsymmflow demo      [--out runs/demo]
    medsymmflow course    [notebooks ...]
    medsymmflow reproduce [--datasets pneumoniamnist retinamnist] [--epochs 100] [--time-budget S --fit-budget] [--smoke]

Multi-GPU or multi-node: ``accelerate launch -m medsymmflow train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from medsymmflow import commands, config
from medsymmflow.errors import report_errors


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with its type, choices, description and default."""
    import typing

    from medsymmflow.recipes import FIELD_CHOICES, TrainConfig, config_field_help

    types = typing.get_type_hints(TrainConfig)
    descriptions = config_field_help()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        text = f"{descriptions.get(field.name, '')} (default {field.default!r})".replace("%", "%%")
        if types[field.name] is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(
                flag, dest=field.name, type=types[field.name], choices=FIELD_CHOICES.get(field.name), help=text
            )


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class _Commands:
    """``add_subparsers()`` whose every command also takes the common flags (``--debug``)."""

    def __init__(self, subparsers, common: argparse.ArgumentParser):
        self.subparsers, self.common = subparsers, common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, parents=[self.common], **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from medsymmflow import __version__
    from medsymmflow.data.masks import DECODINGS
    from medsymmflow.flow.solvers import SOLVERS

    parser = argparse.ArgumentParser(
        prog="medsymmflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"medsymmflow {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also: MEDSYMMFLOW_DEBUG=1)"
    )
    parsers = _Commands(parser.add_subparsers(dest="command", required=True), common)

    train = parsers.add_parser(
        "train",
        help="train a MedSymmFlow model (or a baseline)",
        description="Every TrainConfig field is a flag; --recipe starts from the course's fast or full recipe.",
    )
    train.add_argument(
        "--recipe",
        choices=config.PROFILES,
        help=f"start from the course's recipe (fast: CPU minutes; full: the paper's model, {config.FULL_EPOCHS} epochs); "
        "flags override it",
    )
    _add_config_flags(train)
    train.add_argument("--out", required=True, help="output folder (checkpoints last/ and best/)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last")
    train.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (otherwise refused)")
    train.add_argument(
        "--extend",
        action="store_true",
        help="with --resume and a larger --steps: train past the run's steps; the learning rate follows a new "
        "cosine from --lr down to 0 from the resumed step",
    )
    train.add_argument("--data-root", help="folder of the MedMNIST files (default: MEDSYMMFLOW_DATA or data/medmnist)")
    train.set_defaults(run=commands.train)

    evaluate = parsers.add_parser("evaluate", help="metrics, confusion matrix and accuracy-coverage of a checkpoint")
    evaluate.add_argument("checkpoint", help="a checkpoint folder (…/best or …/last)")
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument(
        "--n-samples", dest="n_samples", type=_positive, default=1, help="mask-noise draws averaged per image"
    )
    evaluate.add_argument("--steps", type=_positive, default=1, help="solver steps from t = 1 to 0 (paper: 1)")
    evaluate.add_argument("--solver", choices=SOLVERS, default="euler")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--decoding", choices=DECODINGS, help="how a predicted mask becomes class distances (default: the checkpoint's)"
    )
    evaluate.add_argument("--out", help="output folder (default: evaluation_<last|best> beside the checkpoint)")
    evaluate.add_argument("--data-root")
    generation = evaluate.add_argument_group(
        "generation metrics (--generation): classifier agreement, CAS and a Fréchet distance in a real-trained CNN's features"
    )
    generation.add_argument("--generation", action="store_true", help="also measure the model as a generator")
    generation.add_argument(
        "--classifier",
        help="checkpoint of a CNN trained on the same real data (default: train or load the fast recipe's cnn-small)",
    )
    generation.add_argument(
        "--per-class",
        type=_positive,
        help="images generated per class (default: medsymmflow.generation.GENERATED in all, spread evenly over the "
        "classes; at most half the smallest class of the real training split, the size of each real sample)",
    )
    generation.add_argument(
        "--nfes",
        nargs="+",
        type=_positive,
        help="network evaluations per image to try (default: 25); each solver makes the most whole steps that fit "
        "(Heun: 2 a step, so 25 becomes 24)",
    )
    generation.add_argument("--solvers", nargs="+", choices=SOLVERS, help="solvers to try (default: euler)")
    generation.add_argument("--no-cas", dest="cas", action="store_false", help="skip CAS (it trains a CNN per row)")
    evaluate.set_defaults(run=commands.evaluate)

    sample = parsers.add_parser("sample", help="generate images of a class as a PNG grid")
    sample.add_argument("checkpoint")
    sample.add_argument("--class", dest="class_index", type=int, help="class index (default: every class)")
    sample.add_argument("--n", type=_positive, default=8, help="images per class")
    sample.add_argument("--steps", type=_positive, default=25)
    sample.add_argument("--solver", choices=SOLVERS, default="euler")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default="samples.png", help="image file (.png, .jpg, .pdf or .svg)")
    sample.set_defaults(run=commands.sample)

    codec = parsers.add_parser(
        "codec",
        help="train the course's latent codec on a training split (offline) and print its folder, for --codec",
    )
    codec.add_argument("--dataset", default="pneumoniamnist")
    codec.add_argument("--steps", type=_positive, help="training steps (default: the course codec's)")
    codec.add_argument("--seed", type=int, default=0)
    codec.add_argument("--data-root")
    codec.add_argument(
        "--allow-synthetic", action="store_true", help="train on the synthetic twin if the data is missing"
    )
    codec.set_defaults(run=commands.codec)

    demo = parsers.add_parser("demo", help="train the tiny model, classify the test split, generate, write a report")
    demo.add_argument("--dataset", default="pneumoniamnist")
    demo.add_argument(
        "--steps",
        type=_positive,
        help="training steps (default: the fast recipe's, sized by the set's training split: 300 to 600)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument(
        "--overwrite", action="store_true", help="retrain from scratch (default: continue or reuse the run in OUT)"
    )
    demo.add_argument("--data-root")
    demo.set_defaults(run=commands.demo)

    course = parsers.add_parser("course", help="execute every notebook headless, timed, with rendered copies")
    course.add_argument("notebooks", nargs="*", help="notebooks to run (default: every NN_*.ipynb in --folder)")
    course.add_argument("--folder", default="notebooks", help="folder of the chapters (default: notebooks)")
    course.add_argument("--out", default="runs/course", help="where executed .ipynb and .html copies go")
    course.add_argument("--profile", choices=config.PROFILES, help="override MEDSYMMFLOW_PROFILE")
    course.add_argument("--timeout", type=_positive, default=3600, help="seconds allowed per cell")
    course.add_argument(
        "--stall-timeout",
        dest="stall_timeout",
        type=_positive,
        default=180,
        help="seconds a kernel may sit idle while a cell waits for it before the notebook fails as stalled",
    )
    course.set_defaults(run=commands.course)
    from medsymmflow.reproduce import DEFAULT_DATASETS, Settings

    reproduce = parsers.add_parser(
        "reproduce", help="train the full recipe and a same-run ResNet-18, compare with the paper (GPU)"
    )
    reproduce.add_argument(
        "--datasets", nargs="+", default=list(DEFAULT_DATASETS), help="MedMNIST flags (default: %(default)s)"
    )
    reproduce.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed; tables show mean ± std")
    reproduce.add_argument(
        "--epochs",
        type=_positive,
        help=f"training epochs (default: {config.EPOCHS_ENV} or {config.FULL_EPOCHS}; the paper: {config.PAPER_EPOCHS})",
    )
    reproduce.add_argument(
        "--draws",
        type=_positive,
        default=Settings.draws,
        help="mask-noise draws of the second evaluation (the paper: 1)",
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
        "--recipe",
        choices=config.PROFILES,
        default="full",
        help="full: the paper's recipe (100 epochs) vs ResNet-18 (GPU); fast: the CPU recipe vs the small CNN",
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
    reproduce.set_defaults(run=commands.reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; failures end in one line and an exit code (see :mod:`medsymmflow.errors`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return report_errors(args.command, lambda: args.run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
