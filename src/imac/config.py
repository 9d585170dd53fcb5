"""Typed, validated specs for every part of the hardware, loadable from YAML.

All quantities are SI (ohm, volt, metre, farad, second) unless a field says otherwise.  Unknown
keys are refused and every impossible value is rejected at load time; the error message carries
the dotted field path (``wires.width_m``) so a user can find the line in their YAML file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imac.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"


class Spec(BaseModel):
    """Base of all specs: frozen, unknown keys forbidden, NaN and infinity refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class MTJSpec(Spec):
    """SOT-MRAM magnetic tunnel junction with an elliptical free layer."""

    length_m: float = Field(50e-9, gt=0, description="Free-layer ellipse major axis, m.")
    width_m: float = Field(30e-9, gt=0, description="Free-layer ellipse minor axis, m.")
    ra_ohm_m2: float = Field(10e-12, gt=0, description="Resistance-area product, ohm*m^2.")
    tmr: float = Field(2.0, gt=0, description="Zero-bias tunnel magnetoresistance ratio (2.0 = 200 %).")
    tmr_half_bias_v: float | None = Field(
        None,
        gt=0,
        description="Bias at which TMR halves, V: TMR(V) = TMR0 / (1 + (V/V_h)^2). None = no bias "
        "dependence (the default, as in the published circuit).",
    )

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
    """Differential-pair synapse levels. None means: take R_P / R_AP from the MTJ spec."""

    r_low_ohm: float | None = Field(None, gt=0, description="Low-resistance (P) state, ohm.")
    r_high_ohm: float | None = Field(None, gt=0, description="High-resistance (AP) state, ohm.")

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
    """SOT-MRAM sigmoid neuron: level shift, R_P input MTJ, R_AP feedback MTJ, CMOS inverter."""

    r_in_ohm: float = Field(8488.0, gt=0, description="Input MTJ in the parallel state, ohm.")
    r_feedback_ohm: float = Field(25465.0, gt=0, description="Feedback MTJ, antiparallel, ohm.")
    v_dd: float = Field(0.8, gt=0, description="Supply voltage, V.")
    v_shift: float | None = Field(None, description="Input level shift, V; None = V_DD/2.")
    nmos_w_m: float = Field(440e-9, gt=0, description="NMOS width, m.")
    nmos_l_m: float = Field(22e-9, gt=0, description="NMOS length, m.")
    pmos_w_m: float = Field(440e-9, gt=0, description="PMOS width, m.")
    pmos_l_m: float = Field(22e-9, gt=0, description="PMOS length, m.")
    nmos_model: str = Field("nmos_HP", min_length=1, description="Model name in the card.")
    pmos_model: str = Field("pmos_HP", min_length=1, description="Model name in the card.")
    model_card: Path | None = Field(
        None, description="SPICE model card; None = IMAC_DATA_DIR/spice/ptm22hp.pm or ../shared/data."
    )
    sweep_min_v: float = Field(-0.8, description="DC sweep start (amplifier output), V.")
    sweep_max_v: float = Field(0.8, description="DC sweep end, V.")
    sweep_step_v: float = Field(0.002, gt=0, description="DC sweep step, V.")
    load_capacitance_f: float = Field(
        1e-15, ge=0, description="Capacitive load for the step-response delay, F."
    )

    @model_validator(mode="after")
    def _sweep(self) -> NeuronSpec:
        if self.sweep_max_v <= self.sweep_min_v:
            raise ValueError("sweep_max_v must exceed sweep_min_v")
        return self

    @property
    def shift_v(self) -> float:
        return self.v_dd / 2 if self.v_shift is None else self.v_shift


class SubarraySpec(Spec):
    """An n x m synapse subarray and its drivers."""

    rows: int = Field(32, gt=0, description="Input lines per subarray (the bias line included).")
    cols: int = Field(32, gt=0, description="Output neurons per subarray.")
    v_dd: float = Field(0.8, gt=0, description="Input scale and bias-line voltage, V.")
    driver_resistance_ohm: float = Field(
        0.0, ge=0, description="Output resistance of each input-line driver, ohm."
    )


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
    neuron_load_c_f: float = Field(1e-15, ge=0, description="Capacitance at a neuron input, F.")


class BaselineSpec(Spec):
    """Mixed-signal and digital baselines for the IMAC comparison (every number sourced).

    Sources: [M] B. Murmann, "ADC Performance Survey 1997-2024" (Stanford, public spreadsheet):
    SAR ADCs of 6-10 bit at 10-100 MS/s reach Walden FOMs of a few to tens of fJ/conv-step;
    [H] M. Horowitz, "Computing's energy problem", ISSCC 2014: 45 nm energies (8-bit add
    0.03 pJ, 32-bit add 0.1 pJ, 32-bit FP mult 3.7 pJ, FP add 0.9 pJ, 8 KB SRAM read 10 pJ per
    64 bit, DRAM 1.3-2.6 nJ per 64 bit); [N] NVIDIA CUDA documentation and public
    micro-benchmarks: a kernel launch costs ~5 us of latency; [G] NVIDIA Jetson/mobile GPU
    board power ~10 W under load (public data sheets).
    """

    adc_bits: int = Field(8, ge=1, le=16, description="ADC resolution per tile output, bits.")
    adc_fom_j_per_step: float = Field(20e-15, gt=0, description="Walden FOM, J/conv-step [M].")
    adc_conversion_s: float = Field(10e-9, gt=0, description="One SAR conversion at 100 MS/s, s [M].")
    adc_area_m2: float = Field(1000e-12, gt=0, description="SAR ADC area, m^2 (~0.001 mm^2, [M]).")
    dac_bits: int = Field(8, ge=1, le=16, description="DAC resolution per input line, bits.")
    dac_energy_j: float = Field(0.5e-12, gt=0, description="Energy per DAC conversion, J (C-DAC, our estimate).")
    dac_settle_s: float = Field(1e-9, gt=0, description="DAC settling, s (our estimate).")
    digital_add_j: float = Field(0.03e-12, gt=0, description="8-bit add (partial-sum accumulation), J [H].")
    sigmoid_lut_j: float = Field(1e-12, gt=0, description="Digital sigmoid: small LUT read, J (scaled from [H]).")
    digital_cycle_s: float = Field(1e-9, gt=0, description="Digital clock period of the mixed-signal read-out, s.")
    cpu_mac_j: float = Field(4.6e-12, gt=0, description="fp32 MAC (mult + add) on a CPU datapath, J [H].")
    cpu_sram_j_per_byte: float = Field(1.25e-12, gt=0, description="SRAM access per byte, J (10 pJ/8 B [H]).")
    cpu_macs_per_s: float = Field(16e9, gt=0, description="CPU fp32 MAC throughput (2 GHz x 8 lanes), MAC/s.")
    gpu_kernel_launch_s: float = Field(5e-6, gt=0, description="Latency per layer (kernel launch) on a GPU, s [N].")
    gpu_power_w: float = Field(10.0, gt=0, description="Mobile GPU board power while busy, W [G].")


class ImacSpec(Spec):
    """The whole IMAC design point."""

    mtj: MTJSpec = MTJSpec()
    synapse: SynapseSpec = SynapseSpec()
    variation: VariationSpec = VariationSpec()
    wires: WireSpec = WireSpec()
    amplifier: AmplifierSpec = AmplifierSpec()
    neuron: NeuronSpec = NeuronSpec()
    subarray: SubarraySpec = SubarraySpec()
    cost: CostSpec = CostSpec()
    baselines: BaselineSpec = BaselineSpec()


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {path}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_spec(data: Any, cls: type[Spec] = ImacSpec, source: str = "<dict>") -> Any:
    """Validate a plain mapping into ``cls``; raise :class:`ConfigError` naming each bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_spec(path_or_preset: str | Path = "paper", cls: type[Spec] = ImacSpec) -> Any:
    """Load a spec from a YAML file or a preset name (``paper``) in the package's configs."""
    path = Path(path_or_preset)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{path_or_preset}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"unknown preset {path_or_preset!r}; known presets: {', '.join(known)}")
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"malformed YAML in {path}: {err}") from None
    return parse_spec(data, cls, source=str(path))


def dump_spec(spec: Spec) -> str:
    """YAML text of a spec (round-trips through :func:`parse_spec`)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
