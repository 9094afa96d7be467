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
