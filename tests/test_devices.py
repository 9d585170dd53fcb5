"""MTJ resistances and the differential-pair synapse: encoding, checks, variation, faults."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imac.config import ImacSpec, MTJSpec, SynapseSpec, VariationSpec, parse_spec
from imac.devices.mtj import resistance, tmr_at_bias
from imac.devices.synapse import (
    SynapseLevels,
    apply_variation,
    check_weights,
    encode_resistances,
    synapse_conductances,
    synapse_levels,
)
from imac.errors import ShapeError

LEVELS = SynapseLevels(5000.0, 15000.0)


def _spec(**variation: object) -> ImacSpec:
    return parse_spec({"variation": variation})


# -- MTJ ------------------------------------------------------------------------------------


def test_mtj_states_at_zero_bias() -> None:
    spec = MTJSpec()
    r = resistance(spec, np.array([False, True]))
    assert r[0] == pytest.approx(8488.0, abs=1.0)
    assert r[1] == pytest.approx(25465.0, abs=1.0)


def test_tmr_without_bias_dependence_is_constant() -> None:
    spec = MTJSpec()
    v = np.linspace(-1.0, 1.0, 11)
    np.testing.assert_array_equal(tmr_at_bias(spec, v), np.full(11, 2.0))
    np.testing.assert_allclose(resistance(spec, True, v), spec.r_ap_ohm)


def test_tmr_bias_dependence_halves_at_v_h() -> None:
    spec = MTJSpec(tmr_half_bias_v=0.4)
    assert float(tmr_at_bias(spec, 0.0)) == pytest.approx(2.0)
    assert float(tmr_at_bias(spec, 0.4)) == pytest.approx(1.0)
    assert float(tmr_at_bias(spec, -0.4)) == pytest.approx(1.0)  # even in the bias
    # R_AP follows (1 + TMR(V)) R_P; R_P does not depend on bias.
    assert float(resistance(spec, True, 0.4)) == pytest.approx(2.0 * spec.r_p_ohm)
    assert float(resistance(spec, False, 0.4)) == pytest.approx(spec.r_p_ohm)
    # monotone decreasing in |V|, always above R_P
    v = np.linspace(0.0, 2.0, 41)
    r_ap = resistance(spec, np.ones(41, dtype=bool), v)
    assert np.all(np.diff(r_ap) < 0)
    assert np.all(r_ap > spec.r_p_ohm)


# -- levels and encoding --------------------------------------------------------------------


def test_levels_default_to_the_mtj_states() -> None:
    spec = ImacSpec()
    lv = synapse_levels(spec.synapse, spec.mtj)
    assert lv.r_low == pytest.approx(spec.mtj.r_p_ohm)
    assert lv.r_high == pytest.approx(spec.mtj.r_ap_ohm)


def test_explicit_levels_win() -> None:
    lv = synapse_levels(SynapseSpec(r_low_ohm=5000.0, r_high_ohm=15000.0), MTJSpec())
    assert (lv.r_low, lv.r_high) == (5000.0, 15000.0)


def test_encoding_of_plus_minus_and_zero() -> None:
    w = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0]])
    r_plus, r_minus = encode_resistances(w, LEVELS)
    np.testing.assert_array_equal(r_plus, [[5000, 15000, 5000], [15000, 5000, 5000]])
    np.testing.assert_array_equal(r_minus, [[15000, 5000, 5000], [5000, 15000, 15000]])


def test_conductances_without_variation_are_exact_inverses(rng: np.random.Generator) -> None:
    spec = ImacSpec()
    w = rng.choice([-1.0, 1.0], size=(7, 5))
    g_plus, g_minus = synapse_conductances(w, spec)
    r_p, r_ap = spec.mtj.r_p_ohm, spec.mtj.r_ap_ohm
    np.testing.assert_allclose(g_plus, np.where(w > 0, 1 / r_p, 1 / r_ap), rtol=1e-15)
    np.testing.assert_allclose(g_minus, np.where(w > 0, 1 / r_ap, 1 / r_p), rtol=1e-15)
    # the differential pair is antisymmetric in the weight
    g_plus_n, g_minus_n = synapse_conductances(-w, spec)
    np.testing.assert_array_equal(g_plus_n, g_minus)
    np.testing.assert_array_equal(g_minus_n, g_plus)


@pytest.mark.parametrize(
    "weights",
    [
        np.array([[1.0, 0.5]]),
        np.array([[2.0, -1.0]]),
        np.array([[1.0, np.nan]]),
        np.array([[1.0, np.inf]]),
        np.zeros((0, 3)),
        np.zeros((3, 0)),
        np.array([1.0, -1.0]),
        np.ones((2, 2, 2)),
    ],
    ids=["half", "two", "nan", "inf", "no-rows", "no-cols", "1-d", "3-d"],
)
def test_bad_weights_raise_shape_error(weights: np.ndarray) -> None:
    with pytest.raises(ShapeError):
        encode_resistances(weights, LEVELS)
    with pytest.raises(ShapeError):
        synapse_conductances(weights, ImacSpec())


def test_zero_is_refused_when_binary_is_required() -> None:
    check_weights(np.array([[0.0, 1.0]]))  # ternary is fine by default
    with pytest.raises(ShapeError, match=r"binary"):
        check_weights(np.array([[0.0, 1.0]]), allow_zero=False)


def test_bad_weight_error_names_the_index() -> None:
    with pytest.raises(ShapeError, match=r"\(1, 2\)"):
        check_weights(np.array([[1, 1, 1], [1, -1, 3]]))


# -- variation and faults -------------------------------------------------------------------


def test_uniform_variation_stays_within_bounds_and_is_seeded(rng: np.random.Generator) -> None:
    x = 0.1
    spec = _spec(kind="uniform", amount=x, seed=3)
    w = rng.choice([-1.0, 1.0], size=(64, 48))
    g_plus, g_minus = synapse_conductances(w, spec)
    r_nom_plus, r_nom_minus = encode_resistances(w, synapse_levels(spec.synapse, spec.mtj))
    for g, r_nom in ((g_plus, r_nom_plus), (g_minus, r_nom_minus)):
        rel = 1.0 / g / r_nom - 1.0
        assert np.all(np.abs(rel) <= x)
        # actually spread over the range, not a constant scaling
        assert rel.min() < -0.9 * x
        assert rel.max() > 0.9 * x
        assert abs(rel.mean()) < 0.01
    # reproducible by seed, different for another seed
    again = synapse_conductances(w, spec)
    np.testing.assert_array_equal(again[0], g_plus)
    np.testing.assert_array_equal(again[1], g_minus)
    other = synapse_conductances(w, _spec(kind="uniform", amount=x, seed=4))
    assert not np.array_equal(other[0], g_plus)
    # an explicit generator also reproduces
    a = synapse_conductances(w, spec, np.random.default_rng(11))
    b = synapse_conductances(w, spec, np.random.default_rng(11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_gaussian_variation_has_the_requested_sigma() -> None:
    sigma = 0.05
    r = np.full((200, 200), 10_000.0)
    out = apply_variation(
        r, VariationSpec(kind="gaussian", amount=sigma), LEVELS, np.random.default_rng(5)
    )
    rel = out / r - 1.0
    # 40 000 samples: the sample sigma is within ~1 % of the truth (3.5 standard errors)
    assert np.std(rel) == pytest.approx(sigma, rel=0.03)
    assert abs(np.mean(rel)) < 5 * sigma / math.sqrt(rel.size)
    assert np.all(out > 0)


def test_gaussian_variation_never_gives_non_positive_resistance() -> None:
    r = np.full((100, 100), 10_000.0)
    out = apply_variation(
        r, VariationSpec(kind="gaussian", amount=0.9), LEVELS, np.random.default_rng(6)
    )
    assert np.all(out > 0)
    assert out.min() == pytest.approx(100.0)  # the clip at 1 % of nominal


def test_no_variation_returns_a_copy() -> None:
    r = np.array([[5000.0, 15000.0]])
    out = apply_variation(r, VariationSpec(), LEVELS, np.random.default_rng(0))
    np.testing.assert_array_equal(out, r)
    out[0, 0] = 1.0
    assert r[0, 0] == 5000.0


@pytest.mark.parametrize(("p_rate", "ap_rate"), [(0.1, 0.0), (0.0, 0.25), (0.05, 0.15)])
def test_stuck_at_rates_are_honoured(p_rate: float, ap_rate: float) -> None:
    n = 100_000
    rng = np.random.default_rng(7)
    var = VariationSpec(stuck_p_rate=p_rate, stuck_ap_rate=ap_rate)
    # nominal: half low, half high
    r = np.where(np.arange(n) % 2 == 0, LEVELS.r_low, LEVELS.r_high).reshape(1, n)
    out = apply_variation(r, var, LEVELS, rng)
    assert set(np.unique(out)) <= {LEVELS.r_low, LEVELS.r_high}
    nominal_high = r == LEVELS.r_high
    # a nominally high device reads low only when stuck at P, and vice versa
    frac_stuck_p = np.mean(out[nominal_high] == LEVELS.r_low)
    frac_stuck_ap = np.mean(out[~nominal_high] == LEVELS.r_high)
    tol = 5 * math.sqrt(0.25 / (n / 2))  # 5 binomial standard errors at worst
    assert frac_stuck_p == pytest.approx(p_rate, abs=tol)
    assert frac_stuck_ap == pytest.approx(ap_rate, abs=tol)


def test_stuck_devices_through_the_spec(rng: np.random.Generator) -> None:
    spec = _spec(stuck_ap_rate=0.2, seed=1)
    w = np.ones((100, 100))  # I+ nominally low: faults show up as high
    g_plus, g_minus = synapse_conductances(w, spec, rng)
    lv = synapse_levels(spec.synapse, spec.mtj)
    frac = np.mean(np.isclose(1.0 / g_plus, lv.r_high))
    assert frac == pytest.approx(0.2, abs=0.02)
    np.testing.assert_allclose(1.0 / g_minus, lv.r_high)  # already high: unchanged


def test_stuck_then_perturbed() -> None:
    var = VariationSpec(kind="uniform", amount=0.05, stuck_p_rate=1.0)
    out = apply_variation(np.full((50, 50), LEVELS.r_high), var, LEVELS, np.random.default_rng(2))
    rel = out / LEVELS.r_low - 1.0
    assert np.all(np.abs(rel) <= 0.05)
    assert np.std(rel) > 0.01
