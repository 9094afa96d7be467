"""The course's shipped checkpoints: loaded instead of trained, never written, checked by SHA-256,
exported only from finished real-data runs, and covering the chapters' runs as they are configured now."""

import dataclasses
import json

import pytest
import torch

from medsymmflow import config, course
from medsymmflow.checkpoints import CheckpointError, load_checkpoint
from medsymmflow.data import synthetic_twin
from medsymmflow.evaluate import evaluate_split
from medsymmflow.files import file_digest
from medsymmflow.recipes import TrainConfig, course_config, same_run_baseline


def _config(**overrides):
    return TrainConfig(
        **{"dataset": "retinamnist", "steps": 2, "batch_size": 8, "checkpoint_every": 2, "seed": 3, **overrides}
    )


@pytest.fixture(scope="module")
def real_like():
    """A small twin whose runs record real data, as the course's runs on the MedMNIST files do."""
    return dataclasses.replace(synthetic_twin("retinamnist", max_per_split=48), synthetic=False)


@pytest.fixture
def shipped(tmp_path, real_like, monkeypatch):
    """A run trained into a scratch runs/, exported to a scratch course_weights/, and an empty runs/ to load into."""
    trained = tmp_path / "trained"
    model, _ = course.train_or_load(_config(), real_like, progress=False, root=trained)
    weights = tmp_path / "course_weights"
    course.export_course_weights([course.run_dir(_config(), False, trained)], weights)
    monkeypatch.setattr(course, "runs_dir", lambda: tmp_path / "fresh")
    monkeypatch.setattr(course, "course_weights_dir", lambda: weights)
    return model, weights


class Trained(Exception):
    """Raised by the stand-in Trainer: reaching it means the run would have been trained here."""


def _trainer(config, folder, **kwargs):
    raise Trained(folder)


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_shipped_run_is_loaded_not_trained_and_left_as_it_was(shipped, real_like, monkeypatch, capsys):
    trained_model, weights = shipped
    before = _files(weights)
    monkeypatch.setattr(course, "Trainer", _trainer)
    model, meta = course.train_or_load(_config(), real_like)
    assert meta["source"] == str(weights / course.run_dir(_config()).name) and meta["step"] == 2
    assert [h["step"] for h in meta["history"]] == [2]
    pairs = zip(model.state_dict().values(), trained_model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    printed = capsys.readouterr().out
    assert "loaded the shipped checkpoint course_weights/retinamnist_tiny_28px_2steps_seed3_" in printed
    assert "MEDSYMMFLOW_COURSE_WEIGHTS=0 trains it here instead" in printed
    assert _files(weights) == before and not (weights.parent / "fresh").exists()


def test_the_manifest_lists_what_each_shipped_run_is(shipped):
    _, weights = shipped
    manifest = json.loads((weights / course.MANIFEST).read_text())
    ((name, entry),) = manifest["runs"].items()
    shipped_files = sorted(p.relative_to(weights / name).as_posix() for p in (weights / name).rglob("*") if p.is_file())
    assert shipped_files == sorted(course.SHIPPED) == sorted(entry["sha256"])
    assert entry["sha256"]["best/ema.safetensors"] == file_digest(weights / name / "best" / "ema.safetensors")
    assert (entry["dataset"], entry["preset"], entry["steps"], entry["best_step"]) == ("retinamnist", "tiny", 2, 2)
    assert {"commit", "device", "torch"} <= set(manifest["exported"])


@pytest.mark.parametrize("file", course.SHIPPED)
def test_a_changed_or_missing_file_is_refused_with_the_way_out(shipped, real_like, file):
    _, weights = shipped
    path = weights / course.run_dir(_config()).name / file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    advice = rf"git checkout -- {weights}\).*MEDSYMMFLOW_COURSE_WEIGHTS=0 to train"
    with pytest.raises(CheckpointError, match=rf"{file} is missing or not the file manifest.json lists.*{advice}"):
        course.train_or_load(_config(), real_like, progress=False)
    path.unlink()
    with pytest.raises(CheckpointError, match=rf"{file} is missing"):
        course.train_or_load(_config(), real_like, progress=False)


def test_a_damaged_manifest_is_refused_with_the_way_out(shipped, real_like):
    _, weights = shipped
    manifest = json.loads((weights / course.MANIFEST).read_text())
    (weights / course.MANIFEST).write_text('{"runs": ')
    with pytest.raises(
        CheckpointError, match=rf"manifest.json is damaged \(JSONDecodeError.*git checkout -- {weights}\)"
    ):
        course.train_or_load(_config(), real_like, progress=False)
    (weights / course.MANIFEST).write_text('{"runs": {}}')
    with pytest.raises(CheckpointError, match="manifest.json is damaged.*expected 'runs' and 'exported'"):
        course.train_or_load(_config(), real_like, progress=False)
    ((name, entry),) = manifest["runs"].items()
    del entry["sha256"]["last/config.json"]  # a run that would no longer be checked whole
    (weights / course.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"{name}: expected the SHA-256 of best/config.json, best/ema"):
        course.train_or_load(_config(), real_like, progress=False)


def test_another_config_synthetic_data_or_switched_off_trains_here(shipped, real_like, monkeypatch, tmp_path):
    monkeypatch.setattr(course, "Trainer", _trainer)
    for data, settings in ((real_like, {"seed": 4}), (dataclasses.replace(real_like, synthetic=True), {})):
        with pytest.raises(Trained) as where:
            course.train_or_load(_config(**settings), data, progress=False)
        assert where.value.args[0].parent == tmp_path / "fresh" / "models"
    monkeypatch.setattr(course, "course_weights_dir", config.course_weights_dir)  # the real one, read from the env
    monkeypatch.setenv(config.COURSE_WEIGHTS_ENV, "0")
    assert config.course_weights_dir() is None
    with pytest.raises(Trained):  # the shipped run's own configuration, switched off
        course.train_or_load(_config(), real_like, progress=False)
    monkeypatch.setenv(config.COURSE_WEIGHTS_ENV, "1")
    assert config.course_weights_dir() == config.project_dir() / "course_weights"


def test_a_partly_trained_run_in_runs_resumes_there_instead_of_loading_the_shipped_one(
    tmp_path, real_like, monkeypatch
):
    from medsymmflow.train import Trainer

    run = _config(steps=4)
    course.train_or_load(run, real_like, progress=False, root=tmp_path / "trained")
    course.export_course_weights([course.run_dir(run, False, tmp_path / "trained")], tmp_path / "course_weights")
    monkeypatch.setattr(course, "runs_dir", lambda: tmp_path / "fresh")
    monkeypatch.setattr(course, "course_weights_dir", lambda: tmp_path / "course_weights")
    Trainer(run, course.run_dir(run), data=real_like, progress=False).train(until_step=2)  # then "killed"
    monkeypatch.setattr(course, "Trainer", _trainer)
    with pytest.raises(Trained) as where:
        course.train_or_load(run, real_like, progress=False)
    assert where.value.args[0] == course.run_dir(run)  # resumed in runs/, not swapped for the shipped copy


def _unfinished(run):
    meta = json.loads((run / "last" / "config.json").read_text())
    (run / "last" / "config.json").write_text(json.dumps({**meta, "step": 1}))


def _latent(run):
    meta = json.loads((run / "last" / "config.json").read_text())
    (run / "last" / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], "codec": "/x/codec"}}))


def _renamed(run):
    run.rename(run.with_name("my_run"))
    return run.with_name("my_run")


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_unfinished, "step 1 of 2"),
        (_latent, r"latent \(codec /x/codec\)"),
        (_renamed, "its folder is not named retinamnist_tiny_28px_2steps_seed4_"),
        (lambda run: (run / "best" / "ema.safetensors").unlink(), "no best/ema.safetensors"),
        ("synthetic", "synthetic data"),
    ],
)
def test_export_refuses_a_run_it_cannot_ship_before_writing_anything(tmp_path, real_like, spoil, why):
    good, bad = _config(), _config(seed=4)
    data = synthetic_twin("retinamnist", max_per_split=48) if spoil == "synthetic" else real_like
    course.train_or_load(good, real_like, progress=False, root=tmp_path / "a")
    course.train_or_load(bad, data, progress=False, root=tmp_path / "b")
    bad_run = course.run_dir(bad, data.synthetic, tmp_path / "b")
    bad_run = (spoil(bad_run) if callable(spoil) else None) or bad_run
    out = tmp_path / "course_weights"
    with pytest.raises(ValueError, match=rf"cannot be shipped \(.*{why}.*\): only finished real-data pixel-space runs"):
        course.export_course_weights([course.run_dir(good, False, tmp_path / "a"), bad_run], out)
    assert not out.exists()


def test_export_ships_exactly_the_runs_given(shipped, real_like, tmp_path):
    _, weights = shipped
    other = _config(seed=5)
    course.train_or_load(other, real_like, progress=False, root=tmp_path / "trained")
    manifest = course.export_course_weights([course.run_dir(other, False, tmp_path / "trained")], weights)
    assert list(manifest["runs"]) == [course.run_dir(other).name]
    assert sorted(p.name for p in weights.iterdir()) == sorted([course.MANIFEST, course.run_dir(other).name])
    with pytest.raises(ValueError, match="it lies inside"):
        course.export_course_weights([weights / course.run_dir(other).name], weights)


@pytest.mark.parametrize("flag", ["pneumoniamnist", "retinamnist"])
def test_the_chapters_fast_runs_are_shipped(flag):
    """Chapters 2-5 load these (chapter 5 both flags); a change that alters their configuration must be
    followed by `scripts/export_course_weights.py`, or every chapter trains them again."""
    weights = config.project_dir() / "course_weights"
    flow = course_config(flag, config.profile("fast"), seed=0)
    for run in (flow, same_run_baseline(flow, config.profile("fast"))):
        name = course.run_dir(run).name
        assert course.shipped_run(name, weights) is not None, f"{name} is not shipped: export the course weights"


@pytest.mark.realdata
def test_every_shipped_run_gives_its_recorded_validation_metrics_on_the_real_files(real_data):
    weights = config.project_dir() / "course_weights"
    for name, entry in course.read_manifest(weights)["runs"].items():
        model, meta = load_checkpoint(course.shipped_run(name, weights) / "best")  # every SHA-256 checked on the way
        run = TrainConfig(**meta["config"])
        assert course.run_dir(run).name == name and meta["step"] == entry["best_step"]
        data = real_data(entry["dataset"])
        images, labels = data.tensors("val", run.image_size)
        metrics, _ = evaluate_split(model, images, labels, data.info["task"], run.eval_samples, seed=run.seed)
        recorded = meta["best_val_metrics"]
        assert abs(metrics["acc"] - recorded["acc"]) * len(labels) <= 2, (name, metrics["acc"], recorded["acc"])
        assert metrics["auc"] == pytest.approx(recorded["auc"], abs=0.005), name
