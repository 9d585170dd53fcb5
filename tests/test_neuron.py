"""The SOT-MRAM sigmoid neuron: the behavioural curve (numpy, torch, persistence) and its
ngspice characterization against the numbers in SYSTEM.md section 4."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from imac.config import NeuronSpec
from imac.devices.neuron_curve import (
    DEFAULT_FIT_PATH,
    NeuronCurve,
    default_neuron_curve,
    reverse_sigmoid,
)
from imac.errors import DataError

# SYSTEM.md section 4 (measured here, PTM 22 nm HP, W/L 440n/22n, +0.4 V shift)
V_OUT_HIGH = 0.766
V_OUT_AT_ZERO = 0.373
V_OUT_LOW = 0.016
SLOPE_CENTER = -1.25
LEVEL_ATOL_V = 5e-3
FIT_MAX_ERROR_V = 0.010
DEFAULT_VS_FRESH_ATOL_V = 1e-3


def _curve(**extra: object) -> NeuronCurve:
    base = dict(
        offset=0.0148,
        amps=(0.4277, 0.3263),
        slopes=(11.6571, 14.5593),
        centres=(-0.1406, 0.1399),
        v_dd=0.8,
    )
    base.update(extra)
    return NeuronCurve(**base)  # type: ignore[arg-type]


# -- the curve in numpy and torch ----------------------------------------------------------


def test_curve_is_a_falling_sigmoid() -> None:
    c = _curve()
    z = np.linspace(-2.0, 2.0, 401)
    v = c(z)
    assert np.all(np.diff(v) < 0)
    assert c(-50.0) == pytest.approx(c.v_out_high, abs=1e-12)
    assert c(50.0) == pytest.approx(c.v_out_low, abs=1e-12)
    assert c.v_out_high == pytest.approx(0.0148 + 0.4277 + 0.3263)
    assert c.v_out_low == pytest.approx(0.0148)
    # no overflow warnings or NaN far out
    with np.errstate(all="raise"):
        assert np.all(np.isfinite(c(np.array([-1e6, 1e6]))))


def test_scalar_and_array_shapes() -> None:
    c = _curve()
    assert np.shape(c(0.1)) == ()
    assert c(np.zeros((2, 3))).shape == (2, 3)
    assert c.derivative(np.zeros((4,))).shape == (4,)


def test_numpy_and_torch_agree(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    c = _curve()
    z = rng.uniform(-1.0, 1.0, size=(64, 8))
    t = c.torch_forward(torch.as_tensor(z, dtype=torch.float64))
    assert t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), c(z), rtol=0, atol=1e-15)
    t32 = c.torch_forward(torch.as_tensor(z, dtype=torch.float32))
    np.testing.assert_allclose(t32.numpy(), c(z), rtol=0, atol=1e-6)


def test_derivative_matches_finite_differences(rng: np.random.Generator) -> None:
    c = _curve()
    z = rng.uniform(-1.0, 1.0, size=200)
    h = 1e-6
    fd = (c(z + h) - c(z - h)) / (2 * h)
    np.testing.assert_allclose(c.derivative(z), fd, rtol=1e-6, atol=1e-8)
    assert np.all(c.derivative(z) < 0)


def test_derivative_matches_torch_autograd(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    c = _curve()
    z = torch.as_tensor(rng.uniform(-1.0, 1.0, size=100), dtype=torch.float64)
    z.requires_grad_(True)
    c.torch_forward(z).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), c.derivative(z.detach().numpy()), atol=1e-13)


def test_reverse_sigmoid() -> None:
    z = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(reverse_sigmoid(z), 1.0 / (1.0 + np.exp(z)), rtol=1e-12, atol=1e-15)
    assert reverse_sigmoid(0.0) == 0.5


# -- persistence ---------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    c = _curve(
        fit_max_error_v=0.0049,
        table_z_v=(-0.8, 0.0, 0.8),
        r_out_ohm=(900.0, 2300.0, 480.0),
        i_supply_a=(3.4e-5, 2.6e-5, 3e-9),
        delay_s=8.6e-12,
        meta={"source": "test", "spec": {"v_dd": 0.8}},
    )
    p = tmp_path / "sub" / "curve.json"
    c.save(p)
    again = NeuronCurve.load(p)
    assert again == c
    assert again.output_resistance(0.0) == pytest.approx(2300.0)
    assert again.output_resistance(0.4) == pytest.approx(1390.0)
    assert again.supply_current(-0.8) == pytest.approx(3.4e-5)
    assert [f.name for f in p.parent.iterdir()] == ["curve.json"]  # no temp file left


def test_round_trip_keeps_nan_fields(tmp_path: Path) -> None:
    c = _curve()
    p = tmp_path / "curve.json"
    c.save(p)
    again = NeuronCurve.load(p)
    assert math.isnan(again.fit_max_error_v) and math.isnan(again.delay_s)
    assert again.to_dict().keys() == c.to_dict().keys()
    z = np.linspace(-1, 1, 11)
    np.testing.assert_array_equal(again(z), c(z))


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[1, 2, 3]",
        "null",
        '{"offset": 0.0}',
        '{"offset": 0.0, "amps": [0.4], "slopes": [1.0, 2.0], "centres": [0.0], "v_dd": 0.8}',
        '{"offset": "abc", "amps": [0.4], "slopes": [1.0], "centres": [0.0], "v_dd": 0.8}',
        '{"offset": NaN, "amps": [0.4], "slopes": [1.0], "centres": [0.0], "v_dd": 0.8}',
        '{"offset": 0.0, "amps": [], "slopes": [], "centres": [], "v_dd": 0.8}',
    ],
    ids=["syntax", "empty", "list", "null", "missing-keys", "ragged", "string", "nan", "no-terms"],
)
def test_corrupt_file_raises_data_error(tmp_path: Path, content: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DataError):
        NeuronCurve.load(p)


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        NeuronCurve.load(tmp_path / "nope.json")


def test_tables_are_required_for_loading_data() -> None:
    c = _curve()
    with pytest.raises(DataError):
        c.output_resistance(0.0)
    with pytest.raises(DataError):
        c.supply_current(0.0)


def test_default_curve_loads() -> None:
    c = default_neuron_curve()
    assert DEFAULT_FIT_PATH.is_file()
    assert c.v_dd == pytest.approx(0.8)
    assert c.v_out_high == pytest.approx(V_OUT_HIGH, abs=LEVEL_ATOL_V)
    assert c.v_out_low == pytest.approx(V_OUT_LOW, abs=LEVEL_ATOL_V)
    assert float(c(0.0)) == pytest.approx(V_OUT_AT_ZERO, abs=LEVEL_ATOL_V)
    z = np.linspace(-0.8, 0.8, 161)
    assert np.all(np.diff(c(z)) < 0)
    # the shipped file is plain JSON that names every field
    assert set(json.loads(DEFAULT_FIT_PATH.read_text())) >= {"offset", "amps", "slopes", "centres"}


# -- ngspice characterization --------------------------------------------------------------


@pytest.fixture(scope="module")
def characterization(requires_ngspice: None):
    """One ngspice characterization of the default neuron, shared by the tests below."""
    from imac.devices.neuron import characterize

    return characterize(NeuronSpec(), timeout_s=900)  # generous: CI machines may be loaded


@pytest.mark.spice
def test_characterize_reproduces_the_measured_curve(characterization) -> None:
    ch = characterization
    s = ch.summary()
    assert s["fit_max_error_v"] <= FIT_MAX_ERROR_V
    assert s["v_out_high"] == pytest.approx(V_OUT_HIGH, abs=LEVEL_ATOL_V)
    assert s["v_out_at_zero"] == pytest.approx(V_OUT_AT_ZERO, abs=LEVEL_ATOL_V)
    assert s["v_out_low"] == pytest.approx(V_OUT_LOW, abs=LEVEL_ATOL_V)
    # SYSTEM.md quotes the levels at z = -0.6 and +0.6 V
    assert float(np.interp(-0.6, ch.z_v, ch.v_out)) == pytest.approx(V_OUT_HIGH, abs=LEVEL_ATOL_V)
    assert float(np.interp(0.6, ch.z_v, ch.v_out)) == pytest.approx(V_OUT_LOW, abs=LEVEL_ATOL_V)
    assert s["slope_center"] == pytest.approx(SLOPE_CENTER, rel=0.10)
    assert 0 < s["delay_s"] < 1e-9
    assert ch.delay_fall_s > 0 and ch.delay_rise_s > 0
    assert s["static_power_w_mean"] > 0
    assert np.all(ch.i_supply_a > 0)
    # inverting: strictly falling through the transition (at the rails the feed-forward
    # current through R_P and R_AP leaves microvolt wiggles, so the edges are excluded)
    core = np.abs(ch.z_v) <= 0.5
    assert np.all(np.diff(ch.v_out[core]) < 0)
    assert ch.z_v[0] == pytest.approx(-0.8) and ch.z_v[-1] == pytest.approx(0.8)


@pytest.mark.spice
def test_fit_follows_spice(characterization) -> None:
    ch = characterization
    err = np.abs(ch.curve(ch.z_v) - ch.v_out)
    assert err.max() == pytest.approx(ch.curve.fit_max_error_v, rel=1e-6)
    assert ch.curve.v_dd == ch.spec.v_dd
    # the fitted derivative at the centre agrees with the SPICE slope
    assert float(ch.curve.derivative(0.0)) == pytest.approx(ch.slope_center, rel=0.10)


@pytest.mark.spice
def test_output_resistance_explains_the_loaded_curves(characterization) -> None:
    """Thevenin check: the open-circuit output and R_out predict the output under a load."""
    ch = characterization
    assert np.all(ch.r_out_ohm > 0)
    i0 = int(np.argmin(np.abs(ch.z_v)))
    v_oc, r_out = ch.v_out[i0], ch.r_out_ohm[i0]
    for r_load in (1e4, 1e5):
        predicted = v_oc * r_load / (r_load + r_out)
        assert ch.v_loaded[r_load][i0] == pytest.approx(predicted, abs=2e-3)
    # heavier loads pull the output further down
    v1k, v10k, v100k = (ch.v_loaded[r][i0] for r in (1e3, 1e4, 1e5))
    assert v1k < v10k < v100k < v_oc


@pytest.mark.spice
def test_curve_tables_come_from_spice(characterization, tmp_path: Path) -> None:
    ch = characterization
    c = ch.curve
    assert len(c.table_z_v) == len(c.r_out_ohm) == len(c.i_supply_a) > 10
    np.testing.assert_allclose(c.output_resistance(ch.z_v[::5]), ch.r_out_ohm[::5])
    np.testing.assert_allclose(c.supply_current(ch.z_v[::5]), ch.i_supply_a[::5])
    assert c.delay_s == pytest.approx(ch.delay_s)
    c.save(tmp_path / "fresh.json")
    assert NeuronCurve.load(tmp_path / "fresh.json") == c


@pytest.mark.spice
def test_shipped_default_curve_agrees_with_a_fresh_characterization(characterization) -> None:
    ch = characterization
    default = default_neuron_curve()
    z = ch.z_v
    np.testing.assert_allclose(default(z), ch.curve(z), rtol=0, atol=DEFAULT_VS_FRESH_ATOL_V)
    # and hence with SPICE itself, within the fit error
    assert np.max(np.abs(default(z) - ch.v_out)) <= ch.curve.fit_max_error_v + DEFAULT_VS_FRESH_ATOL_V


def test_neuron_netlist_refuses_unknown_analysis(tmp_path: Path) -> None:
    from imac.devices.neuron import neuron_netlist

    card = tmp_path / "card.pm"
    with pytest.raises(ValueError, match="unknown neuron analysis"):
        neuron_netlist(NeuronSpec(), card, "ac")
    text = neuron_netlist(NeuronSpec(), card, "dc")
    assert f'.include "{card}"' in text
    assert "vsh sh in DC 0.4" in text


@pytest.mark.spice
def test_a_changed_mtj_changes_the_neuron_curve_and_it_is_cached(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """TMR 150 % gives other neuron MTJs, so another characterization (keyed by the neuron spec
    and model card, cached); the shipped fit serves the default design only."""
    import imac.devices.neuron as N
    from imac.config import ImacSpec, parse_spec
    from imac.devices.neuron_curve import default_neuron_curve

    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path))
    assert N.neuron_curve(ImacSpec().neuron) == default_neuron_curve()  # the shipped fit: no ngspice
    other = parse_spec({"mtj": {"tmr": 1.5}}).neuron
    curve = N.neuron_curve(other)
    assert curve.meta["key"] != default_neuron_curve().meta["key"]
    assert abs(curve(np.array([0.1]))[0] - default_neuron_curve()(np.array([0.1]))[0]) > 1e-3
    assert len(list((tmp_path / "neuron").glob("*.json"))) == 1

    def no_ngspice(*a: object, **k: object) -> None:
        raise AssertionError("characterized again instead of using the cache")

    monkeypatch.setattr(N, "characterize", no_ngspice)
    assert N.neuron_curve(other).to_dict() == curve.to_dict()
