"""The trainer shared by the notebooks and the command line, built on Hugging Face Accelerate.

The same loop runs on a CPU, one GPU, or many (``accelerate launch -m medsymmflow train``):
AdamW, linear warm-up then cosine decay (diffusers' schedule), EMA of the weights
(diffusers' ``EMAModel``), bf16 autocast on CUDA only, gradient clipping, and periodic
evaluation on the **validation** split (never the test split) with the best checkpoint kept.

Checkpoints are folders (``last/`` and ``best/``) holding ``ema.safetensors`` (the weights
used for evaluation), ``config.json`` (full config, step, metrics) and, in ``last/``, the raw
weights and ``training_state.pt`` (optimizer, scheduler, EMA, RNG states). A folder is
written under a temporary name and swapped in whole, so a crash mid-save leaves the
previous checkpoint loadable. Resuming restores every state, so a run killed after a
checkpoint and resumed ends with the same weights as the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from medsymmflow import __version__
from medsymmflow.config import Profile, full_epochs, get_device, runs_dir
from medsymmflow.data import MedMNISTData, load_dataset
from medsymmflow.data.masks import (
    DECODINGS,
    DEFAULT_BETA,
    MODES,
    PALETTE_INDEX,
    PAPER_DECODING,
    PAPER_PALETTE_INDEX,
    check_task,
)
from medsymmflow.data.medmnist import SIZES, dataset_info
from medsymmflow.flow.paths import SIGMA_MIN
from medsymmflow.metrics import classification_metrics, distance_scores
from medsymmflow.models.baselines import BASELINES, CNNClassifier
from medsymmflow.models.symmflow import Classification, SymmetricFlow
from medsymmflow.models.unet import PRESETS, VelocityUNet, make_unet

logger = logging.getLogger(__name__)

MODEL_FIELDS = ("dataset", "size", "image_size", "preset", "mask_mode", "palette_index")
SELECT_METRICS = ("auc", "acc", "balanced_accuracy")
MIXED_PRECISION = ("auto", "no", "bf16")
LOG_EVERY = 50  # steps between reads of the loss (each read waits for the device)


class ConfigMismatchError(ValueError):
    """A checkpoint was made with a different configuration than the one requested."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Attributes:
        dataset: MedMNIST flag.
        size: resolution of the MedMNIST file (28, 64, 128, 224).
        image_size: model input side (28 runs natively on ``tiny``; 32 pads as the paper).
        preset: UNet preset of MedSymmFlow (``tiny``, ``paper-pixel``, ``paper-latent``), or a
            discriminative baseline trained by the same loop (``resnet18``, ``cnn-small``).
        mask_mode: ``rgb`` (paper) or ``gray``.
        palette_index: ``truncate`` (the official code's) or ``round`` RGB palette entries;
            checkpoints written before this field existed used ``round``.
        decoding: how a predicted mask becomes class distances, for validation and evaluation:
            ``pixel_distance`` (the official code's) or ``mean_colour``; checkpoints written
            before this field existed used ``mean_colour``. It does not change the weights.
        image_weight: ``w`` in ``w * MSE_image + (1 - w) * MSE_mask``.
        sigma_min: end width of the path.
        beta: mask dequantization width (0-255 units).
        steps: optimizer steps.
        batch_size: images per step, over all processes.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up before the cosine decay.
        ema_decay: EMA decay (diffusers' EMAModel warms it up as ``(1 + n) / (10 + n)``).
        grad_clip: max gradient norm (0 disables clipping).
        balanced: sample training images with weights ``1 / count(class)`` (default: MedMNIST
            sets are unbalanced, and a tiny model otherwise drifts to the majority class).
        flip: random horizontal flips.
        checkpoint_every: steps between validation + checkpoint.
        eval_samples: mask-noise draws per validation image.
        select_metric: validation metric that picks the best checkpoint.
        mixed_precision: ``auto`` (bf16 on CUDA, none elsewhere), ``no`` or ``bf16``.
        seed: seed of weights, data order and noise.
        allow_synthetic: train on the synthetic twin if the real data is unavailable.
    """

    dataset: str = "pneumoniamnist"
    size: int = 28
    image_size: int = 28
    preset: str = "tiny"
    mask_mode: str = "rgb"
    palette_index: str = PAPER_PALETTE_INDEX
    decoding: str = PAPER_DECODING
    image_weight: float = 0.7
    sigma_min: float = SIGMA_MIN
    beta: float = DEFAULT_BETA
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    balanced: bool = True
    flip: bool = False
    checkpoint_every: int = 200
    eval_samples: int = 1
    select_metric: str = "auc"
    mixed_precision: str = "auto"
    seed: int = 0
    allow_synthetic: bool = False

    def __post_init__(self) -> None:
        check_task(dataset_info(self.dataset))
        problems = []
        if self.preset not in PRESETS and self.preset not in BASELINES:
            problems.append(f"preset must be one of {tuple(PRESETS) + tuple(BASELINES)}, got {self.preset!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "eval_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if self.image_size < self.size:
            problems.append(
                f"image_size ({self.image_size}) must be >= the file's size ({self.size}); images are padded"
            )
        if self.select_metric not in SELECT_METRICS:
            problems.append(f"select_metric must be one of {SELECT_METRICS}, got {self.select_metric!r}")
        if self.palette_index not in PALETTE_INDEX:
            problems.append(f"palette_index must be one of {PALETTE_INDEX}, got {self.palette_index!r}")
        if self.decoding not in DECODINGS:
            problems.append(f"decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be 'auto', 'no' or 'bf16', got {self.mixed_precision!r}")
        if problems:
            raise ValueError("Invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The allowed values of the TrainConfig fields that take a name (the CLI offers them as choices).
FIELD_CHOICES = {
    "size": SIZES,
    "preset": tuple(PRESETS) + tuple(BASELINES),
    "mask_mode": MODES,
    "palette_index": PALETTE_INDEX,
    "decoding": DECODINGS,
    "select_metric": SELECT_METRICS,
    "mixed_precision": MIXED_PRECISION,
}


def config_field_help() -> dict[str, str]:
    """Each TrainConfig field's description, read from the class docstring's ``Attributes:`` section."""
    docs, name = {}, None
    section = TrainConfig.__doc__.split("Attributes:", 1)[1]
    for line in section.splitlines():
        head, _, rest = line.strip().partition(": ")
        if line.startswith(" " * 8) and not line.startswith(" " * 12) and head.isidentifier():
            name, docs[head] = head, rest
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return docs


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns."""

    step: int
    history: list[dict]
    best_step: int
    best_metrics: dict
    last_dir: Path
    best_dir: Path


def course_config(dataset: str, profile: Profile, epochs: int | None = None, **overrides) -> TrainConfig:
    """The course's standard run of a dataset in a profile (used by the notebooks and benchmarks).

    Both use the paper's masks and decoding (truncated palette index, per-pixel distance).
    ``fast``: the ``tiny`` UNet at native 28 px, 300 steps of batch 64, lr 1e-3 (CPU minutes).
    ``full``: the paper's ``paper-pixel`` UNet at 32 px, AdamW 4e-4, batch 64, ``epochs`` epochs
    of the training split (default :func:`medsymmflow.config.full_epochs`: 100, a tenth of the
    paper's 1000), warm-up 5 % of the steps, validated every tenth of the run. ``epochs`` is
    ignored by ``fast``.
    """
    if profile.is_fast:
        settings = dict(preset="tiny", image_size=28, steps=300, batch_size=64, lr=1e-3, checkpoint_every=150)
    else:
        epochs = full_epochs() if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        steps = epochs * math.ceil(dataset_info(dataset)["n_samples"]["train"] / 64)
        settings = dict(
            preset="paper-pixel",
            image_size=32,
            steps=steps,
            batch_size=64,
            lr=4e-4,
            warmup_steps=math.ceil(steps / 20),
            checkpoint_every=max(steps // 10, 1),
        )
    return TrainConfig(dataset=dataset, **{**settings, **overrides})


def run_dir(config: TrainConfig, synthetic: bool = False, root: Path | None = None) -> Path:
    """A readable, unique folder for a configuration (and kind of data):
    ``<root>/<dataset>[-synthetic]_<preset>_<size>px_<steps>steps_seed<seed>_<hash>``, root ``runs/models`` by default."""
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    data = f"{config.dataset}-synthetic" if synthetic else config.dataset
    return (
        root or runs_dir() / "models"
    ) / f"{data}_{config.preset}_{config.image_size}px_{config.steps}steps_seed{config.seed}_{digest}"


def train_or_load(
    config: TrainConfig, data: MedMNISTData | None = None, progress: bool = True, root: Path | None = None
) -> tuple[SymmetricFlow | CNNClassifier, dict]:
    """Load the best checkpoint of exactly this configuration and data if one exists, else train it
    (resuming an interrupted run). ``root``: the folder of cached runs (see :func:`run_dir`).

    Returns:
        ``(model on the default device in eval mode, checkpoint metadata)``; the metadata's
        ``history`` holds the validation record of the training run.
    """
    data = data or load_dataset(config.dataset, config.size, allow_synthetic=config.allow_synthetic, seed=config.seed)
    folder = run_dir(config, data.synthetic, root)
    try:
        finished = read_checkpoint_meta(folder / "last")["step"] >= config.steps
    except FileNotFoundError:  # never started
        finished = None
    if not finished:  # a run killed after its first validation has a best/ but must still resume to config.steps
        Trainer(config, folder, data=data, resume=finished is not None, progress=progress).train()
    return load_checkpoint(folder / "best", expected=config, device=get_device())


def build_model(config: TrainConfig, n_classes: int, image_channels: int) -> SymmetricFlow | CNNClassifier:
    """A fresh model: :class:`SymmetricFlow` on a UNet preset, or a baseline :class:`CNNClassifier`."""
    if config.preset in BASELINES:
        return CNNClassifier(BASELINES[config.preset](image_channels, n_classes), image_channels, n_classes)
    channels = image_channels + (3 if config.mask_mode == "rgb" else 1)
    velocity = VelocityUNet(make_unet(config.preset, channels, sample_size=config.image_size))
    return SymmetricFlow(
        velocity,
        image_channels,
        n_classes,
        config.mask_mode,
        config.image_weight,
        config.sigma_min,
        config.beta,
        config.palette_index,
        config.decoding,
    )


def config_differences(saved: dict, requested: dict, fields=None) -> list[str]:
    """``"name: saved -> requested"`` for every field (of ``fields``, default all) that differs."""
    names = fields or sorted(set(saved) | set(requested))
    return [
        f"{n}: {saved.get(n)!r} in the checkpoint, {requested.get(n)!r} requested"
        for n in names
        if saved.get(n) != requested.get(n)
    ]


def _checkpoint_dir(path: Path) -> Path:
    """The folder to read: ``path``, or its previous version if a swap was interrupted."""
    path = Path(path)
    if (path / "config.json").exists():
        return path
    previous = path.with_name(path.name + ".old")
    if (previous / "config.json").exists():
        return previous
    raise FileNotFoundError(f"no checkpoint at {path} (expected {path / 'config.json'})")


# Fields added to TrainConfig after checkpoints were written, with the value those checkpoints used.
LEGACY_DEFAULTS = {"palette_index": "round", "decoding": "mean_colour"}


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a checkpoint folder; config fields it predates get the value it was trained with."""
    meta = json.loads((_checkpoint_dir(Path(path)) / "config.json").read_text())
    meta["config"] = {**LEGACY_DEFAULTS, **meta["config"]}
    return meta


def load_checkpoint(
    path: str | os.PathLike, expected: TrainConfig | None = None, device: str | torch.device = "cpu"
) -> tuple[SymmetricFlow | CNNClassifier, dict]:
    """Load a checkpoint folder's EMA weights into a new model.

    Args:
        path: a ``last/`` or ``best/`` folder.
        expected: if given, refuse a checkpoint whose model fields differ from it.
        device: where to put the model.

    Returns:
        ``(model in eval mode, metadata from config.json)``.

    Raises:
        ConfigMismatchError: the saved model fields differ from ``expected``'s.
    """
    folder = _checkpoint_dir(Path(path))
    meta = read_checkpoint_meta(folder)
    if expected is not None:
        differences = config_differences(meta["config"], expected.to_dict(), MODEL_FIELDS)
        if differences:
            raise ConfigMismatchError(
                f"checkpoint {folder} does not match the requested model: " + "; ".join(differences)
            )
    config = TrainConfig(**meta["config"])
    model = build_model(config, meta["n_classes"], meta["image_channels"])
    model.net.load_state_dict(load_file(folder / "ema.safetensors"))
    return model.to(device).eval(), meta


def evaluate_split(
    model: SymmetricFlow | CNNClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    task: str,
    n_samples: int = 1,
    steps: int = 1,
    solver: str = "euler",
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[dict, Classification]:
    """Classify a split in batches and compute the MedMNIST metrics.

    Returns:
        ``(metrics, classification)``: the classification of every image (labels, distances
        averaged over the draws, the draws' distances and, for MedSymmFlow, the mean
        predicted masks), on the CPU.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        parts.append(model.classify(batch, steps, solver, n_samples, generator))
    result = Classification(
        torch.cat([p.labels for p in parts]).cpu(),
        torch.cat([p.distances for p in parts]).cpu(),
        torch.cat([p.sample_distances for p in parts], dim=1).cpu(),
        None if parts[0].masks is None else torch.cat([p.masks for p in parts]).cpu(),
    )
    return classification_metrics(labels.numpy(), distance_scores(result.distances).numpy(), task), result


class Trainer:
    """Trains a :class:`SymmetricFlow` (or a baseline classifier) on one MedMNIST dataset.

    Args:
        config: the run's configuration.
        out_dir: folder for ``last/`` and ``best/`` checkpoints.
        data: the dataset (default: loaded from ``config``).
        resume: continue from ``out_dir/last`` (its config must equal ``config``).
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        data: MedMNISTData | None = None,
        resume: bool = False,
        progress: bool = True,
    ):
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.data = data or load_dataset(
            config.dataset, config.size, allow_synthetic=config.allow_synthetic, seed=config.seed
        )
        precision = config.mixed_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        self.accelerator = Accelerator(mixed_precision=precision)
        device = self.accelerator.device

        with torch.random.fork_rng(devices=[]):  # the initial weights, without touching the caller's RNG
            torch.manual_seed(config.seed)
            model = build_model(config, self.data.n_classes, self.data.n_channels)
        optimizer = torch.optim.AdamW(model.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        model.net, self.optimizer = self.accelerator.prepare(model.net, optimizer)
        self.model = model.to(device)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
        self.ema = EMAModel(self._parameters(), decay=config.ema_decay, foreach=True)
        self.data_generator = torch.Generator().manual_seed(config.seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(
            config.seed + 1 + self.accelerator.process_index
        )
        self.step, self.history, self.best_step, self.best_metrics = 0, [], 0, {}

        self.train_images, self.train_labels = self.data.tensors("train", config.image_size)
        self.val_images, self.val_labels = self.data.tensors("val", config.image_size)
        counts = torch.bincount(self.train_labels, minlength=self.data.n_classes).double()
        self.sample_weights = (
            (1.0 / counts.clamp(min=1))[self.train_labels]
            if config.balanced
            else torch.ones(len(self.train_labels), dtype=torch.float64)
        )
        if resume:
            self._load_state(self.out_dir / "last")

    def _parameters(self):
        return self.accelerator.unwrap_model(self.model.net).parameters()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of the next global batch, drawn from the data generator."""
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_process = math.ceil(self.config.batch_size / processes)
        index = torch.multinomial(
            self.sample_weights, per_process * processes, replacement=True, generator=self.data_generator
        )
        flips = torch.rand(len(index), generator=self.data_generator) < 0.5
        index, flips = index[rank::processes], flips[rank::processes]
        images = self.train_images[index]
        if self.config.flip:
            images = torch.where(flips[:, None, None, None], images.flip(-1), images)
        device = self.accelerator.device
        return images.to(device), self.train_labels[index].to(device)

    def train(self, until_step: int | None = None) -> TrainResult:
        """Train up to ``until_step`` (default: ``config.steps``), checkpointing on the way."""
        until = min(until_step or self.config.steps, self.config.steps)
        self.model.train()
        bar = tqdm(
            total=until,
            initial=self.step,
            desc=f"{self.config.preset} on {self.config.dataset}",
            disable=not (self.progress and self.accelerator.is_main_process),
            mininterval=1.0,
        )
        losses = []  # on the device: reading a loss waits for the GPU, so it is read only every LOG_EVERY steps
        while self.step < until:
            images, labels = self._batch()
            with self.accelerator.autocast():
                parts = self.model.loss(images, labels, generator=self.noise_generator)
            loss = parts.total
            self.accelerator.backward(loss)
            if self.config.grad_clip > 0:
                self.accelerator.clip_grad_norm_(self.model.net.parameters(), self.config.grad_clip)
            losses.append(loss.detach())
            ends_interval = (self.step + 1) % self.config.checkpoint_every == 0 or self.step + 1 == self.config.steps
            if (self.step + 1) % LOG_EVERY == 0 or ends_interval or self.step + 1 == until:
                self._check_finite(losses[-LOG_EVERY:])
                bar.set_postfix(loss=f"{losses[-1].item():.3f}", refresh=False)  # redrawn at the bar's own pace
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.ema.step(self._parameters())
            self.step += 1
            bar.update(1)
            if ends_interval:
                self._validate_and_save(float(torch.stack(losses[-self.config.checkpoint_every :]).float().mean()))
                losses = losses[-LOG_EVERY:]
        bar.close()
        return TrainResult(
            self.step, self.history, self.best_step, self.best_metrics, self.out_dir / "last", self.out_dir / "best"
        )

    def _check_finite(self, recent: list[torch.Tensor]) -> None:
        """Raise before the optimizer step if any of the last steps' losses is NaN or infinite."""
        values = self.accelerator.reduce(torch.stack(recent).float(), "sum")
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0])
            step = self.step + 1 - len(recent) + 1 + first
            last = self.out_dir / "last"
            raise NonFiniteLossError(
                f"the training loss became {values[first].item()} at step {step}; training stopped. "
                f"The last good checkpoint ({last}, step {self._saved_step(last)}) was left untouched. "
                "Lower the learning rate or check the data for NaNs."
            )

    @torch.no_grad()
    def _validate_and_save(self, train_loss: float) -> None:
        parameters = list(self._parameters())
        self.ema.store(parameters)
        self.ema.copy_to(parameters)
        self.model.eval()
        metrics, _ = evaluate_split(
            self.model,
            self.val_images,
            self.val_labels,
            self.data.info["task"],
            self.config.eval_samples,
            seed=self.config.seed,
        )
        self.ema.restore(parameters)
        self.model.train()
        record = {
            "step": self.step,
            "train_loss": train_loss,
            **{f"val_{k}": metrics[k] for k in ("acc", "auc", "balanced_accuracy")},
        }
        self.history.append(record)
        logger.info("step %d: %s", self.step, record)
        score = metrics[self.config.select_metric]
        if not self.best_metrics or score > self.best_metrics[self.config.select_metric]:
            self.best_step, self.best_metrics = self.step, metrics
            self._write("best", with_state=False)
        self._write("last", with_state=True)

    def _meta(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "history": self.history,
            "best_step": self.best_step,
            "best_val_metrics": self.best_metrics,
            "n_classes": self.data.n_classes,
            "image_channels": self.data.n_channels,
            "class_names": self.data.class_names,
            "task": self.data.info["task"],
            "synthetic_data": self.data.synthetic,
            "medsymmflow_version": __version__,
        }

    def _write(self, name: str, with_state: bool) -> None:
        """Write a checkpoint folder under a temporary name, then swap it in whole."""
        final = self.out_dir / name
        tmp = self.out_dir / f".{name}.tmp"
        accelerator = self.accelerator
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        if with_state:
            torch.save({"noise": self.noise_generator.get_state()}, tmp / f"rng_{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            net = accelerator.unwrap_model(self.model.net)
            raw = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            parameters = list(net.parameters())
            self.ema.store(parameters)
            self.ema.copy_to(parameters)
            save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, tmp / "ema.safetensors")
            self.ema.restore(parameters)
            if with_state:
                save_file(raw, tmp / "model.safetensors")
                torch.save(
                    {
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "ema": self.ema.state_dict(),
                        "data_generator": self.data_generator.get_state(),
                        "best_metrics": self.best_metrics,
                    },
                    tmp / "training_state.pt",
                )
            (tmp / "config.json").write_text(json.dumps(self._meta(), indent=2))
            _swap_in(tmp, final)
        accelerator.wait_for_everyone()

    def _saved_step(self, folder: Path):
        try:
            return read_checkpoint_meta(folder)["step"]
        except FileNotFoundError:
            return "none saved yet"

    def _load_state(self, last: Path) -> None:
        folder = _checkpoint_dir(last)
        meta = read_checkpoint_meta(folder)
        differences = config_differences(meta["config"], self.config.to_dict())
        if differences:
            raise ConfigMismatchError(
                f"cannot resume from {folder}: its configuration differs: " + "; ".join(differences)
            )
        self.accelerator.unwrap_model(self.model.net).load_state_dict(load_file(folder / "model.safetensors"))
        state = torch.load(folder / "training_state.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
        self.ema.to(self.accelerator.device)
        self.data_generator.set_state(state["data_generator"])
        rng = torch.load(folder / f"rng_{self.accelerator.process_index}.pt", weights_only=True)
        self.noise_generator.set_state(rng["noise"])
        self.step, self.history = meta["step"], meta["history"]
        self.best_step, self.best_metrics = meta["best_step"], state["best_metrics"]


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace folder ``final`` by ``tmp``; if interrupted, ``final.old`` still holds the previous one."""
    previous = final.with_name(final.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(tmp, final)
    shutil.rmtree(previous, ignore_errors=True)
