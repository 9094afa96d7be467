"""Where a training step's time goes: the full trainer step vs its parts, on the current device.

    python benchmarks/bench_train_step.py [--preset paper-pixel] [--steps 50]

Prints milliseconds per step for: the Trainer as used by ``reproduce``; forward + backward +
AdamW alone (no EMA, no clipping); the same in fp32; with batch 256; and, with ``--compile``,
the network under ``torch.compile`` (default mode and ``reduce-overhead``, i.e. CUDA graphs;
the first five steps, compilation included, are reported apart). It asserts nothing.
Results measured on a lent GPU: ``benchmarks/results/train_step_*.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from medsymmflow.data import load_dataset
from medsymmflow.recipes import TrainConfig, build_model
from medsymmflow.train import Trainer


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_trainer(config: TrainConfig, data, steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, folder, data=data, progress=False)
        trainer.train(until_step=5)
        _sync()
        start = time.perf_counter()
        trainer.train(until_step=5 + steps)
        _sync()
        return (time.perf_counter() - start) / steps * 1000


def time_bare(config: TrainConfig, data, steps: int, dtype, compile_mode: str | None = None) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(config, data.n_classes, data.n_channels).to(device)
    if compile_mode:
        model.net = torch.compile(model.net, mode=compile_mode)
    first = time.perf_counter()
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=1e-4)
    images, labels = data.tensors("train", config.image_size)
    images, labels = images[: config.batch_size].to(device), labels[: config.batch_size].to(device)
    for i in range(5 + steps):
        if i == 5:
            _sync()
            start = time.perf_counter()
            if compile_mode:
                print(f"torch.compile mode={compile_mode}: first 5 steps (compilation) {start - first:.0f} s")
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model.loss(images, labels).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper-pixel")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile (default, reduce-overhead): about a minute of compilation each",
    )
    args = parser.parse_args()
    data = load_dataset("pneumoniamnist")
    config = TrainConfig(
        preset=args.preset, image_size=32, steps=10_000, checkpoint_every=10_000, palette_index="truncate"
    )
    rows = {
        "trainer step (batch 64, bf16 on CUDA, EMA, clipping)": time_trainer(config, data, args.steps),
        "forward + backward + AdamW, bf16": time_bare(config, data, args.steps, torch.bfloat16),
        "forward + backward + AdamW, fp32": time_bare(config, data, args.steps, torch.float32),
        "forward + backward + AdamW, bf16, batch 256": time_bare(
            TrainConfig(**{**config.to_dict(), "batch_size": 256}), data, args.steps, torch.bfloat16
        ),
        "resnet18 trainer step (batch 64)": time_trainer(
            TrainConfig(**{**config.to_dict(), "preset": "resnet18"}), data, args.steps
        ),
    }
    if args.compile:
        for mode in ("default", "reduce-overhead"):
            rows[f"forward + backward + AdamW, bf16, torch.compile {mode}"] = time_bare(
                config, data, args.steps, torch.bfloat16, mode
            )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{args.preset}, {device}, torch {torch.__version__}")
    for name, ms in rows.items():
        print(f"{name:<55} {ms:8.1f} ms/step")


if __name__ == "__main__":
    main()
