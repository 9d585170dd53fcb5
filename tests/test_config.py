"""Specs: the paper preset, validation with field paths in the message, YAML round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from imac.config import (
    PRESET_DIR,
    ImacSpec,
    MTJSpec,
    dump_spec,
    load_spec,
    parse_spec,
)
from imac.errors import ConfigError, ImacError

# SYSTEM.md section 2: R_P = RA / (pi l w / 4), R_AP = (1 + TMR) R_P.
R_P_PAPER = 8488.0
R_AP_PAPER = 25465.0


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _paper_dict() -> dict:
    return yaml.safe_load((PRESET_DIR / "paper.yaml").read_text())


# -- the preset ----------------------------------------------------------------------------


def test_paper_preset_loads_with_published_numbers() -> None:
    spec = load_spec("paper")
    assert isinstance(spec, ImacSpec)
    assert spec.mtj.area_m2 == pytest.approx(1.178e-15, rel=1e-3)
    assert spec.mtj.r_p_ohm == pytest.approx(R_P_PAPER, abs=1.0)
    assert spec.mtj.r_ap_ohm == pytest.approx(R_AP_PAPER, abs=1.0)
    assert spec.mtj.r_ap_ohm / spec.mtj.r_p_ohm == pytest.approx(1.0 + spec.mtj.tmr)
    assert spec.mtj.tmr == 2.0
    assert spec.amplifier.gain == 30.0
    assert spec.amplifier.r_in_ohm == 1000.0
    assert spec.subarray.v_dd == 0.8
    assert (spec.subarray.rows, spec.subarray.cols) == (32, 32)
    assert spec.neuron.shift_v == pytest.approx(0.4)
    assert spec.variation.kind == "none"


def test_paper_preset_by_path_equals_preset_by_name() -> None:
    assert load_spec(PRESET_DIR / "paper.yaml") == load_spec("paper")


def test_default_argument_is_the_paper_preset() -> None:
    assert load_spec() == load_spec("paper")


def test_yaml_exponent_without_dot_is_read_as_a_number(tmp_path: Path) -> None:
    # PyYAML reads ``50e-9`` (no dot) as a string; the spec must still take it as 5e-8 m.
    spec = load_spec(_write(tmp_path, "mtj:\n  length_m: 50e-9\n  width_m: 30e-9\n"))
    assert spec.mtj.length_m == pytest.approx(50e-9)
    assert spec.mtj.r_p_ohm == pytest.approx(R_P_PAPER, abs=1.0)


def test_empty_yaml_gives_the_defaults(tmp_path: Path) -> None:
    assert load_spec(_write(tmp_path, "")) == ImacSpec()


def test_specs_are_frozen() -> None:
    spec = ImacSpec()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        spec.mtj.tmr = 3.0  # type: ignore[misc]
    assert spec.mtj.tmr == 2.0


# -- refusals, with the dotted field path in the message --------------------------------


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"mtj": {"tmr_typo": 1.0}}, "mtj.tmr_typo"),
        ({"wires": {"width_nm": 27}}, "wires.width_nm"),
        ({"amplifier": {"gain": 30.0, "offset_v": 0.0}}, "amplifier.offset_v"),
        ({"bogus_section": {}}, "bogus_section"),
    ],
)
def test_unknown_keys_are_refused(patch: dict, path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(patch)
    assert path in str(exc.value)
    assert "unknown key" in str(exc.value)


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"mtj": {"ra_ohm_m2": -10e-12}}, "mtj.ra_ohm_m2"),
        ({"mtj": {"ra_ohm_m2": 0.0}}, "mtj.ra_ohm_m2"),
        ({"mtj": {"length_m": 0.0}}, "mtj.length_m"),
        ({"synapse": {"r_low_ohm": -5000.0, "r_high_ohm": 15000.0}}, "synapse.r_low_ohm"),
        ({"synapse": {"r_low_ohm": 5000.0, "r_high_ohm": 0.0}}, "synapse.r_high_ohm"),
        ({"wires": {"r_vertical_ohm": -1.0}}, "wires.r_vertical_ohm"),
        ({"wires": {"r_horizontal_ohm": -0.1}}, "wires.r_horizontal_ohm"),
        ({"wires": {"rho_bulk_ohm_m": 0.0}}, "wires.rho_bulk_ohm_m"),
        ({"amplifier": {"r_in_ohm": 0.0}}, "amplifier.r_in_ohm"),
        ({"neuron": {"r_in_ohm": -8488.0}}, "neuron.r_in_ohm"),
        ({"neuron": {"r_feedback_ohm": 0.0}}, "neuron.r_feedback_ohm"),
        ({"subarray": {"driver_resistance_ohm": -1.0}}, "subarray.driver_resistance_ohm"),
    ],
)
def test_negative_or_zero_resistance_is_refused(patch: dict, path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(patch)
    assert path in str(exc.value)


@pytest.mark.parametrize("tmr", [0.0, -0.5, -2.0])
def test_non_positive_tmr_is_refused(tmr: float) -> None:
    with pytest.raises(ConfigError, match=r"mtj\.tmr"):
        parse_spec({"mtj": {"tmr": tmr}})


@pytest.mark.parametrize(("low", "high"), [(15000.0, 5000.0), (8000.0, 8000.0)])
def test_r_high_not_above_r_low_is_refused(low: float, high: float) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec({"synapse": {"r_low_ohm": low, "r_high_ohm": high}})
    msg = str(exc.value)
    # A cross-field check: pydantic locates it at the section; the message names the field.
    assert "synapse" in msg
    assert "r_high_ohm" in msg


def test_only_one_synapse_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="synapse"):
        parse_spec({"synapse": {"r_low_ohm": 5000.0}})


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"variation": {"kind": "none", "amount": 0.1}}, "variation"),
        ({"variation": {"kind": "uniform", "amount": 1.5}}, "variation.amount"),
        ({"variation": {"kind": "lognormal"}}, "variation.kind"),
        ({"variation": {"stuck_p_rate": 0.7, "stuck_ap_rate": 0.5}}, "variation"),
        ({"variation": {"seed": -1}}, "variation.seed"),
        ({"subarray": {"rows": 0}}, "subarray.rows"),
        ({"subarray": {"cols": 2.5}}, "subarray.cols"),
        ({"neuron": {"sweep_min_v": 0.5, "sweep_max_v": -0.5}}, "neuron"),
        ({"wires": {"specularity": 1.5}}, "wires.specularity"),
        ({"amplifier": {"spice_open_loop_gain": 10.0}}, "amplifier.spice_open_loop_gain"),
    ],
)
def test_other_impossible_values_are_refused(patch: dict, path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(patch)
    assert path in str(exc.value)


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"mtj": {"tmr": math.inf}}, "mtj.tmr"),
        ({"mtj": {"ra_ohm_m2": math.inf}}, "mtj.ra_ohm_m2"),
        ({"wires": {"r_vertical_ohm": math.inf}}, "wires.r_vertical_ohm"),
        ({"neuron": {"v_shift": math.nan}}, "neuron.v_shift"),
        ({"neuron": {"sweep_min_v": math.nan}}, "neuron.sweep_min_v"),
    ],
)
def test_non_finite_values_are_refused(patch: dict, path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(patch)
    assert path in str(exc.value)


def test_field_path_and_file_name_in_message_of_a_bad_file(tmp_path: Path) -> None:
    data = _paper_dict()
    data["mtj"]["tmr"] = -1.0
    data["wires"]["width_m"] = 0.0
    p = _write(tmp_path, yaml.safe_dump(data), "my_design.yaml")
    with pytest.raises(ConfigError) as exc:
        load_spec(p)
    msg = str(exc.value)
    assert "my_design.yaml" in msg
    assert "mtj.tmr" in msg
    assert "wires.width_m" in msg  # every bad field is reported, not only the first


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "mtj:\n  tmr: [2.0\n  ra: {\n", "broken.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml") as exc:
        load_spec(p)
    assert "malformed YAML" in str(exc.value)


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "- 1\n- 2\n", "list.yaml")
    with pytest.raises(ConfigError, match=r"list\.yaml"):
        load_spec(p)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no_such_design\.yaml"):
        load_spec(tmp_path / "no_such_design.yaml")


def test_unknown_preset_is_refused_and_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        load_spec("definitely_not_a_preset")
    msg = str(exc.value)
    assert "definitely_not_a_preset" in msg
    assert "paper" in msg


def test_config_error_is_an_imac_error_and_a_value_error() -> None:
    with pytest.raises(ImacError):
        parse_spec({"mtj": {"tmr": -1}})
    with pytest.raises(ValueError):
        parse_spec({"mtj": {"tmr": -1}})


# -- YAML round trip ------------------------------------------------------------------------


def test_dump_parse_round_trip_of_the_preset() -> None:
    spec = load_spec("paper")
    text = dump_spec(spec)
    again = parse_spec(yaml.safe_load(text))
    assert again == spec
    assert dump_spec(again) == text


def test_dump_parse_round_trip_of_a_non_default_spec(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "mtj": {"tmr": 1.5, "tmr_half_bias_v": 0.5, "ra_ohm_m2": 7e-12},
            "synapse": {"r_low_ohm": 5000.0, "r_high_ohm": 15000.0},
            "variation": {"kind": "gaussian", "amount": 0.05, "stuck_ap_rate": 0.01, "seed": 7},
            "wires": {"r_vertical_ohm": 0.0, "r_horizontal_ohm": 3.25},
            "amplifier": {"gain": 10.0},
            "neuron": {"v_shift": 0.35, "model_card": str(tmp_path / "card.pm")},
            "subarray": {"rows": 16, "cols": 8, "driver_resistance_ohm": 150.0},
        }
    )
    p = _write(tmp_path, dump_spec(spec), "dumped.yaml")
    again = load_spec(p)
    assert again == spec
    assert again.neuron.model_card == tmp_path / "card.pm"
    assert again.variation.kind == "gaussian"


def test_sub_spec_can_be_parsed_alone() -> None:
    mtj = parse_spec({"tmr": 1.0}, MTJSpec)
    assert isinstance(mtj, MTJSpec)
    assert mtj.r_ap_ohm == pytest.approx(2.0 * mtj.r_p_ohm)
    with pytest.raises(ConfigError, match="tmr"):
        parse_spec({"tmr": 0.0}, MTJSpec)
