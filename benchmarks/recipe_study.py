"""Recipe study: candidate changes to the fast recipe, each over several seeds, on the real test splits.

    python benchmarks/recipe_study.py --datasets retinamnist --candidates paper onehot t1-25 --seeds 0 1 2
    python benchmarks/recipe_study.py --datasets pneumoniamnist-small synthetic-organamnist --candidates paper t1-25

Datasets: any MedMNIST flag (the real files); ``pneumoniamnist-small``, the small imbalanced
stand-in (:func:`small_standin`: 546 training and 78 validation images drawn stratified from
PneumoniaMNIST's train split, its ~1:3 imbalance kept, tested on the real test split);
``retinamnist-skewed``, a lopsided stand-in (:func:`skewed_standin`: every RetinaMNIST split thinned
so that grade 0 holds 67 %, DermaMNIST's share of its majority class, in the test split too); and
``synthetic-FLAG``, the procedural twin of a flag (its classes and channels, e.g. K = 11 for
``organamnist``; at most 1,500 images a split), for many-class behaviour.

Every candidate is the course's ``fast`` recipe (:func:`medsymmflow.recipes.course_config`,
its steps sized by the training split the run really has: 300 for the small stand-in, 450 for the
lopsided one) with a few
fields changed; ``cnn-small-shift2`` is the recipe's same-run discriminative baseline (same
trainer, steps, data and shifts: :func:`medsymmflow.recipes.same_run_baseline`), ``cnn-small`` the
same CNN unshifted. Each run is evaluated on the test split with one noise draw and
with 8, with its configuration's own decoding (or, a flow, with each of ``--decodings``: the same
weights read each way), beside the majority rule, and decided both ways: by the nearest class (the
model's own reading, for equal classes) and under the training split's class shares (Bayes' rule,
:func:`medsymmflow.uncertainty.prior_adjusted`, for a test split drawn like the training split; a run
trained on images as they come already answers under them: :func:`medsymmflow.recipes.training_prior`).
Not a test: it prints the table and writes
``results.md`` and ``results.json`` (provenance: commit, versions, device, seeds, wall time per
run) to ``--out``. Trained models are cached in ``--models`` (keyed by their full configuration),
so a rerun only evaluates.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from medsymmflow import config
from medsymmflow.course import train_or_load
from medsymmflow.data import MedMNISTData, load_dataset, synthetic_twin
from medsymmflow.data.masks import DECODINGS
from medsymmflow.evaluate import reading
from medsymmflow.provenance import provenance, provenance_line
from medsymmflow.recipes import course_config, training_prior
from medsymmflow.reproduce import evaluate_test, majority_rule
from medsymmflow.reproduce_report import SUMMARY_METRICS, summarize, summary_table, write_results

# Each candidate: the fields it sets in the fast recipe (each says its share of t = 1, the lever studied).
# Since 2026-12-07 the recipe shifts its t = 1 share (FAST_SHIFT); the studies before it ran without
# shifts, as `t1-25-noshift` does (each results.json keeps every run's full configuration).
CANDIDATES = {
    "paper": {"classify_share": 0.0},  # the paper's training: RGB masks, t ~ U(0, 1)
    "onehot": {"mask_mode": "onehot", "classify_share": 0.0},
    "gray": {"mask_mode": "gray", "classify_share": 0.0},
    "t1-25": {"classify_share": 0.25},  # the fast recipe as it is, its steps sized by the training split
    "t1-25-noshift": {"classify_share": 0.25, "shift": 0, "shift_scope": "all"},  # the recipe until 2026-12-06
    "t1-50": {"classify_share": 0.5},
    # 600 steps whatever the split's size (on sets from 960 images up, the same run as t1-25)
    "t1-25-x2": {"classify_share": 0.25, "steps": 600, "checkpoint_every": 150},
    # 600 steps of batch 32, the compute of 300 steps of batch 64: more, noisier updates
    "t1-25-b32": {"classify_share": 0.25, "batch_size": 32, "steps": 600, "checkpoint_every": 150},
    "t1-25-lr2": {"classify_share": 0.25, "lr": 2e-3},
    "t1-25-flip": {"classify_share": 0.25, "flip": True},  # random horizontal flips of training images
    "onehot+t1-25": {"mask_mode": "onehot", "classify_share": 0.25},
    "gray+t1-25": {"mask_mode": "gray", "classify_share": 0.25},
    "steps-x2": {"steps": 600, "checkpoint_every": 150, "classify_share": 0.0},  # paper's t, 600 steps
    # the mask dequantization width beta (0-255 units; the paper's 4) and the image weight w (the paper's 0.7)
    "t1-25-beta0": {"classify_share": 0.25, "beta": 0.0},  # exact class colours, no dequantization noise
    "t1-25-w05": {"classify_share": 0.25, "image_weight": 0.5},  # more of the loss on the mask
    # regularizers for a short run on a few thousand images: dropout in the UNet's residual blocks, AdamW decay
    "t1-25-drop01": {"classify_share": 0.25, "dropout": 0.1},
    "t1-25-wd01": {"classify_share": 0.25, "weight_decay": 0.01},
    # training images drawn as they come instead of weighted 1 / count(class) (the recipe's balanced sampling)
    "t1-25-unbal": {"classify_share": 0.25, "balanced": False},
    # drawn as they come, each image's loss weighted n / (K count(class)): loss weighting, not balanced sampling
    "t1-25-lossw": {"classify_share": 0.25, "balanced": False, "class_weighted_loss": True},
    # the paper's 32 px (the 28 px images padded with black): the tiny UNet then works at 32, 16 and 8 px
    "t1-25-32px": {"classify_share": 0.25, "image_size": 32},
    # the t = 1 quarter trains the mask term only (its image target is the input plus unpredictable noise)
    "t1-25-maskonly": {"classify_share": 0.25, "classify_mask_only": True},
    # random shifts of up to 2 px each way (edges repeated), the small-shift augmentation
    "t1-25-shift2": {"classify_share": 0.25, "shift": 2, "shift_scope": "all"},
    # the same shifts on the t = 1 quarter only, the inputs of classification, never an image target at
    # t < 1 (the recipe's since 2026-12-07: the same runs as t1-25)
    "t1-25-shift2c": {"classify_share": 0.25, "shift": 2, "shift_scope": "classify"},
    # no weight averaging (EMA decay 0: the last weights), against diffusers' warm-up ceiling (0.97-0.985 here)
    "t1-25-ema0": {"classify_share": 0.25, "ema_decay": 0.0},
    # no learning-rate warm-up (the recipe's 50 steps), or three times as long
    "t1-25-wu0": {"classify_share": 0.25, "warmup_steps": 0},
    "t1-25-wu150": {"classify_share": 0.25, "warmup_steps": 150},
    # the tiny UNet with 128 channels (not 64) at its 7 x 7 level and middle block (2.5M parameters, not 1.1M)
    "t1-25-wide": {"classify_share": 0.25, "preset": "tiny-wide"},
    "t1-25-narrow": {"classify_share": 0.25, "preset": "tiny-narrow"},  # half the channels at 28 and 14 px
    "cnn-small": {"preset": "cnn-small"},  # course_config trains a baseline with no share of t
    "resnet18": {"preset": "resnet18"},  # MedMNIST v2's baseline (28 px), same trainer and steps
    "cnn-small-x2": {"preset": "cnn-small", "steps": 600, "checkpoint_every": 150},  # beside t1-25-x2
    # the same shifts on every image (all are classification inputs): the recipe's same-run CNN since 2026-12-07
    "cnn-small-shift2": {"preset": "cnn-small", "shift": 2},
}
DRAWS = (1, 8)
PRIOR_METRICS = ("acc_prior", "auc_prior", "balanced_accuracy_prior")
SMALL = "pneumoniamnist-small"
SMALL_COUNTS = {"train": 546, "val": 78}  # a few hundred images, like the smallest MedMNIST sets
SKEWED = "retinamnist-skewed"
SKEWED_SHARE = 0.67  # about DermaMNIST's share of nevi (its majority class) in every split
SYNTHETIC_PREFIX = "synthetic-"
STANDINS = (SMALL, SKEWED)  # share their flag with a full set: their runs are cached in folders of their own


def small_standin(data: MedMNISTData, counts: dict[str, int] = SMALL_COUNTS, seed: int = 0) -> MedMNISTData:
    """A stratified subsample of the train split (its class shares kept) as new train and val splits;
    the test split stays the real one."""
    rng = np.random.default_rng(seed)
    images, labels = data.arrays["train_images"], data.arrays["train_labels"]
    classes, per_class = np.unique(labels[:, 0], return_counts=True)
    shares = per_class / per_class.sum()
    chosen = {split: [] for split in counts}
    for k, share in zip(classes, shares, strict=True):
        order = rng.permutation(np.flatnonzero(labels[:, 0] == k))
        start = 0
        for split, n in counts.items():
            take = round(n * share)
            chosen[split].append(order[start : start + take])
            start += take
    arrays = {"test_images": data.arrays["test_images"], "test_labels": data.arrays["test_labels"]}
    for split, parts in chosen.items():
        index = np.sort(np.concatenate(parts))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[index], labels[index]
    return MedMNISTData(data.flag, data.size, data.info, arrays)


def skewed_standin(data: MedMNISTData, share: float = SKEWED_SHARE, seed: int = 0) -> MedMNISTData:
    """Every split subsampled so that the train split's most frequent class holds ``share`` of it, the
    other classes in their own proportions (stratified): a set as lopsided as DermaMNIST, its test split
    alike (the majority rule scores ``share``), with real images."""
    rng = np.random.default_rng(seed)
    majority = int(data.class_counts("train").argmax())
    arrays = {}
    for split in ("train", "val", "test"):
        images, labels = data.arrays[f"{split}_images"], data.arrays[f"{split}_labels"]
        counts = np.bincount(labels[:, 0], minlength=data.n_classes)
        others = counts.sum() - counts[majority]
        # keep the majority class whole where the others suffice, else thin it
        n_major = min(counts[majority], int(others * share / (1 - share)))
        n_others = round(n_major * (1 - share) / share)
        keep = []
        for k, count in enumerate(counts):
            take = n_major if k == majority else round(n_others * count / others)
            keep.append(rng.permutation(np.flatnonzero(labels[:, 0] == k))[:take])
        index = np.sort(np.concatenate(keep))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[index], labels[index]
    return MedMNISTData(data.flag, data.size, data.info, arrays)


def load_study_dataset(name: str, data_root) -> MedMNISTData:
    """A MedMNIST flag, :data:`SMALL`, :data:`SKEWED` or ``synthetic-FLAG`` (see the module's docstring)."""
    if name == SMALL:
        return small_standin(load_dataset("pneumoniamnist", root=data_root))
    if name == SKEWED:
        return skewed_standin(load_dataset("retinamnist", root=data_root))
    if name.startswith(SYNTHETIC_PREFIX):
        return synthetic_twin(name.removeprefix(SYNTHETIC_PREFIX), seed=0, max_per_split=1500)
    return load_dataset(name, root=data_root)


def train_candidate(flag: str, data: MedMNISTData, name: str, seed: int, models: Path) -> tuple:
    """Train (or load from ``models``) one candidate on a study dataset: ``(model, run record)``."""
    train_config = course_config(
        data.flag,
        config.Profile("fast"),
        n_train=len(data.labels("train")),  # the stand-in is sized by its own 546 images
        seed=seed,
        allow_synthetic=data.synthetic,
        **CANDIDATES[name],
    )
    began = time.perf_counter()
    root = models / flag if flag in STANDINS else models
    model, meta = train_or_load(train_config, data, progress=False, root=root)
    seconds = time.perf_counter() - began
    return model, {"config": meta["config"], "best_step": meta["best_step"], "train_or_load_seconds": seconds}


def run(datasets, candidates, seeds, models: Path, data_root, decodings=None) -> dict:
    rows, runs, majority, start = [], {}, {}, time.perf_counter()
    origin = provenance()  # read before the run: the checkout may change while it trains
    for flag in datasets:
        data = load_study_dataset(flag, data_root)
        majority[flag] = majority_rule(data)
        for seed in seeds:
            for name in candidates:
                model, record = train_candidate(flag, data, name, seed, models)
                runs[f"{flag} {name} seed {seed}"] = record
                readings = decodings if hasattr(model, "decoding") and decodings else [None]
                prior = training_prior(record["config"], data.class_counts("train"))
                for decoding, draws in itertools.product(readings, DRAWS):
                    with reading(model, decoding=decoding):  # None: the configuration's own decoding
                        scores = evaluate_test(model, data, record["config"]["image_size"], draws, seed, prior=prior)
                        used = getattr(model, "decoding", None)
                    rows.append(
                        {"dataset": flag, "model": name, "decoding": used, "draws": draws, "seed": seed, **scores}
                    )
                    under = (
                        f"; under the training prior ACC {scores['acc_prior']:.3f} AUC {scores['auc_prior']:.3f}"
                        if "acc_prior" in scores
                        else ""
                    )
                    print(
                        f"{flag} {name} {used or ''} seed {seed} {draws} draw(s): "
                        f"ACC {scores['acc']:.3f} AUC {scores['auc']:.3f}{under}"
                    )
    return {
        "what": "fast-recipe candidates vs the same-run small CNN and the majority rule, test split",
        "candidates": {name: CANDIDATES[name] for name in candidates},
        "seeds": list(seeds),
        "rows": rows,
        "summary": summarize(rows, metrics=SUMMARY_METRICS + PRIOR_METRICS),
        "majority_rule": majority,
        "runs": runs,
        "wall_seconds": time.perf_counter() - start,
        "provenance": origin,
    }


def markdown(results: dict) -> str:
    p = results["provenance"]
    lines = [
        "# Recipe study: fast-recipe candidates, test split",
        "",
        f"{provenance_line(p)} Seeds {results['seeds']}; "
        f"total wall time {results['wall_seconds']:.0f} s. Mean ± standard deviation over seeds.",
        "",
        "Candidates (fields set in the fast recipe): "
        + "; ".join(f"`{n}` {c or '(none)'}" for n, c in results["candidates"].items()),
        "",
        *summary_table(results["summary"], model_header="candidate"),
        *prior_table(results["summary"]),
    ]
    lines += ["", "| dataset | majority rule ACC | balanced ACC |", "|---|---|---|"]
    for flag, rule in results["majority_rule"].items():
        lines.append(f"| {flag} | {rule['acc']:.3f} ({rule['class_name']}) | {rule['balanced_accuracy']:.3f} |")
    return "\n".join(lines + run_lines(results["runs"])) + "\n"


def prior_table(summary: list[dict]) -> list[str]:
    """The same runs decided under the training split's class shares (Bayes' rule,
    :func:`medsymmflow.uncertainty.prior_adjusted`), where the study measured them."""
    measured = [s for s in summary if "acc_prior" in s]
    if not measured:
        return []
    return [
        "",
        "The same runs, each image decided under the training split's class shares (Bayes' rule with a",
        "temperature fitted on the validation split; `medsymmflow.uncertainty.prior_adjusted`; a run trained",
        "on images as they come, not class-balanced, keeps its own decisions: `medsymmflow.recipes.training_prior`):",
        "",
        *summary_table(measured, "candidate", dict(zip(("ACC", "AUC", "balanced ACC"), PRIOR_METRICS, strict=True))),
    ]


def run_lines(runs: dict) -> list[str]:
    """Markdown lines: the seconds each run took to train (or load), and its best step."""
    lines = ["", "Seconds to train (or load) each run:", ""]
    return lines + [
        f"- {name}: {r['train_or_load_seconds']:.0f} s, best step {r['best_step']}" for name, r in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "retinamnist", SMALL])
    parser.add_argument("--candidates", nargs="+", choices=tuple(CANDIDATES), default=["paper", "onehot", "cnn-small"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", default="runs/models", help="cache of trained runs (shared with the notebooks)")
    parser.add_argument(
        "--decodings",
        nargs="+",
        choices=DECODINGS,
        help="read every flow model with each of these decodings (default: its configuration's own)",
    )
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="runs/recipe_study")
    args = parser.parse_args()
    results = run(args.datasets, args.candidates, args.seeds, Path(args.models), args.data_root, args.decodings)
    report = markdown(results)
    write_results(Path(args.out), results, report)
    print(report)


if __name__ == "__main__":
    main()
