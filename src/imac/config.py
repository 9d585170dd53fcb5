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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from imac.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "configs"

# Bounds that later stages rely on, checked here so that a refusal names the dotted field path.
V_DD_MIN_V, V_DD_MAX_V = 0.05, 5.0  # any CMOS supply people study; the solvers assume a few volts at most
MAX_ARRAY_SIDE = 4096  # largest subarray side the mapping and solvers accept
MIN_RESISTANCE_OHM = 1e-6  # below this a resistor is numerically a short: use 0 (ideal) where allowed
MAX_CONFIG_BYTES = 1 << 20  # a spec file is a few KB; anything larger is not a config
# what a SPICE model name may look like: it is written into netlists, so nothing else passes
SPICE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*$"


class Spec(BaseModel):
    """Base of all specs: frozen, unknown keys forbidden, NaN and infinity refused, and no
    boolean where a number is expected (pydantic would read ``rows: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            if cls.model_fields[info.field_name].annotation is not bool:
                raise ValueError(f"expected a number, got the boolean {value}")
        return value


def _resistance_or_zero(value: float | None, what: str) -> float | None:
    if value is not None and 0 < value < MIN_RESISTANCE_OHM:
        raise ValueError(f"{what} below {MIN_RESISTANCE_OHM:g} ohm is a short; use 0 for an ideal one")
    return value


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
    """SOT-MRAM sigmoid neuron: level shift, R_P input MTJ, R_AP feedback MTJ, CMOS inverter."""

    r_in_ohm: float = Field(8488.0, gt=0, description="Input MTJ in the parallel state, ohm.")
    r_feedback_ohm: float = Field(25465.0, gt=0, description="Feedback MTJ, antiparallel, ohm.")
    v_dd: float = Field(0.8, ge=V_DD_MIN_V, le=V_DD_MAX_V, description="Supply voltage, V.")
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

    @property
    def shift_v(self) -> float:
        return self.v_dd / 2 if self.v_shift is None else self.v_shift


class SubarraySpec(Spec):
    """An n x m synapse subarray and its drivers."""

    rows: int = Field(32, ge=2, le=MAX_ARRAY_SIDE,
                      description="Input lines per subarray (the bias line included).")
    cols: int = Field(32, ge=1, le=MAX_ARRAY_SIDE, description="Output neurons per subarray.")
    v_dd: float = Field(0.8, ge=V_DD_MIN_V, le=V_DD_MAX_V, description="Input scale and bias-line voltage, V.")
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

    @model_validator(mode="after")
    def _derived_levels(self) -> ImacSpec:
        if self.synapse.r_low_ohm is None and self.mtj.r_p_ohm < MIN_RESISTANCE_OHM:
            raise ValueError(f"the MTJ's R_P = RA/area = {self.mtj.r_p_ohm:g} ohm is below "
                             f"{MIN_RESISTANCE_OHM:g} ohm: check mtj.ra_ohm_m2, mtj.length_m and mtj.width_m")
        return self


def check_netlist_path(text: str) -> str:
    """``text`` if it can be written between double quotes on a netlist line, else ConfigError.

    A path reaches ngspice as ``.include "PATH"``: a quote, a newline or another control
    character would let a config file add netlist lines (and a ``.control`` block runs shell
    commands), so those are refused rather than escaped.
    """
    bad = sorted({c for c in text if c == '"' or ord(c) < 32 or ord(c) == 127})
    if bad or not text:
        shown = ", ".join(repr(c) for c in bad) or "an empty path"
        raise ConfigError(f"path {text[:80]!r} cannot go into a SPICE netlist (contains {shown})")
    return text


def check_spice_name(text: str) -> str:
    """``text`` if it is a plain SPICE identifier (``SPICE_NAME_PATTERN``), else ConfigError."""
    import re

    if not isinstance(text, str) or not re.fullmatch(SPICE_NAME_PATTERN, text) or len(text) > 64:
        raise ConfigError(f"{str(text)[:80]!r} is not a SPICE model name (letters, digits, '_' and '.', "
                          "starting with a letter or '_')")
    return text


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_validation_error(err: ValidationError, source: str) -> str:
    """One line: every bad field by its dotted path, what is wrong, and what was given."""
    parts = []
    errors = err.errors()
    for e in errors[:10]:
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{path}: {msg} (got {_short_repr(e.get('input'))})")
    if len(errors) > 10:
        parts.append(f"... and {len(errors) - 10} more")
    return f"invalid configuration in {source}: " + "; ".join(parts)


class _StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would let the later one silently win) and
    aliases (``*name``: they allow a kilobyte file to expand into gigabytes, and a spec never
    needs them)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in an imac config", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: SafeLoader itself refuses it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_short_repr(key)} (first given on line {first + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The data of a YAML spec file, or ConfigError naming the file and what is wrong with it:
    not a regular file, too large, not UTF-8 text, malformed, duplicate keys or aliases."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {path}: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte {err.start}): not a YAML configuration") from None
    if "\x00" in text:
        raise ConfigError(f"{path} contains NUL bytes: not a YAML configuration")
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        where = f" line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}" if err.problem_mark else ""
        what = " ".join(str(err.problem or err.context or "unreadable").split())
        raise ConfigError(f"malformed YAML in {path}{where}: {what[:300]}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"malformed YAML in {path}: {' '.join(str(err).split())[:300]}") from None
    except RecursionError:
        raise ConfigError(f"malformed YAML in {path}: nested too deeply") from None


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
    import re

    text = str(path_or_preset)
    if not text or "\x00" in text:
        raise ConfigError(f"invalid configuration name {_short_repr(text)}")
    path = Path(text)
    if not path.exists() and re.fullmatch(r"[A-Za-z0-9_-]+", text):
        path = PRESET_DIR / f"{text}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"unknown preset {text!r}; known presets: {', '.join(known)}")
    return parse_spec(read_yaml(path), cls, source=str(path))


def dump_spec(spec: Spec) -> str:
    """YAML text of a spec (round-trips through :func:`parse_spec`)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
