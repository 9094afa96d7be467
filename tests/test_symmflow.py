import pytest
import torch
from torch import nn

from medsymmflow.data.masks import class_colours, labels_to_masks, mask_distances
from medsymmflow.evaluate import reading
from medsymmflow.flow.paths import sample_time
from medsymmflow.models import SymmetricFlow, VelocityUNet, make_unet


class Scale(nn.Module):
    """v(z, t) = a * z + t: simple enough to compute the loss by hand."""

    def __init__(self, a=0.5):
        super().__init__()
        self.a = a

    def forward(self, z, t):
        return self.a * z + t.reshape(-1, 1, 1, 1)


class PerfectClassifier(nn.Module):
    """At t = 1 returns the exact mask velocity for the true class, read off the image.

    Images are constant: class k has value k / 10. Since y_1 = sigma_min * y + xi_y and the
    target is xi_y - (1 - sigma_min) y, the perfect mask velocity is y_1 - y.
    """

    def __init__(self, n_classes, image_channels=1, mode="rgb"):
        super().__init__()
        self.colours = class_colours(n_classes, mode)
        self.image_channels = image_channels

    def forward(self, z, t):
        x, y = z[:, : self.image_channels], z[:, self.image_channels :]
        labels = torch.round(x.mean(dim=(1, 2, 3)) * 10).long()
        mask = self.colours[labels][:, :, None, None]
        return torch.cat([torch.zeros_like(x), y - mask], dim=1)


def test_loss_equals_hand_computation():
    model = SymmetricFlow(
        Scale(0.5),
        image_channels=1,
        n_classes=3,
        mask_mode="gray",
        image_weight=0.7,
        sigma_min=0.1,
        beta=0.0,
        gray_beta=2.0,
    )
    images = torch.tensor([0.2, -0.4]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2).clone()
    labels = torch.tensor([2, 0])
    t = torch.tensor([0.5, 0.25])
    image_noise = torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2).clone()
    mask_noise = torch.tensor([0.5, 2.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2).clone()
    parts = model.loss(images, labels, t, image_noise, mask_noise)
    # gray colours for K = 3: -1, 0, 1 -> masks y = [1, -1]
    y = torch.tensor([1.0, -1.0])
    x, xi_x, xi_y, tt = torch.tensor([0.2, -0.4]), torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0]), t
    x_t = (1 - 0.9 * tt) * xi_x + tt * x
    y_t = (1 - 0.9 * tt) * y + tt * xi_y
    image_target, mask_target = x - 0.9 * xi_x, xi_y - 0.9 * y
    image_mse = ((0.5 * x_t + tt - image_target) ** 2).mean()
    mask_mse = ((0.5 * y_t + tt - mask_target) ** 2).mean()
    assert torch.isclose(parts.image, image_mse) and torch.isclose(parts.mask, mask_mse)
    assert torch.isclose(parts.total, 0.7 * image_mse + 0.3 * mask_mse)


def test_loss_weight_extremes_and_validation():
    images, labels = torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    only_image = SymmetricFlow(Scale(), 1, 2, image_weight=1.0).loss(images, labels, generator=g())
    assert torch.isclose(only_image.total, only_image.image)
    with pytest.raises(ValueError, match="image_weight"):
        SymmetricFlow(Scale(), 1, 2, image_weight=1.5)
    with pytest.raises(ValueError, match=r"images must be \(N, 1, H, W\)"):
        SymmetricFlow(Scale(), 1, 2).loss(torch.zeros(2, 3, 4, 4), labels)
    with pytest.raises(ValueError, match="labels must lie in"):
        SymmetricFlow(Scale(), 1, 2).loss(images, torch.tensor([0, 2]))


@pytest.mark.parametrize("n_classes, mode", [(2, "rgb"), (5, "rgb"), (11, "rgb"), (4, "gray")])
def test_one_step_classification_with_a_perfect_field_recovers_the_labels(n_classes, mode):
    model = SymmetricFlow(PerfectClassifier(n_classes, 1, mode), 1, n_classes, mode)
    labels = torch.arange(n_classes).repeat(4)
    images = (labels / 10).reshape(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    result = model.classify(images, steps=1, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.labels, labels)
    assert torch.allclose(result.masks, labels_to_masks(labels, n_classes, 8, mode), atol=1e-5)
    assert result.distances.gather(1, labels[:, None]).max() < 1e-5
    assert result.sample_distances.shape == (3, len(labels), n_classes)


def test_reading_classifies_with_another_decoding_and_restores_the_models_own():
    model = SymmetricFlow(PerfectClassifier(3), 1, 3)
    images = torch.tensor([0.0, 0.1, 0.2]).reshape(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    with model.reading(decoding="pixel_vote"):
        assert model.decoding == "pixel_vote"
        voted = model.classify(images, generator=torch.Generator().manual_seed(0))
    assert model.decoding == "pixel_distance"
    with reading(model, decoding="mean_colour"):  # the evaluation helper hands a flow's choices on
        assert model.decoding == "mean_colour"
    assert model.decoding == "pixel_distance"
    own = model.classify(images, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(voted.distances, mask_distances(voted.masks, model.colours, "pixel_vote"))
    assert not torch.allclose(voted.distances, own.distances)  # the votes are 0 / 1, the distances are not
    with pytest.raises(RuntimeError), model.reading(decoding="pixel_vote", mask_space="latent"):
        raise RuntimeError("an evaluation that fails half-way")
    assert (model.decoding, model.mask_space) == ("pixel_distance", "pixel")
    with pytest.raises(ValueError, match="Unknown decoding 'median'"), model.reading(decoding="median"):
        pass
    assert model.decoding == "pixel_distance"


def test_generate_and_classify_shapes_with_a_unet():
    net = VelocityUNet(make_unet("tiny", in_channels=3 + 3, sample_size=16))
    model = SymmetricFlow(net, image_channels=3, n_classes=7).eval()
    g = torch.Generator().manual_seed(0)
    generated = model.generate(torch.tensor([0, 3, 6]), size=16, steps=2, return_trajectory=True, generator=g)
    assert generated.images.shape == (3, 3, 16, 16) and generated.trajectory.shape == (3, 3, 6, 16, 16)
    result = model.classify(generated.images, generator=g)
    assert result.labels.shape == (3,) and 0 <= result.labels.min() and result.labels.max() < 7
    assert result.distances.shape == (3, 7) and result.masks.shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        model.classify(generated.images, n_samples=0)


def test_generation_starts_from_the_class_mask():
    model = SymmetricFlow(Scale(0.0), 1, 3, "gray")  # v = t: everything drifts by the same amount
    out = model.generate(
        torch.tensor([0, 2]), size=4, steps=1, return_trajectory=True, generator=torch.Generator().manual_seed(0)
    )
    start_masks = out.trajectory[0][:, 1:]
    assert torch.equal(start_masks[:, 0, 0, 0], torch.tensor([-7.5, 7.5]))  # the paper's gray levels


def test_classify_share_trains_that_share_of_the_batch_at_t_equal_1():
    images, labels = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    model = SymmetricFlow(Scale(0.5), 1, 3, beta=0.0, classify_share=1.0)
    drawn = model.loss(images, labels, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same draws in the same order: t, the share's coin, the noises
    sample_time(6, g), sample_time(6, g)
    image_noise, mask_noise = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    at_one = model.loss(images, labels, torch.ones(6), image_noise, mask_noise)
    assert torch.isclose(drawn.total, at_one.total)
    with pytest.raises(ValueError, match="classify_share must lie in"):
        SymmetricFlow(Scale(), 1, 3, classify_share=1.5)


def test_classify_mask_only_leaves_the_t_equal_1_samples_out_of_the_image_term():
    images, labels = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    t = torch.tensor([1.0, 0.3, 1.0, 0.6])
    noises = torch.randn(4, 1, 4, 4), torch.randn(4, 3, 4, 4)
    only = SymmetricFlow(Scale(0.5), 1, 3, beta=0.0, classify_share=0.5, classify_mask_only=True)
    paper = SymmetricFlow(Scale(0.5), 1, 3, beta=0.0, classify_share=0.5)
    masked = only.loss(images, labels, t, *noises)
    full = paper.loss(images, labels, t, *noises)
    kept = paper.loss(images[[1, 3]], labels[[1, 3]], t[[1, 3]], noises[0][[1, 3]], noises[1][[1, 3]])
    assert torch.isclose(masked.image, kept.image)  # the image term: the samples with t < 1 alone
    assert torch.equal(masked.mask, full.mask)  # the mask term: every sample, as in the paper
    w = only.image_weight
    assert torch.isclose(masked.total, w * kept.image + (1 - w) * full.mask)
    all_at_one = only.loss(images, labels, torch.ones(4), *noises)
    assert all_at_one.image == 0 and torch.isclose(all_at_one.total, (1 - w) * all_at_one.mask)
    every_one = SymmetricFlow(Scale(0.5), 1, 3, beta=0.0, classify_share=1.0, classify_mask_only=True)
    drawn = every_one.loss(images, labels, generator=torch.Generator().manual_seed(0))  # t drawn, all set to 1
    assert drawn.image == 0 and drawn.mask > 0


def test_classify_images_replace_the_images_at_t_equal_1_only():
    images, moved = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    labels, t = torch.tensor([0, 1, 2, 0]), torch.tensor([1.0, 0.3, 1.0, 0.6])
    noises = torch.randn(4, 1, 4, 4), torch.randn(4, 3, 4, 4)
    model = SymmetricFlow(Scale(0.5), 1, 3, beta=0.0, classify_share=0.5)
    mixed = torch.where(torch.tensor([True, False, True, False]).view(-1, 1, 1, 1), moved, images)
    given = model.loss(images, labels, t, *noises, classify_images=moved)
    by_hand = model.loss(mixed, labels, t, *noises)
    assert all(torch.equal(getattr(given, term), getattr(by_hand, term)) for term in ("total", "image", "mask"))
    below_one = torch.tensor([0.1, 0.3, 0.9, 0.6])  # no sample at t = 1: the classify images are unused
    assert torch.equal(
        model.loss(images, labels, below_one, *noises, classify_images=moved).total,
        model.loss(images, labels, below_one, *noises).total,
    )
    with pytest.raises(
        ValueError, match=r"classify_images must have the shape of images \(4, 1, 4, 4\), got \(4, 1, 2, 2\)"
    ):
        model.loss(images, labels, t, *noises, classify_images=moved[..., :2, :2])


def test_per_image_weights_make_both_terms_weighted_means():
    images, labels = torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 2])
    t = torch.tensor([0.2, 0.7, 1.0])
    noises = torch.randn(3, 1, 4, 4), torch.randn(3, 3, 4, 4)
    for mask_only in (False, True):
        model = SymmetricFlow(Scale(0.5), 1, 3, beta=0.0, classify_share=0.5, classify_mask_only=mask_only)
        plain = model.loss(images, labels, t, *noises)
        ones = model.loss(images, labels, t, *noises, weights=torch.ones(3))
        assert all(torch.isclose(getattr(ones, term), getattr(plain, term)) for term in ("total", "image", "mask"))
        # weights (2, 0, 0): each mean is 2/3 of the first image's term (divided by N = 3, not by the sum 2)
        first = model.loss(images[:1], labels[:1], t[:1], noises[0][:1], noises[1][:1])
        weighted = model.loss(images, labels, t, *noises, weights=torch.tensor([2.0, 0.0, 0.0]))
        assert torch.isclose(weighted.mask, first.mask * 2 / 3)
        # the image term of mask-only divides by the 2 images with t < 1: 2/2 of it
        assert torch.isclose(weighted.image, first.image * (1.0 if mask_only else 2 / 3))
    with pytest.raises(ValueError, match=r"weights must hold one number per image, shape \(3,\); got \(3, 1\)"):
        model.loss(images, labels, t, *noises, weights=torch.ones(3, 1))


def test_classify_share_sets_that_share_of_the_times_to_1():
    seen = []

    class Record(nn.Module):
        def forward(self, z, t):
            seen.append(t)
            return torch.zeros_like(z)

    model = SymmetricFlow(Record(), 1, 2, beta=0.0, classify_share=0.3)
    model.loss(
        torch.zeros(20000, 1, 1, 1), torch.zeros(20000, dtype=torch.long), generator=torch.Generator().manual_seed(0)
    )
    share = (seen[0] == 1).float().mean().item()
    assert abs(share - 0.3) < 0.015  # the rest is U(0, 1), which almost never gives exactly 1
