"""Latent vs pixel MedSymmFlow under the same fast recipe, over seeds, on a real test split.

    python benchmarks/latent_study.py [--dataset pneumoniamnist] [--seeds 0 1 2] [--out DIR]

For each seed: the course codec (:func:`medsymmflow.latents.course_codec`, 32 px -> 8 x 8 x 4,
trained on the training split with that seed), the fast recipe in pixel space (the ``tiny`` UNet at
28 px) and in its latent space (the same UNet and recipe on ``[z_x, z_y]``, without the pixel recipe's
shifts: latents are cached), and the pixel model's same-run small CNN. Reported on the test split with one noise draw: ACC, AUC, balanced accuracy for pixel, latent
with the paper's decode of the predicted mask, and latent decode-free; training seconds and
milliseconds per step; classification images/s; the codec's reconstruction PSNR / SSIM
(scikit-image) and the CNN's accuracy on reconstructed vs original test images; the majority rule.
Not a test: prints the table and writes ``results.md`` and ``results.json`` (provenance) to ``--out``.
Every model trains afresh in ``--models`` (so its seconds are measured), unless already there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from medsymmflow import config
from medsymmflow.course import train_or_load
from medsymmflow.data import load_dataset
from medsymmflow.evaluate import evaluate_split, reading
from medsymmflow.latents import course_codec
from medsymmflow.metrics import reconstruction_quality
from medsymmflow.provenance import data_identity, provenance, provenance_line
from medsymmflow.recipes import course_config, same_run_baseline
from medsymmflow.reproduce import evaluate_test, majority_rule
from medsymmflow.reproduce_report import plus_minus, summarize, write_results

KINDS = ("pixel", "latent", "cnn-small")  # what each seed trains (the CNN also scores the reconstructions)
METRICS = ("acc", "auc", "balanced_accuracy", "images_per_second", "train_seconds", "ms_per_step")
CODEC_METRICS = ("psnr", "ssim", "cnn_acc_original", "cnn_acc_reconstructed", "codec_seconds")


def run(flag: str, seeds, models: Path, data_root, kinds=KINDS) -> dict:
    data = load_dataset(flag, root=data_root)
    fast = config.profile("fast")
    rows, codecs, origin, start = [], [], provenance(), time.perf_counter()
    test_x, test_y = data.tensors("test", 32)
    for seed in seeds:
        began = time.perf_counter()
        codec, _ = course_codec(data, seed=seed, root=models, progress=False)
        codec_seconds = time.perf_counter() - began
        configs = {
            "pixel": course_config(flag, fast, seed=seed),
            "latent": course_config(flag, fast, seed=seed, codec=codec.name, image_size=32),
            "cnn-small": same_run_baseline(course_config(flag, fast, seed=seed), fast),
        }
        trained = {}
        for name, run_config in ((k, configs[k]) for k in kinds):
            began = time.perf_counter()
            model, meta = train_or_load(run_config, data, progress=False, root=models)
            seconds = time.perf_counter() - began
            trained[name] = model
            spaces = ("pixel", "latent") if name == "latent" else (None,)
            for space in spaces:
                with reading(model, mask_space=space):
                    scores = evaluate_test(model, data, run_config.image_size, 1, seed)
                label = "latent, no decode" if space == "latent" else name
                rows.append(
                    {
                        "model": label,
                        "seed": seed,
                        **{k: scores[k] for k in ("acc", "auc", "balanced_accuracy")},
                        "images_per_second": len(test_y) / scores["seconds"],
                        "train_seconds": seconds,
                        "ms_per_step": 1000 * seconds / run_config.steps,
                        "best_step": meta["step"],
                    }
                )
                print(f"seed {seed} {label}: ACC {scores['acc']:.3f} AUC {scores['auc']:.3f}", flush=True)
        cnn = trained.get("cnn-small") or train_or_load(configs["cnn-small"], data, progress=False, root=models)[0]
        reconstructed = codec.reconstruct(test_x, torch.Generator().manual_seed(seed))
        quality = reconstruction_quality(test_x[..., 2:30, 2:30], reconstructed[..., 2:30, 2:30])
        crop = {"original": test_x[..., 2:30, 2:30], "reconstructed": reconstructed[..., 2:30, 2:30]}
        accuracy = {k: evaluate_split(cnn, v, test_y, data.info["task"], seed=seed)[0]["acc"] for k, v in crop.items()}
        codecs.append(
            {
                "seed": seed,
                **quality,
                "cnn_acc_original": accuracy["original"],
                "cnn_acc_reconstructed": accuracy["reconstructed"],
                "codec_seconds": codec_seconds,
                "scaling_factor": codec.scaling_factor,
            }
        )
        print(f"seed {seed} codec: {codecs[-1]}", flush=True)
    return {
        "what": "pixel vs latent MedSymmFlow, fast recipe, test split, one noise draw; course codec quality",
        "dataset": data_identity(data),
        "seeds": list(seeds),
        "kinds": list(kinds),
        "rows": rows,
        "summary": summarize(rows, ("model",), METRICS),
        "codec": codecs,
        "codec_summary": summarize(codecs, (), CODEC_METRICS),
        "majority_rule": majority_rule(data),
        "wall_seconds": time.perf_counter() - start,
        "provenance": origin,
    }


def markdown(results: dict) -> str:
    p = results["provenance"]
    lines = [
        f"# Latent vs pixel MedSymmFlow on {results['dataset']['flag']}, fast recipe, test split",
        "",
        f"{provenance_line(p)} Seeds {results['seeds']}; total wall "
        f"time {results['wall_seconds']:.0f} s. Mean ± standard deviation over seeds; one noise draw. "
        f"Majority rule: ACC {results['majority_rule']['acc']:.3f}.",
        "",
        "| model | ACC | AUC | balanced ACC | test images/s | train s | ms/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in results["summary"]:
        lines.append(
            f"| {e['model']} | {plus_minus(e, 'acc')} | {plus_minus(e, 'auc')} | {plus_minus(e, 'balanced_accuracy')} | "
            f"{plus_minus(e, 'images_per_second', 0)} | {plus_minus(e, 'train_seconds', 0)} | {plus_minus(e, 'ms_per_step', 0)} |"
        )
    (c,) = results["codec_summary"]
    lines += [
        "",
        "Course codec (32 px -> 8 x 8 x 4), test split, the central 28 px: "
        f"PSNR {plus_minus(c, 'psnr', 2)} dB, SSIM {plus_minus(c, 'ssim')}; the same-run CNN's ACC on the original images "
        f"{plus_minus(c, 'cnn_acc_original')}, on their reconstructions {plus_minus(c, 'cnn_acc_reconstructed')}; "
        f"codec training {plus_minus(c, 'codec_seconds', 0)} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", default="runs/latent_study_models")
    parser.add_argument("--data-root")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="the models each seed trains")
    parser.add_argument("--out", default="runs/latent_study")
    args = parser.parse_args()
    results = run(args.dataset, args.seeds, Path(args.models), args.data_root, args.kinds)
    report = markdown(results)
    write_results(Path(args.out), results, report)
    print(report)


if __name__ == "__main__":
    main()
