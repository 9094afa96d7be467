"""The recipe study's datasets: the small imbalanced stand-in and the many-class synthetic twins."""

import numpy as np
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("recipe_study")


def test_small_standin_keeps_the_imbalance_and_the_real_test_split(study, real_data):
    full = real_data("pneumoniamnist")
    small = study.small_standin(full, seed=0)
    train, val = small.labels("train"), small.labels("val")
    assert (len(train), len(val)) == (546, 78)
    assert np.bincount(train).tolist() == [141, 405] and np.bincount(val).tolist() == [20, 58]  # 4,708 at 1,214 : 3,494
    np.testing.assert_array_equal(small.arrays["test_images"], full.arrays["test_images"])
    # train and val are disjoint images of the full train split
    rows = {image.tobytes() for image in small.arrays["train_images"]}
    assert not rows & {image.tobytes() for image in small.arrays["val_images"]}
    assert rows <= {image.tobytes() for image in full.arrays["train_images"]}
    # another seed draws other images
    other = study.small_standin(full, seed=1)
    assert not np.array_equal(other.arrays["train_images"], small.arrays["train_images"])


def test_skewed_standin_makes_every_split_as_lopsided_as_dermamnist(study, real_data):
    full = real_data("retinamnist")
    skewed = study.skewed_standin(full, seed=0)
    counts = {split: np.bincount(skewed.labels(split), minlength=5).tolist() for split in ("train", "val", "test")}
    # grade 0 whole (486, 54, 174 of 1,080, 120, 400 images), the other grades thinned in proportion
    assert counts == {"train": [486, 52, 83, 78, 27], "val": [54, 5, 11, 8, 2], "test": [174, 18, 35, 26, 8]}
    assert study.majority_rule(skewed)["acc"] == pytest.approx(174 / 261)  # 0.667, DermaMNIST's 0.669
    for split in ("train", "test"):  # real images of the same split
        rows = {image.tobytes() for image in full.arrays[f"{split}_images"]}
        assert {image.tobytes() for image in skewed.arrays[f"{split}_images"]} <= rows
    other = study.skewed_standin(full, seed=1)
    assert not np.array_equal(other.arrays["train_images"], skewed.arrays["train_images"])
    # where the other classes are too few, the majority class is thinned instead
    balanced = study.skewed_standin(full, share=0.3)
    assert np.bincount(balanced.labels("train"))[0] / len(balanced.labels("train")) == pytest.approx(0.3, abs=0.01)


def test_study_datasets_by_name(study):
    twin = study.load_study_dataset("synthetic-organamnist", data_root=None)
    assert twin.synthetic and twin.n_classes == 11
    assert {len(twin.labels(s)) for s in ("train", "val", "test")} == {1500}


def test_every_candidate_is_a_valid_fast_recipe_that_sets_what_it_names(study):
    from medsymmflow.config import Profile
    from medsymmflow.recipes import course_config

    for name, fields in study.CANDIDATES.items():
        run = course_config("pneumoniamnist", Profile("fast"), **fields)  # a misspelt field raises here
        assert all(getattr(run, field) == value for field, value in fields.items()), name


def test_decodings_read_each_flow_every_way_and_leave_a_classifier_its_one(study, monkeypatch, tmp_path):
    from medsymmflow.config import Profile
    from medsymmflow.data import synthetic_twin
    from medsymmflow.recipes import build_model, course_config

    data = synthetic_twin("pneumoniamnist", seed=0, max_per_split=32)
    built = {}

    def untrained(flag, data, name, seed, models):
        run = course_config(data.flag, Profile("fast"), seed=seed, allow_synthetic=True, **study.CANDIDATES[name])
        built[name] = build_model(run, data.n_classes, data.n_channels)
        return built[name], {"config": run.to_dict(), "best_step": 0, "train_or_load_seconds": 0.0}

    monkeypatch.setattr(study, "load_study_dataset", lambda name, root: data)
    monkeypatch.setattr(study, "train_candidate", untrained)
    results = study.run(["pneumoniamnist"], ["t1-25", "cnn-small"], [0], tmp_path, None, ["mean_colour", "pixel_vote"])
    read = [(r["model"], r["decoding"], r["draws"]) for r in results["rows"]]
    assert read == [
        ("t1-25", "mean_colour", 1),
        ("t1-25", "mean_colour", 8),
        ("t1-25", "pixel_vote", 1),
        ("t1-25", "pixel_vote", 8),
        ("cnn-small", None, 1),
        ("cnn-small", None, 8),
    ]
    assert built["t1-25"].decoding == "pixel_distance"  # its own reading back after the study
    # every row is also decided under the training split's class shares, and the report shows it
    assert all(0 <= r["acc_prior"] <= 1 and r["temperature_prior"] > 0 for r in results["rows"])
    assert all("acc_prior" in s and "balanced_accuracy_prior_std" in s for s in results["summary"])
    report = study.markdown(results)
    assert "decided under the training split's class shares" in report
    assert report.count("| pneumoniamnist | t1-25 | pixel_vote | 8 |") == 2  # both tables


def test_the_prior_decision_is_bayes_rule_on_the_same_distances(real_data):
    """``evaluate_test(with_prior=True)`` on a model whose distances are known: the prior-adjusted
    ACC is the accuracy of argmin(d / T - log pi) with pi the training split's class shares."""
    import torch

    from medsymmflow.reproduce import evaluate_test
    from medsymmflow.uncertainty import fit_temperature, prior_adjusted

    data = real_data("pneumoniamnist")

    class Fixed(torch.nn.Module):  # a weak "model" whose distances follow the images' brightness
        fit = "pad"

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def classify(self, images, steps, solver, n_samples, generator):
            from medsymmflow.models.symmflow import Classification

            brightness = images.flatten(1).mean(dim=1, keepdim=True)
            distances = torch.cat([brightness, 0.2 - brightness], dim=1)
            return Classification(distances.argmin(dim=1), distances, distances[None], None)

    model = Fixed()
    prior = np.bincount(data.labels("train"))
    scores = evaluate_test(model, data, 28, 1, 0, prior=prior)
    assert "acc_prior" not in evaluate_test(model, data, 28, 1, 0)  # measured only when asked
    from medsymmflow.latents import split_inputs

    val_images, val_labels = split_inputs(model, data, "val", 28)
    test_images, test_labels = split_inputs(model, data, "test", 28)
    temperature = fit_temperature(model.classify(val_images, 1, "euler", 1, None).distances, val_labels, prior=prior)
    assert scores["temperature_prior"] == pytest.approx(temperature)
    decided = prior_adjusted(model.classify(test_images, 1, "euler", 1, None).distances, temperature, prior)
    assert scores["acc_prior"] == pytest.approx(float((decided.argmin(dim=1) == test_labels).double().mean()))
    assert scores["acc_prior"] != scores["acc"]  # the prior moves decisions of this weak model
