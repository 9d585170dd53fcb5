"""The CPU-to-IMAC interface: features into the IMAC input buffer and drivers, results back.

One inference crosses the interface once (per network; the IMAC layers chain in the analog
domain, SYSTEM.md section 1):

1. **buffer write**: the CPU writes the conv features into the IMAC input buffer (SRAM /
   registers) over the SoC bus: ``ceil(n_inputs * bits / 8)`` bytes, where ``bits`` is 1 for the
   sign driver (the CPU binarizes and packs the features) and the DAC resolution otherwise; the
   drivers read them back out of the buffer;
2. **drivers**: a 1-bit **sign** driver per input line switches the line between -V_DD and +V_DD
   (energy per toggle C_line x V_swing x V_supply, i.e. 2 C V_DD^2 for a full -V_DD -> +V_DD swing
   drawn from +V_DD), or a **b-bit DAC** per line (capacitive DAC, 2^b C_unit V_ref^2 per
   conversion) whose buffer charges the line to a level between 0 and V_DD;
3. the IMAC arrays settle (priced by the IMAC cost model, not here);
4. **readout**: a **comparator** per output (a StrongARM latch: one decision) or an **ADC** per
   output (energy FOM_Walden x 2^bits, one conversion time, all outputs in parallel);
5. **output transfer** of ``ceil(n_outputs * bits / 8)`` bytes back to the CPU, and a
   **synchronization** handshake (doorbell write + status poll).

Latency is the sum of the serial steps; energy a tidy table (component, action, count, energy per
action, energy, latency) in the Accelergy shape whose rows sum to the totals.  Units are SI.
Every parameter's source is in its field description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from imac.config import Spec, parse_spec
from imac.errors import ConfigError
from imac.system.cpu import H45_SOURCE, SCALING_RULE, scale_energy, sram_energy_45nm

DRIVERS = ("sign", "dac")
READOUTS = ("comparator", "adc")


class InterfaceSpec(Spec):
    """Costs of moving data between the CPU and IMAC (defaults: a 22 nm-class interface at 0.8 V)."""

    v_dd: float = Field(0.8, gt=0, description="IMAC supply and input-line swing reference, V (SYSTEM.md sec. 3).")
    node_nm: float = Field(22.0, gt=0, description="Node of the interface logic (scales Horowitz energies), nm "
                           "(the project's 22 nm PTM card).")
    buffer_bytes: int = Field(4096, gt=0, description="Input/output buffer SRAM size, bytes (our choice: holds "
                              "the 4096-wide VGG features at 8 bit).")
    buffer_energy_j_per_byte: float | None = Field(
        None, gt=0, description=f"Buffer write/read energy per byte, J; None = {H45_SOURCE} SRAM energy for "
        f"buffer_bytes, scaled ({SCALING_RULE}).")
    bus_bytes_per_cycle: float = Field(16.0, gt=0, description="SoC bus width, bytes/cycle (a 128-bit AMBA AXI "
                                       "port, the common mobile SoC width; Arm AMBA AXI specification).")
    bus_frequency_hz: float = Field(1.0e9, gt=0, description="SoC bus clock, Hz (our estimate for a mobile "
                                    "interconnect, ~0.5-1.5 GHz).")
    bus_energy_j_per_byte: float | None = Field(
        None, ge=0, description=f"On-chip wire energy per byte moved CPU -> buffer, J; None = 1 mm of wire at "
        f"~0.1 pJ/bit/mm (the order quoted in {H45_SOURCE} for on-die wires), scaled ({SCALING_RULE}).")
    line_capacitance_f: float = Field(
        10e-15, gt=0, description="Capacitance of one input line segment, F. Our estimate for a 32-column "
        "subarray: 64 cells x 0.05 fF of wire (SYSTEM.md sec. 3) + ~0.1 fF of access-transistor load per cell.")
    driver_resistance_ohm: float = Field(
        1000.0, gt=0, description="Output resistance of a line driver, ohm (our estimate: a few-fin 22 nm "
        "inverter buffer).")
    settle_bits: int = Field(8, ge=1, le=16, description="Settle a line to 2^-(bits+1) of its step (the same "
                             "criterion as imac.config.CostSpec).")
    input_activity: float = Field(0.5, ge=0, le=1, description="Fraction of lines that toggle per inference "
                                  "(0.5: independent random signs; 1 = worst case).")
    dac_bits: int = Field(8, ge=1, le=16, description="DAC resolution per input line, bits.")
    dac_unit_cap_f: float = Field(
        1e-15, gt=0, description="Unit capacitor of the capacitive DAC, F (our estimate: ~1 fF MOM unit, the "
        "usual size in published C-DACs; energy model of Saberi et al., IEEE TCAS-I 58(8), 2011).")
    dac_settle_s: float = Field(1e-9, gt=0, description="DAC + buffer settling time, s (our estimate; same as "
                                "imac.config.BaselineSpec.dac_settle_s).")
    comparator_energy_j: float = Field(
        50e-15, gt=0, description="Energy per decision of a StrongARM latch comparator, J (our estimate within the "
        "~10-100 fJ of published latches in 28-65 nm; Razavi, IEEE SSC Magazine, 2015).")
    comparator_delay_s: float = Field(200e-12, gt=0, description="Comparator decision time, s (our estimate, "
                                      "same source range).")
    adc_bits: int = Field(8, ge=1, le=16, description="ADC resolution per output, bits.")
    adc_fom_j_per_step: float = Field(
        20e-15, gt=0, description="Walden FOM, J/conversion-step: SAR ADCs of 6-10 bit at 10-100 MS/s reach a few "
        "to tens of fJ/step (B. Murmann, 'ADC Performance Survey 1997-2024', Stanford).")
    adc_conversion_s: float = Field(10e-9, gt=0, description="One conversion at 100 MS/s, s (Murmann survey, SAR "
                                    "range).")
    sync_latency_s: float = Field(
        100e-9, ge=0, description="Handshake: an uncached doorbell write + one status poll over the SoC "
        "interconnect, s (our estimate: ~2 x 50 ns uncached device-memory round trips on mobile SoCs).")
    sync_energy_j: float = Field(
        20e-12, ge=0, description="Energy of the handshake, J (our estimate: two 64-bit bus transactions incl. "
        f"control, ~Horowitz's 45 nm SRAM/wire figures scaled; {H45_SOURCE}).")

    def buffer_energy(self) -> float:
        if self.buffer_energy_j_per_byte is not None:
            return self.buffer_energy_j_per_byte
        return scale_energy(sram_energy_45nm(self.buffer_bytes), self.node_nm, self.v_dd)

    def bus_energy(self) -> float:
        if self.bus_energy_j_per_byte is not None:
            return self.bus_energy_j_per_byte
        return scale_energy(0.1e-12 * 8, self.node_nm, self.v_dd)


@dataclass
class InterfaceCost:
    """Rows (component, action, count, energy_per_action_j, energy_j, latency_s) and totals."""

    driver: str
    readout: str
    n_inputs: int
    n_outputs: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def energy_j(self) -> float:
        return sum(r["energy_j"] for r in self.rows)

    @property
    def latency_s(self) -> float:
        return sum(r["latency_s"] for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "readout": self.readout, "n_inputs": self.n_inputs,
                "n_outputs": self.n_outputs, "energy_j": self.energy_j, "latency_s": self.latency_s,
                "rows": self.rows}

    def table(self) -> str:
        lines = [f"interface: {self.n_inputs} inputs ({self.driver}), {self.n_outputs} outputs ({self.readout})", "",
                 "| component | action | count | per action pJ | energy pJ | latency ns |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['component']} | {r['action']} | {r['count']:,} | "
                         f"{r['energy_per_action_j'] * 1e12:.4g} | {r['energy_j'] * 1e12:.4g} | "
                         f"{r['latency_s'] * 1e9:.3g} |")
        lines.append(f"| **total** | | | | {self.energy_j * 1e12:.4g} | {self.latency_s * 1e9:.3g} |")
        return "\n".join(lines)


def load_interface(data: dict[str, Any] | InterfaceSpec | None = None) -> InterfaceSpec:
    """An :class:`InterfaceSpec` from a mapping (validated, unknown keys refused) or the defaults."""
    if isinstance(data, InterfaceSpec):
        return data
    return parse_spec(data or {}, InterfaceSpec, source="interface spec")


def _row(component: str, action: str, count: int, e_action: float, latency: float) -> dict[str, Any]:
    return {"component": component, "action": action, "count": int(count), "energy_per_action_j": e_action,
            "energy_j": count * e_action, "latency_s": latency}


def interface_cost(n_inputs: int, n_outputs: int, driver: Literal["sign", "dac"] = "sign",
                   readout: Literal["comparator", "adc"] = "adc", spec: InterfaceSpec | dict[str, Any] | None = None,
                   line_segments: int = 1) -> InterfaceCost:
    """Energy (J) and latency (s) of one inference's trip across the CPU-IMAC interface.

    ``line_segments``: input-line segments each input drives (the vertical partitions of the first
    IMAC layer: every partition's segment is fed from the driver again, SYSTEM.md section 3)."""
    s = load_interface(spec)
    if driver not in DRIVERS:
        raise ConfigError(f"unknown driver {driver!r}; known: {', '.join(DRIVERS)}")
    if readout not in READOUTS:
        raise ConfigError(f"unknown readout {readout!r}; known: {', '.join(READOUTS)}")
    for what, n in (("n_inputs", n_inputs), ("n_outputs", n_outputs), ("line_segments", line_segments)):
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"{what} must be a positive integer, got {n!r}")
    in_bits = 1 if driver == "sign" else s.dac_bits
    out_bits = 1 if readout == "comparator" else s.adc_bits
    in_bytes = math.ceil(n_inputs * in_bits / 8)
    out_bytes = math.ceil(n_outputs * out_bits / 8)
    bus_s_per_byte = 1.0 / (s.bus_bytes_per_cycle * s.bus_frequency_hz)
    e_buf, e_bus = s.buffer_energy(), s.bus_energy()
    lines = n_inputs * line_segments
    rc = s.driver_resistance_ohm * s.line_capacitance_f
    t_line = (s.settle_bits + 1) * math.log(2) * rc
    rows = [_row("buffer", "write features", in_bytes, e_buf + e_bus, in_bytes * bus_s_per_byte),
            # the drivers read the buffer in parallel (one wide read): energy, no serial latency
            _row("buffer", "read to drivers", in_bytes, e_buf, 0.0)]
    if driver == "sign":
        # -V_DD <-> +V_DD: the +V_DD supply delivers C * 2V_DD of charge at V_DD per toggle
        e_toggle = s.line_capacitance_f * (2 * s.v_dd) * s.v_dd
        rows.append(_row("drivers", "sign toggle", round(lines * s.input_activity), e_toggle, t_line))
    else:
        e_dac = 2**s.dac_bits * s.dac_unit_cap_f * s.v_dd**2
        rows.append(_row("dacs", "conversion", n_inputs, e_dac, s.dac_settle_s))
        # the DAC buffer charges each line to a level in 0..V_DD: on average C V_DD^2 / 2 from V_DD
        rows.append(_row("drivers", "line charge", lines, 0.5 * s.line_capacitance_f * s.v_dd**2, t_line))
    if readout == "comparator":
        rows.append(_row("comparators", "decision", n_outputs, s.comparator_energy_j, s.comparator_delay_s))
    else:
        e_conv = s.adc_fom_j_per_step * 2**s.adc_bits
        rows.append(_row("adcs", "conversion", n_outputs, e_conv, s.adc_conversion_s))
    rows.append(_row("buffer", "read results", out_bytes, e_buf + e_bus, out_bytes * bus_s_per_byte))
    rows.append(_row("sync", "handshake", 1, s.sync_energy_j, s.sync_latency_s))
    return InterfaceCost(driver, readout, n_inputs, n_outputs, rows)
