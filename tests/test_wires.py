"""Interconnect parasitics from geometry: per-cell R and C, size effects, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from imac.circuit.wires import (
    EPS0_F_PER_M,
    capacitance_per_length,
    cell_parasitics,
    resistivity,
)
from imac.config import WireSpec, load_spec

# SYSTEM.md section 3: the authors quote 9.2 ohm (vertical) and 11.6 ohm (horizontal) per cell,
# about 0.05 fF per cell.  Their exact constants are unpublished: 5 % on R, a factor 2 on C.
R_VERTICAL_PAPER = 9.2
R_HORIZONTAL_PAPER = 11.6
C_CELL_PAPER = 0.05e-15


def test_default_per_cell_resistances_match_the_paper() -> None:
    par = cell_parasitics(WireSpec())
    assert par.r_vertical == pytest.approx(R_VERTICAL_PAPER, rel=0.05)
    assert par.r_horizontal == pytest.approx(R_HORIZONTAL_PAPER, rel=0.05)
    # horizontal cells are longer (135 nm vs 108 nm) with the same cross-section
    assert par.r_horizontal / par.r_vertical == pytest.approx(135 / 108)


def test_paper_preset_uses_the_geometric_model() -> None:
    par = cell_parasitics(load_spec("paper").wires)
    assert par == cell_parasitics(WireSpec())


def test_default_per_cell_capacitance_is_about_0p05_ff() -> None:
    par = cell_parasitics(WireSpec())
    for c in (par.c_vertical, par.c_horizontal):
        assert C_CELL_PAPER / 2 <= c <= 2 * C_CELL_PAPER
    assert par.c_horizontal / par.c_vertical == pytest.approx(135 / 108)


def test_capacitance_formula() -> None:
    spec = WireSpec(width_m=20e-9, thickness_m=20e-9, dielectric_rel=4.0)
    # square wire: w/t + 2 t/w = 3
    assert capacitance_per_length(spec) == pytest.approx(3.0 * 4.0 * EPS0_F_PER_M)


def test_size_effects_raise_resistivity_above_bulk() -> None:
    spec = WireSpec()
    assert resistivity(spec) > spec.rho_bulk_ohm_m
    # a wide, thick wire approaches bulk copper
    big = WireSpec(width_m=1e-3, thickness_m=1e-3)
    assert resistivity(big) == pytest.approx(big.rho_bulk_ohm_m, rel=1e-3)


@pytest.mark.parametrize("grain", [None, 30e-9])
def test_resistivity_increases_as_the_wire_narrows(grain: float | None) -> None:
    widths = np.geomspace(200e-9, 8e-9, 25)  # narrowing
    rho = [resistivity(WireSpec(width_m=w, grain_size_m=grain)) for w in widths]
    assert np.all(np.diff(rho) > 0)


def test_resistivity_increases_as_the_wire_thins() -> None:
    thick = np.geomspace(200e-9, 8e-9, 25)
    rho = [resistivity(WireSpec(thickness_m=t)) for t in thick]
    assert np.all(np.diff(rho) > 0)


def test_resistivity_responds_to_the_scattering_parameters() -> None:
    base = resistivity(WireSpec())
    assert resistivity(WireSpec(specularity=1.0)) < base  # fully specular surfaces
    assert resistivity(WireSpec(grain_reflection=0.0, specularity=1.0)) == pytest.approx(
        WireSpec().rho_bulk_ohm_m
    )
    assert resistivity(WireSpec(grain_reflection=0.5)) > base


def test_per_cell_resistance_scales_with_pitch() -> None:
    a = cell_parasitics(WireSpec())
    b = cell_parasitics(WireSpec(cell_height_m=216e-9, cell_width_m=270e-9))
    assert b.r_vertical == pytest.approx(2 * a.r_vertical)
    assert b.r_horizontal == pytest.approx(2 * a.r_horizontal)
    assert b.c_vertical == pytest.approx(2 * a.c_vertical)


def test_overrides_are_respected() -> None:
    computed = cell_parasitics(WireSpec())
    par = cell_parasitics(WireSpec(r_vertical_ohm=0.0, r_horizontal_ohm=5.0))
    assert par.r_vertical == 0.0
    assert par.r_horizontal == 5.0
    # the capacitances still come from geometry
    assert par.c_vertical == computed.c_vertical
    only_h = cell_parasitics(WireSpec(r_horizontal_ohm=1.5))
    assert only_h.r_horizontal == 1.5
    assert only_h.r_vertical == pytest.approx(computed.r_vertical)
