"""The one spec tree (issue 10, part 1): one V_DD, derived values derived and marked, overrides,
the CPU core and the interface in the tree, round trips, hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imac.config import (
    ImacSpec,
    MTJSpec,
    NeuronSpec,
    dump_spec,
    load_spec,
    parse_spec,
    show_spec,
    spec_hash,
    user_dict,
    with_overrides,
)
from imac.devices.synapse import synapse_levels
from imac.errors import ConfigError


def test_the_paper_preset_is_the_default_tree() -> None:
    s = load_spec("paper")
    assert s == ImacSpec()
    assert s.v_dd == s.neuron.v_dd == s.subarray.v_dd == s.interface.v_dd == 0.8
    assert s.cpu.name == "cortex-a76"
    assert s.neuron.r_in_ohm == pytest.approx(8488.26, abs=0.01)  # R_P = RA / (pi l w / 4)
    assert s.neuron.r_feedback_ohm == pytest.approx(25464.8, abs=0.1)  # (1 + TMR) R_P
    assert s.synapse.r_low_ohm == s.neuron.r_in_ohm and s.synapse.r_high_ohm == s.neuron.r_feedback_ohm


def test_one_v_dd_reaches_every_user_and_a_second_one_is_refused() -> None:
    s = parse_spec({"v_dd": 0.9})
    assert s.neuron.v_dd == s.subarray.v_dd == s.interface.v_dd == 0.9
    assert s.neuron.shift_v == pytest.approx(0.45)
    assert s.interface.buffer_energy() > ImacSpec().interface.buffer_energy()  # derived energy follows V_DD
    for section in ("neuron", "subarray", "interface"):
        with pytest.raises(ConfigError, match=f"{section}.v_dd .* differs from v_dd"):
            parse_spec({section: {"v_dd": 0.9}})
    assert parse_spec({"v_dd": 0.9, "neuron": {"v_dd": 0.9}}).neuron.v_dd == 0.9  # consistent: accepted


def test_a_changed_mtj_changes_synapses_and_neuron_mtjs() -> None:
    base, new = ImacSpec(), parse_spec({"mtj": {"tmr": 1.5}})
    assert synapse_levels(new.synapse, new.mtj).r_high < synapse_levels(base.synapse, base.mtj).r_high
    assert new.neuron.r_feedback_ohm == pytest.approx(2.5 * new.mtj.r_p_ohm)
    bigger = parse_spec({"mtj": {"ra_ohm_m2": 20e-12}})
    assert bigger.neuron.r_in_ohm == pytest.approx(2 * base.neuron.r_in_ohm)
    assert bigger.synapse.r_low_ohm == pytest.approx(2 * base.synapse.r_low_ohm)


def test_neuron_mtj_of_its_own_and_explicit_overrides() -> None:
    own = parse_spec({"neuron": {"mtj": {"length_m": 100e-9}}})
    assert own.neuron.r_in_ohm == pytest.approx(ImacSpec().neuron.r_in_ohm / 2)
    assert own.synapse.r_low_ohm == ImacSpec().synapse.r_low_ohm  # the array keeps its MTJ
    fixed = parse_spec({"neuron": {"r_in_ohm": 8000.0}, "mtj": {"tmr": 1.0}})
    assert fixed.neuron.r_in_ohm == 8000.0 and "neuron.r_in_ohm" not in fixed.derived
    assert fixed.neuron.r_feedback_ohm == pytest.approx(2 * fixed.mtj.r_p_ohm)


def test_tmr_bias_dependence_acts_where_mtjs_are_read() -> None:
    s = parse_spec({"mtj": {"tmr_half_bias_v": 0.5}})
    m = s.mtj
    assert m.tmr_at(0.0) == m.tmr and m.tmr_at(0.5) == pytest.approx(m.tmr / 2)
    assert s.synapse.r_high_ohm == pytest.approx(m.r_ap_at(s.v_dd))  # read at V_DD
    assert s.neuron.r_feedback_ohm == pytest.approx(m.r_ap_at(s.v_dd / 2))  # at V_DD/2
    assert s.synapse.r_high_ohm < ImacSpec().synapse.r_high_ohm


def test_standalone_neuron_spec_derives_from_the_default_mtj() -> None:
    n = NeuronSpec()
    assert n.r_in_ohm == pytest.approx(MTJSpec().r_p_ohm) and n.v_shift == pytest.approx(0.4)
    assert {"r_in_ohm", "r_feedback_ohm", "mtj", "v_shift"} <= set(n.derived)


def test_show_marks_every_derived_value_and_dump_leaves_them_out() -> None:
    s = ImacSpec()
    shown = show_spec(s)
    for path in ("synapse.r_low_ohm", "neuron.r_in_ohm", "neuron.v_dd", "cpu.mac_energy_fp32_j",
                 "interface.bus_energy_j_per_byte"):
        assert path in s.derived
    marked = [ln for ln in shown.splitlines() if "# derived:" in ln]
    assert any(ln.strip().startswith("r_in_ohm:") for ln in marked)
    assert any(ln.strip().startswith("v_dd:") for ln in marked)
    assert yaml.safe_load(shown)["neuron"]["r_in_ohm"] == s.neuron.r_in_ohm  # still valid YAML
    given = user_dict(s)
    assert "r_in_ohm" not in given["neuron"] and "v_dd" not in given["neuron"] and given["cpu"] == "cortex-a76"
    assert parse_spec(yaml.safe_load(dump_spec(s))) == s  # round trip


def test_with_overrides_rederives_and_names_bad_paths() -> None:
    s = with_overrides(ImacSpec(), {"mtj.tmr": 1.0, "v_dd": 0.7, "cpu.frequency_hz": 1.0e9})
    assert s.neuron.r_feedback_ohm == pytest.approx(2 * s.mtj.r_p_ohm) and s.subarray.v_dd == 0.7
    assert s.cpu.name == "cortex-a76" and s.cpu.frequency_hz == 1.0e9
    with pytest.raises(ConfigError, match=r"mtj\.tmrr"):
        with_overrides(ImacSpec(), {"mtj.tmrr": 1.0})
    with pytest.raises(ConfigError, match=r"subarray\.rows"):
        with_overrides(ImacSpec(), {"subarray.rows": 0})


def test_cpu_core_in_the_tree(tmp_path: Path) -> None:
    a53 = parse_spec({"cpu": "cortex-a53"}).cpu
    assert a53.name == "cortex-a53" and a53.node_nm == 40.0
    tuned = parse_spec({"cpu": {"preset": "cortex-a53", "vdd_v": 1.0}}).cpu
    assert tuned.mac_energy_fp32_j == pytest.approx(a53.mac_energy_fp32_j * (1.0 / 1.2) ** 2)
    f = tmp_path / "core.yaml"
    f.write_text(yaml.safe_dump(a53.model_dump(mode="json")))
    assert parse_spec({"cpu": str(f)}).cpu.model_dump() == a53.model_dump()
    with pytest.raises(ConfigError, match="unknown CPU preset"):
        parse_spec({"cpu": "cortex-x9"})


def test_spec_hash_follows_the_parts_it_names() -> None:
    s = ImacSpec()
    t = parse_spec({"mtj": {"tmr": 1.5}})
    assert spec_hash(s, "neuron") != spec_hash(t, "neuron")  # a derived change shows
    assert spec_hash(s, "cost") == spec_hash(t, "cost")
    assert spec_hash(s) == spec_hash(ImacSpec()) and len(spec_hash(s)) == 16


def test_cpu_imac_prices_with_the_designs_core_and_interface() -> None:
    """Without an explicit core or interface, CPU-IMAC uses the spec's: a changed interface
    energy or core moves the result (they were fixed defaults before)."""
    from imac.system.cpu_imac import energy_study

    kw = {"fidelity": "behavioral", "sample_tiles": 1}
    base = energy_study("vgg11-full-cifar10", spec=ImacSpec(), **kw)
    a53 = energy_study("vgg11-full-cifar10", spec=parse_spec({"cpu": "cortex-a53"}), imac=base["_imac_cost"], **kw)
    sync = energy_study("vgg11-full-cifar10", spec=parse_spec({"interface": {"sync_energy_j": 1e-9}}),
                        imac=base["_imac_cost"], **kw)
    assert base["core"] == "cortex-a76" and a53["core"] == "cortex-a53"
    assert a53["energy_cpu_only_j"] != base["energy_cpu_only_j"]
    assert sync["energy_cpu_imac_j"] > base["energy_cpu_imac_j"]
    assert sync["energy_cpu_only_j"] == base["energy_cpu_only_j"]
