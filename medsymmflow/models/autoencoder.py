"""The latent codec: a ``diffusers.AutoencoderKL`` that moves images and masks to a latent space and back.

The paper's latent MedSymmFlow runs the flow on Stable Diffusion's VAE latents
(``stabilityai/sd-vae-ft-mse``: 256 px -> 4 x 32 x 32). A KL autoencoder's encoder gives a
diagonal Gaussian ``q(z | x) = N(mu(x), sigma(x)^2)``; the flow sees the *scaled* latent

    z = (e - shift) * scaling,      e ~ q(z | x)  (images: a sample; masks: the mode mu)

and decoding inverts it, ``x_hat = D(z / scaling + shift)``. ``scaling`` (and ``shift``, when
the VAE has one) are read from the model's config - for SD's VAE ``scaling = 0.18215``, chosen
so that the latents of its training images have unit standard deviation, the scale of the
flow's Gaussian noise. Gray images are repeated to 3 channels, as the official code does.

:class:`LatentCodec` wraps one such VAE (frozen, evaluation mode); :func:`train_course_codec`
trains a compact one on a MedMNIST training split (no download), measures its latent standard
deviation to set the scaling factor the same way, and saves it with ``save_pretrained`` so that it
loads back through the same :meth:`LatentCodec.from_pretrained` as SD's VAE.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn
from tqdm.auto import tqdm

SD_VAE = "stabilityai/sd-vae-ft-mse"  # the paper's codec
# Its architecture (the config.json of SD_VAE, with diffusers' default scaling factor, which that file
# leaves implicit): 4 blocks, 8x down-sampling, 4 latent channels, 83.7M parameters. Randomly
# initialised, it measures the codec's cost offline (benchmarks/bench_latent.py) and, narrowed, tests the plumbing.
SD_VAE_ARCHITECTURE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 256,
    "scaling_factor": 0.18215,
}
# A compact codec for 32 px inputs (28 px padded): two halvings, 32 -> 8 x 8 x 4 latents.
COURSE_CODEC = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (16, 32, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 32,
    "mid_block_add_attention": False,
}
COURSE_KL_WEIGHT = 1e-3  # weight of KL(q(z | x) || N(0, I)) per latent element, beside the per-pixel MSE
COURSE_CODEC_STEPS = 400  # about 2 minutes on 2 CPU cores
COURSE_MASK_SHARE = (
    0.5  # share of each codec batch that is random constant-colour masks (0.25 decoded K = 5 palettes wrongly)
)


class CodecUnavailableError(OSError):
    """The codec's weights could not be loaded (no network, unknown model id, missing folder)."""


class LatentCodec(nn.Module):
    """A frozen ``AutoencoderKL`` with the scaling of its config.

    Args:
        vae: the autoencoder (3-channel images in [-1, 1]).
        name: the model id or folder it came from (recorded in checkpoints).
    """

    def __init__(self, vae: AutoencoderKL, name: str = ""):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.name = name
        self._identity: str | None = None

    @classmethod
    def from_pretrained(cls, name_or_folder: str | os.PathLike, device: str | torch.device = "cpu") -> LatentCodec:
        """Load a codec from the Hugging Face hub (e.g. :data:`SD_VAE`) or from a ``save_pretrained`` folder.

        Raises:
            CodecUnavailableError: the weights could not be loaded; the message says how to work
                offline (``HF_HUB_OFFLINE``, a local folder).
        """
        name = str(name_or_folder)
        try:
            vae = AutoencoderKL.from_pretrained(name)
        except OSError as error:
            if _looks_like_folder(name):
                what = f"no AutoencoderKL could be read from the folder {name} ({' '.join(str(error).split())[:200]})"
            else:
                why = (
                    "HF_HUB_OFFLINE is set, so only the local cache was read"
                    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
                    else "the hub could not be reached and the local cache does not hold it"
                )
                what = f"the codec {name!r} could not be loaded ({why})"
            raise CodecUnavailableError(
                f"{what}. Download it once while online (AutoencoderKL.from_pretrained({name!r}) fills the "
                "cache; HF_HUB_OFFLINE=1 then reads it from there), or point --codec at a local folder written "
                "by save_pretrained - e.g. the course codec that medsymmflow.models.autoencoder.train_course_codec "
                "trains offline."
            ) from None
        return cls(vae, name).to(device)

    def describe(self) -> dict:
        """What a checkpoint records of its codec: name, fingerprint, scaling, shift, downsampling."""
        return {
            "name": self.name,
            "identity": self.identity,
            "scaling_factor": self.scaling_factor,
            "shift_factor": self.shift_factor,
            "downsampling": self.downsampling,
        }

    @property
    def scaling_factor(self) -> float:
        """The config's ``scaling_factor`` (SD's VAE: 0.18215)."""
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        """The config's ``shift_factor``, 0 when it has none (SD 1.x VAEs)."""
        return float(self.vae.config.shift_factor or 0.0)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def downsampling(self) -> int:
        """Pixels per latent along a side: ``2 ** (blocks - 1)`` (SD's VAE: 8)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def identity(self) -> str:
        """A fingerprint of the weights and config (sha256), the codec's part of a latent-cache key; the same
        wherever the folder lies and whichever diffusers version wrote it."""
        if self._identity is None:
            # the architecture and scaling only: not the bookkeeping keys (_name_or_path, _diffusers_version...)
            settings = sorted((k, v) for k, v in self.vae.config.items() if not k.startswith("_"))
            digest = hashlib.sha256(repr(settings).encode())
            for key, value in sorted(self.vae.state_dict().items()):
                digest.update(key.encode())
                digest.update(value.detach().cpu().float().numpy().tobytes())
            self._identity = digest.hexdigest()
        return self._identity

    def latent_size(self, image_size: int) -> int:
        """The latent side of ``image_size`` px inputs.

        Raises:
            ValueError: the size is not a multiple of :attr:`downsampling`.
        """
        if image_size % self.downsampling:
            raise ValueError(
                f"the codec halves an image {int(math.log2(self.downsampling))} times, so the image size must be "
                f"a multiple of {self.downsampling}; got {image_size} (pad 28 px to 32, resize 224 px to 256)."
            )
        return image_size // self.downsampling

    def scale(self, latents: torch.Tensor) -> torch.Tensor:
        """``(e - shift) * scaling``: the VAE's latent as the flow sees it."""
        return (latents - self.shift_factor) * self.scaling_factor

    def unscale(self, latents: torch.Tensor) -> torch.Tensor:
        """``z / scaling + shift``: the inverse of :meth:`scale`."""
        return latents / self.scaling_factor + self.shift_factor

    @torch.no_grad()
    def encode_images(
        self, images: torch.Tensor, generator: torch.Generator | None = None, batch_size: int = 64
    ) -> torch.Tensor:
        """Scaled latents ``(e - shift) * scaling`` of images in [-1, 1], ``e ~ q(z | x)`` (a sample,
        drawn from ``generator``); gray images are repeated to 3 channels. Shape (N, C_z, S / f, S / f)."""
        return self._encode(images, generator, batch_size, sample=True)

    @torch.no_grad()
    def encode_masks(self, masks: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Scaled latents of RGB masks in [-1, 1] by the posterior's mode ``mu(x)``, as the official code does."""
        return self._encode(masks, None, batch_size, sample=False)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Images ``D(z / scaling + shift)`` (3 channels, about [-1, 1]) of scaled latents."""
        device = self._device
        parts = [
            self.vae.decode(self.unscale(latents[i : i + batch_size].to(device))).sample
            for i in range(0, len(latents), batch_size)
        ]
        return torch.cat(parts).to(latents.device)

    @torch.no_grad()
    def decode_images(self, latents: torch.Tensor, channels: int) -> torch.Tensor:
        """:meth:`decode` with ``channels`` channels: 3 as decoded, 1 (gray data) their mean."""
        if channels not in (1, 3):
            raise ValueError(f"images have 1 (gray) or 3 (RGB) channels, not {channels}")
        decoded = self.decode(latents)
        return decoded.mean(dim=1, keepdim=True) if channels == 1 else decoded

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``D(E(x))`` with the images' own channels (:meth:`decode_images`)."""
        return self.decode_images(self.encode_images(images, generator), images.shape[1])

    def _encode(self, images: torch.Tensor, generator, batch_size: int, sample: bool) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1 or 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        self.latent_size(images.shape[-1])
        device = self._device
        parts = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            batch = as_rgb(batch)
            posterior = self.vae.encode(batch).latent_dist
            if sample:
                noise = torch.randn(
                    posterior.mean.shape, generator=generator, device=generator.device if generator else device
                )
                latents = posterior.mean + posterior.std * noise.to(device)
            else:
                latents = posterior.mode()
            parts.append(self.scale(latents))
        return torch.cat(parts).to(images.device)

    @property
    def _device(self) -> torch.device:
        return next(self.vae.parameters()).device


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """Gray images (N, 1, H, W) repeated to 3 channels, as the codec's encoder takes them; RGB ones as they are."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _looks_like_folder(name: str) -> bool:
    """A path rather than a hub id (``owner/name``)."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def course_vae(seed: int = 0, **overrides) -> AutoencoderKL:
    """A fresh compact ``AutoencoderKL`` (:data:`COURSE_CODEC`), initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**{**COURSE_CODEC, **overrides})


def codec_loss(
    vae: AutoencoderKL, images: torch.Tensor, kl_weight: float = COURSE_KL_WEIGHT, generator=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The VAE objective ``MSE(D(e), x) + kl_weight * KL(q(z | x) || N(0, I)) / (latent elements)``.

    Both terms are means per element: the reconstruction over pixels, the KL (diffusers'
    ``DiagonalGaussianDistribution.kl``, summed over a latent) divided by its size.

    Returns:
        ``(total, reconstruction MSE, KL per latent element)``.
    """
    posterior = vae.encode(images).latent_dist
    latents = posterior.sample(generator)
    reconstruction = torch.mean((vae.decode(latents).sample - images) ** 2)
    kl = posterior.kl().mean() / latents[0].numel()
    return reconstruction + kl_weight * kl, reconstruction, kl


def train_course_codec(
    images: torch.Tensor,
    out_dir: str | os.PathLike,
    steps: int = COURSE_CODEC_STEPS,
    batch_size: int = 64,
    lr: float = 2e-3,
    kl_weight: float = COURSE_KL_WEIGHT,
    mask_share: float = COURSE_MASK_SHARE,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[LatentCodec, list[dict]]:
    """Train :func:`course_vae` on training images, set its scaling factor, save it, load it back.

    AdamW with a cosine decay; after training, ``scaling_factor = 1 / std(e)`` over the training
    images' latents ``e ~ q(z | x)`` (how SD's 0.18215 was chosen), written into the config before
    ``save_pretrained(out_dir)``. The codec returned is read back from ``out_dir`` by
    :meth:`LatentCodec.from_pretrained`, the path SD's VAE takes.

    A share ``mask_share`` of every batch is constant-colour masks of uniformly random RGB colours
    (dequantized with the paper's width 4 / 127.5): the codec must carry the masks the flow
    transports as well as the images, and one trained on gray X-rays alone has never seen a colour.

    Args:
        images: training images (N, 1 or 3, 32, 32) in [-1, 1]; gray ones are repeated to 3 channels.

    Returns:
        ``(codec, history)``: ``history`` has the step, reconstruction MSE and KL every 10 steps.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1 or 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    images = as_rgb(images)
    vae = course_vae(seed, sample_size=images.shape[-1]).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    data_generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
    history = []
    n_masks = round(mask_share * batch_size)
    for step in tqdm(range(steps), desc="course codec", disable=not progress, mininterval=1.0):
        batch = images[torch.randint(len(images), (batch_size - n_masks,), generator=data_generator)]
        colours = torch.rand(n_masks, 3, 1, 1, generator=data_generator) * 2 - 1
        masks = colours + (torch.rand(n_masks, 3, *batch.shape[-2:], generator=data_generator) - 0.5) * (4 / 127.5)
        batch = torch.cat([batch, masks]).to(device)
        loss, reconstruction, kl = codec_loss(vae, batch, kl_weight, noise_generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % 10 == 0 or step + 1 == steps:
            history.append({"step": step + 1, "mse": reconstruction.item(), "kl": kl.item()})
    vae.eval()
    with torch.no_grad():
        unscaled = torch.cat(
            [
                vae.encode(images[i : i + 256].to(device)).latent_dist.sample(noise_generator)
                for i in range(0, len(images), 256)
            ]
        )
    vae.register_to_config(scaling_factor=float(1.0 / unscaled.std()), shift_factor=None)
    from medsymmflow.checkpoints import swap_in  # here: checkpoints imports the models

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp)  # written beside, then swapped in whole: a codec already there stays intact until then
    swap_in(tmp, out_dir)
    return LatentCodec.from_pretrained(out_dir, device), history
