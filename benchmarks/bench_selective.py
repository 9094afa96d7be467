"""MedSymmFlow vs a discriminative baseline, side by side, for selective prediction.

    python benchmarks/bench_selective.py --dataset pneumoniamnist [--profile fast|full] [--steps N]

Both models are trained (or loaded from runs/models/) by the same trainer on the same data
with the same number of steps and the flow's shifts; the script prints ACC, AUC, ECE (after a temperature fitted on
validation), AURC, E-AURC and accuracy at 80 % coverage for every uncertainty score, on the
test split. It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse

import pandas as pd

from medsymmflow.config import profile as choose_profile
from medsymmflow.config import seed_everything
from medsymmflow.course import train_or_load
from medsymmflow.data import load_dataset
from medsymmflow.recipes import course_config
from medsymmflow.report import selective_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--profile", choices=("fast", "full"))
    parser.add_argument("--steps", type=int, help="training steps of both models (default: the profile's)")
    parser.add_argument("--baseline", choices=("cnn-small", "resnet18"), default="resnet18")
    parser.add_argument("--draws", type=int, default=8, help="mask-noise draws / MC-dropout passes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    profile = choose_profile(args.profile)
    seed_everything(args.seed)
    data = load_dataset(args.dataset, allow_synthetic=True, seed=args.seed)
    overrides = {"seed": args.seed, **({"steps": args.steps, "checkpoint_every": args.steps} if args.steps else {})}
    flow_config = course_config(args.dataset, profile, **overrides)
    baseline_config = course_config(args.dataset, profile, preset=args.baseline, **overrides, shift=flow_config.shift)
    models = {
        "MedSymmFlow": train_or_load(flow_config, data)[0],
        f"CNN ({args.baseline})": train_or_load(baseline_config, data)[0],
    }
    rows, _ = selective_comparison(models, data, flow_config.image_size, n_samples=args.draws, seed=args.seed)
    table = pd.DataFrame(rows).set_index(["model", "score"])
    columns = ["ACC", "AUC", "balanced ACC", "ECE (T fitted on val)", "AURC", "E-AURC", "ACC@80%"]
    print(f"{data.title}, test split, {flow_config.steps} steps each, {args.draws} draws, profile {profile.name}")
    with pd.option_context("display.width", 200):
        print(table[columns].round(4).to_string())


if __name__ == "__main__":
    main()
