"""Trainer behaviour on CPU with a tiny model and a small synthetic set."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medsymmflow import course
from medsymmflow import train as train_module
from medsymmflow.checkpoints import load_checkpoint, read_checkpoint_meta
from medsymmflow.data import shift_images, synthetic_twin
from medsymmflow.recipes import ConfigMismatchError, TrainConfig, build_model
from medsymmflow.train import NonFiniteLossError, Trainer


def _config(**overrides):
    settings = dict(
        dataset="retinamnist",
        steps=6,
        batch_size=8,
        checkpoint_every=3,
        warmup_steps=2,
        flip=True,
        balanced=True,
        seed=3,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def data():
    twin = synthetic_twin("retinamnist", max_per_split=48)
    # The test split is poisoned: training must never read it.
    twin.arrays["test_images"] = np.zeros((1, 2), dtype=np.float64)
    return twin


def _weights(folder):
    return {name: load_file(folder / name) for name in ("model.safetensors", "ema.safetensors")}


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path, data):
    whole = Trainer(_config(), tmp_path / "whole", data=data, progress=False).train()
    Trainer(_config(), tmp_path / "killed", data=data, progress=False).train(until_step=3)
    assert json.loads((tmp_path / "killed" / "last" / "config.json").read_text())["step"] == 3
    resumed = Trainer(_config(), tmp_path / "killed", data=data, resume=True, progress=False)
    assert resumed.step == 3
    result = resumed.train()
    assert result.step == whole.step == 6
    a, b = _weights(tmp_path / "whole" / "last"), _weights(tmp_path / "killed" / "last")
    for file in a:
        for key in a[file]:
            assert torch.equal(a[file][key], b[file][key]), (file, key)
    assert result.history == whole.history


def test_checkpoints_hold_config_metrics_and_best_on_validation(tmp_path, data):
    result = Trainer(_config(), tmp_path, data=data, progress=False).train()
    meta = json.loads((tmp_path / "last" / "config.json").read_text())
    assert meta["config"] == _config().to_dict() and meta["step"] == 6 and meta["n_classes"] == 5
    assert [h["step"] for h in meta["history"]] == [3, 6]
    assert {"val_acc", "val_auc", "val_balanced_accuracy", "train_loss"} <= set(meta["history"][0])
    best = max(meta["history"], key=lambda h: h["val_auc"])
    assert result.best_step == best["step"] == json.loads((tmp_path / "best" / "config.json").read_text())["step"]
    model, best_meta = load_checkpoint(tmp_path / "best", expected=_config())
    assert best_meta["synthetic_data"] is True and not model.training


def test_crash_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path, data, monkeypatch):
    trainer = Trainer(_config(), tmp_path, data=data, progress=False)
    trainer.train(until_step=3)
    before = _weights(tmp_path / "last")
    calls = {"n": 0}
    real_save = train_module.save_file

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed mid-save")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(train_module, "save_file", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.undo()
    after = _weights(tmp_path / "last")
    assert all(torch.equal(before[f][k], after[f][k]) for f in before for k in before[f])
    assert json.loads((tmp_path / "last" / "config.json").read_text())["step"] == 3
    assert Trainer(_config(), tmp_path, data=data, resume=True, progress=False).step == 3


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    trainer = Trainer(_config(), tmp_path, data=data, progress=False)
    trainer.train(until_step=3)
    good = _weights(tmp_path / "last")
    real_loss = trainer.model.loss

    def nan_loss(*args, **kwargs):
        parts = real_loss(*args, **kwargs)
        parts.total = parts.total * float("nan")
        return parts

    monkeypatch.setattr(trainer.model, "loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 4.*holds step 3 and is intact"):
        trainer.train()
    after = _weights(tmp_path / "last")
    assert all(torch.equal(good[f][k], after[f][k]) for f in good for k in good[f])


def test_mismatched_configs_are_refused_with_the_differing_fields(tmp_path, data):
    Trainer(_config(), tmp_path, data=data, progress=False).train(until_step=3)
    with pytest.raises(ConfigMismatchError, match=r"lr: 0.001 in the checkpoint, 0.002 requested"):
        Trainer(_config(lr=2e-3), tmp_path, data=data, resume=True, progress=False)
    with pytest.raises(ConfigMismatchError, match=r"preset: 'tiny' in the checkpoint, 'paper-pixel' requested"):
        load_checkpoint(tmp_path / "last", expected=_config(preset="paper-pixel", image_size=32))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"preset": "huge"}, "preset must be one of"),
        ({"lr": -1.0}, "lr must be positive"),
        ({"image_size": 16}, "image_size"),
        ({"select_metric": "f1"}, "select_metric"),
        ({"gray_beta": 0.0}, "gray_beta must be positive"),
        ({"decoding": "mode"}, "decoding must be one of"),
        ({"dataset": "pneumonia"}, "Unknown MedMNIST flag"),
    ],
)
def test_bad_configs(overrides, match):
    with pytest.raises(ValueError, match=match):
        _config(**overrides)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing")


def test_course_config_profiles():
    from medsymmflow.config import Profile
    from medsymmflow.recipes import course_config, run_identity

    fast = course_config("pneumoniamnist", Profile("fast"))
    assert (fast.preset, fast.image_size, fast.steps, fast.classify_share) == ("tiny", 28, 600, 0.25)
    assert course_config("pneumoniamnist", Profile("fast"), n_train=546).steps == 300  # sized by the split
    assert course_config("pneumoniamnist", Profile("fast"), n_train=np.int64(546)).steps == 300
    assert course_config("pneumoniamnist", Profile("fast"), n_train=546, steps=40).steps == 40  # overridable
    assert course_config("pneumoniamnist", Profile("full"), epochs=1, n_train=640).steps == 10  # full sized too
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        course_config("pneumoniamnist", Profile("full"), n_train=0)
    assert course_config("pneumoniamnist", Profile("fast"), classify_share=0.0).classify_share == 0.0  # overridable
    assert course_config("pneumoniamnist", Profile("fast"), preset="cnn-small").classify_share == 0.0  # no t in a CNN
    # the fast recipe shifts the inputs of its t = 1 share; what has no such share (or trains on latents) is unshifted
    assert (fast.shift, fast.shift_scope) == (2, "classify")
    for unshifted in (
        dict(preset="cnn-small"),
        dict(classify_share=0.0),
        dict(codec="runs/models/codec", image_size=32),
        dict(shift=0),
    ):
        run = course_config("pneumoniamnist", Profile("fast"), **unshifted)
        assert run.shift == 0, unshifted
    # without shifts the scope changes nothing, and the run keeps the key of a run without the field
    assert run_identity(course_config("pneumoniamnist", Profile("fast"), shift=0)) == run_identity(
        course_config("pneumoniamnist", Profile("fast"), shift=0, shift_scope="all")
    )
    assert course_config("pneumoniamnist", Profile("fast"), preset="cnn-small", shift=2).shift == 2  # overridable
    # asked for shifts without a t = 1 share, a flow shifts every image (no scope left over from the recipe)
    every = course_config("pneumoniamnist", Profile("fast"), classify_share=0.0, shift=2)
    assert (every.shift, every.shift_scope) == (2, "all")
    assert course_config("pneumoniamnist", Profile("fast"), shift=0).shift_scope == "all"  # one spelling without shifts
    full = course_config("pneumoniamnist", Profile("full"), seed=4)
    assert (full.preset, full.image_size, full.lr, full.seed, full.classify_share) == ("paper-pixel", 32, 4e-4, 4, 0.0)
    assert full.steps == 100 * 74  # 100 epochs of 4,708 images in batches of 64
    assert (full.warmup_steps, full.checkpoint_every) == (370, 740)  # 5 % warm-up, validation every tenth
    assert full.shift == 0  # the paper's training: no shifts
    short = course_config("pneumoniamnist", Profile("full"), steps=300)
    assert (short.steps, short.warmup_steps, short.checkpoint_every) == (300, 15, 30)  # they follow overridden steps


@pytest.mark.parametrize(
    ("n_train", "steps"),
    [
        (1, 300),  # the floor
        (546, 300),  # BreastMNIST and the recipe study's stand-in: 35 epochs are 299 steps, two intervals
        (685, 300),  # 2.497 intervals
        (686, 450),  # 2.501 intervals
        (800, 450),  # 437 steps, rounded to three intervals
        (959, 450),
        (960, 600),  # 3.5 intervals round to four
        (1080, 600),  # RetinaMNIST: 591 steps, four intervals
        (4708, 600),  # PneumoniaMNIST: the ceiling (8 epochs)
        (165_466, 600),  # TissueMNIST: the ceiling
    ],
)
def test_fast_steps_are_sized_by_the_training_split(n_train, steps):
    from medsymmflow.recipes import FAST_CHECKPOINT_EVERY, fast_steps

    assert fast_steps(n_train) == steps and steps % FAST_CHECKPOINT_EVERY == 0


@pytest.mark.parametrize("bad", [0, -5, 2.5, "546", True])
def test_fast_steps_refuse_what_is_not_a_count(bad):
    from medsymmflow.recipes import fast_steps

    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        fast_steps(bad)


def test_train_or_load_trains_once_then_loads(tmp_path, data, monkeypatch):
    monkeypatch.setattr(course, "runs_dir", lambda: tmp_path)
    config = _config(steps=2, checkpoint_every=2)
    model, meta = course.train_or_load(config, data)
    folder = course.run_dir(config, synthetic=True)
    assert folder.parent == tmp_path / "models" and folder.name.startswith(
        "retinamnist-synthetic_tiny_28px_2steps_seed3_"
    )
    assert folder != course.run_dir(config, synthetic=False)

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded the checkpoint")

    monkeypatch.setattr(course, "Trainer", no_training)
    again, meta_again = course.train_or_load(config, data)
    assert meta_again["step"] == meta["step"] == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_train_or_load_resumes_a_run_killed_after_its_first_validation(tmp_path, data):
    config = _config()
    folder = course.run_dir(config, data.synthetic, tmp_path)
    Trainer(config, folder, data=data, progress=False).train(until_step=3)  # best/ and last/ at step 3, then "killed"
    assert (folder / "best" / "config.json").exists()
    _, meta = course.train_or_load(config, data, progress=False, root=tmp_path)
    assert meta["step"] <= 6 and read_checkpoint_meta(folder / "last")["step"] == 6
    assert [h["step"] for h in meta["history"]] == [3, 6]  # the whole run's record, wherever best/ is
    assert meta["history"] == read_checkpoint_meta(folder / "last")["history"]


def test_train_or_load_returns_the_whole_history_when_validation_picks_an_early_step(tmp_path, data, monkeypatch):
    from medsymmflow import train

    scores, evaluate = iter([0.9, 0.5]), train.evaluate_split

    def declining(*args, **kwargs):  # the first validation scores best, so best/ is step 3 of 6
        metrics, details = evaluate(*args, **kwargs)
        return {**metrics, "auc": next(scores)}, details

    monkeypatch.setattr(train, "evaluate_split", declining)
    _, meta = course.train_or_load(_config(), data, progress=False, root=tmp_path)
    assert meta["step"] == 3 and [h["step"] for h in meta["history"]] == [3, 6]


def test_a_checkpoint_written_before_the_paper_options_existed_loads_as_it_was_trained(tmp_path, data):
    legacy = _config(steps=3, palette_index="round", decoding="mean_colour")  # what every checkpoint before used
    Trainer(legacy, tmp_path, data=data, progress=False).train()
    meta_path = tmp_path / "best" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["palette_index"], meta["config"]["decoding"]  # as written by medsymmflow before these fields
    meta_path.write_text(json.dumps(meta))
    model, loaded = load_checkpoint(tmp_path / "best")
    assert loaded["config"]["palette_index"] == "round" and model.decoding == "mean_colour"
    assert torch.allclose(model.colours, build_model(legacy, 5, 3).colours)
    assert not torch.allclose(model.colours, build_model(_config(), 5, 3).colours)  # K = 5: they differ


def test_a_gray_checkpoint_written_before_the_papers_gray_loads_with_its_levels(tmp_path, data):
    legacy = _config(steps=3, mask_mode="gray", gray_beta=2.0, decoding="mean_colour")  # levels in [-1, 1]
    Trainer(legacy, tmp_path, data=data, progress=False).train()
    meta_path = tmp_path / "best" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["gray_beta"], meta["config"]["decoding"]
    meta_path.write_text(json.dumps(meta))
    model, loaded = load_checkpoint(tmp_path / "best")
    assert loaded["config"]["gray_beta"] == 2.0 and model.decoding == "mean_colour"
    assert torch.allclose(model.colours[:, 0], torch.linspace(-1, 1, 5))


def test_a_run_saved_before_the_new_fields_resumes(tmp_path, data):
    Trainer(_config(), tmp_path, data=data, progress=False).train(until_step=3)
    meta_path = tmp_path / "last" / "config.json"
    meta = json.loads(meta_path.read_text())
    for field in ("gray_beta", "classify_share", "classify_mask_only", "restart_at", "class_weighted_loss", "shift"):
        del meta["config"][field]
    meta_path.write_text(json.dumps(meta))
    resumed = Trainer(_config(), tmp_path, data=data, resume=True, progress=False)
    assert resumed.step == 3 and resumed.train().step == 6


def test_the_paper_decoding_follows_the_mask_mode():
    assert _config().decoding == "pixel_distance"
    assert _config(mask_mode="gray").decoding == "mean_colour"
    assert _config(mask_mode="gray", decoding="pixel_vote").decoding == "pixel_vote"
    assert TrainConfig(**_config(mask_mode="gray").to_dict()).decoding == "mean_colour"  # saved resolved


def test_runs_cached_before_the_new_fields_keep_their_key():
    from medsymmflow.checkpoints import settings_key
    from medsymmflow.recipes import run_identity

    config = _config()
    new_fields = (
        "gray_beta",
        "classify_share",
        "classify_mask_only",
        "restart_at",
        "fit",
        "codec",
        "dropout",
        "class_weighted_loss",
        "shift",
        "shift_scope",
    )
    before = {k: v for k, v in config.to_dict().items() if k not in new_fields}
    assert settings_key(run_identity(config)) == settings_key(before)
    assert settings_key(run_identity(_config(classify_share=0.25))) != settings_key(before)
    assert settings_key(run_identity(_config(codec="runs/models/codec", image_size=32))) != settings_key(before)
    assert settings_key(run_identity(_config(dropout=0.1))) != settings_key(before)
    assert settings_key(run_identity(_config(shift=2))) != settings_key(before)
    scoped = _config(classify_share=0.25, shift=2, shift_scope="classify")
    assert settings_key(run_identity(scoped)) != settings_key(run_identity(_config(classify_share=0.25, shift=2)))
    weighted = run_identity(_config(balanced=False, class_weighted_loss=True))
    assert settings_key(weighted) != settings_key(run_identity(_config(balanced=False)))
    masked = _config(classify_share=0.25, classify_mask_only=True)
    assert settings_key(run_identity(masked)) != settings_key(run_identity(_config(classify_share=0.25)))
    assert "gray_beta" in run_identity(_config(mask_mode="gray"))
    assert course.run_dir(_config(gray_beta=3.0)) == course.run_dir(config)  # gray_beta shapes gray masks only


def test_a_checkpoint_written_before_latent_models_loads_as_the_pixel_run_it_was(tmp_path, data):
    config = _config(steps=3)
    Trainer(config, tmp_path, data=data, progress=False).train()
    meta_path = tmp_path / "best" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["fit"], meta["config"]["codec"]  # as written before TrainConfig had them
    meta_path.write_text(json.dumps(meta))
    model, loaded = load_checkpoint(tmp_path / "best", expected=config)  # the course's cache compares model fields
    assert (loaded["config"]["fit"], loaded["config"]["codec"], model.codec) == ("pad", "", None)


def test_classify_mask_only_reaches_the_model_and_needs_a_share_at_t_equal_1():
    assert build_model(_config(classify_share=0.25, classify_mask_only=True), 5, 3).classify_mask_only
    assert not build_model(_config(classify_share=0.25), 5, 3).classify_mask_only
    with pytest.raises(ValueError, match="classify_mask_only trains the t = 1 share only: set classify_share > 0"):
        _config(classify_mask_only=True)


def test_class_weighted_loss_weighs_each_class_by_n_over_k_count_and_needs_plain_sampling(tmp_path, data):
    config = _config(balanced=False, class_weighted_loss=True)
    trainer = Trainer(config, tmp_path / "weighted", data=data, progress=False)
    counts = torch.bincount(trainer.train_labels, minlength=5).float()  # 10, 8, 9, 10, 11
    torch.testing.assert_close(trainer.class_weights, len(trainer.train_labels) / (5 * counts))
    torch.testing.assert_close(trainer.class_weights[trainer.train_labels].mean(), torch.tensor(1.0))
    assert torch.equal(trainer.sample_weights, torch.ones(len(trainer.train_labels), dtype=torch.float64))
    weighted = trainer.train()
    plain = Trainer(_config(balanced=False), tmp_path / "plain", data=data, progress=False).train()
    # the same batches and noise, the loss weighted: the runs part from the first step on
    assert weighted.history[0]["train_loss"] != plain.history[0]["train_loss"]
    saved = json.loads((tmp_path / "weighted" / "last" / "config.json").read_text())["config"]
    assert (saved["class_weighted_loss"], saved["balanced"]) == (True, False)
    assert Trainer(_config(balanced=False), tmp_path / "x", data=data, progress=False).class_weights is None
    with pytest.raises(ValueError, match="balanced sampling and class_weighted_loss both correct the class imbalance"):
        _config(class_weighted_loss=True)


def test_shift_moves_each_drawn_image_within_its_range_and_leaves_the_draws_of_the_rest(tmp_path, data):
    plain = Trainer(_config(), tmp_path / "plain", data=data, progress=False)
    shifted = Trainer(_config(shift=2), tmp_path / "shifted", data=data, progress=False)
    (images, labels, none), (moved, moved_labels, _) = plain._batch(), shifted._batch()
    assert none is None
    assert torch.equal(labels, moved_labels)  # the same images, flipped the same way, then shifted
    # without shifts, a batch draws the images and the flips and nothing more: runs keep their batches
    expected = torch.Generator()
    expected.set_state(Trainer(_config(), tmp_path / "again", data=data, progress=False).data_generator.get_state())
    torch.multinomial(plain.sample_weights, plain.config.batch_size, replacement=True, generator=expected)
    torch.rand(plain.config.batch_size, generator=expected)
    assert torch.equal(plain.data_generator.get_state(), expected.get_state())
    assert not torch.equal(shifted.data_generator.get_state(), expected.get_state())
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    found = []
    for image, out in zip(images, moved, strict=True):
        candidates = shift_images(image.expand(len(offsets), -1, -1, -1), torch.tensor(offsets))
        found.append(next(o for o, c in zip(offsets, candidates, strict=True) if torch.equal(c, out)))
    assert len(set(found)) > 5  # offsets differ between images
    with pytest.raises(ValueError, match="shift moves pixels, and a latent model trains on cached latents"):
        _config(shift=2, codec="runs/models/codec", image_size=32)


def test_shift_scope_classify_keeps_the_images_and_hands_the_same_shifts_to_the_t_equal_1_share(tmp_path, data):
    everywhere = Trainer(_config(classify_share=0.25, shift=2), tmp_path / "all", data=data, progress=False)
    scoped = Trainer(
        _config(classify_share=0.25, shift=2, shift_scope="classify"), tmp_path / "classify", data=data, progress=False
    )
    plain = Trainer(_config(classify_share=0.25), tmp_path / "plain", data=data, progress=False)
    (moved, labels, none), (images, same_labels, classify_images) = everywhere._batch(), scoped._batch()
    assert none is None and torch.equal(labels, same_labels)
    assert torch.equal(images, plain._batch()[0])  # the images themselves unshifted
    assert torch.equal(classify_images, moved)  # the t = 1 share gets the shifts an "all" run would draw
    # the loss gives them to the samples at t = 1 only, so the run differs from both neighbours
    runs = {name: t.train().history[0]["train_loss"] for name, t in (("all", everywhere), ("classify", scoped))}
    runs["plain"] = plain.train().history[0]["train_loss"]
    assert len(set(runs.values())) == 3
    saved = json.loads((tmp_path / "classify" / "last" / "config.json").read_text())["config"]
    assert (saved["shift"], saved["shift_scope"]) == (2, "classify")
    with pytest.raises(ValueError, match="shift_scope 'classify' shifts the t = 1 share only: set classify_share > 0"):
        _config(classify_share=0.0, shift=2, shift_scope="classify")
    with pytest.raises(
        ValueError, match="shift_scope 'classify' shifts a flow's t = 1 share; the baseline 'cnn-small'"
    ):
        _config(preset="cnn-small", classify_share=0.25, shift=2, shift_scope="classify")
    with pytest.raises(ValueError, match=r"shift_scope must be one of \('all', 'classify'\), got 'mask'"):
        _config(shift=2, shift_scope="mask")


def test_dropout_is_the_flows_and_a_baseline_refuses_it():
    flow = build_model(_config(dropout=0.2), n_classes=5, image_channels=3)
    assert {m.p for name, m in flow.net.named_modules() if ".resnets." in name and isinstance(m, torch.nn.Dropout)} == {
        0.2
    }
    with pytest.raises(ValueError, match="dropout sets the flow's UNet; the baseline 'cnn-small' keeps its own"):
        _config(preset="cnn-small", dropout=0.2)
