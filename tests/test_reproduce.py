"""``medsymmflow reproduce``: the budget check in closed form, and the whole pipeline in smoke mode."""

import json

import pytest

from medsymmflow.budget import OVERHEAD, BudgetError, plan_epochs
from medsymmflow.cli import main


def test_plan_keeps_the_requested_epochs_when_they_fit():
    plan = plan_epochs(
        {"flow": 0.02, "cnn": 0.01}, {"a": 7400, "b": 1700}, 1, 100, budget_seconds=1000, fit_budget=False
    )
    assert plan.epochs == 100 and plan.estimated_seconds == pytest.approx(9100 * 0.03 * OVERHEAD)


def test_plan_stops_or_fits_when_the_run_is_too_long():
    estimate = 9100 * 0.03 * 2 * OVERHEAD  # two seeds: 627.9 s for 100 epochs, 6.279 s an epoch
    with pytest.raises(
        BudgetError, match=r"100 epochs would take about 628 s .*over the 300 s budget.*--fit-budget to train 47 epochs"
    ):
        plan_epochs({"flow": 0.02, "cnn": 0.01}, {"a": 7400, "b": 1700}, 2, 100, budget_seconds=300, fit_budget=False)
    plan = plan_epochs({"flow": 0.02, "cnn": 0.01}, {"a": 7400, "b": 1700}, 2, 100, budget_seconds=300, fit_budget=True)
    assert plan.epochs == 47 and plan.estimated_seconds == pytest.approx(47 * estimate / 100)
    assert "training 47 epochs instead" in plan.message
    with pytest.raises(BudgetError, match="not even one epoch fits"):
        plan_epochs({"flow": 0.02, "cnn": 0.01}, {"a": 7400, "b": 1700}, 2, 100, budget_seconds=5, fit_budget=True)


@pytest.mark.realdata
def test_smoke_runs_the_whole_pipeline_on_the_real_data(real_data, tmp_path, capsys):
    real_data("pneumoniamnist")
    assert (
        main(["reproduce", "--smoke", "--datasets", "pneumoniamnist", "--out", str(tmp_path), "--time-budget", "600"])
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["smoke"] is True and results["synthetic_data"] == {"pneumoniamnist": False}
    # MedSymmFlow: 3 decodings x (1, 2 draws); ResNet-18: 1 and 2 passes
    assert len(results["rows"]) == 8 and len(results["summary"]) == 8
    assert {r["decoding"] for r in results["rows"]} == {"pixel_distance", "mean_colour", "pixel_vote", None}
    assert all(r["n_images"] == 96 and 0 <= r["acc"] <= 1 and 0 <= r["acc_at_80"] <= 1 for r in results["rows"])
    # majority rule: 390 of the 624 test images are pneumonia
    assert results["majority_rule"]["pneumoniamnist"]["acc"] == pytest.approx(390 / 624)
    assert results["references"]["pneumoniamnist"]["paper_acc"] == 0.8824
    assert {"commit", "torch", "diffusers", "device", "python"} <= set(results["provenance"])
    assert results["plan"]["seconds_per_step"]["MedSymmFlow"] > 0 and results["wall_seconds"]["probe"] > 0
    assert (tmp_path / "models").is_dir()
    flow_run = results["runs"]["pneumoniamnist seed 0"]["MedSymmFlow"]
    assert flow_run["step"] == 20 and [h["step"] for h in flow_run["history"]] == [
        10,
        20,
    ]  # the whole run, not best/'s part
    report = (tmp_path / "results.md").read_text()
    assert "SMOKE RUN" in report and "| pneumoniamnist | MedSymmFlow | pixel_distance | 1 |" in report
    assert "results.md" in capsys.readouterr().out


def test_a_run_that_cannot_fit_stops_before_training_and_writes_nothing(tmp_path, capsys):
    code = main(
        [
            "reproduce",
            "--smoke",
            "--datasets",
            "breastmnist",
            "--out",
            str(tmp_path / "r"),
            "--time-budget",
            "0.001",
            "--data-root",
            str(tmp_path / "no-data"),
        ]
    )
    assert code == 3
    assert "stopped before training" in capsys.readouterr().err
    assert not (tmp_path / "r" / "results.json").exists() and not (tmp_path / "r" / "models").exists()


def test_each_recipe_pairs_medsymmflow_with_its_same_run_baseline():
    from medsymmflow.reproduce import Settings, model_configs

    fast = model_configs("retinamnist", Settings(recipe="fast"), seed=2, epochs=100)
    assert [c.preset for c in fast.values()] == ["tiny", "cnn-small"]
    assert [(c.shift, c.shift_scope) for c in fast.values()] == [(2, "classify"), (2, "all")]  # the flow's shifts
    assert all(c.steps == 600 and c.seed == 2 and c.palette_index == "truncate" for c in fast.values())
    full = model_configs("retinamnist", Settings(recipe="full"), seed=0, epochs=27)
    assert [c.preset for c in full.values()] == ["paper-pixel", "resnet18"]
    assert all(c.steps == 27 * 17 and c.decoding == "pixel_distance" for c in full.values())  # 1,080 images: 17 batches
