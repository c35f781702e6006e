"""The comparison helper: two models on the same photos (changed photos, exact McNemar, paired bootstrap)
and a number's spread over seeds, on cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from catdog_lib import compare


def test_counts_the_photos_that_changed_each_way():
    labels = [0, 1, 0, 1, 0, 1]
    a = [0, 1, 1, 0, 0, 0]  # right on photos 0, 1, 4
    b = [0, 0, 0, 1, 0, 0]  # right on photos 0, 2, 3, 4
    result = compare.paired(labels, a, b, names=("plain", "flip"))
    assert result.names == ("plain", "flip") and result.n == 6
    assert result.accuracy == (pytest.approx(3 / 6), pytest.approx(4 / 6))
    assert (result.better, result.worse) == (2, 1)  # photos 2, 3 gained; photo 1 lost
    assert result.difference == pytest.approx(1 / 6)


def test_exact_mcnemar_p_value_of_a_known_split():
    """8 photos gained, 1 lost: p = 2 * (C(9,0) + C(9,1)) / 2**9 = 20/512; nothing else moves p."""
    labels = np.zeros(40, dtype=int)
    a = np.zeros(40, dtype=int)
    b = a.copy()
    a[:8] = 1  # A wrong on 8 photos that B gets right
    b[8] = 1  # B wrong on one photo A gets right
    a[30:], b[30:] = 1, 1  # both wrong on 10 photos: no information about which is better
    result = compare.paired(labels, a, b)
    assert (result.better, result.worse) == (8, 1)
    assert result.p_value == pytest.approx(20 / 512)
    assert "B is better than A on these 40 photos" in str(result)


def test_a_split_chance_explains_is_called_no_difference():
    labels = np.zeros(100, dtype=int)
    a, b = labels.copy(), labels.copy()
    a[:3] = 1  # B gains 3 photos
    b[3:5] = 1  # and loses 2
    result = compare.paired(labels, a, b)
    assert result.p_value == pytest.approx(1.0)  # 3 vs 2 of 5: as even as five coins can be
    assert "no difference shown on these 100 photos" in str(result)
    assert result.interval[0] < 0 < result.interval[1]


def test_identical_predictions_change_nothing():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50)
    predictions = rng.integers(0, 2, 50)
    result = compare.paired(labels, predictions, predictions.copy())
    assert (result.better, result.worse, result.p_value) == (0, 0, 1.0)
    assert result.interval == (0.0, 0.0)
    assert result.accuracy[0] == result.accuracy[1] == pytest.approx((labels == predictions).mean())


def test_the_interval_holds_the_observed_difference_and_is_deterministic():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.85, labels, 1 - labels)
    b = np.where(rng.random(400) < 0.92, labels, 1 - labels)
    first, again = compare.paired(labels, a, b, seed=7), compare.paired(labels, a, b, seed=7)
    assert first == again
    low, high = first.interval
    assert low < first.difference < high
    assert 0.02 < high - low < 0.15  # about 4 standard errors of a difference on 400 photos
    assert compare.paired(labels, a, b, seed=8).interval != first.interval  # the seed is used


def test_the_printout_has_both_accuracies_the_changed_photos_and_the_test():
    text = str(compare.paired([1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1], names=("lite0", "lite2")))
    lines = text.splitlines()
    assert 2 <= len(lines) <= 3
    assert "lite0 0.750 vs lite2 1.000 on 4 photos" in lines[0] and "on 1, the reverse on 0" in lines[0]
    assert "McNemar p = 1" in lines[1] and "+0.000 to +0.750" in lines[1]  # P(3+ of 4 draws hit the gain) = 5%
    assert lines[2] == "no difference shown on these 4 photos"


def test_photos_must_match():
    with pytest.raises(ValueError, match="same photos"):
        compare.paired([0, 1, 1], [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="same photos"):
        compare.paired([], [], [])


def test_spread_over_seeds():
    assert compare.spread([0.9, 0.95, 1.0]) == "0.950 ± 0.050 (sd over 3 seeds; 0.900-1.000)"
    assert compare.spread([0.9]) == "0.900 (1 seed: no spread measured)"
    with pytest.raises(ValueError):
        compare.spread([])
