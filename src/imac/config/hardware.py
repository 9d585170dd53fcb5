"""Specs of the IMAC hardware: MTJ, synapse levels, variation, wires, amplifier, neuron,
subarray, and the parameters of its cost model that are not simulated.  SI units."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from imac.config.base import (
    MAX_ARRAY_SIDE,
    MIN_RESISTANCE_OHM,
    SPICE_NAME_PATTERN,
    V_DD_MAX_V,
    V_DD_MIN_V,
    Spec,
    _resistance_or_zero,
    check_netlist_path,
)


class MTJSpec(Spec):
    """SOT-MRAM magnetic tunnel junction with an elliptical free layer."""

    length_m: float = Field(50e-9, ge=1e-10, le=1e-4, description="Free-layer ellipse major axis, m.")
    width_m: float = Field(30e-9, ge=1e-10, le=1e-4, description="Free-layer ellipse minor axis, m.")
    ra_ohm_m2: float = Field(10e-12, gt=0, description="Resistance-area product, ohm*m^2.")
    tmr: float = Field(2.0, gt=0, description="Zero-bias tunnel magnetoresistance ratio (2.0 = 200 %).")
    tmr_half_bias_v: float | None = Field(
        None,
        gt=0,
        description="Bias at which TMR halves, V: TMR(V) = TMR0 / (1 + (V/V_h)^2). None = no bias "
        "dependence (the default, as in the published circuit). Acts where MTJs are read: the synapse "
        "levels at the array's read voltage V_DD, the neuron's feedback MTJ at V_DD/2.",
    )

    def tmr_at(self, v_bias_v: Any) -> Any:
        """TMR at junction bias ``v_bias_v`` (V, a float or an array): TMR0 / (1 + (V/V_h)^2), or
        TMR0 without bias dependence."""
        if self.tmr_half_bias_v is None:
            return self.tmr
        return self.tmr / (1.0 + (v_bias_v / self.tmr_half_bias_v) ** 2)

    def r_ap_at(self, v_bias_v: Any) -> Any:
        """Antiparallel-state resistance at bias ``v_bias_v`` (V), ohm."""
        return (1.0 + self.tmr_at(v_bias_v)) * self.r_p_ohm

    @property
    def area_m2(self) -> float:
        """Ellipse area pi*l*w/4, m^2."""
        return math.pi * self.length_m * self.width_m / 4.0

    @property
    def r_p_ohm(self) -> float:
        """Parallel-state resistance RA/area, ohm."""
        return self.ra_ohm_m2 / self.area_m2

    @property
    def r_ap_ohm(self) -> float:
        """Antiparallel-state resistance (1+TMR)*R_P at zero bias, ohm."""
        return (1.0 + self.tmr) * self.r_p_ohm


class SynapseSpec(Spec):
    """Differential-pair synapse levels. None means: derived from the MTJ spec, R_P and R_AP at the
    array's read voltage V_DD (the full input swing across a device whose summing line sits near
    0 V); set both to override (e.g. 5 k / 15 k as in the authors' own simulator)."""

    r_low_ohm: float | None = Field(None, ge=MIN_RESISTANCE_OHM, description="Low-resistance (P) state, ohm.")
    r_high_ohm: float | None = Field(None, ge=MIN_RESISTANCE_OHM, description="High-resistance (AP) state, ohm.")

    @model_validator(mode="after")
    def _ordered(self) -> SynapseSpec:
        if (self.r_low_ohm is None) != (self.r_high_ohm is None):
            raise ValueError("give both r_low_ohm and r_high_ohm, or neither")
        if self.r_low_ohm is not None and self.r_high_ohm is not None:
            if self.r_high_ohm <= self.r_low_ohm:
                raise ValueError(
                    f"r_high_ohm ({self.r_high_ohm}) must exceed r_low_ohm ({self.r_low_ohm})"
                )
        return self


class VariationSpec(Spec):
    """Device-to-device variation and stuck-at faults of the synapse resistances (seeded)."""

    kind: Literal["none", "uniform", "gaussian"] = Field(
        "none", description="uniform: R*(1+U(-x,x)); gaussian: R*(1+N(0,x))."
    )
    amount: float = Field(
        0.0, ge=0, lt=1, description="x: half-width (uniform) or sigma (gaussian), fraction of R."
    )
    stuck_p_rate: float = Field(0.0, ge=0, le=1, description="Fraction of devices stuck at R_P.")
    stuck_ap_rate: float = Field(0.0, ge=0, le=1, description="Fraction of devices stuck at R_AP.")
    seed: int = Field(0, ge=0, description="Seed of every random draw.")

    @model_validator(mode="after")
    def _rates(self) -> VariationSpec:
        if self.stuck_p_rate + self.stuck_ap_rate > 1:
            raise ValueError("stuck_p_rate + stuck_ap_rate must not exceed 1")
        if self.kind == "none" and self.amount != 0:
            raise ValueError("amount must be 0 when kind is 'none'")
        return self


class WireSpec(Spec):
    """Interconnect geometry and the size-effect copper resistivity model (SYSTEM.md section 3).

    Per-cell resistances are computed from geometry unless ``r_vertical_ohm`` /
    ``r_horizontal_ohm`` override them (0 disables the parasitic).
    """

    rho_bulk_ohm_m: float = Field(1.9e-8, gt=0, description="Bulk copper resistivity, ohm*m.")
    mean_free_path_m: float = Field(39e-9, gt=0, description="Electron mean free path, m.")
    specularity: float = Field(0.25, ge=0, le=1, description="Surface specularity p (0..1).")
    grain_reflection: float = Field(0.3, ge=0, lt=1, description="Grain-boundary reflection R.")
    width_m: float = Field(27e-9, gt=0, description="Wire width, m.")
    thickness_m: float = Field(22e-9, gt=0, description="Wire thickness, m.")
    grain_size_m: float | None = Field(
        None, gt=0, description="Mean grain size, m; None = wire width (the usual assumption)."
    )
    cell_width_m: float = Field(135e-9, gt=0, description="Cell pitch along the summing lines, m.")
    cell_height_m: float = Field(108e-9, gt=0, description="Cell pitch along the input lines, m.")
    dielectric_rel: float = Field(20.0, gt=0, description="Relative permittivity of the dielectric.")
    r_vertical_ohm: float | None = Field(
        None, ge=0, description="Override: input-line resistance per cell, ohm."
    )
    r_horizontal_ohm: float | None = Field(
        None, ge=0, description="Override: summing-line resistance per cell, ohm."
    )

    @field_validator("r_vertical_ohm", "r_horizontal_ohm")
    @classmethod
    def _not_a_short(cls, value: float | None) -> float | None:
        return _resistance_or_zero(value, "a wire segment")


class AmplifierSpec(Spec):
    """Per-output amplifier reading the I+ and I- summing lines.

    ``difference`` (the published circuit): ideal op-amp, R1 = R2 = r_in, R3 = R4 = gain * r_in;
    it loads the lines.  ``instrumentation``: ideal high-impedance inputs, V_out = gain (V+ - V-);
    it draws no line current, so a common-mode input is rejected exactly (an option, not the
    published design).
    """

    topology: Literal["difference", "instrumentation"] = Field(
        "difference", description="Amplifier read-out circuit (see class doc)."
    )
    r_in_ohm: float = Field(1000.0, gt=0, description="Input resistors R1 = R2, ohm.")
    gain: float = Field(30.0, gt=0, description="Closed-loop differential gain R3/R1 (single subarrays).")
    max_gain: float = Field(
        1000.0, gt=0, description="Largest gain the mapping may derive for a column (R3/R1 ratio)."
    )
    spice_open_loop_gain: float = Field(
        1e9, gt=1e3, description="Open-loop gain of the VCVS that stands for the ideal op-amp in SPICE."
    )


class NeuronSpec(Spec):
    """SOT-MRAM sigmoid neuron: level shift, R_P input MTJ, R_AP feedback MTJ, CMOS inverter.

    Its MTJs are derived from ``mtj`` (in a whole spec: the array's MTJ unless the neuron's own
    is given): the input MTJ is R_P, the feedback MTJ R_AP at a bias of V_DD/2 (the mid-scale
    drop across it); ``r_in_ohm`` / ``r_feedback_ohm`` override them.
    """

    mtj: MTJSpec | None = Field(None, description="The neuron's own MTJ geometry; None = the array's MTJ.")
    r_in_ohm: float | None = Field(None, ge=MIN_RESISTANCE_OHM,
                                   description="Input MTJ (parallel state), ohm; None = R_P of the MTJ.")
    r_feedback_ohm: float | None = Field(None, ge=MIN_RESISTANCE_OHM, description="Feedback MTJ (antiparallel), "
                                         "ohm; None = R_AP of the MTJ at V_DD/2.")
    v_dd: float = Field(0.8, ge=V_DD_MIN_V, le=V_DD_MAX_V,
                        description="Supply voltage, V (in a whole spec: the one V_DD at its top).")
    v_shift: float | None = Field(None, description="Input level shift, V; None = V_DD/2.")
    nmos_w_m: float = Field(440e-9, gt=0, description="NMOS width, m.")
    nmos_l_m: float = Field(22e-9, gt=0, description="NMOS length, m.")
    pmos_w_m: float = Field(440e-9, gt=0, description="PMOS width, m.")
    pmos_l_m: float = Field(22e-9, gt=0, description="PMOS length, m.")
    nmos_model: str = Field("nmos_HP", max_length=64, pattern=SPICE_NAME_PATTERN,
                            description="Model name in the card (a SPICE identifier).")
    pmos_model: str = Field("pmos_HP", max_length=64, pattern=SPICE_NAME_PATTERN,
                            description="Model name in the card (a SPICE identifier).")
    model_card: Path | None = Field(
        None, description="SPICE model card; None = IMAC_DATA_DIR/spice/ptm22hp.pm or ../shared/data."
    )
    sweep_min_v: float = Field(-0.8, description="DC sweep start (amplifier output), V.")
    sweep_max_v: float = Field(0.8, description="DC sweep end, V.")
    sweep_step_v: float = Field(0.002, gt=0, description="DC sweep step, V.")
    load_capacitance_f: float = Field(
        1e-15, ge=0, description="Capacitive load for the step-response delay, F."
    )

    @field_validator("model_card")
    @classmethod
    def _card_path_is_plain(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_netlist_path(str(value))
        return value

    @model_validator(mode="after")
    def _sweep(self) -> NeuronSpec:
        if self.sweep_max_v <= self.sweep_min_v:
            raise ValueError("sweep_max_v must exceed sweep_min_v")
        return self

    @classmethod
    def derive(cls, data: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
        raw = data.get("mtj")
        try:  # a bad MTJ is refused, with its path, by the validation below
            mtj = MTJSpec() if raw is None else raw if isinstance(raw, MTJSpec) else MTJSpec.model_validate(raw)
        except (ValidationError, TypeError):
            mtj = None
        if raw is None:
            data["mtj"], derived["mtj"] = mtj, "the default MTJ"
        try:  # a bad V_DD is refused by the field's own validation below
            v_dd: float | None = float(data.get("v_dd", cls.model_fields["v_dd"].default))
        except (TypeError, ValueError, OverflowError):
            v_dd = None
        if mtj is None:
            v_dd = None  # nothing to derive from
        elif data.get("r_in_ohm") is None:
            data["r_in_ohm"], derived["r_in_ohm"] = mtj.r_p_ohm, "R_P = RA/area of neuron.mtj"
        if v_dd is not None and mtj is not None and data.get("r_feedback_ohm") is None:
            data["r_feedback_ohm"] = mtj.r_ap_at(v_dd / 2)
            derived["r_feedback_ohm"] = "R_AP of neuron.mtj at V_DD/2 bias"
        if v_dd is not None and data.get("v_shift") is None:
            data["v_shift"], derived["v_shift"] = v_dd / 2, "V_DD/2"
        return data

    @property
    def shift_v(self) -> float:
        """Input level shift, V."""
        return self.v_dd / 2 if self.v_shift is None else self.v_shift


class SubarraySpec(Spec):
    """An n x m synapse subarray and its drivers."""

    rows: int = Field(32, ge=2, le=MAX_ARRAY_SIDE,
                      description="Input lines per subarray (the bias line included).")
    cols: int = Field(32, ge=1, le=MAX_ARRAY_SIDE, description="Output neurons per subarray.")
    v_dd: float = Field(0.8, ge=V_DD_MIN_V, le=V_DD_MAX_V, description="Input scale and bias-line voltage, V "
                        "(in a whole spec: the one V_DD at its top).")
    driver_resistance_ohm: float = Field(
        0.0, ge=0, description="Output resistance of each input-line driver, ohm."
    )

    @field_validator("driver_resistance_ohm")
    @classmethod
    def _not_a_short(cls, value: float) -> float:
        return _resistance_or_zero(value, "a driver resistance") or 0.0


class CostSpec(Spec):
    """Parameters of the IMAC cost model that are not simulated (each with its basis).

    Op-amp: a single-stage OTA sized by the gm/I_D method (Jespers & Murmann, *Systematic
    Design of Analog CMOS Circuits*, Cambridge UP 2017): GBW = g_m / (2 pi C_L), g_m =
    (g_m/I_D) I_D, two branches of I_D from V_DD.  Closed-loop bandwidth GBW / (1 + gain) (the
    noise gain of the difference amplifier); settling to 2^-(bits+1) takes (bits+1) ln 2 time
    constants.  Areas: the synapse cell is the wire spec's cell pitch (135 nm x 108 nm, the
    authors' layout); neuron and op-amp areas are our layout estimates.
    """

    opamp_gm_over_id: float = Field(15.0, gt=0, description="g_m/I_D of the OTA input pair, S/A (moderate inversion).")
    opamp_c_load_f: float = Field(10e-15, gt=0, description="OTA load + compensation capacitance, F (our estimate).")
    opamp_gbw_hz: float = Field(5e9, gt=0, description="OTA gain-bandwidth product, Hz (our choice for a 22 nm OTA).")
    opamp_area_m2: float = Field(20e-12, gt=0, description="Area of one OTA with its 4 resistors, m^2 (our estimate).")
    settle_bits: int = Field(8, ge=1, le=16, description="Settle every node to 2^-(bits+1) of its step.")
    neuron_area_m2: float = Field(
        0.5e-12, gt=0, description="Neuron: 2 MTJs + 440n/22n inverter + level shifter, m^2 (our estimate)."
    )
    routing_overhead: float = Field(0.2, ge=0, description="Extra area for routing and periphery, fraction.")
