"""The CPU-IMAC interface cost model: drivers, readouts, scaling with counts, errors."""

from __future__ import annotations

import math

import pytest

from imac.errors import ConfigError
from imac.system.interface import InterfaceCost, InterfaceSpec, interface_cost, load_interface


def comps(cost: InterfaceCost) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in cost.rows:
        out[r["component"]] = out.get(r["component"], 0.0) + r["energy_j"]
    return out


def test_rows_sum_to_totals() -> None:
    c = interface_cost(400, 10, "dac", "adc")
    assert c.energy_j == pytest.approx(sum(r["energy_j"] for r in c.rows))
    assert c.latency_s == pytest.approx(sum(r["latency_s"] for r in c.rows))
    for r in c.rows:
        assert r["energy_j"] == pytest.approx(r["count"] * r["energy_per_action_j"])
    assert "**total**" in c.markdown() and c.to_dict()["energy_j"] == pytest.approx(c.energy_j)


def test_sign_driver_cheaper_than_dac() -> None:
    s = InterfaceSpec()
    sign, dac = interface_cost(400, 10, "sign", "adc"), interface_cost(400, 10, "dac", "adc")
    assert sign.energy_j < dac.energy_j and sign.latency_s < dac.latency_s
    assert "dacs" in comps(dac) and "dacs" not in comps(sign)
    # sign: 1 bit per input into the buffer, toggles cost C * 2V * V each
    write = next(r for r in sign.rows if r["action"] == "write features")
    assert write["count"] == 400 // 8
    tog = next(r for r in sign.rows if r["action"] == "sign toggle")
    assert tog["energy_per_action_j"] == pytest.approx(2 * s.line_capacitance_f * s.v_dd**2)
    assert tog["count"] == round(400 * s.input_activity)
    dconv = next(r for r in dac.rows if r["component"] == "dacs")
    assert dconv["energy_per_action_j"] == pytest.approx(2**s.dac_bits * s.dac_unit_cap_f * s.v_dd**2)


def test_comparator_cheaper_than_adc() -> None:
    s = InterfaceSpec()
    comp, adc = interface_cost(400, 10, "sign", "comparator"), interface_cost(400, 10, "sign", "adc")
    assert comp.energy_j < adc.energy_j and comp.latency_s < adc.latency_s
    conv = next(r for r in adc.rows if r["component"] == "adcs")
    assert conv["energy_per_action_j"] == pytest.approx(s.adc_fom_j_per_step * 2**s.adc_bits)  # Walden
    assert conv["latency_s"] == s.adc_conversion_s  # outputs convert in parallel


@pytest.mark.parametrize("driver", ["sign", "dac"])
@pytest.mark.parametrize("readout", ["comparator", "adc"])
def test_energy_scales_with_counts(driver: str, readout: str) -> None:
    a = comps(interface_cost(256, 16, driver, readout))  # type: ignore[arg-type]
    b = comps(interface_cost(512, 16, driver, readout))  # type: ignore[arg-type]
    c = comps(interface_cost(256, 32, driver, readout))  # type: ignore[arg-type]
    assert b["drivers"] == pytest.approx(2 * a["drivers"])
    key = "comparators" if readout == "comparator" else "adcs"
    assert c[key] == pytest.approx(2 * a[key]) and b[key] == pytest.approx(a[key])
    assert b["sync"] == a["sync"]  # one handshake per inference whatever the size
    seg = comps(interface_cost(256, 16, driver, readout, line_segments=4))  # type: ignore[arg-type]
    assert seg["drivers"] == pytest.approx(4 * a["drivers"])


def test_line_capacitance_is_a_parameter() -> None:
    lo = interface_cost(100, 10, spec={"line_capacitance_f": 5e-15})
    hi = interface_cost(100, 10, spec={"line_capacitance_f": 20e-15})
    assert comps(hi)["drivers"] == pytest.approx(4 * comps(lo)["drivers"])
    t = next(r for r in hi.rows if r["component"] == "drivers")["latency_s"]
    assert t == pytest.approx(9 * math.log(2) * 1000.0 * 20e-15)  # (settle_bits+1) ln2 R C


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="unknown driver 'pwm'"):
        interface_cost(10, 10, "pwm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown readout"):
        interface_cost(10, 10, "sign", "tdc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_inputs must be a positive integer"):
        interface_cost(0, 10)
    with pytest.raises(ConfigError, match="adc_bits"):
        load_interface({"adc_bits": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        load_interface({"adc_fom": 1e-15})


def test_every_field_documents_its_basis() -> None:
    for name, f in InterfaceSpec.model_fields.items():
        assert f.description and len(f.description) > 20, name
