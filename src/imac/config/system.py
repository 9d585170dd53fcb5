"""Specs of the system around IMAC: the CPU core, the CPU-to-IMAC interface, and the
mixed-signal and digital baselines.  SI units; every number carries its public source."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from imac.config.base import V_DD_MAX_V, V_DD_MIN_V, Spec
from imac.config.horowitz import (
    CORE_ENERGIES_45NM,
    H45_SOURCE,
    H45_WIRE_J_PER_BYTE_MM,
    SCALING_RULE,
    scale_energy,
    sram_energy_45nm,
)

BYTES_PER_ELEMENT = {"fp32": 4, "int8": 1}


class CacheLevelSpec(Spec):
    """One cache level as seen by a single core."""

    name: str = Field(min_length=1, description="Level name, e.g. L1, L2, L3.")
    size_bytes: int = Field(gt=0, description="Capacity available to the core, bytes.")
    bandwidth_bytes_per_cycle: float = Field(gt=0, description="Sustained read bandwidth to the core, bytes/cycle.")
    energy_j_per_byte: float = Field(gt=0, description="Access energy per byte, J/byte; derived when absent: "
                                     f"{H45_SOURCE} SRAM read vs size, scaled to the core's node and supply.")
    source: str = Field(min_length=1, description="Public source of the numbers above.")


class CpuCoreSpec(Spec):
    """A CPU core for the analytical model: compute, cache hierarchy, DRAM, energies, leakage."""

    name: str = Field(min_length=1, description="Preset name.")
    description: str = Field("", description="The core and the SoC it stands for.")
    node_nm: float = Field(gt=0, le=1000, description="Process node used to scale the 45 nm energies, nm.")
    vdd_v: float = Field(ge=V_DD_MIN_V, le=V_DD_MAX_V, description="Core supply used to scale the 45 nm energies, V.")
    frequency_hz: float = Field(gt=0, description="Core clock, Hz.")
    simd_width_bits: int = Field(gt=0, description="SIMD register width, bits (NEON 128, AVX-512 512).")
    simd_pipes: int = Field(gt=0, description="SIMD multiply-accumulate pipes issuing one instruction each per cycle.")
    fp32_macs_per_cycle: float = Field(gt=0, description="Peak fp32 MACs per cycle (all pipes).")
    int8_macs_per_cycle: float = Field(gt=0, description="Peak int8 MACs per cycle (all pipes).")
    int8_accumulator_bits: Literal[16, 32] = Field(
        32, description="Accumulator lane width of the int8 MAC instruction (32: dot-product, 16: widening MLA)."
    )
    caches: tuple[CacheLevelSpec, ...] = Field(min_length=1, description="Cache levels, innermost first.")
    dram_bandwidth_bytes_per_s: float = Field(gt=0, description="Sustained single-core DRAM bandwidth, bytes/s.")
    dram_energy_j_per_byte: float = Field(gt=0, description="DRAM access + I/O energy per byte, J/byte.")
    mac_energy_fp32_j: float = Field(gt=0, description="Energy of one fp32 MAC (datapath only), J.")
    mac_energy_int8_j: float = Field(gt=0, description="Energy of one int8 MAC with int32 accumulate, J.")
    op_energy_fp32_j: float = Field(gt=0, description="Energy of one fp32 element-wise op, J.")
    op_energy_int8_j: float = Field(gt=0, description="Energy of one int8 element-wise op, J.")
    instruction_energy_j: float = Field(ge=0, description="Overhead per (SIMD) instruction: fetch, decode, RF, J.")
    static_power_w: float = Field(ge=0, description="Leakage of the core and its private caches, W.")
    active_power_w: float | None = Field(
        None, gt=0, description="Public whole-core active power under load, W: the top-down CPU energy "
        "(power x modelled latency) that brackets the bottom-up one; None = unknown.")
    layer_overhead_s: float = Field(
        0.0, ge=0, description="Fixed software cost per layer call (framework dispatch), s; 0 = ideal runtime."
    )
    sources: dict[str, str] = Field(description="Field name -> public source (or 'our estimate: why').")

    @classmethod
    def derive(cls, data: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
        """Energies left out are Horowitz's 45 nm figures scaled to the core's node and supply."""
        try:  # bad values are refused, with their paths, by the validation below
            node, vdd = float(data["node_nm"]), float(data["vdd_v"])
            ok = node > 0 and vdd > 0
        except (KeyError, TypeError, ValueError, OverflowError):
            ok = False
        sources = dict(data.get("sources") or {}) if isinstance(data.get("sources"), dict) else None
        for name, (e45, why) in CORE_ENERGIES_45NM.items():
            if ok and data.get(name) is None:
                data[name] = scale_energy(e45, node, vdd)
                derived[name] = why
                if sources is not None:
                    sources.setdefault(name, why)
        caches = data.get("caches")
        if ok and isinstance(caches, (list, tuple)):
            filled = []
            for k, c in enumerate(caches):
                if isinstance(c, dict) and c.get("energy_j_per_byte") is None and "size_bytes" in c:
                    try:
                        c = {**c, "energy_j_per_byte": scale_energy(sram_energy_45nm(float(c["size_bytes"])),
                                                                    node, vdd)}
                        derived[f"caches.{k}.energy_j_per_byte"] = (f"{H45_SOURCE} SRAM read vs size, "
                                                                   f"scaled ({SCALING_RULE})")
                    except (TypeError, ValueError, OverflowError):
                        pass
                filled.append(c)
            data["caches"] = filled
        if sources is not None:
            sources.setdefault("layer_overhead_s", "0: an ideal, fused inference runtime (the model counts "
                               "hardware only)")
            sources.setdefault("caches", "see each level's source")
            data["sources"] = sources
        return data

    @model_validator(mode="after")
    def _check(self) -> CpuCoreSpec:
        sizes = [c.size_bytes for c in self.caches]
        if sizes != sorted(sizes):
            raise ValueError(f"cache levels must grow outwards, got sizes {sizes}")
        names = [c.name for c in self.caches]
        if len(set(names)) != len(names) or "DRAM" in names:
            raise ValueError(f"cache level names must be unique and not 'DRAM', got {names}")
        if self.simd_width_bits % 32:
            raise ValueError("simd_width_bits must be a multiple of 32")
        missing = [f for f in SOURCED_FIELDS if f not in self.sources]
        if missing:
            raise ValueError(f"every parameter needs a source; missing: {', '.join(missing)}")
        return self

    def lanes(self, precision: str) -> int:
        """Output lanes of one MAC instruction (vectorized over output channels)."""
        acc = 32 if precision == "fp32" else self.int8_accumulator_bits
        return self.simd_width_bits // acc

    def elementwise_lanes(self, precision: str) -> int:
        return self.simd_width_bits // (8 * BYTES_PER_ELEMENT[precision])


SOURCED_FIELDS = (
    "frequency_hz", "simd_width_bits", "simd_pipes", "fp32_macs_per_cycle", "int8_macs_per_cycle", "caches",
    "dram_bandwidth_bytes_per_s", "dram_energy_j_per_byte", "mac_energy_fp32_j", "mac_energy_int8_j",
    "op_energy_fp32_j", "op_energy_int8_j", "instruction_energy_j", "static_power_w", "node_nm", "vdd_v",
    "layer_overhead_s", "active_power_w",
)


class InterfaceSpec(Spec):
    """Costs of moving data between the CPU and IMAC (defaults: a 22 nm-class interface at 0.8 V)."""

    v_dd: float = Field(0.8, ge=V_DD_MIN_V, le=V_DD_MAX_V, description="IMAC supply and input-line swing reference, "
                        "V (SYSTEM.md sec. 3; in a whole spec: the one V_DD at its top).")
    node_nm: float = Field(22.0, gt=0, le=1000, description="Node of the interface logic (scales Horowitz "
                           "energies), nm (the project's 22 nm PTM card).")
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
    settle_bits: int = Field(8, ge=1, le=16, description="Settle a line to 2^-(bits+1) of its step; in a whole "
                             "spec derived from cost.settle_bits (one criterion) unless given.")
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

    @classmethod
    def derive(cls, data: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
        try:  # bad values are refused, with their paths, by the validation below
            node = float(data.get("node_nm", cls.model_fields["node_nm"].default))
            v_dd = float(data.get("v_dd", cls.model_fields["v_dd"].default))
            size = float(data.get("buffer_bytes", cls.model_fields["buffer_bytes"].default))
            ok = node > 0 and v_dd > 0 and size > 0
        except (TypeError, ValueError, OverflowError):
            ok = False
        if ok and data.get("buffer_energy_j_per_byte") is None:
            data["buffer_energy_j_per_byte"] = scale_energy(sram_energy_45nm(size), node, v_dd)
            derived["buffer_energy_j_per_byte"] = f"{H45_SOURCE} SRAM energy for buffer_bytes, scaled"
        if ok and data.get("bus_energy_j_per_byte") is None:
            data["bus_energy_j_per_byte"] = scale_energy(H45_WIRE_J_PER_BYTE_MM, node, v_dd)
            derived["bus_energy_j_per_byte"] = f"1 mm of on-die wire ({H45_SOURCE}), scaled"
        return data

    def buffer_energy(self) -> float:
        """Buffer write/read energy per byte, J."""
        return float(self.buffer_energy_j_per_byte)  # type: ignore[arg-type]  # derived when absent

    def bus_energy(self) -> float:
        """Bus energy per byte, J."""
        return float(self.bus_energy_j_per_byte)  # type: ignore[arg-type]  # derived when absent


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
    gpu_kernel_launch_s: float = Field(5e-6, gt=0, description="Latency per layer (kernel launch) on a GPU, s [N].")
    gpu_power_w: float = Field(10.0, gt=0, description="Mobile GPU board power while busy, W [G].")
