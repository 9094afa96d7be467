"""benchmarks/quality_bar.py: the recipe issue's bars read from hand-made study results."""

import json

import pytest
from conftest import load_benchmark


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
    rows, rules, configs = quality_bar.load(results)
    seconds = quality_bar.training_seconds(list(results) + list(times))
    return {
        (c["dataset"], c["bar"], c["draws"]): c for c in quality_bar.bars(rows, rules, configs, seconds, "r", "cnn")
    }


def test_set_bars_rule_and_cnn_margin_with_their_margins(tmp_path, quality_bar):
    rows = [
        _row("pneumoniamnist", "r", s, acc, auc) for s, acc, auc in ((0, 0.88, 0.95), (1, 0.89, 0.96), (2, 0.87, 0.94))
    ]
    rows += [_row("pneumoniamnist", "cnn", s, 0.9, auc) for s, auc in ((0, 0.98), (1, 0.97), (2, 0.97))]
    rows += [_row("pneumoniamnist", "r", 0, 0.5, 0.5, decoding="mean_colour")]  # another decoding: not the recipe's
    rules = {"pneumoniamnist": {"acc": 0.625}}
    checks = _checks(quality_bar, [_study(tmp_path / "a" / "results.json", rows, rules)])
    acc = checks[("pneumoniamnist", "ACC ≥ 0.885", 1)]
    assert acc["measured"] == "0.880 ± 0.010" and acc["margin"] == pytest.approx(-0.005) and not acc["met"]
    auc = checks[("pneumoniamnist", "AUC ≥ 0.95", 1)]
    assert auc["margin"] == pytest.approx(0.0) and auc["met"]  # the bar itself is met
    assert checks[("pneumoniamnist", "ACC above the majority rule (0.625)", 1)]["met"]
    # AUC minus the CNN's, seed by seed: -0.03, -0.01, -0.03 -> mean -0.0233, 0.0033 beyond the bar
    cnn = checks[("pneumoniamnist", "AUC minus the same-run CNN's ≥ −0.02", 1)]
    assert cnn["measured"] == "-0.023 ± 0.012" and cnn["margin"] == pytest.approx(-0.02 / 6) and not cnn["met"]
    assert checks[("pneumoniamnist", "ACC ≥ 0.885", 8)]["n_seeds"] == 0  # no eight-draw rows: not measured
    assert checks[("pneumoniamnist", "training ≤ 600 s a run", None)]["n_seeds"] == 0


def test_the_rule_must_be_beaten_and_the_prior_decision_is_set_beside_it(tmp_path, quality_bar):
    rows = [_row("skewed", "r", s, 0.667, 0.7, acc_prior=0.70) for s in range(3)]
    checks = _checks(quality_bar, [_study(tmp_path / "results.json", rows, {"skewed": {"acc": 0.667}})])
    assert not checks[("skewed", "ACC above the majority rule (0.667)", 1)]["met"]  # equal to the rule is not above
    assert checks[("skewed", "ACC decided under the training shares above the rule (0.667)", 1)]["met"]
    assert not any(bar.startswith("AUC ≥") for _, bar, _ in checks)  # no set bars for a set the issue does not name


def test_training_seconds_come_from_the_study_that_trained_the_same_configuration(tmp_path, quality_bar):
    rows = [_row("retinamnist", "r", s, 0.52, 0.72) for s in range(2)]
    config = {"seed": 0, "steps": 600}
    loaded = {
        "retinamnist r seed 0": {"config": config, "train_or_load_seconds": 0.1},
        "retinamnist r seed 1": {"config": config | {"seed": 1}, "train_or_load_seconds": 0.1},
    }
    trained = {
        "retinamnist t1-25-other-name seed 0": {"config": config, "train_or_load_seconds": 414.0},
        "retinamnist x seed 1": {"config": config | {"seed": 1, "steps": 300}, "train_or_load_seconds": 200.0},
        "pneumoniamnist r seed 1": {"config": config | {"seed": 1}, "train_or_load_seconds": 700.0},
    }
    results = _study(tmp_path / "eval" / "results.json", rows, {"retinamnist": {"acc": 0.435}}, loaded)
    times = _study(tmp_path / "train" / "results.json", [], {}, trained)
    check = _checks(quality_bar, [results], [times])[("retinamnist", "training ≤ 600 s a run", None)]
    # only seed 0's configuration was trained (seed 1's other run differs in steps, or is another set's)
    assert check["n_seeds"] == 1 and check["measured"] == "414 s" and check["margin"] == pytest.approx(186)


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
    acc = next(c for c in written["checks"] if c["bar"] == "ACC ≥ 0.5" and c["draws"] == 1)
    assert acc["met"] is False and acc["margin"] == pytest.approx(-0.05)
    assert "| retinamnist | ACC ≥ 0.5 | 1 | 0.450 ± 0.000 | -0.050 | **no** | 3 |" in (out / "results.md").read_text()
