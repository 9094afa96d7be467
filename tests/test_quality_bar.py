"""benchmarks/quality_bar.py: the recipe issue's bars read from hand-made study results."""

import json

import pytest
from conftest import load_benchmark

CNN_BAR = "AUC minus the same-run CNN's single pass ≥ -0.02"


@pytest.fixture(scope="module")
def quality_bar():
    return load_benchmark("quality_bar")


def _row(dataset, model, seed, acc, auc, draws=1, **more):
    return dict(dataset=dataset, model=model, seed=seed, draws=draws, acc=acc, auc=auc) | {
        "decoding": "pixel_distance",
        **more,
    }


def _study(path, rows, rules, runs=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": rows, "majority_rule": rules, "runs": runs or {}}))
    return path


def _checks(quality_bar, results, times=()):
    rows, rules, configs = quality_bar.load(quality_bar.read(results))
    seconds = quality_bar.training_seconds(quality_bar.read(list(results) + list(times)))
    return {
        (c["dataset"], c["bar"], c["draws"]): c for c in quality_bar.bars(rows, rules, configs, seconds, "r", "cnn")
    }


def test_set_bars_rule_and_cnn_margin_with_their_margins(tmp_path, quality_bar):
    rows = [
        _row("pneumoniamnist", "r", s, acc, auc) for s, acc, auc in ((0, 0.88, 0.95), (1, 0.89, 0.96), (2, 0.87, 0.94))
    ]
    rows += [_row("pneumoniamnist", "cnn", s, 0.9, auc) for s, auc in ((0, 0.98), (1, 0.97), (2, 0.97))]
    rows += [_row("pneumoniamnist", "r", s, 0.9, auc, draws=8) for s, auc in ((0, 0.96), (1, 0.97), (2, 0.96))]
    rows += [_row("pneumoniamnist", "cnn", s, 0.9, 0.5, draws=8) for s in range(3)]  # MC-dropout passes: unused
    rows += [_row("pneumoniamnist", "r", 0, 0.5, 0.5, decoding="mean_colour")]  # another decoding: not the recipe's
    rules = {"pneumoniamnist": {"acc": 0.625}}
    checks = _checks(quality_bar, [_study(tmp_path / "a" / "results.json", rows, rules)])
    acc = checks[("pneumoniamnist", "ACC ≥ 0.885", 1)]
    assert acc["measured"] == "0.880 ± 0.010" and acc["margin"] == pytest.approx(-0.005) and acc["met"] is False
    auc = checks[("pneumoniamnist", "AUC ≥ 0.95", 1)]
    assert auc["margin"] == 0.0 and auc["met"] is True  # on the bar is met, rounding aside
    assert checks[("pneumoniamnist", "ACC above the majority rule (0.625)", 1)]["met"] is True
    # AUC minus the CNN's single pass, seed by seed: -0.03, -0.01, -0.03 -> mean -0.0233, 0.0033 past the bar
    cnn = checks[("pneumoniamnist", CNN_BAR, 1)]
    assert cnn["measured"] == "-0.023 ± 0.012" and cnn["margin"] == pytest.approx(-0.02 / 6) and cnn["met"] is False
    # eight draws of the flow against the CNN's single pass: -0.02, 0.00, -0.01
    assert checks[("pneumoniamnist", CNN_BAR, 8)]["measured"] == "-0.010 ± 0.010"
    assert checks[("pneumoniamnist", "training ≤ 600 s a run", None)]["n_seeds"] == 0
    # the other sets the issue names are listed, as not measured
    assert checks[("retinamnist", "ACC ≥ 0.50", 1)]["n_seeds"] == 0
    assert checks[("pneumoniamnist-small", "balanced ACC ≥ 0.80", 1)]["n_seeds"] == 0
    assert checks[("retinamnist", "ACC above the majority rule (no rule in these files)", 1)]["n_seeds"] == 0


def test_a_difference_on_the_cnn_bar_meets_it(tmp_path, quality_bar):
    rows = [_row("d", "r", s, 0.9, 0.95) for s in range(3)] + [_row("d", "cnn", s, 0.9, 0.97) for s in range(3)]
    checks = _checks(quality_bar, [_study(tmp_path / "results.json", rows, {"d": {"acc": 0.5}})])
    assert 0.95 - 0.97 < -0.02  # in floating point, just past the bar
    assert checks[("d", CNN_BAR, 1)]["met"] is True


def test_the_rule_must_be_beaten_and_the_prior_decision_is_set_beside_it(tmp_path, quality_bar):
    rows = [_row("skewed", "r", s, 0.667, 0.7, acc_prior=0.70) for s in range(3)]
    checks = _checks(quality_bar, [_study(tmp_path / "results.json", rows, {"skewed": {"acc": 0.667}})])
    assert checks[("skewed", "ACC above the majority rule (0.667)", 1)]["met"] is False  # equal is not above
    assert checks[("skewed", "ACC decided under the training shares above the rule (0.667)", 1)]["met"] is True
    assert not any(d == "skewed" and bar.startswith("AUC ≥") for d, bar, _ in checks)  # no set bars of its own
    assert checks[("skewed", CNN_BAR, 1)]["n_seeds"] == 0  # no CNN runs: not measured


def test_too_few_seeds_or_a_cnn_without_the_recipes_seeds_decide_nothing(tmp_path, quality_bar):
    rows = [_row("d", "r", s, 0.9, 0.95) for s in range(2)] + [_row("d", "cnn", 0, 0.9, 0.96)]
    checks = _checks(quality_bar, [_study(tmp_path / "results.json", rows, {"d": {"acc": 0.5}})])
    rule = checks[("d", "ACC above the majority rule (0.500)", 1)]
    assert rule["n_seeds"] == 2 and rule["met"] is None and rule["margin"] == pytest.approx(0.4)
    assert checks[("d", CNN_BAR, 1)]["n_seeds"] == 0  # the CNN lacks seed 1: no comparison on other seeds


def test_training_seconds_come_from_the_study_that_trained_the_same_configuration(tmp_path, quality_bar):
    rows = [_row("retinamnist", "r", s, 0.52, 0.72) for s in range(4)]
    config = {"seed": 0, "steps": 600}
    loaded = {
        f"retinamnist r seed {s}": {"config": config | {"seed": s}, "train_or_load_seconds": 0.1} for s in range(4)
    }
    trained = {
        "retinamnist t1-25-other-name seed 0": {"config": config, "train_or_load_seconds": 414.0},
        "retinamnist x seed 1": {"config": config | {"seed": 1, "steps": 300}, "train_or_load_seconds": 200.0},
        "pneumoniamnist r seed 1": {"config": config | {"seed": 1}, "train_or_load_seconds": 50.0},
        "retinamnist a seed 2": {"config": config | {"seed": 2}, "train_or_load_seconds": 650.0},
        "retinamnist b seed 3": {"config": config | {"seed": 3}, "train_or_load_seconds": 420.0},
    }
    results = _study(tmp_path / "eval" / "results.json", rows, {"retinamnist": {"acc": 0.435}}, loaded)
    times = _study(tmp_path / "train" / "results.json", [], {}, trained)
    check = _checks(quality_bar, [results], [times])[("retinamnist", "training ≤ 600 s a run", None)]
    # seeds 0, 2 and 3 were trained with the same configuration; seed 1's other runs differ in steps or set
    assert check["n_seeds"] == 3 and check["measured"] == "414–650 s"
    assert check["margin"] == pytest.approx(-50) and check["met"] is False


def test_two_files_that_disagree_on_a_run_are_refused(tmp_path, quality_bar):
    first = _study(tmp_path / "a" / "results.json", [_row("d", "r", 0, 0.80, 0.9)], {"d": {"acc": 0.5}})
    second = _study(tmp_path / "b" / "results.json", [_row("d", "r", 0, 0.81, 0.9)], {"d": {"acc": 0.5}})
    with pytest.raises(ValueError, match="another ACC or AUC"):
        quality_bar.load(quality_bar.read([first, second]))
    runs = {"d r seed 0": {"config": {"steps": 300}, "train_or_load_seconds": 0.1}}
    third = _study(tmp_path / "c" / "results.json", [], {}, runs)
    fourth = _study(
        tmp_path / "e" / "results.json", [], {}, {"d r seed 0": runs["d r seed 0"] | {"config": {"steps": 600}}}
    )
    with pytest.raises(ValueError, match="another configuration"):
        quality_bar.load(quality_bar.read([third, fourth]))
    other_rule = _study(tmp_path / "g" / "results.json", [], {"d": {"acc": 0.6}})
    with pytest.raises(ValueError, match="another majority rule"):
        quality_bar.load(quality_bar.read([first, other_rule]))
    # the same run in two files: the later file's fields are added to it
    prior = _study(tmp_path / "f" / "results.json", [_row("d", "r", 0, 0.80, 0.9, acc_prior=0.7)], {"d": {"acc": 0.5}})
    rows, _, _ = quality_bar.load(quality_bar.read([first, prior]))
    assert rows[("d", "r", 1, 0)]["acc_prior"] == 0.7


def test_the_script_writes_markdown_and_json(tmp_path, quality_bar, monkeypatch):
    rows = [_row("retinamnist", m, s, 0.45, 0.71) for m in ("r", "cnn") for s in range(3)]
    results = _study(tmp_path / "results.json", rows, {"retinamnist": {"acc": 0.435}})
    out = tmp_path / "out"
    argv = ["quality_bar.py", str(results), "--recipe", "r", "--baseline", "cnn", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    quality_bar.main()
    written = json.loads((out / "results.json").read_text())
    assert written["provenance"]["commit"] and written["inputs"] == [str(results)]
    assert written["inputs_provenance"] == {str(results): None}  # hand-made results carry none
    acc = next(c for c in written["checks"] if c["bar"] == "ACC ≥ 0.50" and c["draws"] == 1)
    assert acc["met"] is False and acc["margin"] == pytest.approx(-0.05)
    assert "| retinamnist | ACC ≥ 0.50 | 1 | 0.450 ± 0.000 | -0.050 | **no** | 3 |" in (out / "results.md").read_text()
