"""What defines a training run, and the course's recipes.

:class:`TrainConfig` holds every setting of a run (saved in every checkpoint);
:func:`course_config` gives the course's ``fast`` (CPU minutes) and ``full`` (the paper's
model, one GPU) recipes; :func:`build_model` makes a fresh model from a configuration, so
that ``models/`` never needs to know about training configurations.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from medsymmflow.config import Profile, full_epochs
from medsymmflow.data.dataset import FITS
from medsymmflow.data.masks import (
    DECODINGS,
    DEFAULT_BETA,
    GRAY_BETA,
    MODE_DECODINGS,
    MODES,
    PALETTE_INDEX,
    PAPER_PALETTE_INDEX,
    check_task,
    mask_channels,
)
from medsymmflow.data.medmnist import SIZES, dataset_info
from medsymmflow.flow.paths import SIGMA_MIN
from medsymmflow.models.autoencoder import LatentCodec
from medsymmflow.models.baselines import BASELINES, CNNClassifier
from medsymmflow.models.symmflow import DEFAULT_IMAGE_WEIGHT, SymmetricFlow
from medsymmflow.models.unet import PRESETS, VelocityUNet, make_unet

MODEL_FIELDS = ("dataset", "size", "image_size", "fit", "codec", "preset", "mask_mode", "palette_index", "gray_beta")
SELECT_METRICS = ("auc", "acc", "balanced_accuracy")
MIXED_PRECISION = ("auto", "no", "bf16")
SHIFT_SCOPES = ("all", "classify")


# Closed ranges of the numeric TrainConfig fields that have one (math.inf: no upper bound).
RANGES = (
    ("image_weight", 0.0, 1.0),
    ("classify_share", 0.0, 1.0),
    ("sigma_min", 0.0, 0.5),
    ("beta", 0.0, 127.5),
    ("weight_decay", 0.0, math.inf),
    ("dropout", 0.0, 0.9),
    ("warmup_steps", 0, math.inf),
    ("ema_decay", 0.0, 0.999999),
    ("grad_clip", 0.0, math.inf),
    ("seed", 0, 2**63 - 1),
)


class ConfigMismatchError(ValueError):
    """A checkpoint was made with a different configuration than the one requested.

    ``differences`` lists them as :func:`config_differences` words them.
    """

    def __init__(self, message: str, differences: list[str] | None = None):
        super().__init__(message)
        self.differences = differences or []


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Attributes:
        dataset: MedMNIST flag.
        size: resolution of the MedMNIST file (28, 64, 128, 224).
        image_size: model input side in pixels (28 runs natively on ``tiny``; 32 pads as the paper;
            with a ``codec``, the side it encodes, e.g. 32 -> 8 x 8 latents for the course codec, 256 -> 32
            for SD's VAE).
        fit: how a file's images reach ``image_size``: ``pad`` (black border, 28 -> 32) or ``resize``
            (the latent paper's 224 -> 256).
        codec: empty for pixel space; else a latent codec (a Hugging Face model id such as
            ``stabilityai/sd-vae-ft-mse``, or a folder written by ``save_pretrained``) and the flow runs on
            its latents (latent MedSymmFlow; RGB masks only).
        preset: UNet preset of MedSymmFlow (``tiny``, ``paper-pixel``, ``paper-latent``), or a
            discriminative baseline trained by the same loop (``resnet18``, ``cnn-small``).
        mask_mode: ``rgb`` (paper), ``gray`` (the paper's gray ablation) or ``onehot`` (K channels).
        palette_index: ``truncate`` (the official code's) or ``round`` RGB palette entries;
            checkpoints written before this field existed used ``round``.
        gray_beta: scale of gray masks, levels ``(gray_beta / 2)(2 i / (K - 1) - 1)`` (official 15);
            checkpoints written before this field existed used 2 (levels in [-1, 1]).
        decoding: how a predicted mask becomes class distances, for validation and evaluation:
            ``auto`` (the mask mode's own: the official code's ``pixel_distance`` for rgb and
            ``mean_colour`` for gray; ``mean_colour`` for onehot), ``pixel_distance``, ``mean_colour``
            or ``pixel_vote``;
            checkpoints written before this field existed used ``mean_colour``. It leaves the
            training loss unchanged, but validation uses it, so it decides which checkpoint
            becomes ``best/``.
        image_weight: ``w`` in ``w * MSE_image + (1 - w) * MSE_mask``.
        classify_share: share of each batch trained at ``t = 1``, where one-step classification
            starts (0 in the paper, whose ``t ~ U(0, 1)``).
        classify_mask_only: the ``classify_share`` samples (``t = 1``) train the mask term only (see
            :class:`~medsymmflow.models.symmflow.SymmetricFlow`); needs ``classify_share > 0``.
        sigma_min: end width of the path.
        beta: RGB mask dequantization width (0-255 units); gray masks use the paper's width
            ``(gray_beta / 2) / (K - 1)`` when ``beta > 0``.
        steps: optimizer steps.
        batch_size: images per step, over all processes.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        dropout: dropout rate in the UNet's residual blocks (``UNet2DModel(dropout=)``), active in
            training only; a baseline keeps its own dropout before the classifier.
        warmup_steps: linear warm-up before the cosine decay.
        restart_at: 0, or the step from which a run extended past its first ``steps`` (``train
            --resume --extend``) follows a new cosine from the peak ``lr`` down to 0 at ``steps``.
        ema_decay: EMA decay's ceiling: diffusers' EMAModel uses ``min(ema_decay, (1 + n) / (10 + n))``
            after ``n`` updates, which stays below 0.999 until ``n = 8990``, so in the fast recipe's
            300 to 600 steps the warm-up alone sets it (0.97 to 0.985).
        grad_clip: max gradient norm (0 disables clipping).
        balanced: sample training images with weights ``1 / count(class)`` (default: MedMNIST
            sets are unbalanced, and a tiny model otherwise drifts to the majority class).
        class_weighted_loss: draw training images as they come and weigh each one's loss by
            ``n / (K' count(class))`` instead (``n`` images, ``K'`` classes present: mean weight 1
            over the training split), the loss-weighting alternative to ``balanced``; set
            ``balanced`` false with it.
        flip: random horizontal flips.
        shift: random whole-pixel shifts of training images, up to ``shift`` px each way (each
            offset uniform in ``{-shift, ..., shift}``, edges repeated; 0: none), at most a quarter
            of ``image_size``; pixel models only.
        shift_scope: which training images the shifts move: ``all``, or ``classify``: only the
            ``classify_share`` samples at ``t = 1``, the inputs of one-step classification (the flow's
            image targets at ``t < 1``, what it learns to generate, stay unshifted; needs
            ``classify_share > 0``). Without shifts it is set to ``all``.
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
    fit: str = "pad"
    codec: str = ""
    preset: str = "tiny"
    mask_mode: str = "rgb"
    palette_index: str = PAPER_PALETTE_INDEX
    gray_beta: float = GRAY_BETA
    decoding: str = "auto"
    image_weight: float = DEFAULT_IMAGE_WEIGHT
    classify_share: float = 0.0
    classify_mask_only: bool = False
    sigma_min: float = SIGMA_MIN
    beta: float = DEFAULT_BETA
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0
    warmup_steps: int = 50
    restart_at: int = 0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    balanced: bool = True
    class_weighted_loss: bool = False
    flip: bool = False
    shift: int = 0
    shift_scope: str = "all"
    checkpoint_every: int = 200
    eval_samples: int = 1
    select_metric: str = "auc"
    mixed_precision: str = "auto"
    seed: int = 0
    allow_synthetic: bool = False

    def __post_init__(self) -> None:
        check_task(dataset_info(self.dataset))
        if self.decoding == "auto" and self.mask_mode in MODE_DECODINGS:
            self.decoding = MODE_DECODINGS[self.mask_mode]
        if self.shift == 0 and self.shift_scope in SHIFT_SCOPES:
            self.shift_scope = "all"  # without shifts the scope changes nothing: one spelling, one cache key
        problems = []
        if self.preset not in PRESETS and self.preset not in BASELINES:
            problems.append(f"preset must be one of {tuple(PRESETS) + tuple(BASELINES)}, got {self.preset!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "eval_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if not self.gray_beta > 0:
            problems.append(f"gray_beta must be positive, got {self.gray_beta}")
        for name, low, high in RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                problems.append(f"{name} must lie in [{low}, {high}], got {value}")
        if not 0 <= self.restart_at < self.steps:
            problems.append(f"restart_at must lie in [0, steps), got {self.restart_at}")
        if self.fit not in FITS:
            problems.append(f"fit must be one of {FITS}, got {self.fit!r}")
        if self.codec and self.mask_mode != "rgb":
            problems.append(f"a latent model (codec {self.codec!r}) takes RGB masks, got mask_mode {self.mask_mode!r}")
        if self.classify_mask_only and not self.classify_share:
            problems.append("classify_mask_only trains the t = 1 share only: set classify_share > 0 with it")
        if self.class_weighted_loss and self.balanced:
            problems.append(
                "balanced sampling and class_weighted_loss both correct the class imbalance: "
                "set balanced false (--no-balanced) with class_weighted_loss"
            )
        if not isinstance(self.shift, int) or not 0 <= self.shift <= self.image_size // 4:
            problems.append(
                f"shift must be an integer in [0, {self.image_size // 4}] (a quarter of image_size), got {self.shift!r}"
            )
        if self.shift and self.codec:
            problems.append("shift moves pixels, and a latent model trains on cached latents: train it without --shift")
        if self.shift_scope not in SHIFT_SCOPES:
            problems.append(f"shift_scope must be one of {SHIFT_SCOPES}, got {self.shift_scope!r}")
        elif self.shift and self.shift_scope == "classify" and not self.classify_share:
            problems.append("shift_scope 'classify' shifts the t = 1 share only: set classify_share > 0 with it")
        elif self.shift and self.shift_scope == "classify" and self.preset in BASELINES:
            problems.append(
                f"shift_scope 'classify' shifts a flow's t = 1 share; the baseline {self.preset!r} has no t"
            )
        if self.dropout and self.preset in BASELINES:
            problems.append(f"dropout sets the flow's UNet; the baseline {self.preset!r} keeps its own")
        if self.codec and self.preset in BASELINES:
            problems.append(f"the baseline {self.preset!r} classifies pixels; train it without --codec")
        if self.image_size < self.size and self.fit == "pad":
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
    "fit": FITS,
    "preset": tuple(PRESETS) + tuple(BASELINES),
    "mask_mode": MODES,
    "palette_index": PALETTE_INDEX,
    "decoding": ("auto",) + DECODINGS,
    "select_metric": SELECT_METRICS,
    "mixed_precision": MIXED_PRECISION,
    "shift_scope": SHIFT_SCOPES,
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


# A short run learns one-step classification late: training a quarter of each batch at t = 1, where
# classification happens, lifted the fast recipe's one-draw ACC on every set measured, three seeds
# each, RetinaMNIST's above its majority rule on average (benchmarks/results/recipe_study_share_cpu_2026-11-27/).
# The full recipe stays the paper's (0).
FAST_CLASSIFY_SHARE = 0.25

# The inputs of that share, and only those, are shifted by up to FAST_SHIFT px each way
# (shift_scope "classify"): on PneumoniaMNIST this raised the one-draw test AUC on every seed of
# three (benchmarks/results/recipe_study_shift_classify_cpu_2026-12-07/) while the flow generated as
# well as without shifts; shifting every image lifted classification alike but taught the flow to
# generate shifted images (generation_check_shift_classify_cpu_2026-12-07/). Pixel flows only.
FAST_SHIFT = 2

# The fast recipe's length is sized by the training split: FAST_EPOCHS passes over it, in whole
# validation intervals of FAST_CHECKPOINT_EVERY steps, within FAST_STEPS (batch 64; 0.7 to 1.1 s a
# step on 2 CPU cores with validation, so at most 7 to 11 minutes of training; the 2026-12-03 recipe
# studies and course_times_cpu_2026-12-03c/ in benchmarks/results/). Sets of up to 685 images get
# 300 steps, 686 to 959 get 450, and every set from 960 images up reaches the ceiling, the 2-core
# CPU budget (benchmarks/results/recipe_study_steps_cpu_2026-11-28/).
FAST_EPOCHS = 35
FAST_STEPS = (300, 600)
FAST_CHECKPOINT_EVERY = 150


def _check_n_train(n_train) -> int:
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer (images in the training split), got {n_train!r}")
    return int(n_train)


def fast_steps(n_train: int) -> int:
    """Steps of the fast recipe for a training split of ``n_train`` images:
    ``clamp(150 * round(35 * n_train / (64 * 150)), 300, 600)`` (:data:`FAST_EPOCHS`,
    :data:`FAST_STEPS`, :data:`FAST_CHECKPOINT_EVERY`)."""
    intervals = round(FAST_EPOCHS * _check_n_train(n_train) / (64 * FAST_CHECKPOINT_EVERY))
    low, high = FAST_STEPS
    return min(max(intervals * FAST_CHECKPOINT_EVERY, low), high)


def course_config(
    dataset: str, profile: Profile, epochs: int | None = None, n_train: int | None = None, **overrides
) -> TrainConfig:
    """The course's standard run of a dataset in a profile (used by the notebooks and benchmarks).

    Both use the paper's masks and decoding (truncated palette index, per-pixel distance).
    ``fast``: the ``tiny`` UNet at native 28 px, batch 64, lr 1e-3, :func:`fast_steps` steps
    (300 to 600: CPU minutes), validated every 150, with :data:`FAST_CLASSIFY_SHARE` of each
    batch at ``t = 1`` and those images shifted by up to :data:`FAST_SHIFT` px (a pixel flow with a
    share at ``t = 1`` only: a baseline is trained unshifted unless told, and
    :func:`same_run_baseline` gives it its flow's shifts). ``n_train``, the images in the training split, sizes both recipes
    (default: the flag's official count; a subsample passes its own).
    ``full``: the paper's ``paper-pixel`` UNet at 32 px, AdamW 4e-4, batch 64, ``epochs`` epochs
    of the training split (default :func:`medsymmflow.config.full_epochs`: 100, a tenth of the
    paper's 1000), warm-up 5 % of the steps, validated every tenth of the run (also when
    ``steps`` is overridden). ``epochs`` is ignored by ``fast``.
    """
    n_train = dataset_info(dataset)["n_samples"]["train"] if n_train is None else _check_n_train(n_train)
    if profile.is_fast:
        settings = dict(
            preset="tiny",
            image_size=28,
            steps=fast_steps(n_train),
            batch_size=64,
            lr=1e-3,
            checkpoint_every=FAST_CHECKPOINT_EVERY,
            classify_share=FAST_CLASSIFY_SHARE,
            shift=FAST_SHIFT,
            shift_scope="classify",
        )
    else:
        epochs = full_epochs() if epochs is None else epochs
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        # warm-up and validation follow the run's length, also when steps are overridden
        steps = overrides.get("steps", epochs * math.ceil(n_train / 64))
        settings = dict(
            preset="paper-pixel",
            image_size=32,
            steps=steps,
            batch_size=64,
            lr=4e-4,
            warmup_steps=math.ceil(steps / 20),
            checkpoint_every=max(steps // 10, 1),
        )
    if overrides.get("preset") in BASELINES:
        settings.update(classify_share=0.0, shift=0, shift_scope="all")  # a discriminative baseline has no t
    elif overrides.get("codec") or not overrides.get("classify_share", settings.get("classify_share", 0.0)):
        settings.update(shift=0, shift_scope="all")  # latents are cached unshifted; no t = 1 share: no inputs to shift
    return TrainConfig(dataset=dataset, **{**settings, **overrides})


def same_run_baseline(flow: TrainConfig, profile: Profile, n_train: int | None = None) -> TrainConfig:
    """The discriminative baseline beside a flow run: the profile's CNN (``cnn-small`` fast, ``resnet18``
    full) on the same data (file size, input side, synthetic twin or not), seed, steps and validation
    interval, trained by the same loop, with the flow's shifts (every image a CNN sees is a
    classification input, so all are shifted).

    ``n_train``: instead of the flow's steps, the profile's own length for a training split of that
    many images (``evaluate --generation``'s judge of any flow; for a course flow of the same
    profile, the same run)."""
    length = (
        dict(steps=flow.steps, checkpoint_every=flow.checkpoint_every) if n_train is None else dict(n_train=n_train)
    )
    return course_config(
        flow.dataset,
        profile,
        seed=flow.seed,
        preset=profile.pick(fast="cnn-small", full="resnet18"),
        size=flow.size,
        image_size=flow.image_size,
        allow_synthetic=flow.allow_synthetic,
        fit=flow.fit,
        shift=flow.shift,
        **length,
    )


def training_prior(config: dict, class_counts):
    """The class prior a run's decisions add under the training split's shares
    (:func:`medsymmflow.evaluate.prior_decision`): ``class_counts`` for a run that learned equal
    classes (class-balanced sampling or loss weighting), equal counts for one trained on images as
    they come (its outputs already carry the training shares), ``None`` where a class has no
    training image (no prior decision then)."""
    counts = np.asarray(class_counts, dtype=float)
    if (counts <= 0).any():
        return None
    evened = config.get("balanced", True) or config.get("class_weighted_loss", False)
    return counts if evened else np.ones_like(counts)


# Fields added after runs were cached, at the values that leave a run as it was: a run's
# identity (its cache key) omits them there, so runs cached before them stay found.
NEUTRAL = {
    "classify_share": 0.0,
    "classify_mask_only": False,
    "restart_at": 0,
    "fit": "pad",
    "codec": "",
    "dropout": 0.0,
    "class_weighted_loss": False,
    "shift": 0,
    "shift_scope": "all",
}


def run_identity(config: TrainConfig) -> dict:
    """The settings that make a run what it is: every field, except those at their :data:`NEUTRAL`
    value and ``gray_beta`` outside gray masks (neither changes what is trained)."""
    return {
        name: value
        for name, value in config.to_dict().items()
        if not (name in NEUTRAL and value == NEUTRAL[name]) and not (name == "gray_beta" and config.mask_mode != "gray")
    }


def build_model(
    config: TrainConfig, n_classes: int, image_channels: int, codec: LatentCodec | None = None
) -> SymmetricFlow | CNNClassifier:
    """A fresh model: :class:`SymmetricFlow` on a UNet preset, or a baseline :class:`CNNClassifier`.

    With ``config.codec`` the flow is latent: ``codec`` (loaded from ``config.codec`` when not given)
    encodes its inputs and masks, and the UNet runs at the latent side.
    """
    if config.preset in BASELINES:
        net = BASELINES[config.preset](image_channels, n_classes)
        return CNNClassifier(net, image_channels, n_classes, fit=config.fit)
    if config.codec and codec is None:
        codec = LatentCodec.from_pretrained(config.codec)
    codec = codec if config.codec else None
    if codec is None:
        channels, side = image_channels + mask_channels(config.mask_mode, n_classes), config.image_size
    else:
        channels, side = 2 * codec.latent_channels, codec.latent_size(config.image_size)
        halvings = len(PRESETS[config.preset]["block_out_channels"]) - 1
        if side % 2**halvings:
            raise ValueError(
                f"{config.image_size} px images become {side} x {side} latents, which the {config.preset!r} UNet "
                f"cannot halve {halvings} times; pick an image size that is a multiple of "
                f"{codec.downsampling * 2**halvings}"
            )
    velocity = VelocityUNet(make_unet(config.preset, channels, sample_size=side, dropout=config.dropout))
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
        config.gray_beta,
        config.classify_share,
        codec,
        config.image_size,
        fit=config.fit,
        classify_mask_only=config.classify_mask_only,
    )


def config_differences(saved: dict, requested: dict, fields=None) -> list[str]:
    """``"name: saved -> requested"`` for every field (of ``fields``, default all) that differs."""
    names = fields or sorted(set(saved) | set(requested))
    if "gray" not in (saved.get("mask_mode"), requested.get("mask_mode")):
        names = [n for n in names if n != "gray_beta"]  # it shapes gray masks only
    return [
        f"{n}: {saved.get(n)!r} in the checkpoint, {requested.get(n)!r} requested"
        for n in names
        if saved.get(n) != requested.get(n)
    ]


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate at ``step`` as a fraction of ``config.lr``.

    Linear warm-up ``step / warmup`` for ``step < warmup``, then the cosine decay
    ``0.5 (1 + cos(pi (step - warmup) / (steps - warmup)))`` down to 0 at ``steps`` (diffusers'
    ``get_cosine_schedule_with_warmup``, which the tests check it against). An extended run
    (``restart_at > 0``) follows, from ``restart_at`` on, a new cosine without warm-up:
    ``0.5 (1 + cos(pi (step - restart_at) / (steps - restart_at)))``.
    """
    start, warmup = (
        (config.restart_at, 0) if config.restart_at and step >= config.restart_at else (0, config.warmup_steps)
    )
    if step < start + warmup:
        return (step - start) / max(1, warmup)
    progress = (step - start - warmup) / max(1, config.steps - start - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
