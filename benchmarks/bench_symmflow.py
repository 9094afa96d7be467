"""Speed of MedSymmFlow on this machine: prints numbers, asserts nothing.

    python benchmarks/bench_symmflow.py [--preset tiny] [--image-size 28] [--device cpu]

Reports training steps/s, one-step classification throughput beside a ResNet-18 adapted to
the same input (same run, same batch, as a ratio), generation images/s at 25 Euler steps,
and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from medsymmflow.config import get_device, seed_everything
from medsymmflow.models.baselines import small_resnet18
from medsymmflow.recipes import TrainConfig, build_model


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1, help="image channels (1 gray, 3 RGB)")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device")
    args = parser.parse_args()

    seed_everything(0)
    device = get_device(args.device)
    config = TrainConfig(
        preset=args.preset, image_size=args.image_size, size=min(args.image_size, 28) if args.image_size < 64 else 64
    )
    model = build_model(config, args.classes, args.channels).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size, device=device) * 2 - 1
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)

    def train_step():
        loss = model.loss(x, y).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    step_s = timed(train_step, args.repeats, device)
    eval_x = torch.rand(args.eval_batch, args.channels, args.image_size, args.image_size, device=device) * 2 - 1
    resnet = small_resnet18(args.channels, args.classes).to(device).eval()
    model.eval()
    with torch.no_grad():
        classify_s = timed(lambda: model.classify(eval_x), args.repeats, device)
        resnet_s = timed(lambda: resnet(eval_x), args.repeats, device)
        labels = torch.randint(0, args.classes, (args.eval_batch // 4,), device=device)
        generate_s = timed(lambda: model.generate(labels, args.image_size, steps=25), max(1, args.repeats // 2), device)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    results = {
        "device": str(device),
        "preset": args.preset,
        "image_size": args.image_size,
        "parameters_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_steps_per_s": 1 / step_s,
        "train_batch": args.batch_size,
        "classify_images_per_s": args.eval_batch / classify_s,
        "resnet18_images_per_s": args.eval_batch / resnet_s,
        "classify_vs_resnet18_ratio": resnet_s / classify_s,
        "generate_images_per_s_25_euler": len(labels) / generate_s,
        "peak_memory_MiB": peak,
        "peak_memory_kind": "CUDA allocated" if device.type == "cuda" else "process max RSS",
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
