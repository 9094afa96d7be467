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
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors.torch import save_file
from tqdm.auto import tqdm

from medsymmflow import __version__
from medsymmflow.checkpoints import (
    DAMAGED,
    CheckpointError,
    checkpoint_dir,
    damaged,
    load_state,
    prepare_run,
    read_checkpoint_meta,
    swap_in,
)
from medsymmflow.data import MedMNISTData, load_dataset, shift_images
from medsymmflow.errors import NonFiniteError, TrainingInterrupted
from medsymmflow.evaluate import evaluate_split
from medsymmflow.latents import split_inputs
from medsymmflow.recipes import ConfigMismatchError, TrainConfig, build_model, config_differences, lr_factor

logger = logging.getLogger(__name__)

LOG_EVERY = 50  # steps between reads of the loss (each read waits for the device)


EXTENDABLE = ("steps", "restart_at", "warmup_steps", "checkpoint_every")  # may change with --extend


class NonFiniteLossError(NonFiniteError):
    """The training loss, the weights or the validation outputs became NaN or infinite."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns."""

    step: int
    history: list[dict]
    best_step: int
    best_metrics: dict
    last_dir: Path
    best_dir: Path


class Trainer:
    """Trains a :class:`SymmetricFlow` (or a baseline classifier) on one MedMNIST dataset.

    Args:
        config: the run's configuration.
        out_dir: folder for ``last/`` and ``best/`` checkpoints.
        data: the dataset (default: loaded from ``config``).
        resume: continue from ``out_dir/last`` (its config must equal ``config``).
        progress: show a tqdm progress bar.
        overwrite: let this run replace checkpoints already in ``out_dir`` (otherwise refused).
        extend: with ``resume``, continue a run past the steps it was started with, up to
            ``config.steps``: from the resumed step the learning rate follows a new cosine
            (``restart_at``, see :func:`~medsymmflow.recipes.lr_factor`).
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        data: MedMNISTData | None = None,
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        extend: bool = False,
    ):
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.config = config = prepare_run(self.out_dir, config, resume, overwrite, extend)
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
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, self.config))
        self.ema = EMAModel(self._parameters(), decay=config.ema_decay, foreach=True)
        self.data_generator = torch.Generator().manual_seed(config.seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(
            config.seed + 1 + self.accelerator.process_index
        )
        self.step, self.history, self.best_step, self.best_metrics = 0, [], 0, {}

        n_train = len(self.data.labels("train"))
        if config.batch_size > n_train:
            raise ValueError(
                f"batch_size {config.batch_size} exceeds the {n_train} training images of {config.dataset}; "
                f"pick at most {n_train}."
            )
        # pixels, or for a latent model its cached latents (encoded once per codec and data)
        self.train_images, self.train_labels = split_inputs(model, self.data, "train", config.image_size)
        self.val_images, self.val_labels = split_inputs(model, self.data, "val", config.image_size)
        counts = torch.bincount(self.train_labels, minlength=self.data.n_classes).double()
        self.sample_weights = (
            (1.0 / counts.clamp(min=1))[self.train_labels]
            if config.balanced
            else torch.ones(len(self.train_labels), dtype=torch.float64)
        )
        # the loss's class weights n / (K' count), K' classes present: mean 1 over the training split
        self.class_weights = (
            (n_train / (int((counts > 0).sum()) * counts.clamp(min=1))).float().to(self.accelerator.device)
            if config.class_weighted_loss
            else None
        )
        if resume:
            self._load_state(self.out_dir / "last", extend)

    def _parameters(self):
        return self.accelerator.unwrap_model(self.model.net).parameters()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This process's share of the next global batch, drawn from the data generator: its images,
        labels, and, with ``shift_scope`` ``classify``, the shifted images the loss gives its t = 1 share
        (else None: the shifts, if any, move ``images`` themselves)."""
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_process = math.ceil(self.config.batch_size / processes)
        index = torch.multinomial(
            self.sample_weights, per_process * processes, replacement=True, generator=self.data_generator
        )
        flips = torch.rand(len(index), generator=self.data_generator) < 0.5
        shift = self.config.shift  # its offsets are drawn only when on, so runs without it stay as they were
        offsets = torch.randint(-shift, shift + 1, (len(index), 2), generator=self.data_generator) if shift else None
        index, flips = index[rank::processes], flips[rank::processes]
        images = self.train_images[index]
        if self.config.flip:
            images = torch.where(flips[:, None, None, None], images.flip(-1), images)
        moved = shift_images(images, offsets[rank::processes]) if shift else None
        device = self.accelerator.device
        labels = self.train_labels[index].to(device)
        if moved is not None and self.config.shift_scope == "classify":
            return images.to(device), labels, moved.to(device)
        return (images if moved is None else moved).to(device), labels, None

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
        try:
            self._loop(until, bar)
        except KeyboardInterrupt as interrupt:
            saved = self._saved()
            advice = (
                "run the same command again to start over"
                if saved.startswith("no checkpoint")
                else "add --resume to the same command (resume=True) to continue"
            )
            raise TrainingInterrupted(
                f"interrupted at step {self.step} of {self.config.steps}; {saved}. To go on, {advice}."
            ) from interrupt
        finally:
            bar.close()
        return TrainResult(
            self.step, self.history, self.best_step, self.best_metrics, self.out_dir / "last", self.out_dir / "best"
        )

    def _loop(self, until: int, bar: tqdm) -> None:
        losses = []  # on the device: reading a loss waits for the GPU, so it is read only every LOG_EVERY steps
        while self.step < until:
            images, labels, classify_images = self._batch()
            with self.accelerator.autocast():
                weights = None if self.class_weights is None else self.class_weights[labels]
                shifted = {} if classify_images is None else {"classify_images": classify_images}
                parts = self.model.loss(images, labels, generator=self.noise_generator, weights=weights, **shifted)
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
                losses = []  # all checked: the next interval starts afresh

    def _check_finite(self, recent: list[torch.Tensor]) -> None:
        """Raise before the optimizer step if any of the last steps' losses is NaN or infinite."""
        values = self.accelerator.reduce(torch.stack(recent).float(), "sum")
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0])
            step = self.step + 1 - len(recent) + 1 + first
            raise NonFiniteLossError(
                f"the training loss became {values[first].item()} at step {step}; training stopped; {self._saved()}. "
                "Lower the learning rate or check the data for NaNs."
            )

    @torch.no_grad()
    def _validate_and_save(self, train_loss: float) -> None:
        parameters = list(self._parameters())
        self.ema.store(parameters)
        self.ema.copy_to(parameters)
        self.model.eval()
        try:
            metrics, _ = evaluate_split(
                self.model,
                self.val_images,
                self.val_labels,
                self.data.info["task"],
                self.config.eval_samples,
                seed=self.config.seed,
            )
        except NonFiniteError as error:
            raise NonFiniteLossError(
                f"validation at step {self.step} failed: {error}; training stopped; {self._saved()}. "
                f"Lower the learning rate (now {self.config.lr})."
            ) from error
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
            **({"codec": self.model.codec.describe()} if getattr(self.model, "codec", None) is not None else {}),
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
            swap_in(tmp, final)
        accelerator.wait_for_everyone()

    def _saved(self) -> str:
        """What a stopped run leaves behind, for its error message."""
        last = self.out_dir / "last"
        try:
            return f"the last checkpoint, {last}, holds step {read_checkpoint_meta(last)['step']} and is intact"
        except FileNotFoundError:
            return "no checkpoint was saved yet"
        except CheckpointError as error:
            return f"the last checkpoint cannot be read ({error})"

    def _load_state(self, last: Path, extend: bool) -> None:
        folder = checkpoint_dir(last)
        meta = read_checkpoint_meta(folder)
        fields = [f.name for f in dataclasses.fields(TrainConfig) if not (extend and f.name in EXTENDABLE)]
        differences = config_differences(meta["config"], self.config.to_dict(), fields)
        if differences:
            raise ConfigMismatchError(
                f"cannot resume from {folder}: its configuration differs: {'; '.join(differences)}"
                + ("" if extend else ". To train past its steps add --extend; to start afresh, --overwrite"),
                differences,
            )
        saved_processes = len(list(folder.glob("rng_*.pt")))
        if saved_processes and saved_processes != self.accelerator.num_processes:  # none: damaged, said below
            raise ValueError(
                f"{folder} was saved by {saved_processes} training process(es); resume it with the same number "
                f"(this launch has {self.accelerator.num_processes})"
            )
        advice = (
            f"The run cannot be resumed from it: evaluate {self.out_dir / 'best'} if it is intact, "
            "or start the run again with --overwrite."
        )
        load_state(self.accelerator.unwrap_model(self.model.net), folder / "model.safetensors", advice)
        self._restore(folder / "training_state.pt", advice, self._apply_training_state)
        rng = folder / f"rng_{self.accelerator.process_index}.pt"
        self._restore(rng, advice, lambda state: self.noise_generator.set_state(state["noise"]))
        self.step, self.history = meta["step"], meta["history"]
        self.best_step = meta["best_step"]
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * lr_factor(self.step, self.config)  # an extended run starts its new cosine at once

    @staticmethod
    def _restore(file: Path, advice: str, apply) -> None:
        """``apply`` the tensors saved in ``file``; a damaged file is a :class:`CheckpointError`."""
        try:
            apply(torch.load(file, weights_only=True))
        except DAMAGED as error:
            raise damaged(file, error, advice) from error

    def _apply_training_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
        self.ema.to(self.accelerator.device)
        self.data_generator.set_state(state["data_generator"])
        self.best_metrics = state["best_metrics"]
