import pytest
import torch

from medsymmflow.checkpoints import load_checkpoint
from medsymmflow.data import synthetic_twin
from medsymmflow.evaluate import evaluate_split, reading
from medsymmflow.latents import split_inputs
from medsymmflow.metrics import distance_scores
from medsymmflow.models.baselines import BASELINES, CNNClassifier
from medsymmflow.recipes import TrainConfig, build_model
from medsymmflow.train import Trainer
from medsymmflow.uncertainty import predicted_class_distance


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_take_28_and_32_px(name):
    net = BASELINES[name](3, 5)
    for size in (28, 32):
        assert net(torch.zeros(2, 3, size, size)).shape == (2, 5)


def test_a_baseline_fits_its_images_as_its_config_says():
    data = synthetic_twin("pneumoniamnist", max_per_split=8)
    config = TrainConfig(dataset="pneumoniamnist", preset="cnn-small", image_size=16, fit="resize")
    model = build_model(config, data.n_classes, data.n_channels)
    images, _ = split_inputs(model, data, "val", config.image_size)
    torch.testing.assert_close(images, data.tensors("val", 16, "resize")[0])
    assert model.classify(images).distances.shape == (len(images), 2)


def test_distances_are_negative_log_probabilities():
    torch.manual_seed(0)
    model = CNNClassifier(BASELINES["cnn-small"](1, 3), 1, 3)
    x = torch.randn(6, 1, 28, 28)
    result = model.classify(x)
    model.eval()
    p = torch.softmax(model(x), dim=1)
    assert torch.allclose(result.distances, -torch.log(p), atol=1e-5)
    assert torch.equal(result.labels, p.argmax(1)) and result.masks is None
    # softmax(-d / T) is temperature scaling of the logits; min d ranks like max softmax probability
    assert torch.allclose(
        distance_scores(result.distances, 2.0).float(), torch.softmax(model(x) / 2.0, dim=1), atol=1e-5
    )
    assert torch.allclose(predicted_class_distance(result.distances), -torch.log(p.max(1).values), atol=1e-5)


def test_weighted_cross_entropy_is_the_weighted_mean_of_the_per_image_terms():
    torch.manual_seed(0)
    model = CNNClassifier(BASELINES["cnn-small"](1, 3), 1, 3).eval()
    x, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 1])
    per_image = -torch.log_softmax(model(x), dim=1)[torch.arange(4), labels]
    assert torch.isclose(model.loss(x, labels).total, per_image.mean())
    weights = torch.tensor([3.0, 0.5, 1.0, 0.5])  # sum 5, not 4: the mean divides by N, not by the weights' sum
    assert torch.isclose(model.loss(x, labels, weights=weights).total, (weights * per_image).mean())
    with pytest.raises(ValueError, match=r"weights must hold one number per image, shape \(4,\); got \(4, 1\)"):
        model.loss(x, labels, weights=weights[:, None])


def test_a_classifier_has_one_reading_and_refuses_a_decoding():
    model = CNNClassifier(BASELINES["cnn-small"](1, 2), 1, 2)
    with reading(model, decoding=None, mask_space=None) as same:
        assert same is model
    with pytest.raises(ValueError, match="has one reading; it cannot be read with {'decoding': 'pixel_vote'}"):
        reading(model, decoding="pixel_vote")


def test_mc_dropout_varies_between_passes_and_one_pass_is_deterministic():
    torch.manual_seed(0)
    model = CNNClassifier(BASELINES["cnn-small"](1, 3, dropout=0.5), 1, 3)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model.classify(x).distances, model.classify(x).distances)
    draws = model.classify(x, n_samples=5).sample_distances
    assert draws.shape == (5, 4, 3) and not torch.allclose(draws[0], draws[1])
    assert model.training  # the mode it had before is restored
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        model.classify(x, n_samples=0)


def test_the_same_trainer_trains_and_checkpoints_a_baseline(tmp_path):
    data = synthetic_twin("retinamnist", max_per_split=48)
    config = TrainConfig(
        dataset="retinamnist", preset="cnn-small", steps=4, batch_size=8, checkpoint_every=2, warmup_steps=1
    )
    result = Trainer(config, tmp_path, data=data, progress=False).train()
    assert [h["step"] for h in result.history] == [2, 4]
    model, meta = load_checkpoint(tmp_path / "best", expected=config)
    assert isinstance(model, CNNClassifier) and meta["config"]["preset"] == "cnn-small"
    x, y = data.tensors("val")
    metrics, result = evaluate_split(model, x, y, data.info["task"], n_samples=3)
    assert result.distances.shape == (48, 5) and result.sample_distances.shape == (3, 48, 5)
    assert result.masks is None and 0 <= metrics["auc"] <= 1


def test_mc_dropout_draws_come_from_the_generator_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    model = CNNClassifier(BASELINES["cnn-small"](1, 3, dropout=0.5), 1, 3)
    x = torch.randn(4, 1, 28, 28)
    before = torch.random.get_rng_state()
    first = model.classify(x, n_samples=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.random.get_rng_state(), before)
    again = model.classify(x, n_samples=5, generator=torch.Generator().manual_seed(7))
    other = model.classify(x, n_samples=5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.sample_distances, again.sample_distances)
    assert not torch.equal(first.sample_distances, other.sample_distances)
    assert not torch.equal(first.sample_distances[0], first.sample_distances[1])  # dropout is on between passes


def test_the_selective_comparison_decides_each_model_both_ways():
    """``selective_comparison``'s details carry the decisions under the training split's class
    shares, recomputed here from the same validation and test classifications."""
    from medsymmflow.evaluate import prior_decision
    from medsymmflow.report import selective_comparison

    data = synthetic_twin("dermamnist", 28, 0, max_per_split=64)
    torch.manual_seed(0)
    model = CNNClassifier(BASELINES["cnn-small"](data.n_channels, data.n_classes), data.n_channels, data.n_classes)
    _, details = selective_comparison({"cnn": model}, data, 28, n_samples=1, seed=3)
    decided = details["cnn"]["under_training_prior"]
    val_x, val_y = split_inputs(model, data, "val", 28)
    _, val = evaluate_split(model, val_x, val_y, data.info["task"], seed=4)
    test_x, test_y = split_inputs(model, data, "test", 28)
    _, test = evaluate_split(model, test_x, test_y, data.info["task"], seed=3)
    expected = prior_decision(val, val_y, test, test_y, data.class_counts("train"), data.info["task"])
    assert decided["acc"] == pytest.approx(expected["acc"]) and decided["temperature"] == pytest.approx(
        expected["temperature"]
    )
    assert decided["prior"] == pytest.approx((data.class_counts("train") / len(data.labels("train"))).tolist())
