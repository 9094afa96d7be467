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


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_shipped_run_is_loaded_not_trained_and_left_as_it_was(shipped, real_like, monkeypatch, capsys):
    trained_model, weights = shipped
    before = _files(weights)
    monkeypatch.setattr(course, "Trainer", lambda *a, **k: pytest.fail("a shipped run must not be trained again"))
    model, meta = course.train_or_load(_config(), real_like)
    assert meta["source"] == str(weights / course.run_dir(_config()).name) and meta["step"] == 2
    assert [h["step"] for h in meta["history"]] == [2]
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained_model.state_dict().values(), strict=True)
    )
    assert "loaded the shipped checkpoint course_weights/retinamnist_tiny_28px_2steps_seed3_" in capsys.readouterr().out
    assert _files(weights) == before and not (weights.parent / "fresh").exists()


def test_the_manifest_lists_what_each_shipped_run_is(shipped):
    _, weights = shipped
    manifest = json.loads((weights / course.MANIFEST).read_text())
    ((name, entry),) = manifest["runs"].items()
    assert sorted(p.relative_to(weights / name).as_posix() for p in (weights / name).rglob("*.*")) == sorted(
        course.SHIPPED
    )
    assert entry["sha256"] == course.sha256(weights / name / "best" / "ema.safetensors")
    assert (entry["dataset"], entry["preset"], entry["steps"], entry["best_step"]) == ("retinamnist", "tiny", 2, 2)
    assert {"commit", "device", "torch"} <= set(manifest["provenance"])


def test_a_changed_weights_file_is_refused_with_the_way_out(shipped, real_like):
    _, weights = shipped
    file = weights / course.run_dir(_config()).name / "best" / "ema.safetensors"
    file.write_bytes(file.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(
        CheckpointError,
        match=r"not the file manifest.json lists.*git checkout -- course_weights.*MEDSYMMFLOW_COURSE_WEIGHTS=0",
    ):
        course.train_or_load(_config(), real_like, progress=False)


class Trained(Exception):
    """Raised by the stand-in Trainer: reaching it means the run would have been trained here."""


def test_another_config_synthetic_data_or_switched_off_trains_here(shipped, real_like, monkeypatch, tmp_path):
    def trainer(config, folder, **kwargs):
        raise Trained(folder)

    monkeypatch.setattr(course, "Trainer", trainer)
    for data, settings in ((real_like, {"seed": 4}), (dataclasses.replace(real_like, synthetic=True), {})):
        with pytest.raises(Trained) as where:
            course.train_or_load(_config(**settings), data, progress=False)
        assert where.value.args[0].parent == tmp_path / "fresh" / "models"
    monkeypatch.undo()
    monkeypatch.setenv(config.COURSE_WEIGHTS_ENV, "0")
    assert config.course_weights_dir() is None
    monkeypatch.setenv(config.COURSE_WEIGHTS_ENV, "1")
    assert config.course_weights_dir() == config.project_dir() / "course_weights"


def test_export_refuses_synthetic_unfinished_and_latent_runs_before_copying(tmp_path):
    twin = synthetic_twin("retinamnist", max_per_split=48)
    run = course.run_dir(_config(), True, tmp_path)
    course.train_or_load(_config(), twin, progress=False, root=tmp_path)
    out = tmp_path / "course_weights"
    with pytest.raises(ValueError, match="only finished real-data pixel-space runs are shipped.*synthetic data: True"):
        course.export_course_weights([run], out)
    assert not out.exists()


@pytest.mark.parametrize("flag", ["pneumoniamnist", "retinamnist"])
def test_the_chapters_fast_runs_are_shipped(flag):
    """Chapters 2-5 load these (chapter 5 both flags); a recipe change that alters their keys must be
    followed by `scripts/export_course_weights.py`, or every chapter trains them again."""
    manifest = json.loads((config.project_dir() / "course_weights" / course.MANIFEST).read_text())
    flow = course_config(flag, config.profile("fast"), seed=0)
    for run in (flow, same_run_baseline(flow, config.profile("fast"))):
        assert course.run_dir(run).name in manifest["runs"], f"{course.run_dir(run).name}: export the course weights"


@pytest.mark.realdata
def test_every_shipped_run_gives_its_recorded_validation_metrics_on_the_real_files(real_data):
    weights = config.project_dir() / "course_weights"
    for name, entry in json.loads((weights / course.MANIFEST).read_text())["runs"].items():
        model, meta = load_checkpoint(course.shipped_run(name, weights) / "best")  # the SHA-256 checked on the way
        run = TrainConfig(**meta["config"])
        assert course.run_dir(run).name == name and meta["step"] == entry["best_step"]
        data = real_data(entry["dataset"])
        images, labels = data.tensors("val", run.image_size)
        metrics, _ = evaluate_split(model, images, labels, data.info["task"], run.eval_samples, seed=run.seed)
        recorded = meta["best_val_metrics"]
        assert abs(metrics["acc"] - recorded["acc"]) * len(labels) <= 2, (name, metrics["acc"], recorded["acc"])
        assert metrics["auc"] == pytest.approx(recorded["auc"], abs=0.005), name
