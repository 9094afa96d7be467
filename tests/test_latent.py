"""The latent codec, the latent cache and latent MedSymmFlow on the CPU, with small local codecs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from medsymmflow.checkpoints import load_checkpoint
from medsymmflow.data import synthetic_twin
from medsymmflow.data.masks import centre_distances, labels_to_masks
from medsymmflow.latents import cache_key, cached_latents, course_codec, split_inputs
from medsymmflow.metrics import reconstruction_quality
from medsymmflow.models.autoencoder import (
    SD_VAE,
    SD_VAE_ARCHITECTURE,
    CodecUnavailableError,
    LatentCodec,
    codec_loss,
    course_vae,
    train_course_codec,
)
from medsymmflow.recipes import ConfigMismatchError, TrainConfig, build_model
from medsymmflow.train import Trainer

# Stable Diffusion's VAE architecture (its block types, 4 latent channels, 8x down-sampling and scaling
# factor), narrowed to 32 channels a block so that it is small and quick.
SD_ARCHITECTURE = {
    **SD_VAE_ARCHITECTURE,
    "block_out_channels": (32, 32, 32, 32),
    "layers_per_block": 1,
    "sample_size": 64,
}


@pytest.fixture(scope="module")
def sd_like_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("sd_like")
    AutoencoderKL(**SD_ARCHITECTURE).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def twin():
    return synthetic_twin("pneumoniamnist", max_per_split=64, seed=1)


@pytest.fixture(scope="module")
def trained_codec(tmp_path_factory, twin):
    images, _ = twin.tensors("train", 32)
    codec, history = train_course_codec(images, tmp_path_factory.mktemp("codec") / "course", steps=30, batch_size=16)
    return codec, history


def test_sd_architecture_folder_loads_with_its_config_scaling(sd_like_folder):
    codec = LatentCodec.from_pretrained(sd_like_folder)
    assert codec.scaling_factor == pytest.approx(0.18215)
    assert codec.shift_factor == 0.0
    assert codec.downsampling == 8 and codec.latent_channels == 4
    images = torch.rand(3, 1, 64, 64) * 2 - 1
    latents = codec.encode_images(images, torch.Generator().manual_seed(0))
    assert latents.shape == (3, 4, 8, 8)
    assert codec.decode(latents).shape == (3, 3, 64, 64)
    # gray data: one channel, the mean of the three decoded
    torch.testing.assert_close(codec.decode_images(latents, 1), codec.decode(latents).mean(dim=1, keepdim=True))
    # masks: the posterior's mode, scaled by the config's factor; gray repeated to 3 channels
    mode = codec.vae.encode(images.expand(-1, 3, -1, -1)).latent_dist.mode()
    torch.testing.assert_close(codec.encode_masks(images), mode * 0.18215)


def test_scaling_and_shift_are_read_from_the_config_not_a_literal(tmp_path):
    torch.manual_seed(0)
    AutoencoderKL(**{**SD_ARCHITECTURE, "scaling_factor": 0.5, "shift_factor": 0.1}).save_pretrained(tmp_path)
    codec = LatentCodec.from_pretrained(tmp_path)
    assert (codec.scaling_factor, codec.shift_factor) == (0.5, pytest.approx(0.1))
    e = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(codec.scale(e), (e - 0.1) * 0.5)
    torch.testing.assert_close(codec.unscale(codec.scale(e)), e)


def test_sampled_image_latents_are_seeded(sd_like_folder):
    codec = LatentCodec.from_pretrained(sd_like_folder)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    first, again = (codec.encode_images(images, torch.Generator().manual_seed(5)) for _ in range(2))
    other = codec.encode_images(images, torch.Generator().manual_seed(6))
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_sizes_the_codec_cannot_halve_are_refused(sd_like_folder):
    codec = LatentCodec.from_pretrained(sd_like_folder)
    with pytest.raises(ValueError, match="multiple of 8"):
        codec.encode_images(torch.zeros(1, 1, 28, 28))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CodecUnavailableError, match="no AutoencoderKL could be read from the folder"):
        LatentCodec.from_pretrained(tmp_path / "nowhere")


def test_offline_hub_id_names_the_model_the_switch_and_the_local_folder_way():
    code = (
        "from medsymmflow.models.autoencoder import LatentCodec, SD_VAE\n"
        "try:\n    LatentCodec.from_pretrained(SD_VAE)\n"
        "except OSError as e:\n    print(type(e).__name__, '|', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300).stdout
    assert out.startswith("CodecUnavailableError |"), out
    assert SD_VAE in out and "HF_HUB_OFFLINE=1" in out and "save_pretrained" in out
    assert "Traceback" not in out and len(out.splitlines()) == 1


def test_course_codec_is_saved_with_its_measured_scaling_and_loaded_back(trained_codec, twin):
    codec, history = trained_codec
    saved = json.loads((Path(codec.name) / "config.json").read_text())
    assert saved["scaling_factor"] == pytest.approx(codec.scaling_factor)
    images, _ = twin.tensors("train", 32)
    latents = codec.encode_images(images, torch.Generator().manual_seed(1))
    assert latents.shape == (len(images), 4, 8, 8)
    assert float(latents.std()) == pytest.approx(1.0, abs=0.05)  # scaling = 1 / std of the training latents
    assert history[-1]["mse"] < history[0]["mse"]


def test_codec_loss_terms_are_what_they_say():
    vae = course_vae(seed=2)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    total, reconstruction, kl = codec_loss(vae, images, kl_weight=0.25, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(total, reconstruction + 0.25 * kl)
    posterior = vae.encode(images).latent_dist
    torch.testing.assert_close(kl, posterior.kl().mean() / posterior.mean[0].numel())


def test_retraining_into_the_same_folder_replaces_the_codec_whole(tmp_path, twin):
    images, _ = twin.tensors("train", 32)
    first, _ = train_course_codec(images[:16], tmp_path / "c", steps=1, batch_size=4, progress=False)
    second, _ = train_course_codec(images[:16], tmp_path / "c", steps=2, batch_size=4, progress=False)
    assert first.identity != second.identity
    assert LatentCodec.from_pretrained(tmp_path / "c").identity == second.identity
    assert not list(tmp_path.glob(".c*"))


def test_latent_cache_reuses_and_invalidates(tmp_path, trained_codec, twin, monkeypatch):
    codec, _ = trained_codec
    first = cached_latents(codec, twin, "val", 32, cache=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    monkeypatch.setattr(codec, "encode_images", lambda *a, **k: pytest.fail("a cached split was encoded again"))
    torch.testing.assert_close(cached_latents(codec, twin, "val", 32, cache=tmp_path), first)
    monkeypatch.undo()
    key = cache_key(codec, twin, "val", 32, "pad", 0)
    changed = synthetic_twin("pneumoniamnist", max_per_split=64, seed=1)
    changed.arrays["val_images"] = changed.arrays["val_images"].copy()
    changed.arrays["val_images"][0, 0, 0] ^= 1
    assert cache_key(codec, changed, "val", 32, "pad", 0) != key  # other data
    other = LatentCodec(course_vae(seed=9), "other")
    assert cache_key(other, twin, "val", 32, "pad", 0) != key  # other codec
    assert cache_key(codec, twin, "val", 32, "pad", 1) != key  # another draw
    cached_latents(other, twin, "val", 32, cache=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_a_damaged_cache_file_is_encoded_again(tmp_path, trained_codec, twin):
    codec, _ = trained_codec
    first = cached_latents(codec, twin, "val", 32, cache=tmp_path)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(b"not safetensors")
    torch.testing.assert_close(cached_latents(codec, twin, "val", 32, cache=tmp_path), first)


def _latent_config(codec_folder, **overrides) -> TrainConfig:
    settings = dict(
        dataset="pneumoniamnist",
        image_size=32,
        codec=str(codec_folder),
        steps=4,
        batch_size=8,
        checkpoint_every=2,
        warmup_steps=1,
        allow_synthetic=True,
    )
    return TrainConfig(**{**settings, **overrides})


def test_latent_model_classifies_and_generates_with_the_shapes_it_says(trained_codec, twin, tmp_path):
    codec, _ = trained_codec
    model = build_model(_latent_config(codec.name), twin.n_classes, twin.n_channels, codec=codec)
    assert model.image_channels == model.mask_channels == 4 and model.pixel_channels == 1
    inputs, labels = split_inputs(model, twin, "val", 32, cache=tmp_path)
    assert inputs.shape == (len(labels), 4, 8, 8)
    assert torch.isfinite(model.loss(inputs[:8], labels[:8]).total)
    decoded = model.classify(inputs[:5], n_samples=2)
    assert decoded.distances.shape == (5, 2) and decoded.masks.shape == (5, 3, 32, 32)
    with model.reading(mask_space="latent"):
        direct = model.classify(inputs[:5])
    assert model.mask_space == "pixel"
    assert direct.distances.shape == (5, 2) and direct.masks.shape == (5, 4, 8, 8)
    generated = model.generate(torch.tensor([0, 1, 1]), 32, steps=2, return_trajectory=True)
    assert generated.images.shape == (3, 1, 32, 32) and generated.trajectory.shape == (3, 3, 8, 8, 8)
    with pytest.raises(ValueError, match="image latents"):
        model.classify(torch.zeros(2, 1, 32, 32))


def test_latent_class_masks_are_the_codec_encoding_of_the_class_colours(trained_codec):
    codec, _ = trained_codec
    model = build_model(_latent_config(codec.name), 2, 1, codec=codec)
    exact = labels_to_masks(torch.arange(2), 2, 32, "rgb")
    torch.testing.assert_close(model.masks(torch.arange(2), 8), codec.encode_masks(exact))
    dequantized = model.masks(torch.tensor([0, 0, 1]), 8, beta=4.0, generator=torch.Generator().manual_seed(0))
    assert dequantized.shape == (3, 4, 8, 8)
    # the bank: latents of masks dequantized with the paper's small width around each class colour
    spread = (model.mask_bank - model.mask_centres[:, None]).flatten(2).norm(dim=2)
    gap = (model.mask_centres[0] - model.mask_centres[1]).norm()
    assert 0 < spread.min() and spread.max() < 0.25 * gap


def test_latent_configs_are_checked():
    with pytest.raises(ValueError, match="RGB masks"):
        TrainConfig(codec="somewhere", mask_mode="gray")
    with pytest.raises(ValueError, match="without --codec"):
        TrainConfig(codec="somewhere", preset="cnn-small")
    with pytest.raises(ValueError, match="fit must be one of"):
        TrainConfig(fit="stretch")
    TrainConfig(size=224, image_size=256, fit="resize", codec=SD_VAE)  # the paper's latent setting


def test_latent_training_checkpoints_the_codec_and_refuses_a_changed_one(tmp_path, twin, monkeypatch):
    monkeypatch.setattr("medsymmflow.latents.latents_dir", lambda: tmp_path / "latents")
    images, _ = twin.tensors("train", 32)
    folder = tmp_path / "codec"
    train_course_codec(images, folder, steps=2, batch_size=8, progress=False)
    config = _latent_config(folder)
    result = Trainer(config, tmp_path / "run", data=twin, progress=False).train()
    model, meta = load_checkpoint(result.best_dir)
    assert meta["codec"]["identity"] == model.codec.identity and meta["config"]["codec"] == str(folder)
    assert model.net.unet.config.sample_size == 8
    train_course_codec(images, folder, steps=3, batch_size=8, progress=False)  # the codec changes under the run
    with pytest.raises(ConfigMismatchError, match="another codec"):
        load_checkpoint(result.best_dir)


def test_reconstruction_quality_has_the_closed_form_psnr():
    original = torch.rand(3, 1, 16, 16) * 1.6 - 0.8
    quality = reconstruction_quality(original, original + 0.1)  # MSE 0.01 on a data range of 2
    assert quality["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-6)
    assert 0 < quality["ssim"] < 1
    assert reconstruction_quality(original, original)["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        reconstruction_quality(original, original[:2])


def test_centre_distances_are_the_mean_pixel_distance_to_image_centres():
    centres = torch.zeros(2, 4, 3, 3)
    centres[1] += 1.0  # class 1's centre is 2 away from class 0's in every position (4 channels of 1)
    masks = torch.zeros(1, 4, 3, 3)
    masks[..., 0, :] = 1.0  # one row at class 1, two at class 0
    torch.testing.assert_close(centre_distances(masks, centres), torch.tensor([[2 / 3, 4 / 3]]))
    with pytest.raises(ValueError, match="must agree"):
        centre_distances(masks, centres[:, :3])


def test_course_codec_is_trained_once_per_data_and_settings(tmp_path, twin, monkeypatch):
    first, history = course_codec(twin, steps=2, root=tmp_path, progress=False)
    monkeypatch.setattr("medsymmflow.latents.train_course_codec", lambda *a, **k: pytest.fail("trained again"))
    again, history_again = course_codec(twin, steps=2, root=tmp_path, progress=False)
    assert again.identity == first.identity and history_again == history and Path(again.name).is_absolute()
    monkeypatch.undo()
    other, _ = course_codec(twin, steps=3, root=tmp_path, progress=False)  # other settings: another folder
    assert other.name != first.name and len(list(tmp_path.glob("codec_*"))) == 2


def test_the_same_run_baseline_follows_its_flow():
    from medsymmflow.config import profile
    from medsymmflow.recipes import course_config, same_run_baseline

    flow = course_config("retinamnist", profile("fast"), seed=4)
    cnn = same_run_baseline(flow, profile("fast"))
    assert (cnn.preset, cnn.seed, cnn.steps, cnn.checkpoint_every, cnn.classify_share) == (
        "cnn-small",
        4,
        flow.steps,
        flow.checkpoint_every,
        0.0,
    )
    # every image the CNN sees is a classification input: it gets the flow's shifts on all of them
    assert (flow.shift, flow.shift_scope, cnn.shift, cnn.shift_scope) == (2, "classify", 2, "all")
    unshifted = course_config("retinamnist", profile("fast"), shift=0)
    assert same_run_baseline(unshifted, profile("fast")).shift == 0
    # the same data: a synthetic 16 px flow gets a synthetic 16 px CNN
    small = course_config("pneumoniamnist", profile("fast"), size=16, image_size=16, allow_synthetic=True, steps=20)
    twin = same_run_baseline(small, profile("fast"))
    assert (twin.size, twin.image_size, twin.allow_synthetic, twin.steps, twin.shift) == (16, 16, True, 20, 2)
    assert same_run_baseline(course_config("retinamnist", profile("full")), profile("full")).preset == "resnet18"
    # sized by a training split instead of the flow's steps: the fast recipe's length for it
    from medsymmflow.recipes import FAST_CHECKPOINT_EVERY, fast_steps

    judge = same_run_baseline(small, profile("fast"), n_train=546)
    assert (judge.steps, judge.checkpoint_every) == (fast_steps(546), FAST_CHECKPOINT_EVERY) == (300, 150)
    assert (judge.size, judge.image_size, judge.shift) == (16, 16, 2)
    full_flow = course_config("retinamnist", profile("full"))
    assert same_run_baseline(full_flow, profile("fast"), n_train=1080).steps == fast_steps(1080)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        same_run_baseline(flow, profile("fast"), n_train=0)
    resized = course_config("pneumoniamnist", profile("fast"), fit="resize", image_size=32, shift=0)
    assert same_run_baseline(resized, profile("fast")).fit == "resize"  # the judge sees the flow's inputs


def test_the_training_prior_is_added_only_where_a_run_learned_equal_classes():
    from medsymmflow.recipes import training_prior

    counts = [486, 52, 83]
    np.testing.assert_array_equal(training_prior({"balanced": True}, counts), counts)
    np.testing.assert_array_equal(training_prior({}, counts), counts)  # balanced is the default
    np.testing.assert_array_equal(training_prior({"balanced": False, "class_weighted_loss": True}, counts), counts)
    # images as they come: the outputs already carry the training shares, so no prior is added twice
    np.testing.assert_array_equal(training_prior({"balanced": False}, counts), [1, 1, 1])
    assert training_prior({}, [486, 0, 83]) is None  # a class without training images: no prior decision


def test_cli_trains_the_codec_then_a_latent_model_then_evaluates_and_samples_it(tmp_path, monkeypatch, capsys):
    from conftest import tiny_train

    from medsymmflow.cli import main

    monkeypatch.setattr("medsymmflow.latents.runs_dir", lambda: tmp_path / "runs")
    codec_args = ["codec", "--dataset", "breastmnist", "--steps", "2", "--allow-synthetic", "--data-root"]
    assert main([*codec_args, str(tmp_path / "none")]) == 0
    folder = json.loads(capsys.readouterr().out)["codec"]
    assert Path(folder, "config.json").exists() and Path(folder).is_relative_to(tmp_path / "runs" / "models")
    train = tiny_train(tmp_path / "none") + ["--codec", folder, "--image-size", "32", "--out", str(tmp_path / "run")]
    assert main(train) == 0
    assert json.loads((tmp_path / "run" / "best" / "config.json").read_text())["codec"]["name"] == folder
    assert main(["evaluate", str(tmp_path / "run" / "best"), "--out", str(tmp_path / "eval")]) == 0
    assert main(["sample", str(tmp_path / "run" / "best"), "--n", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
