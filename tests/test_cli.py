"""The command line: a tiny end-to-end run on synthetic data, and clear errors for bad arguments."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import tiny_train

from medsymmflow import commands, course, generation
from medsymmflow.cli import main
from medsymmflow.data import synthetic_twin
from medsymmflow.recipes import fast_steps
from medsymmflow.reproduce import majority_rule


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(tiny_train(out / "no-data") + ["--out", str(out)])
    assert code == 0
    return out


def test_train_evaluate_sample(trained, tmp_path, capsys):
    meta = json.loads((trained / "best" / "config.json").read_text())
    assert meta["synthetic_data"] is True and meta["config"]["dataset"] == "breastmnist"
    assert main(["evaluate", str(trained / "best"), "--split", "val", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics_val_1draw.json").read_text())
    assert (
        metrics["n_images"] == 78
        and 0 <= metrics["acc"] <= 1
        and set(metrics["accuracy_at_coverage"]) == {"1.00", "0.90", "0.80", "0.50"}
    )
    assert 0 <= metrics["aurc"] <= 1 and 0 <= metrics["ece"] <= 1 and metrics["temperature_fitted_on_val"] > 0
    assert metrics["provenance"]["data"] == {"flag": "breastmnist", "size": 28, "synthetic": True}
    assert metrics["provenance"]["checkpoint_step"] == 2 and metrics["provenance"]["seed"] == 0
    assert {"commit", "torch", "device", "medsymmflow"} <= set(metrics["provenance"]) and metrics[
        "decoding"
    ] == "pixel_distance"
    assert (tmp_path / "risk_coverage_val_1draw.csv").read_text().startswith("coverage,accuracy,risk\n")
    assert (tmp_path / "reliability_val_1draw.png").stat().st_size > 0
    assert (tmp_path / "confusion_val_1draw.png").stat().st_size > 0
    assert (tmp_path / "accuracy_coverage_val_1draw.png").stat().st_size > 0
    assert (
        main(
            [
                "sample",
                str(trained / "best"),
                "--class",
                "1",
                "--n",
                "2",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "s.png").stat().st_size > 0
    assert "ACC" in capsys.readouterr().out


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn")
    assert main(tiny_train(out / "no-data") + ["--preset", "cnn-small", "--out", str(out)]) == 0
    return out / "best"


def test_evaluate_generation_writes_every_solver_and_nfe(trained, classifier, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(generation, "CAS_STEPS", {"steps": 2, "checkpoint_every": 2})  # a CAS in seconds
    argv = ["evaluate", str(trained / "best"), "--split", "val", "--out", str(tmp_path), "--decoding", "pixel_vote"]
    argv += ["--generation", "--classifier", str(classifier), "--per-class", "3", "--nfes", "1", "2", "25"]
    assert main(argv + ["--solvers", "euler", "heun"]) == 0
    # another decoding than the checkpoint's gets its own files, beside the checkpoint's own
    assert json.loads((tmp_path / "metrics_val_1draw_pixel_vote.json").read_text())["decoding"] == "pixel_vote"
    assert not (tmp_path / "metrics_val_1draw.json").exists()
    result = json.loads((tmp_path / "generation.json").read_text())
    made = [(r["solver"], r["nfe"]) for r in result["rows"]]
    assert made == [("euler", 1), ("euler", 2), ("euler", 25), ("heun", 2), ("heun", 24)]  # a Heun step is 2 NFE
    assert result["n_per_class"] == 3 and all(r["n_generated"] == 6 for r in result["rows"])
    assert all(0 <= r["agreement"] <= 1 and 0 <= r["cas"] <= 1 and r["frechet"] >= 0 for r in result["rows"])
    assert tuple(result["smallest_nfe_within_1_point_of_25_euler"]["cas"]) == generation.smallest_nfe_within(
        result["rows"]
    )
    assert result["classifier"].startswith("cnn-small at ") and result["provenance"]["checkpoint_step"] == 2
    report = (tmp_path / "generation.md").read_text()
    assert "| heun | 24 |" in report and "not FID" in report
    assert report in capsys.readouterr().out and "Smallest NFE whose cas" in report


def test_evaluate_generation_flags_need_generation_and_nfes_each_solver_can_make(trained, tmp_path, capsys):
    base = ["evaluate", str(trained / "best"), "--out", str(tmp_path / "e")]
    assert main(base + ["--nfes", "8", "--no-cas"]) == 2
    assert "--nfes, --no-cas only apply with --generation" in capsys.readouterr().err
    assert main(base + ["--generation", "--solvers", "euler", "heun", "--nfes", "1"]) == 2
    assert "heun makes 2 network evaluations a step: --nfes 1 is too few" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_evaluate_generation_checks_the_classifier(trained, classifier, tmp_path, capsys):
    base = ["evaluate", str(trained / "best"), "--out", str(tmp_path / "e"), "--generation", "--no-cas"]
    assert main(base + ["--classifier", str(trained / "best")]) == 2
    assert "is not a CNN classifier checkpoint (its preset is 'tiny')" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(classifier, other)
    meta = json.loads((other / "config.json").read_text())
    meta["config"].update(dataset="pneumoniamnist", image_size=32)
    (other / "config.json").write_text(json.dumps(meta))
    assert main(base + ["--classifier", str(other)]) == 2
    err = capsys.readouterr().err
    assert "does not fit this model: dataset 'pneumoniamnist' (the model's: 'breastmnist')" in err
    assert "image_size 32 (the model's: 28)" in err
    assert main(["evaluate", str(classifier), "--generation"]) == 2
    assert "is a classifier (cnn-small): it cannot generate images" in capsys.readouterr().err
    assert main(["evaluate", str(classifier), "--decoding", "pixel_vote"]) == 2
    assert "is a classifier (cnn-small): it cannot take a mask --decoding" in capsys.readouterr().err
    assert not (classifier.parent / "evaluation_best").exists()
    assert not (tmp_path / "e").exists()  # every check comes before the output folder is made


def test_evaluate_generation_trains_the_fast_recipes_cnn_by_default(trained, monkeypatch):
    asked = {}

    def fake_train_or_load(settings, data):
        asked.update(settings=settings, data=data)
        return "cnn", {"source": "runs/models/the-cnn-run"}

    monkeypatch.setattr(course, "train_or_load", fake_train_or_load)
    meta = json.loads((trained / "best" / "config.json").read_text())
    data = synthetic_twin("breastmnist", 28, 0)
    classifier, name = commands._train_classifier(meta, data)
    settings = asked["settings"]
    assert classifier == "cnn" and asked["data"] is data and name.startswith("cnn-small, fast recipe")
    assert name.endswith("(runs/models/the-cnn-run)")  # where the model was loaded from, shipped or trained
    assert (settings.preset, settings.dataset, settings.image_size, settings.seed) == (
        "cnn-small",
        "breastmnist",
        28,
        0,
    )
    assert settings.steps == fast_steps(546) and settings.allow_synthetic
    assert settings.shift == meta["config"]["shift"] == 0  # the flow's shifts (none in this tiny run)
    shifted = {**meta, "config": {**meta["config"], "shift": 2}}
    commands._train_classifier(shifted, data)
    assert (asked["settings"].shift, asked["settings"].shift_scope) == (2, "all")  # a course flow's: every image
    # a flow on 16 px files gets a judge on the same files (before, one configured for 28 px)
    small = {**meta, "config": {**meta["config"], "size": 16, "image_size": 16}}
    commands._train_classifier(small, synthetic_twin("breastmnist", 16, 0))
    assert (asked["settings"].size, asked["settings"].image_size, asked["settings"].fit) == (16, 16, "pad")


def test_argument_parser_rejects_bad_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "x", "--n-samples", "0"])
    assert exit_info.value.code == 2 and "argument --n-samples: must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "x", "--solver", "rk45"])


def test_two_process_training_with_accelerate(tmp_path):
    """The multi-process path: 2 CPU processes (gloo) started by torchrun, run by Accelerate as MULTI_CPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "medsymmflow"]
    command += tiny_train(tmp_path / "none") + ["--out", str(tmp_path / "ddp")]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}  # what `accelerate launch --cpu` sets
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count('"best_step"') == 1  # only the main process reports
    assert sorted(p.name for p in (tmp_path / "ddp" / "last").iterdir()) == [
        "config.json",
        "ema.safetensors",
        "model.safetensors",
        "rng_0.pt",
        "rng_1.pt",
        "training_state.pt",
    ]


def test_train_has_a_flag_for_every_config_field_and_a_recipe(capsys):
    import dataclasses

    from medsymmflow.recipes import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in text, field.name
    assert "--recipe {fast,full}" in text and "(default 'truncate')" in text


def test_recipe_flags_override_the_course_recipe(tmp_path):
    from medsymmflow.cli import build_parser
    from medsymmflow.commands import train_config

    args = build_parser().parse_args(
        ["train", "--recipe", "full", "--dataset", "retinamnist", "--lr", "1e-4", "--out", "x"]
    )
    config = train_config(args)
    assert (config.preset, config.image_size, config.steps, config.lr) == ("paper-pixel", 32, 1700, 1e-4)
    args = build_parser().parse_args(["train", "--no-balanced", "--decoding", "mean_colour", "--out", "x"])
    config = train_config(args)
    assert (config.balanced, config.decoding, config.preset) == (False, "mean_colour", "tiny")


def test_demo_trains_the_recipes_steps_unless_told():
    from medsymmflow.cli import build_parser

    assert build_parser().parse_args(["demo"]).steps is None  # run_demo then takes course_config's
    assert build_parser().parse_args(["demo", "--steps", "40"]).steps == 40


def test_demo_writes_its_report_from_the_library(tmp_path, capsys):
    assert (
        main(
            [
                "demo",
                "--dataset",
                "breastmnist",
                "--steps",
                "2",
                "--out",
                str(tmp_path),
                "--data-root",
                str(tmp_path / "none"),
            ]
        )
        == 0
    )
    report = (tmp_path / "report.md").read_text()
    assert "SYNTHETIC TWIN" in report and "2 steps" in report and "decoding `pixel_distance`" in report
    assert "25% of each batch at t = 1" in report  # the fast recipe's share
    assert report.count("- test, one Euler step,") == 2 and (tmp_path / "samples.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics_test_8draws.json").read_text())
    assert metrics["n_samples"] == 8
    # the decisions under the training split's class shares (the twin's) and the majority rule
    counts = synthetic_twin("breastmnist", 28, 0).class_counts("train")
    assert metrics["under_training_prior"]["prior"] == pytest.approx((counts / counts.sum()).tolist())
    assert report.count("decided under the training split's class shares: ACC") == 2
    rule = majority_rule(synthetic_twin("breastmnist", 28, 0))
    assert (
        f'- the majority rule (always "{rule["class_name"]}", the training split\'s most frequent class): '
        f"ACC {rule['acc']:.3f}, balanced accuracy 0.500\n" in report
    )
    assert "wrote" in capsys.readouterr().out
