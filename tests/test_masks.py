import numpy as np
import pytest
import torch

from medsymmflow.data import masks


def test_palette_is_the_papers():
    palette = masks.rgb_palette()
    assert palette.shape == (64, 3) and len({tuple(c) for c in palette}) == 64
    assert set(np.unique(palette)) == {0, 75, 150, 225}


def test_class_colours_spread_over_the_palette():
    colours = masks.class_colours(2)
    # entries 0 and 63: black and (225, 225, 225)
    assert torch.allclose(colours, torch.tensor([[-1.0, -1.0, -1.0], [225 / 127.5 - 1] * 3]))
    five = masks.class_colours(5, palette_index="round")
    expected_index = [0, 16, 32, 47, 63]  # round(linspace(0, 63, 5)), the course's first palette
    assert torch.allclose(five, torch.tensor(masks.rgb_palette()[expected_index] / 127.5 - 1, dtype=torch.float32))
    gray = masks.class_colours(3, "gray", gray_beta=2.0)  # the course's first gray: levels in [-1, 1]
    assert torch.allclose(gray, torch.tensor([[-1.0], [0.0], [1.0]]))


@pytest.mark.parametrize("mode", ["rgb", "gray", "onehot"])
@pytest.mark.parametrize("n_classes", range(2, 12))
@pytest.mark.parametrize("beta", [0.0, 4.0])
@pytest.mark.parametrize("decoding", masks.DECODINGS)
def test_round_trip_is_exact(mode, n_classes, beta, decoding):
    labels = torch.arange(n_classes).repeat(3)
    generator = torch.Generator().manual_seed(n_classes)
    m = masks.labels_to_masks(labels, n_classes, 8, mode, beta=beta, generator=generator)
    assert m.shape == (3 * n_classes, masks.mask_channels(mode, n_classes), 8, 8)
    colours = masks.class_colours(n_classes, mode)
    assert torch.equal(masks.masks_to_labels(m, colours, decoding), labels)
    if beta:
        spread = (m - masks.labels_to_masks(labels, n_classes, 8, mode)).abs()
        assert spread.max() > 0
        assert spread.max() <= (7.5 / (n_classes - 1) / 2 if mode == "gray" else beta / 255)


def test_dequantization_width():
    m = masks.labels_to_masks(
        torch.zeros(2000, dtype=torch.long), 2, 4, beta=4.0, generator=torch.Generator().manual_seed(0)
    )
    noise = m + 1.0  # class 0 is black = -1
    assert noise.min() >= -4 / 255 and noise.max() <= 4 / 255
    assert noise.max() - noise.min() > 0.99 * 8 / 255  # width beta / 127.5


def test_pixel_distance_and_mean_colour_distance_on_a_4x4_mask():
    colours = masks.class_colours(2, "gray", gray_beta=2.0)  # -1 and +1: gray distances are in label units (/ 2)
    m = torch.full((1, 1, 4, 4), 0.5)
    m[0, 0, 0, 0] = -1.5  # mean = (15 * 0.5 - 1.5) / 16 = 0.375
    assert torch.allclose(masks.mask_distances(m, colours, "mean_colour"), torch.tensor([[1.375, 0.625]]) / 2)
    # per pixel: to -1, (15 * 1.5 + 0.5) / 16 = 1.4375; to +1, (15 * 0.5 + 2.5) / 16 = 0.625
    assert torch.allclose(masks.mask_distances(m, colours), torch.tensor([[1.4375, 0.625]]) / 2)


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\).*from 0 to 3"):
        masks.labels_to_masks(torch.tensor([0, 3]), 3, 4)
    with pytest.raises(ValueError, match="from -1"):
        masks.labels_to_masks(torch.tensor([-1]), 3, 4)
    with pytest.raises(ValueError, match="must be integers"):
        masks.labels_to_masks(torch.tensor([0.5]), 3, 4)


def test_bad_palette_requests():
    with pytest.raises(ValueError, match=r"n_classes must lie in \[2, 64\]"):
        masks.class_colours(65)
    with pytest.raises(ValueError, match="Unknown mask mode 'hsv'"):
        masks.class_colours(3, "hsv")
    with pytest.raises(ValueError, match="C = 3"):
        masks.mask_distances(torch.zeros(2, 1, 4, 4), masks.class_colours(2))


def test_multilabel_task_is_declared_unsupported():
    from medsymmflow.data import dataset_info

    with pytest.raises(ValueError, match="multi-label"):
        masks.check_task(dataset_info("chestmnist"))
    for flag in ["pneumoniamnist", "retinamnist", "dermamnist", "bloodmnist", "organamnist"]:
        masks.check_task(dataset_info(flag))


def test_truncated_palette_index_is_the_official_codes():
    # official: linspace(0, 63, K).long(); K = 5 -> 0, 15, 31, 47, 63 (rounding gives 0, 16, 32, 47, 63)
    five = masks.class_colours(5)  # the default is the official palette
    assert torch.allclose(five, torch.tensor(masks.rgb_palette()[[0, 15, 31, 47, 63]] / 127.5 - 1, dtype=torch.float32))
    # entry 15 = (0, 225, 225) in 0-255 units (R slowest): index 15 = 0*16 + 3*4 + 3
    assert torch.allclose((five[1] + 1) * 127.5, torch.tensor([0.0, 225.0, 225.0]))
    for k in (2, 3, 4, 6, 8, 10):  # where linspace(0, 63, K) has no fraction >= 0.5 both agree
        positions = np.linspace(0, 63, k)
        same = np.array_equal(np.round(positions), np.floor(positions))
        assert torch.equal(masks.class_colours(k), masks.class_colours(k, palette_index="round")) == same
    with pytest.raises(ValueError, match="Unknown palette_index 'floor'"):
        masks.class_colours(5, palette_index="floor")


def test_pixel_distance_and_mean_colour_decodings_on_a_hand_computed_mask():
    # one-channel 2 x 2 mask with pixels 1, 1, -1, -1 and classes at -1 and +1:
    # mean colour 0 -> distances (1, 1); per-pixel distances |p - c| average to (1, 1) as well,
    # so use pixels 1, 1, 1, -1: mean 0.5 -> (1.5, 0.5); pixel mean of |p+1| = (2+2+2+0)/4 = 1.5, of |p-1| = (0+0+0+2)/4 = 0.5
    # (gray levels 2 apart: in label units, halved)
    colours = torch.tensor([[-1.0], [1.0]])
    mask = torch.tensor([1.0, 1.0, 1.0, -1.0]).reshape(1, 1, 2, 2)
    assert torch.allclose(masks.mask_distances(mask, colours, "mean_colour"), torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(masks.mask_distances(mask, colours), torch.tensor([[0.75, 0.25]]))
    # three channels: pixels (1,0,0) and (-1,0,0) over colour (0,0,0): mean colour sits on it (distance 0),
    # each pixel is 1 away (pixel distance 1): the mean colour drops the spatial spread.
    rgb = torch.tensor([[[[1.0, -1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    centre = torch.zeros(1, 3)
    assert masks.mask_distances(rgb, centre, "mean_colour").item() == pytest.approx(0.0)
    assert masks.mask_distances(rgb, centre).item() == pytest.approx(1.0)  # the default is the official decoding
    with pytest.raises(ValueError, match="Unknown decoding 'mode'"):
        masks.mask_distances(rgb, centre, "mode")


def test_mean_colour_distance_never_exceeds_pixel_distance():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(16, 3, 5, 5, generator=generator)
    colours = masks.class_colours(7)
    assert (masks.mask_distances(m, colours, "mean_colour") <= masks.mask_distances(m, colours) + 1e-6).all()


def test_gray_masks_are_the_papers():
    # official: label i -> (beta_g / 2)(2 i / (K - 1) - 1), beta_g = 15; K = 5 -> -7.5, -3.75, 0, 3.75, 7.5
    five = masks.class_colours(5, "gray")
    assert torch.allclose(five[:, 0], torch.tensor([-7.5, -3.75, 0.0, 3.75, 7.5]))
    # dequantization: centred uniform noise of width (beta_g / 2) / (K - 1) = 1.875 for K = 5
    assert masks.dequantization_width(5, "gray", 4.0) == pytest.approx(1.875)
    assert masks.dequantization_width(5, "gray", 0.0) == 0.0
    assert masks.dequantization_width(5, "rgb", 4.0) == pytest.approx(4 / 127.5)
    m = masks.labels_to_masks(torch.full((500,), 2), 5, 4, "gray", beta=4.0, generator=torch.Generator().manual_seed(0))
    assert m.abs().max() <= 1.875 / 2 and m.max() - m.min() > 0.99 * 1.875
    with pytest.raises(ValueError, match="gray_beta must be positive"):
        masks.class_colours(3, "gray", gray_beta=0.0)


def test_gray_decoding_is_the_official_mean_rescale_round():
    # official: v = (mean / (beta_g / 2) * 0.5 + 0.5)(K - 1), label = clamp(round(v)), d_i = |v - i|
    colours = masks.class_colours(5, "gray")
    m = torch.tensor([1.0, 3.0, 1.0, 3.0]).reshape(1, 1, 2, 2)  # mean 2 -> v = (2 / 7.5 * 0.5 + 0.5) * 4 = 2.5333
    v = (2 / 7.5 * 0.5 + 0.5) * 4
    expected = torch.tensor([[abs(v - i) for i in range(5)]])
    assert torch.allclose(masks.mask_distances(m, colours, "mean_colour"), expected)
    assert masks.masks_to_labels(m, colours, "mean_colour").item() == 3
    beyond = torch.full((1, 1, 2, 2), 9.0)  # v = 4.4: clamped to the last class
    assert masks.masks_to_labels(beyond, colours, "mean_colour").item() == 4
    assert (masks.MODE_DECODINGS["rgb"], masks.MODE_DECODINGS["gray"]) == ("pixel_distance", "mean_colour")


def test_pixel_vote_is_the_per_pixel_majority():
    colours = masks.class_colours(3)  # entries 0, 31, 63
    pixel_labels = torch.tensor([[0, 0], [1, 2]])
    m = colours[pixel_labels].permute(2, 0, 1)[None]  # (1, 3, 2, 2): two pixels of class 0, one each of 1 and 2
    assert torch.allclose(masks.mask_distances(m, colours, "pixel_vote"), torch.tensor([[0.5, 0.75, 0.75]]))
    tie = colours[torch.tensor([[0, 1], [1, 0]])].permute(2, 0, 1)[None]
    assert masks.masks_to_labels(tie, colours, "pixel_vote").item() == 0  # ties go to the lower class
    # vote and pixel distance disagree: three pixels slightly nearer class 1 than 0, one pixel far past class 0
    gray = torch.tensor([[-1.0], [1.0]])
    m = torch.tensor([0.1, 0.1, 0.1, -9.0]).reshape(1, 1, 2, 2)
    assert masks.masks_to_labels(m, gray, "pixel_vote").item() == 1
    assert masks.masks_to_labels(m, gray, "pixel_distance").item() == 0


def test_onehot_masks_decode_the_posterior_mix_by_its_largest_weight():
    colours = masks.class_colours(4, "onehot")
    assert torch.equal(colours, 2 * torch.eye(4) - 1)
    assert masks.mask_channels("onehot", 4) == 4
    gaps = torch.cdist(colours, colours)[~torch.eye(4, dtype=bool)]
    assert torch.allclose(gaps, torch.full_like(gaps, 8**0.5))  # every pair 2 sqrt(2) apart
    # one Euler step lands on E[y | x] = sum_k p_k c_k; its nearest one-hot colour is argmax p
    p = torch.tensor([0.45, 0.0, 0.0, 0.55])
    mix = (p[:, None] * colours).sum(0)[None, :, None, None].expand(1, 4, 2, 2)
    assert masks.masks_to_labels(mix, colours, "mean_colour").item() == 3
    # over RGB colours for K = 4 (entries 0, 21, 42, 63: four grays on one line) the same mix sits at
    # 0.55 * 3 = 1.65 steps along the line: nearest class 2, which has probability 0
    rgb = masks.class_colours(4)
    rgb_mix = (p[:, None] * rgb).sum(0)[None, :, None, None].expand(1, 3, 2, 2)
    assert masks.masks_to_labels(rgb_mix, rgb, "mean_colour").item() == 2


@pytest.mark.parametrize("n_classes", [2, 3, 5, 8, 11])
def test_posterior_mix_distances_agree_with_decoding_the_mix_as_a_mask(n_classes):
    posteriors = torch.distributions.Dirichlet(torch.ones(n_classes)).sample((200,))
    for mode in masks.MODES:
        centres = masks.class_colours(n_classes, mode)
        d = masks.posterior_mix_distances(posteriors, centres)
        assert d.shape == (200, n_classes)
        mix_masks = (posteriors @ centres)[:, :, None, None].expand(-1, -1, 3, 3)
        assert torch.equal(d.argmin(dim=1), masks.masks_to_labels(mix_masks, centres, "mean_colour"))
        # one posterior at a time gives the same row
        assert torch.allclose(masks.posterior_mix_distances(posteriors[7], centres), d[7])
        if mode == "onehot" or n_classes == 2:  # the nearest centre is the most probable class
            assert torch.equal(d.argmin(dim=1), posteriors.argmax(dim=1))


def test_posterior_mix_misreads_a_split_posterior_over_the_paper_palette():
    posterior = torch.tensor([0.0, 0.55, 0.0, 0.45, 0.0])
    d = masks.posterior_mix_distances(posterior, masks.class_colours(5))
    assert int(d.argmin()) == 2 and float(d.min()) < 0.1  # a near-certain answer for a class of probability 0
    with pytest.raises(ValueError, match="over 5 classes, but 4 centres"):
        masks.posterior_mix_distances(posterior, masks.class_colours(4))


@pytest.mark.parametrize("n_classes", range(2, 12))
def test_centre_separation_closed_forms(n_classes):
    assert masks.centre_separation(n_classes, "onehot") == pytest.approx(2 * np.sqrt(2))
    assert masks.centre_separation(n_classes, "gray") == pytest.approx(15 / (n_classes - 1))
    assert masks.centre_separation(n_classes, "gray", gray_beta=2.0) == pytest.approx(2 / (n_classes - 1))
    colours = masks.class_colours(n_classes).double()
    gaps = [float((colours[j] - colours[k]).norm()) for j in range(n_classes) for k in range(j)]
    assert masks.centre_separation(n_classes, "rgb") == pytest.approx(min(gaps))


def test_centre_separation_of_the_palette_extremes():
    assert masks.centre_separation(2) == pytest.approx(np.sqrt(3) * 225 / 127.5)  # black vs (225, 225, 225)
    assert masks.centre_separation(5) == pytest.approx(75 / 127.5)  # truncation: four classes on one line
