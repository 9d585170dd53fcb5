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
from dataclasses import dataclass
from typing import Any, Literal

from imac.config import InterfaceSpec, parse_spec
from imac.costs import CostRow, CostTable
from imac.errors import ConfigError
from imac.hardware.cost import settle_time_constants

DRIVERS = ("sign", "dac")
READOUTS = ("comparator", "adc")


@dataclass
class InterfaceCost(CostTable):
    """The interface's rows (:class:`imac.costs.CostRow`: component, action, count, energy per
    action, energy, latency; part ``interface``) and their totals."""

    driver: str = "sign"
    readout: str = "adc"
    n_inputs: int = 0
    n_outputs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"driver": self.driver, "readout": self.readout, "n_inputs": self.n_inputs,
                "n_outputs": self.n_outputs, "energy_j": self.energy_j, "latency_s": self.latency_s,
                "rows": self.table()}

    def markdown(self) -> str:
        lines = [f"interface: {self.n_inputs} inputs ({self.driver}), {self.n_outputs} outputs ({self.readout})", "",
                 "| component | action | count | per action pJ | energy pJ | latency ns |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['component']} | {r['action']} | {r['count']:,} | "
                         f"{r['energy_per_action_j'] * 1e12:.4g} | {r['energy_j'] * 1e12:.4g} | "
                         f"{r['latency_s'] * 1e9:.3g} |")
        lines.append(f"| **total** | | | | {self.energy_j * 1e12:.4g} | {self.latency_s * 1e9:.3g} |")
        return "\n".join(lines)


def load_interface(data: dict[str, Any] | InterfaceSpec | None = None) -> InterfaceSpec:
    """An :class:`InterfaceSpec` from a mapping (validated, unknown keys refused) or the defaults
    (in a whole design: ``ImacSpec.interface``, which carries the design's V_DD)."""
    if isinstance(data, InterfaceSpec):
        return data
    return parse_spec(data or {}, InterfaceSpec, source="interface spec")


def _row(component: str, action: str, count: int, e_action: float, latency: float) -> CostRow:
    return CostRow(component, action, int(count), energy_j=count * e_action, latency_s=latency,
                   energy_per_action_j=e_action, part="interface", group="interface",
                   basis="InterfaceSpec (each field's source in its description)")


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
    t_line = settle_time_constants(s.settle_bits) * rc
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
    return InterfaceCost(rows, driver, readout, n_inputs, n_outputs)
