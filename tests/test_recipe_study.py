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
