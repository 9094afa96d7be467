import numpy as np
import pytest
import torch

from medsymmflow.data import fit_size, synthetic_twin, to_float


def test_to_float_maps_uint8_to_unit_interval_channels_first():
    gray = np.array([[[0, 255]]], dtype=np.uint8)
    rgb = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    assert torch.equal(to_float(gray), torch.tensor([[[[-1.0, 1.0]]]]))
    assert to_float(rgb).shape == (1, 3, 2, 2) and (to_float(rgb)[:, 1] == 1).all()
    with pytest.raises(ValueError, match="uint8"):
        to_float(np.zeros((1, 2, 2), dtype=np.float32))


def test_fit_size_pad_and_resize():
    x = torch.rand(2, 3, 28, 28) * 2 - 1
    assert fit_size(x, 28) is x
    assert fit_size(x, 256, "resize").shape == (2, 3, 256, 256)
    with pytest.raises(ValueError, match="cannot pad 28x28 images down to 16"):
        fit_size(x, 16)
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_size(x, 32, "crop")


def test_dataset_items_and_flips():
    twin = synthetic_twin("bloodmnist", max_per_split=8)
    plain = twin.dataset("train", image_size=32)
    image, label = plain[3]
    assert image.shape == (3, 32, 32) and isinstance(label, int)
    flipped = twin.dataset("train", image_size=32, flip=True)
    torch.manual_seed(0)
    seen = {torch.equal(flipped[3][0], image.flip(-1)) for _ in range(20)}
    assert seen == {True, False}
    with pytest.raises(ValueError, match="Unknown split 'valid'"):
        twin.dataset("valid")
    with pytest.raises(ValueError, match="cannot pad"):
        twin.dataset("train", image_size=16)
