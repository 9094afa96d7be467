import pytest
import torch
from torch import nn

from medsymmflow import checkpoints


def test_round_trip(tmp_path):
    model = nn.Linear(3, 2)
    path = checkpoints.save_weights(model, tmp_path / "sub" / "w.safetensors")
    other = nn.Linear(3, 2)
    checkpoints.load_weights(other, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]


def test_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = checkpoints.save_weights(nn.Linear(3, 2), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def crash(model, filename, metadata=None):
        open(filename, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_weights(nn.Linear(3, 2), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_shape_mismatch_is_refused(tmp_path):
    path = checkpoints.save_weights(nn.Linear(3, 2), tmp_path / "w.safetensors")
    with pytest.raises(RuntimeError, match="size mismatch|shape"):
        checkpoints.load_weights(nn.Linear(4, 2), path)


def test_cached_weights_are_keyed_by_every_setting_and_the_kind_of_data():
    settings = dict(flag="pneumoniamnist", preset="tiny", size=28, steps=250, batch=32, lr=1e-3, sigma_min=1e-4, seed=0)
    path = checkpoints.cached_weights_path("01_image_flow", settings, synthetic=False)
    assert path.parent.name == "checkpoints" and path.suffix == ".safetensors"
    assert path == checkpoints.cached_weights_path("01_image_flow", dict(reversed(list(settings.items()))), False)
    for name, value in (("lr", 2e-4), ("batch", 64), ("sigma_min", 1e-3), ("seed", 1)):
        assert checkpoints.cached_weights_path("01_image_flow", {**settings, name: value}, False) != path, name
    assert checkpoints.cached_weights_path("01_image_flow", settings, True).name.startswith("01_image_flow-synthetic_")


def test_atomic_text_write_replaces_whole_or_not_at_all(tmp_path):
    from medsymmflow.files import atomic_path, write_text_atomic

    path = write_text_atomic(tmp_path / "a" / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["metrics.json"]
