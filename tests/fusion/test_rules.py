"""Patient-level fusion rules: the non-parametric assessment (M³Lung-Sys Appendix I) and max pooling."""

from __future__ import annotations

import numpy as np
import pytest

from m3lung.errors import InputError
from m3lung.fusion import FusionResult, max_pooling, nonparametric_assessment

# Four slices, computed by hand:
#   p0 = Pl0 + Pl1*Pm0, pk = Pl1*Pmk
#   s0: [0.82, 0.12, 0.04, 0.02]   -> Healthy
#   s1: [0.19, 0.54, 0.18, 0.09]   -> COVID-19
#   s2: [0.44, 0.07, 0.42, 0.07]   -> Healthy (the 4-class head alone says H1N1)
#   s3: [0.05, 0.285, 0.095, 0.57] -> CAP
P_LESION = np.array([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.05, 0.95]])
P_MULTI = np.array([[0.1, 0.6, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.2, 0.1, 0.6, 0.1], [0.0, 0.3, 0.1, 0.6]])


def _reference(p_lesion: np.ndarray, p_multi: np.ndarray, threshold: float) -> int:
    """A slice-by-slice transcription of the paper's rule, to check the vectorised one against."""
    votes = [0, 0, 0, 0]
    for pl, pm in zip(p_lesion, p_multi, strict=True):
        p = [pl[0] + pl[1] * pm[0]] + [pl[1] * pm[k] for k in (1, 2, 3)]
        votes[int(np.argmax(p))] += 1
    if votes[0] / len(p_lesion) > threshold:
        return 0
    return 1 + int(np.argmax(votes[1:]))


def test_hand_computed_example():
    r = nonparametric_assessment(P_LESION, P_MULTI)
    assert isinstance(r, FusionResult)
    assert r.rule == "nonparametric" and r.threshold == 0.99
    np.testing.assert_allclose(
        r.slice_probs,
        [[0.82, 0.12, 0.04, 0.02], [0.19, 0.54, 0.18, 0.09], [0.44, 0.07, 0.42, 0.07], [0.05, 0.285, 0.095, 0.57]],
        atol=1e-12,
    )
    assert r.counts.tolist() == [2, 1, 0, 1]
    np.testing.assert_allclose(r.probs, [0.5, 0.25, 0.0, 0.25])
    assert r.label == 1  # COVID-19 and CAP tie on one vote each: COVID-19 first by default
    assert r.to_dict() == {
        "probs": [0.5, 0.25, 0.0, 0.25],
        "label": "COVID-19",
        "counts": [2, 1, 0, 1],
        "threshold": 0.99,
    }


def test_tie_order_and_threshold():
    assert nonparametric_assessment(P_LESION, P_MULTI, tie_order=(3, 1, 2)).label == 3
    assert nonparametric_assessment(P_LESION, P_MULTI, tie_order=(2, 3, 1)).label == 3  # H1N1 has no votes
    assert nonparametric_assessment(P_LESION, P_MULTI, threshold=0.4).label == 0  # 2/4 > 0.4
    assert nonparametric_assessment(P_LESION, P_MULTI, threshold=0.5).label == 1  # 2/4 is not > 0.5


def test_threshold_is_strict_at_exactly_t():
    n = 100
    pl = np.tile([0.9, 0.1], (n, 1))
    pm = np.tile([0.7, 0.1, 0.1, 0.1], (n, 1))
    pl[0] = [0.0, 1.0]
    pm[0] = [0.0, 0.2, 0.7, 0.1]  # one H1N1 slice, 99 healthy ones: 99/100 == 0.99
    r = nonparametric_assessment(pl, pm, threshold=0.99)
    assert r.counts.tolist() == [99, 0, 1, 0]
    assert r.label == 2
    assert nonparametric_assessment(pl, pm, threshold=0.98).label == 0


def test_all_healthy_volume_and_single_slice():
    n = 37
    r = nonparametric_assessment(np.tile([0.95, 0.05], (n, 1)), np.tile([0.4, 0.3, 0.2, 0.1], (n, 1)))
    assert r.label == 0 and r.counts.tolist() == [n, 0, 0, 0]
    np.testing.assert_allclose(r.probs, [1, 0, 0, 0])

    one = nonparametric_assessment(np.array([[0.2, 0.8]]), np.array([[0.1, 0.1, 0.1, 0.7]]))
    assert one.label == 3 and one.counts.tolist() == [0, 0, 0, 1] and one.slice_probs.shape == (1, 4)
    healthy = nonparametric_assessment(np.array([[0.9, 0.1]]), np.array([[0.1, 0.1, 0.1, 0.7]]))
    assert healthy.label == 0  # 1/1 > 0.99


def test_slice_probs_sum_to_one_and_match_the_reference():
    rng = np.random.default_rng(1)
    for n, t in ((1, 0.99), (7, 0.5), (300, 0.9), (500, 0.0)):
        pl = rng.dirichlet([1, 1], n)
        pm = rng.dirichlet([1, 1, 1, 1], n)
        r = nonparametric_assessment(pl, pm, threshold=t)
        np.testing.assert_allclose(r.slice_probs.sum(axis=1), 1.0, atol=1e-12)
        assert r.counts.sum() == n and r.probs.sum() == pytest.approx(1.0)
        assert r.label == _reference(pl, pm, t)


def test_lesion_vector_means_p_with_lesion():
    a = nonparametric_assessment(P_LESION, P_MULTI)
    b = nonparametric_assessment(P_LESION[:, 1], P_MULTI)
    assert a.label == b.label
    np.testing.assert_allclose(a.slice_probs, b.slice_probs)


def test_max_pooling_hand_computed():
    pm = np.array([[0.7, 0.2, 0.05, 0.05], [0.3, 0.1, 0.55, 0.05], [0.6, 0.3, 0.05, 0.05]])
    r = max_pooling(pm)
    assert r.rule == "maxpool" and r.label == 2  # scores 0.3, 0.55, 0.05
    np.testing.assert_allclose(r.probs, np.array([0.45, 0.3, 0.55, 0.05]) / 1.35)
    assert r.probs.argmax() == r.label
    assert r.counts.tolist() == [2, 0, 1, 0]
    np.testing.assert_array_equal(r.slice_probs, pm)
    assert max_pooling(pm, threshold=0.6).label == 0
    assert max_pooling(pm, threshold=0.55).label == 2  # a score equal to the threshold is a disease
    assert max_pooling(pm, P_LESION[:3]).label == 2  # p_lesion is accepted and does not change the rule


def test_max_pooling_ties_and_healthy():
    pm = np.array([[0.2, 0.6, 0.1, 0.1], [0.2, 0.1, 0.6, 0.1]])
    assert max_pooling(pm).label == 1
    assert max_pooling(pm, tie_order=(2, 1, 3)).label == 2
    healthy = max_pooling(np.tile([0.7, 0.1, 0.1, 0.1], (5, 1)))
    assert healthy.label == 0
    np.testing.assert_allclose(healthy.probs, np.array([0.9, 0.1, 0.1, 0.1]) / 1.2)
    single = max_pooling(np.array([[0.0, 0.0, 0.0, 1.0]]))
    assert single.label == 3 and single.probs.tolist() == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("p_lesion", "p_multi", "kwargs", "message"),
    [
        (P_LESION, P_MULTI[:, :3], {}, r"p_multi must have shape \(N, 4\)"),
        (P_LESION[:3], P_MULTI, {}, "3 slices but p_multi has 4"),
        (P_LESION[:, :1], P_MULTI, {}, r"p_lesion must have shape \(N, 2\)"),
        (np.zeros((0, 2)), np.zeros((0, 4)), {}, "no slices"),
        (P_LESION, np.where(np.eye(4, dtype=bool), np.nan, P_MULTI), {}, "NaN"),
        (P_LESION, P_MULTI * 2 - 0.5, {}, r"in \[0, 1\]"),
        (P_LESION, P_MULTI * 0.5, {}, "sum to 1"),
        (np.array([0.1, 0.2, np.inf, 0.3]), P_MULTI, {}, "NaN or infinite"),
        (P_LESION, P_MULTI, {"threshold": 1.0}, "threshold"),
        (P_LESION, P_MULTI, {"threshold": -0.1}, "threshold"),
        (P_LESION, P_MULTI, {"tie_order": (1, 2)}, "tie_order"),
        (P_LESION, P_MULTI, {"tie_order": (0, 1, 2)}, "tie_order"),
    ],
)
def test_nonparametric_rejects_bad_input(p_lesion, p_multi, kwargs, message):
    with pytest.raises(InputError, match=message):
        nonparametric_assessment(p_lesion, p_multi, **kwargs)


def test_max_pooling_rejects_bad_input():
    with pytest.raises(InputError, match="no slices"):
        max_pooling(np.zeros((0, 4)))
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        max_pooling(np.full(4, 0.25))
    with pytest.raises(InputError, match="NaN"):
        max_pooling(np.array([[np.nan, 0.5, 0.25, 0.25]]))
    with pytest.raises(InputError, match="threshold"):
        max_pooling(P_MULTI, threshold=1.5)
    with pytest.raises(InputError, match="p_multi has 4"):
        max_pooling(P_MULTI, P_LESION[:2])


def test_rounding_noise_is_tolerated():
    pm = np.round(np.random.default_rng(2).dirichlet(np.ones(4), 20), 4)
    pl = np.round(np.random.default_rng(3).dirichlet(np.ones(2), 20), 4)
    pm[0] = [1.00001, 0.0, 0.0, 0.0]
    r = nonparametric_assessment(pl, pm)
    assert r.slice_probs.max() <= 1.0 and r.counts.sum() == 20
