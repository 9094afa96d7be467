"""benchmarks/paired.py: per-seed differences from the recipe's runs, on hand-made rows."""

import json

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def paired():
    return load_benchmark("paired")


def _row(model, seed, acc, auc, draws=1, decoding="pixel_distance"):
    return dict(
        dataset="d", model=model, seed=seed, acc=acc, auc=auc, balanced_accuracy=acc, draws=draws, decoding=decoding
    )


def test_candidates_are_paired_seed_by_seed_with_the_baseline(tmp_path, paired):
    rows = [_row("t1-25", 0, 0.80, 0.90), _row("t1-25", 1, 0.90, 0.92), _row("t1-25", 2, 0.70, 0.94)]
    rows += [_row("x", 2, 0.74, 0.96), _row("x", 0, 0.81, 0.90), _row("x", 1, 0.91, 0.94)]  # paired by seed
    path = tmp_path / "study" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"rows": rows}))
    lines = paired.paired_table(paired.load_rows([path]), paired.load_rows([path]), "t1-25")
    (line,) = lines[2:]  # the baseline's own rows are not listed
    cells = [c.strip() for c in line.strip("|").split("|")]
    # ACC 0.81, 0.91, 0.74: mean 0.820, sd 0.0854; differences 0.01, 0.01, 0.04: mean +0.020, sd 0.0173
    # AUC differences 0.00, 0.02, 0.02: mean +0.0133, sd 0.0115
    assert cells[:5] == ["d", "x", "pixel_distance", "1", "0,1,2"]
    assert cells[5] == "0.820 ± 0.085" and cells[8] == "+0.020 ± 0.017"
    assert cells[9] == "+0.013 ± 0.012" and cells[-1] == "study"


def test_a_candidate_without_the_baselines_seeds_says_so(tmp_path, paired):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": [_row("t1-25", 0, 0.8, 0.9), _row("x", 1, 0.8, 0.9)]}))
    (line,) = paired.paired_table(paired.load_rows([path]), paired.load_rows([path]), "t1-25")[2:]
    assert "no paired run" in line


def test_the_generation_check_pairs_each_group_with_the_first_by_seed():
    check = load_benchmark("generation_check")
    rows = [
        dict(group=group, run="r", seed=seed, nfe=25, agreement=agreement, frechet=frechet, frechet_floor=0.1)
        for group, seed, agreement, frechet in (
            ("plain", 0, 1.00, 0.5),
            ("plain", 1, 0.96, 0.7),
            ("shifted", 1, 0.86, 3.7),  # listed before seed 0: paired by seed, not by position
            ("shifted", 0, 0.90, 3.5),
        )
    ]
    table = check.markdown({"judge": "cnn", "per_class": 50, "rows": rows}).splitlines()
    shifted = next(line for line in table if line.startswith("| shifted"))
    cells = [c.strip() for c in shifted.strip("|").split("|")]
    assert cells[2:4] == ["0,1", "0.880 ± 0.028"]  # agreement 0.90, 0.86
    assert cells[-2:] == ["-0.100 ± 0.000", "+3.000 ± 0.000"]  # both seeds: -0.10 agreement, +3.0 Fréchet
