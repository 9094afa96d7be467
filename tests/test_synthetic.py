import numpy as np
import pytest

from medsymmflow.data import make_synthetic, synthetic_twin
from medsymmflow.data import medmnist as files


def test_deterministic_for_a_seed():
    a = make_synthetic(4, 3, seed=7, n_samples={"train": 50, "val": 10, "test": 20})
    b = make_synthetic(4, 3, seed=7, n_samples={"train": 50, "val": 10, "test": 20})
    c = make_synthetic(4, 3, seed=8, n_samples={"train": 50, "val": 10, "test": 20})
    for key in a.arrays:
        assert np.array_equal(a.arrays[key], b.arrays[key])
    assert not np.array_equal(a.arrays["train_images"], c.arrays["train_images"])
    assert all(np.array_equal(a.ambiguous[s], b.ambiguous[s]) for s in files.SPLITS)


def test_official_format_round_trips_through_the_loader(tmp_path):
    twin = synthetic_twin("pneumoniamnist", seed=1)
    path = tmp_path / "pneumoniamnist.npz"
    np.savez(path, **twin.arrays)
    arrays = files.read_npz(path, "pneumoniamnist")
    assert sorted(arrays) == sorted(f"{s}_{k}" for s in files.SPLITS for k in ("images", "labels"))
    for split, n in {"train": 4708, "val": 524, "test": 624}.items():
        assert arrays[f"{split}_images"].shape == (n, 28, 28) and arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_labels"].shape == (n, 1) and arrays[f"{split}_labels"].dtype == np.uint8


def test_ambiguity_is_recorded():
    data = make_synthetic(5, 1, ambiguous_fraction=0.2, seed=0, n_samples={"train": 2000, "val": 10, "test": 10})
    flags, partner = data.ambiguous["train"], data.partner["train"]
    labels = data.arrays["train_labels"][:, 0]
    assert 0.17 < flags.mean() < 0.23
    assert (partner[~flags] == -1).all()
    assert ((partner[flags] >= 0) & (partner[flags] < 5) & (partner[flags] != labels[flags])).all()


def test_ambiguous_images_sit_between_their_two_classes():
    """A nearest-class-mean classifier is sure on clean samples and unsure on blended ones."""
    data = make_synthetic(
        3, 1, noise=0.0, ambiguous_fraction=0.3, seed=0, n_samples={"train": 3000, "val": 10, "test": 10}
    )
    x = data.arrays["train_images"].reshape(3000, -1).astype(float)
    labels, flags = data.arrays["train_labels"][:, 0], data.ambiguous["train"]
    spectra = np.abs(np.fft.rfft2(x.reshape(-1, 28, 28))).reshape(3000, -1)  # phase-invariant features
    means = np.stack([spectra[(labels == k) & ~flags].mean(0) for k in range(3)])
    d = np.linalg.norm(spectra[:, None] - means[None], axis=2)
    d.sort(axis=1)
    margin = d[:, 1] - d[:, 0]
    assert np.median(margin[flags]) < 0.5 * np.median(margin[~flags])


def test_twin_matches_info_for_every_flag_shape():
    for flag in ["retinamnist", "bloodmnist", "organamnist"]:
        twin = synthetic_twin(flag, max_per_split=16)
        info = files.dataset_info(flag)
        assert twin.n_classes == len(info["label"]) and twin.synthetic
        assert twin.images("val").shape[-1 if info["n_channels"] == 3 else 0] in (3, 16)
        assert twin.labels("test").max() < twin.n_classes


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_classes": 1}, "at least 2"),
        ({"n_classes": 3, "n_channels": 2}, "1 or 3"),
        ({"n_classes": 3, "ambiguous_fraction": 1.0}, r"\[0, 1\)"),
        ({"n_classes": 3, "n_samples": {"train": 5}}, "positive count"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)
