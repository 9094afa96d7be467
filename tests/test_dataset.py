import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from medsymmflow.data import fit_size, shift_images, synthetic_twin, to_float


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


def test_shift_images_moves_each_image_by_its_own_offset_and_repeats_the_edges():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(shift_images(x, torch.tensor([[0, 0]])), x)
    down_left = shift_images(x, torch.tensor([[-1, 2]]))  # out[y, x] = in[clamp(y - 1), clamp(x + 2)]
    assert down_left[0, 0].tolist() == [[2, 3, 3, 3], [2, 3, 3, 3], [6, 7, 7, 7]]
    images, offsets = torch.randn(6, 3, 7, 9), torch.randint(-2, 3, (6, 2))
    shifted = shift_images(images, offsets)
    for image, out, (dy, dx) in zip(images, shifted, offsets.tolist(), strict=True):  # torchvision's pad, crop
        padded = TF.pad(image, [2], padding_mode="edge")
        assert torch.equal(out, TF.crop(padded, 2 + dy, 2 + dx, 7, 9))


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
