"""The mask ablation's tables: paired RGB-minus-gray differences, spreads over seeds, the smallest NFE."""

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def ablation():
    return load_benchmark("masks_ablation")


def _row(model, decoding, seed, acc, auc):
    return {
        "dataset": "d",
        "model": model,
        "decoding": decoding,
        "seed": seed,
        "acc": acc,
        "auc": auc,
        "balanced_accuracy": acc,
    }


def test_rgb_minus_gray_pairs_seeds_and_uses_each_modes_own_decoding(ablation):
    rows = [
        _row("rgb", "pixel_distance", 0, 0.80, 0.90),
        _row("rgb", "pixel_distance", 1, 0.70, 0.80),
        _row("rgb", "mean_colour", 0, 0.10, 0.10),  # not RGB's own decoding: ignored
        _row("gray", "mean_colour", 0, 0.75, 0.95),
        _row("gray", "mean_colour", 1, 0.60, 0.80),
        _row("gray", "mean_colour", 2, 0.99, 0.99),  # no RGB run of seed 2 to pair with
    ]
    (entry,) = ablation._paired(rows)
    assert entry["n_seeds"] == 2
    assert entry["acc"] == pytest.approx((0.05 + 0.10) / 2)
    assert entry["auc"] == pytest.approx((-0.05 + 0.0) / 2)
    assert entry["acc_std"] == pytest.approx(abs(0.05 - 0.10) / 2**0.5)


def test_summary_over_seeds_and_smallest_nfe(ablation):
    sweep = [
        {"dataset": "d", "seed": 0, "solver": "euler", "nfe": 25, "agreement": 0.9, "cas": 0.85, "frechet": 2.0},
        {"dataset": "d", "seed": 0, "solver": "heun", "nfe": 4, "agreement": 0.8, "cas": 0.845, "frechet": 3.0},
        {"dataset": "d", "seed": 1, "solver": "euler", "nfe": 25, "agreement": 0.7, "cas": 0.80, "frechet": 4.0},
        {"dataset": "d", "seed": 1, "solver": "heun", "nfe": 4, "agreement": 0.6, "cas": 0.70, "frechet": 5.0},
    ]
    sweep.append({"dataset": "d", "seed": 2, "solver": "heun", "nfe": 4, "agreement": 0.7, "frechet": 4.0})  # no CAS
    groups = ablation.summarize(sweep, ("dataset", "solver", "nfe"), ablation.GENERATION_METRICS)
    spread = {(e["solver"], e["nfe"]): e for e in groups}
    assert spread[("euler", 25)]["agreement"] == pytest.approx(0.8)
    assert spread[("euler", 25)]["agreement_std"] == pytest.approx(0.2 / 2**0.5)
    assert "frechet_floor" not in spread[("euler", 25)]  # a metric no row has is left out
    heun = spread[("heun", 4)]  # a metric some rows lack is summarized over the rows that have it
    assert heun["n_seeds"] == 3 and heun["agreement"] == pytest.approx(0.7) and heun["cas"] == pytest.approx(0.7725)
    assert heun["cas_n_seeds"] == 2 and "agreement_n_seeds" not in heun
    assert ablation._smallest(sweep) == {"d seed 0": (4, "heun"), "d seed 1": (25, "euler")}
