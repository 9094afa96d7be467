import math

import numpy as np
import pytest
import torch
from torch import nn

from medsymmflow import generation
from medsymmflow.checkpoints import load_checkpoint
from medsymmflow.config import Profile
from medsymmflow.data import synthetic_twin, to_float, to_uint8
from medsymmflow.evaluate import evaluate_split
from medsymmflow.models import VelocityUNet, make_unet
from medsymmflow.models.baselines import CNNClassifier, small_cnn
from medsymmflow.models.symmflow import SymmetricFlow
from medsymmflow.recipes import course_config
from medsymmflow.train import Trainer

CNN_STEPS = {"steps": 60, "checkpoint_every": 30}  # a few seconds on a CPU


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 28, 28, 3)])
def test_uint8_round_trip_is_exact(shape):
    stored = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(to_uint8(to_float(stored)), stored)
    assert to_uint8(torch.full((1, 1, 2, 2), 3.0)).max() == 255  # out-of-range values are clipped


def test_frechet_distance_closed_forms():
    a = torch.randn(400, 6, generator=torch.Generator().manual_seed(0)).double() + 1.0
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    assert generation.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # a shift moves only the means: FD = ||shift||^2
    assert generation.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)
    # b = 2a: S_b = 4 S_a, (S_a S_b)^(1/2) = 2 S_a, so FD = ||mu_a||^2 + Tr S_a
    expected = float(a.mean(0) @ a.mean(0)) + float(np.trace(np.cov(a.numpy(), rowvar=False)))
    assert generation.frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_agrees_with_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(0)
    features = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))  # any (N, 1, 4, 4) -> (N, 5) map
    real, fake = torch.rand(300, 1, 4, 4), torch.rand(300, 1, 4, 4) ** 2
    metric = FrechetInceptionDistance(feature=features, normalize=True, input_img_size=(1, 4, 4))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.no_grad():
        ours = generation.frechet_distance(features(real), features(fake))
    assert ours == pytest.approx(float(metric.compute()), rel=1e-3)


def test_frechet_distance_refuses_bad_shapes():
    with pytest.raises(ValueError, match="same D and N >= 2"):
        generation.frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="same D and N >= 2"):
        generation.frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


class _SignOfMean(nn.Module):
    """Logits (-m, m) of the image mean m: class 1 for bright images, 0 for dark ones."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-10.0], [10.0]]))
            self.head.bias.zero_()

    def forward(self, images):
        return self.head(images.mean(dim=(1, 2, 3))[:, None])


def test_classifier_agreement_counts_requested_classes():
    classifier = CNNClassifier(_SignOfMean(), 1, 2)
    bright, dark = torch.ones(1, 1, 4, 4), -torch.ones(1, 1, 4, 4)
    # class 0 requested 4 times: 3 dark (agree) and 1 bright; class 1 twice: both bright
    images = torch.cat([dark, dark, dark, bright, bright, bright])
    requested = torch.tensor([0, 0, 0, 0, 1, 1])
    result = generation.classifier_agreement(classifier, images, requested)
    assert result["agreement"] == pytest.approx(5 / 6)
    assert result["per_class"] == pytest.approx([0.75, 1.0])
    assert math.isnan(generation.classifier_agreement(classifier, dark, torch.tensor([0]))["per_class"][1])
    with pytest.raises(ValueError, match="one requested label per image"):
        generation.classifier_agreement(classifier, images, requested[:2])


def test_features_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    net = small_cnn(1, 3)
    classifier = CNNClassifier(net, 1, 3).train()
    images = torch.randn(7, 1, 28, 28)
    features = generation.classifier_features(classifier, images)
    with torch.no_grad():
        assert torch.allclose(features, net[:-2].eval()(images).double(), atol=1e-6)
    assert classifier.training  # the caller's mode is restored


def _twin():
    return synthetic_twin("breastmnist", max_per_split=300)


def test_cas_of_real_images_matches_the_real_classifier(tmp_path):
    """CAS has a known answer when the "generated" images are real ones: the accuracy of the same
    CNN trained on real images; with their labels shuffled it falls to chance."""
    data = _twin()
    images, labels = data.tensors("train")
    cas = generation.classification_accuracy_score(images, labels, data, seed=0, **CNN_STEPS)
    config = course_config(
        data.flag, Profile("fast"), n_train=len(labels), preset="cnn-small", allow_synthetic=True, **CNN_STEPS
    )
    model, _ = load_checkpoint(Trainer(config, tmp_path, data=data, progress=False).train().best_dir)
    test_images, test_labels = data.tensors("test")
    reference, _ = evaluate_split(model, test_images, test_labels, data.info["task"])
    assert reference["acc"] > 0.8
    assert abs(cas["acc"] - reference["acc"]) < 0.08
    assert cas["steps"] == CNN_STEPS["steps"]
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    chance = generation.classification_accuracy_score(images, shuffled, data, seed=0, **CNN_STEPS)
    assert chance["auc"] < 0.7 < reference["auc"]


def _tiny_flow(n_classes=2):
    torch.manual_seed(0)
    return SymmetricFlow(VelocityUNet(make_unet("tiny", 1 + 3, sample_size=28)), 1, n_classes).eval()


def test_generate_per_class_is_balanced_and_reproducible():
    model = _tiny_flow()
    images, labels = generation.generate_per_class(model, 3, 16, steps=2, seed=5)
    assert images.shape == (6, 1, 16, 16) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert images.min() >= -1 and images.max() <= 1
    again, _ = generation.generate_per_class(model, 3, 16, steps=2, seed=5)
    assert torch.equal(images, again)


def test_nfe_sweep_rows_and_smallest_nfe():
    data = _twin()
    classifier = CNNClassifier(small_cnn(1, 2), 1, 2).eval()
    rows = generation.nfe_sweep(
        _tiny_flow(), classifier, data, n_per_class=20, size=28, nfes=(1, 2, 4), solvers=("euler", "heun"), cas_nfes=()
    )
    assert [(r["solver"], r["nfe"], r["steps"]) for r in rows] == [
        ("euler", 1, 1),
        ("euler", 2, 2),
        ("euler", 4, 4),
        ("heun", 2, 1),
        ("heun", 4, 2),
    ]
    assert len({r["frechet_floor"] for r in rows}) == 1 and rows[0]["frechet_floor"] > 0
    assert all(0 <= r["agreement"] <= 1 and r["n_generated"] == 40 for r in rows)
    made = [
        {"solver": "euler", "nfe": 25, "cas": 0.90},
        {"solver": "euler", "nfe": 4, "cas": 0.885},
        {"solver": "heun", "nfe": 8, "cas": 0.895},
        {"solver": "euler", "nfe": 2, "cas": 0.70},
    ]
    assert generation.smallest_nfe_within(made) == (8, "heun")
    assert generation.smallest_nfe_within(made, tolerance=0.02) == (4, "euler")
    assert generation.smallest_nfe_within([*made, {"solver": "heun", "nfe": 2}]) == (8, "heun")  # no CAS: ignored
    with pytest.raises(ValueError, match="25-step Euler"):
        generation.smallest_nfe_within(made[1:])
    with pytest.raises(ValueError, match="higher is better"):
        generation.smallest_nfe_within(made, metric="frechet")


def test_solver_steps_and_a_sweep_that_never_repeats_itself():
    assert [generation.solver_steps(n, "heun") for n in (1, 2, 5, 25)] == [None, 1, 2, 12]
    assert generation.solver_steps(1, "euler") == 1
    data = _twin()
    classifier = CNNClassifier(small_cnn(1, 2), 1, 2).eval()
    rows = generation.nfe_sweep(_tiny_flow(), classifier, data, 4, 28, nfes=(4, 5), solvers=("heun",), cas_nfes=())
    assert [(r["steps"], r["nfe"]) for r in rows] == [(2, 4)]  # NFE 5 rounds to the same 2 Heun steps


def test_real_halves_are_disjoint_balanced_and_labelled():
    data = _twin()
    (a, labels_a), (b, labels_b) = generation.real_halves(data, 20, 28, seed=1)
    assert labels_a.tolist() == labels_b.tolist() == [0] * 20 + [1] * 20
    images, labels = data.tensors("train")
    for half, half_labels in ((a, labels_a), (b, labels_b)):  # each image is a real one of its stated class
        match = (half[:, None] == images[None]).flatten(2).all(dim=2)
        assert match.any(dim=1).all()
        assert torch.equal(labels[match.float().argmax(dim=1)], half_labels)
    assert not (a[:, None] == b[None]).flatten(2).all(dim=2).any()  # disjoint


def test_a_short_class_caps_the_sweep_so_both_sets_hold_the_same_classes():
    data = _twin()
    keep = np.concatenate([np.flatnonzero(data.labels("train") == 0)[:6], np.flatnonzero(data.labels("train") == 1)])
    data.arrays["train_images"], data.arrays["train_labels"] = (
        data.arrays["train_images"][keep],
        data.arrays["train_labels"][keep],
    )
    (_, labels_a), (_, labels_b) = generation.real_halves(data, 20, 28)
    assert labels_a.tolist() == labels_b.tolist() == [0] * 3 + [1] * 20
    classifier = CNNClassifier(small_cnn(1, 2), 1, 2).eval()
    (row,) = generation.nfe_sweep(_tiny_flow(), classifier, data, 20, 28, nfes=(1,), solvers=("euler",), cas_nfes=())
    assert row["n_generated"] == 6  # 3 of each class, as many as each real sample has of the short class
