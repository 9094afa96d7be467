"""Cost vs resolution: pixel-space vs latent-space MedSymmFlow at 28, 64, 128 and 224 px.

    python benchmarks/bench_latent.py [--sizes 28 64 128 224] [--batch 16] [--out DIR]

For each MedMNIST size, on the current device:

* **pixel**: the ``tiny`` UNet on the image and its RGB mask at the image's own size - a training
  step (loss, backward, AdamW) and one-step classification;
* **latent**: the same ``tiny`` UNet on ``[z_x, z_y]``, the latents of Stable Diffusion's VAE
  *architecture* (``SD_VAE_ARCHITECTURE``, randomly initialised: its weights cannot be downloaded
  here, and cost does not depend on them) at the paper's input sides (28 padded to 32, 224 resized
  to 256; latents 1/8 of that) - the encode of an image (paid once: the latent cache keeps it), a
  training step on cached latents, classification with the paper's decode of the predicted mask,
  and the decode-free variant that compares mask latents.

Every phase runs in a fresh process and reports milliseconds per image (median over repeats
after a warm-up) and its peak memory above what the process held before it (models built) (CUDA: ``max_memory_allocated``; CPU: the resident
set, sampled every 5 ms). Synthetic twins give the images (real files at 64-224 px are not needed
for cost). Not a test: prints a table and writes ``results.md``, ``results.json`` (provenance:
commit, versions, device, batch, wall time) and ``cost_vs_pixels.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402

from medsymmflow.config import get_device  # noqa: E402
from medsymmflow.data import synthetic_twin  # noqa: E402
from medsymmflow.files import write_text_atomic  # noqa: E402
from medsymmflow.models.autoencoder import SD_VAE_ARCHITECTURE, LatentCodec  # noqa: E402
from medsymmflow.provenance import provenance, provenance_line  # noqa: E402
from medsymmflow.recipes import TrainConfig, build_model  # noqa: E402

FLAG = "pneumoniamnist"
SIZES = (28, 64, 128, 224)
LATENT_INPUT = {28: (32, "pad"), 64: (64, "pad"), 128: (128, "pad"), 224: (256, "resize")}  # the paper's sides
PHASES = (
    "pixel train",
    "pixel classify",
    "latent encode",
    "latent train",
    "latent classify",
    "latent classify, no decode",
)


class PeakMemory:
    """Peak memory (MiB) above the level at entry: CUDA's allocator, or the CPU's resident set sampled."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            process, self.running = psutil.Process(), True
            self.start = self.top = process.memory_info().rss

            def sample():
                while self.running:
                    self.top = max(self.top, process.memory_info().rss)
                    time.sleep(0.005)

            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        else:
            self.running = False
            self.thread.join()
            self.peak = (self.top - self.start) / 2**20


def timed(run, n_images: int, device: torch.device, min_seconds: float, max_repeats: int) -> dict:
    """Milliseconds per image of ``run()`` (median of repeats after one warm-up) and its peak memory."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with PeakMemory(device) as memory:
        run()
        sync()
        times, began = [], time.perf_counter()
        while len(times) < max_repeats and (len(times) < 2 or time.perf_counter() - began < min_seconds):
            start = time.perf_counter()
            run()
            sync()
            times.append(time.perf_counter() - start)
    return {"ms_per_image": 1000 * statistics.median(times) / n_images, "repeats": len(times), "peak_mib": memory.peak}


def train_step(model, inputs, labels, optimizer):
    def run():
        loss = model.loss(inputs, labels).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def measure_phase(size: int, phase: str, batch: int, encode_batch: int, min_seconds: float, repeats: int) -> dict:
    """One phase at one size (run in a fresh process, so its peak memory is its own)."""
    device = get_device()
    data = synthetic_twin(FLAG, size, max_per_split=max(batch, encode_batch))
    images, labels = data.tensors("train", size)
    images, labels = images[:batch].to(device), labels[:batch].to(device)
    if phase.startswith("pixel"):
        model = build_model(TrainConfig(dataset=FLAG, size=size, image_size=size), data.n_classes, data.n_channels)
        model = model.to(device)
        if phase == "pixel train":
            optimizer = torch.optim.AdamW(model.net.parameters(), lr=1e-4)
            return timed(train_step(model, images, labels, optimizer), batch, device, min_seconds, repeats)
        with torch.no_grad():
            return timed(lambda: model.classify(images), batch, device, min_seconds, repeats)
    side, fit = LATENT_INPUT[size]
    torch.manual_seed(0)
    codec = LatentCodec(AutoencoderKL(**SD_VAE_ARCHITECTURE), "SD-VAE architecture, random weights").to(device)
    if phase == "latent encode":
        pixels = data.tensors("train", side, fit)[0][:encode_batch].to(device)
        generator = torch.Generator(device=device).manual_seed(0)
        return timed(lambda: codec.encode_images(pixels, generator), encode_batch, device, min_seconds, repeats)
    config = TrainConfig(dataset=FLAG, size=size, image_size=side, fit=fit, codec=codec.name)
    model = build_model(config, data.n_classes, data.n_channels, codec=codec).to(device)
    n = encode_batch if phase == "latent classify" else batch  # a decode costs as much as an encode
    latents = torch.randn(n, codec.latent_channels, codec.latent_size(side), codec.latent_size(side), device=device)
    if phase == "latent train":
        optimizer = torch.optim.AdamW(model.net.parameters(), lr=1e-4)
        return timed(train_step(model, latents, labels, optimizer), batch, device, min_seconds, repeats)
    with torch.no_grad(), model.reading(mask_space="pixel" if phase == "latent classify" else "latent"):
        return timed(lambda: model.classify(latents), n, device, min_seconds, repeats)


def measure(size: int, args) -> dict:
    """Every phase at one size, each in its own process."""
    phases = {}
    for phase in PHASES:
        command = [sys.executable, __file__, "--child", str(size), phase, *_shared_flags(args)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{phase} at {size} px failed:\n{done.stderr[-2000:]}")
        phases[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    side = LATENT_INPUT[size][0]
    return {"size": size, "latent_input": side, "latent_side": side // 8, "phases": phases}


def _shared_flags(args) -> list[str]:
    return [
        "--batch",
        str(args.batch),
        "--encode-batch",
        str(args.encode_batch),
        "--min-seconds",
        str(args.min_seconds),
        "--repeats",
        str(args.repeats),
    ]


def markdown(results: dict) -> str:
    p = results["provenance"]
    lines = [
        "# Cost vs resolution: pixel-space vs latent-space MedSymmFlow",
        "",
        f"{provenance_line(p)} "
        f"Batch {results['batch']} (encode and decoded classification: {results['encode_batch']}); "
        f"total wall time {results['wall_seconds']:.0f} s. Milliseconds per image (median), and peak memory "
        "above the level before the phase (MiB).",
        "",
        "Pixel: the `tiny` UNet at the image's size. Latent: the same UNet on 4-channel latents of Stable "
        "Diffusion's VAE architecture (random weights; cost only) at the paper's input side; the encode is "
        "paid once per image (cached), classification decodes the predicted mask (the paper's) or not.",
        "",
        "| size | latent | " + " | ".join(PHASES) + " |",
        "|---|---|" + "---|" * len(PHASES),
    ]
    for row in results["rows"]:
        cells = [
            f"{row['phases'][phase]['ms_per_image']:.2f} ms, {row['phases'][phase]['peak_mib']:.0f} MiB"
            for phase in PHASES
        ]
        lines.append(
            f"| {row['size']} | {row['latent_side']}² from {row['latent_input']} px | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Growth from the smallest to the largest size (ratio of ms per image; pixels grew "
        f"{results['pixel_growth']:.0f}x):",
        "",
    ]
    lines += [f"- {phase}: {ratio:.1f}x" for phase, ratio in results["growth"].items()]
    lines += [
        "",
        f"Latent training step cheaper than pixel from: {results['latent_train_cheaper_from']} px.",
        f"Latent classification (with decode) cheaper than pixel from: {results['latent_classify_cheaper_from']} px.",
        f"Latent classification without decode cheaper than pixel from: {results['latent_nodecode_cheaper_from']} px.",
    ]
    return "\n".join(lines) + "\n"


def crossover(rows: list[dict], latent_phase: str, pixel_phase: str) -> int | None:
    """The smallest size from which the latent phase is cheaper per image than the pixel one, at every larger size."""
    cheaper = [r["phases"][latent_phase]["ms_per_image"] < r["phases"][pixel_phase]["ms_per_image"] for r in rows]
    for i in range(len(rows)):
        if all(cheaper[i:]):
            return rows[i]["size"]
    return None


def figure(results: dict, path: Path) -> None:
    rows = results["rows"]
    pixels = [r["size"] ** 2 for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for phase, style in zip(PHASES, ("o-", "s-", "^:", "o--", "s--", "d--"), strict=True):
        ax.loglog(pixels, [r["phases"][phase]["ms_per_image"] for r in rows], style, label=phase)
    ax.set_xticks(pixels, [f"{r['size']}²" for r in rows])
    ax.set_xlabel("image pixels (MedMNIST size)")
    ax.set_ylabel("ms per image")
    ax.set_title(f"Cost vs resolution ({results['provenance']['device']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), choices=SIZES)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--encode-batch", type=int, default=4, help="images per encode and per decoded classification")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each phase at least this long")
    parser.add_argument("--repeats", type=int, default=10, help="at most this many timed repeats a phase")
    parser.add_argument("--out", default="runs/bench_latent")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, phase = int(args.child[0]), args.child[1]
        print(json.dumps(measure_phase(size, phase, args.batch, args.encode_batch, args.min_seconds, args.repeats)))
        return
    start, origin = time.perf_counter(), provenance()
    rows = []
    for size in sorted(args.sizes):
        rows.append(measure(size, args))
        print(json.dumps(rows[-1]), flush=True)
    first, last = rows[0], rows[-1]
    results = {
        "what": "ms per image and peak memory of pixel vs latent MedSymmFlow by MedMNIST size (synthetic twin images)",
        "batch": args.batch,
        "encode_batch": args.encode_batch,
        "rows": rows,
        "pixel_growth": last["size"] ** 2 / first["size"] ** 2,
        "growth": {p: last["phases"][p]["ms_per_image"] / first["phases"][p]["ms_per_image"] for p in PHASES},
        "latent_train_cheaper_from": crossover(rows, "latent train", "pixel train"),
        "latent_classify_cheaper_from": crossover(rows, "latent classify", "pixel classify"),
        "latent_nodecode_cheaper_from": crossover(rows, "latent classify, no decode", "pixel classify"),
        "wall_seconds": time.perf_counter() - start,
        "provenance": origin,
    }
    out = Path(args.out)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown(results))
    figure(results, out / "cost_vs_pixels.png")
    print(markdown(results))


if __name__ == "__main__":
    main()
