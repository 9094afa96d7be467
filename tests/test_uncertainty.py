import math

import numpy as np
import pytest
import torch

from medsymmflow import uncertainty as unc


def test_paper_proxy_and_margin():
    d = torch.tensor([[0.1, 0.9, 0.5], [0.4, 0.45, 2.0]])
    assert torch.allclose(unc.predicted_class_distance(d), torch.tensor([0.1, 0.4]))
    assert torch.allclose(unc.negative_margin(d), torch.tensor([-0.4, -0.05]))


def test_aurc_and_accuracy_at_coverage_by_hand():
    correct = [1, 0, 1, 1]
    u = [0.1, 0.9, 0.2, 0.3]  # ranking: c c c e
    coverage, accuracy = unc.accuracy_coverage(correct, u)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0] and accuracy.tolist() == [1, 1, 1, 0.75]
    assert unc.aurc(correct, u) == pytest.approx(0.25 / 4)
    assert unc.excess_aurc(correct, u) == pytest.approx(0.0)  # a perfect ranking
    assert unc.accuracy_at_coverage(correct, u, (1.0, 0.75, 0.5)) == {1.0: 0.75, 0.75: 1.0, 0.5: 1.0}


def test_worst_ranking():
    correct = [1, 0, 1, 1]
    u = [0.1, 0.0, 0.2, 0.3]  # the error first: risks 1, 1/2, 1/3, 1/4
    assert unc.aurc(correct, u) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert unc.excess_aurc(correct, u) == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert unc.accuracy_at_coverage(correct, u, (0.25,)) == {0.25: 0.0}


def test_ties_count_as_a_random_order():
    # all tied: expected accuracy at every coverage is the overall accuracy
    coverage, accuracy = unc.accuracy_coverage([1, 0, 1, 0], [0.5] * 4)
    assert np.allclose(accuracy, 0.5)
    # a tie between one correct and one error after a sure correct: expected counts 1, 1.5, 2
    _, accuracy = unc.accuracy_coverage([1, 1, 0], [0.0, 0.7, 0.7])
    assert np.allclose(accuracy, [1.0, 1.5 / 2, 2 / 3])
    # the result does not depend on the input order within a tie
    assert unc.aurc([1, 0, 1], [0.2, 0.2, 0.2]) == unc.aurc([0, 1, 1], [0.2, 0.2, 0.2])


def test_vote_entropy_zero_if_unanimous_and_log_k_if_uniform():
    unanimous = torch.tensor([[[0.1, 0.9, 0.9]]]).repeat(6, 1, 1)  # 6 draws, 1 image, K=3
    assert unc.vote_entropy(unanimous).item() == 0.0
    uniform = torch.stack([torch.roll(torch.tensor([[0.1, 0.9, 0.9]]), s % 3, dims=1) for s in range(6)])
    assert unc.vote_counts(uniform).tolist() == [[2, 2, 2]]
    assert unc.vote_entropy(uniform).item() == pytest.approx(math.log(3))


def test_majority_vote_and_spread():
    draws = torch.tensor([[[0.1, 0.5]], [[0.6, 0.2]], [[0.1, 0.3]]])  # votes 0, 1, 0
    assert unc.majority_vote(draws).tolist() == [0]
    assert unc.distance_spread(draws).item() == pytest.approx(
        float(np.mean([np.std([0.1, 0.6, 0.1]), np.std([0.5, 0.2, 0.3])]))
    )
    tie = torch.tensor([[[0.1, 0.5]], [[0.6, 0.15]]])  # one vote each; mean distances 0.35 and 0.325
    assert unc.vote_counts(tie).tolist() == [[1, 1]]
    assert unc.majority_vote(tie).tolist() == [1]


def test_ece_perfect_and_miscalibrated():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0, 1, 200_000)
    calibrated = rng.uniform(0, 1, confidence.size) < confidence
    assert unc.expected_calibration_error(confidence, calibrated) < 0.01
    overconfident = np.full(1000, 0.9)
    right = np.arange(1000) < 600  # 60% right at 90% confidence
    assert unc.expected_calibration_error(overconfident, right) == pytest.approx(0.3)
    bins = unc.reliability_bins(overconfident, right, 10)
    assert bins["count"][9] == 1000 and bins["accuracy"][9] == pytest.approx(0.6)


def test_temperature_fitting_lowers_validation_nll():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2000,), generator=g)
    distances = torch.rand(2000, 4, generator=g) * 0.3
    distances[torch.arange(2000), labels] -= 0.1  # informative but weak: T = 1 is far from the best temperature
    fitted = unc.fit_temperature(distances, labels)
    assert unc.negative_log_likelihood(distances, labels, fitted) < unc.negative_log_likelihood(distances, labels, 1.0)
    assert unc.negative_log_likelihood(distances, labels, fitted) <= min(
        unc.negative_log_likelihood(distances, labels, t) for t in (fitted * 0.8, fitted * 1.25)
    )


def test_prior_adjusted_distances_are_bayes_rule_under_the_prior():
    distances = torch.tensor([[1.0, 0.5], [0.2, 2.0]])
    adjusted = unc.prior_adjusted(distances, 1.0, [0.9, 0.1])
    # d'_k = d_k / T - log pi_k, by hand
    torch.testing.assert_close(
        adjusted,
        torch.tensor(
            [[1.0 - math.log(0.9), 0.5 - math.log(0.1)], [0.2 - math.log(0.9), 2.0 - math.log(0.1)]],
            dtype=torch.float64,
        ),
    )
    # softmax(-d') is pi_k softmax(-d / T)_k renormalized, and a strong prior flips the first decision
    balanced = torch.softmax(-distances.double() / 2.0, dim=1)
    expected = balanced * torch.tensor([0.9, 0.1], dtype=torch.float64)
    expected = expected / expected.sum(dim=1, keepdim=True)
    torch.testing.assert_close(torch.softmax(-unc.prior_adjusted(distances, 2.0, [9, 1]), dim=1), expected)
    assert distances.argmin(dim=1).tolist() == [1, 0] and adjusted.argmin(dim=1).tolist() == [0, 0]
    # counts and shares are the same prior; equal classes change no decision and no probability
    torch.testing.assert_close(unc.prior_adjusted(distances, 1.0, [90, 10]), adjusted)
    torch.testing.assert_close(
        torch.softmax(-unc.prior_adjusted(distances, 0.5, [1, 1]), dim=1),
        torch.softmax(-distances.double() / 0.5, dim=1),
    )


def test_the_temperature_of_the_prior_adjusted_posterior_is_recovered():
    # labels drawn from softmax(-d / 2 + log pi): fitting with that prior finds T = 2
    g = torch.Generator().manual_seed(0)
    prior = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    distances = torch.rand(20000, 3, generator=g, dtype=torch.float64) * 6
    posterior = torch.softmax(-distances / 2.0 + prior.log(), dim=1)
    labels = torch.multinomial(posterior, 1, generator=g).reshape(-1)
    assert unc.fit_temperature(distances, labels, prior=prior) == pytest.approx(2.0, rel=0.05)
    with_prior = unc.negative_log_likelihood(distances, labels, 2.0, prior)
    assert with_prior < unc.negative_log_likelihood(distances, labels, unc.fit_temperature(distances, labels))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: unc.prior_adjusted(torch.zeros(1, 2), 1.0, [1, 2, 3]), "the prior needs 2 positive, finite"),
        (lambda: unc.prior_adjusted(torch.zeros(1, 2), 1.0, [1, 0]), "the prior needs 2 positive, finite"),
        (lambda: unc.prior_adjusted(torch.zeros(1, 2), 0.0, [1, 1]), "temperature must be positive"),
        (lambda: unc.fit_temperature(torch.zeros(3, 2), torch.zeros(3), prior=[1.0]), "the prior needs 2"),
        (lambda: unc.accuracy_at_coverage([1, 0], [0.1, 0.2], (0.0,)), r"coverages must lie in \(0, 1\]"),
        (lambda: unc.accuracy_at_coverage([1, 0], [0.1, 0.2], (1.5,)), r"coverages must lie in \(0, 1\]"),
        (lambda: unc.aurc([1, 0, 1], [0.1, 0.2]), "same length"),
        (lambda: unc.aurc([], []), "must not be empty"),
        (lambda: unc.aurc([1], [float("nan")]), "NaN"),
        (lambda: unc.expected_calibration_error([1.2], [1]), r"confidence must lie in \[0, 1\]"),
        (lambda: unc.fit_temperature(torch.zeros(0, 2), torch.zeros(0)), "non-empty"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
