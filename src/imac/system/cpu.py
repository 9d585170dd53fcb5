"""Architecture-level analytical model of one mobile CPU core running a CNN, layer by layer.

The model (see ``docs/cpu_model.md`` for the derivation and the check against PyTorch):

* **Workload** (:func:`model_workload`): each layer of a torch model (the conv ``trunk`` and the
  FC layers) as counts: multiply-accumulates (MACs), other element-wise operations (activation,
  pooling, batch norm, bias, int8 re-quantization), weights, input and output activations.  The
  shapes come from one forward pass of a dummy input, so any trunk of supported layers works.
* **Latency** per layer, roofline: ``max(t_compute, t_memory)`` (+ an optional fixed per-layer
  software overhead, 0 for the mobile presets).  ``t_compute`` = MACs over the SIMD MAC
  throughput (frequency x MACs/cycle x lane utilisation) + element-wise ops over the SIMD
  element throughput.  ``t_memory`` = the layer's compulsory bytes (weights + input + output)
  over the bandwidth of the level they come from: the smallest cache level that holds the whole
  working set, else DRAM.
* **Energy** per layer: MAC and op energies (Horowitz 2014 at 45 nm, scaled to the core's node)
  + the instruction overhead of the SIMD instructions that issue them + bytes x energy per byte of
  the level they come from + static power x latency.

Every preset parameter carries its public source in :attr:`CpuCoreSpec.sources` (a validator
refuses a preset without one).  Units are SI: hertz, seconds, joules, watts, bytes.

Presets: ``cortex-a53`` (Raspberry Pi 3 B+), ``cortex-a76`` (Raspberry Pi 5) and ``host`` (the
machine this runs on, read from ``/proc/cpuinfo`` and ``/sys``).  ``python -m imac.system.cpu``
prints the per-layer tables and, with ``--check``, the model/measured ratio against PyTorch.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from imac.config import Spec, parse_spec, read_yaml
from imac.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily inside the functions that need it
    from torch import nn

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
BYTES_PER_ELEMENT = {"fp32": 4, "int8": 1}
BIAS_BYTES = {"fp32": 4, "int8": 4}  # int8 kernels keep int32 biases (accumulator width)

# -- Horowitz 2014 ("Computing's energy problem (and what we can do about it)", ISSCC 2014,
#    45 nm, 0.9 V) and the node scaling rule used for every core ----------------------------------
H45_NODE_NM = 45.0
H45_VDD_V = 0.9
H45_FP32_MAC_J = 3.7e-12 + 0.9e-12  # fp32 multiply 3.7 pJ + fp32 add 0.9 pJ
H45_INT8_MAC_J = 0.2e-12 + 0.1e-12  # int8 multiply 0.2 pJ + int32 accumulate 0.1 pJ
H45_FP32_OP_J = 0.9e-12  # fp32 add (an element-wise op: compare, add, scale)
H45_INT8_OP_J = 0.03e-12  # int8 add
H45_INSTRUCTION_J = 70e-12  # fetch/decode/register-file/control overhead of one instruction
# SRAM read energy per 64-bit word vs array size (8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ)
H45_SRAM_POINTS = ((8 * 1024, 10e-12 / 8), (32 * 1024, 20e-12 / 8), (1024 * 1024, 100e-12 / 8))
H45_SOURCE = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm, 0.9 V)"
SCALING_RULE = "E ~ C V^2 with C ~ feature size: E = E45 * (node/45 nm) * (V/0.9 V)^2"

# Element-wise operations per output element of each non-MAC layer kind (our counts, stated so
# they can be changed): tanh as a vectorized rational approximation (~7th/6th-order polynomials,
# a division, clamps), pooling as k*k-1 adds or compares (+1 scale for average pooling).
TANH_OPS = 20
SIGMOID_OPS = 20
REQUANT_OPS = 3  # int8: scale the int32 accumulator, round, clamp (per output element)


def scale_energy(e45_j: float, node_nm: float, vdd_v: float) -> float:
    """Scale a 45 nm / 0.9 V energy (J) to ``node_nm`` and ``vdd_v`` with :data:`SCALING_RULE`."""
    return e45_j * (node_nm / H45_NODE_NM) * (vdd_v / H45_VDD_V) ** 2


def sram_energy_45nm(size_bytes: float) -> float:
    """SRAM read energy per byte (J) of an array of ``size_bytes`` at 45 nm.

    Log-log interpolation through Horowitz's three points; beyond 1 MB the 32 KB-1 MB slope
    (energy ~ size^0.46, close to the usual sqrt(size) wire-length rule) is extrapolated."""
    pts = H45_SRAM_POINTS
    if size_bytes <= pts[0][0]:
        return pts[0][1]
    for (s0, e0), (s1, e1) in itertools.pairwise(pts):
        if size_bytes <= s1 or (s1, e1) == pts[-1]:
            slope = math.log(e1 / e0) / math.log(s1 / s0)
            return e0 * (size_bytes / s0) ** slope
    raise AssertionError("unreachable")


# -- specs -------------------------------------------------------------------------------------
class CacheLevelSpec(Spec):
    """One cache level as seen by a single core."""

    name: str = Field(min_length=1, description="Level name, e.g. L1, L2, L3.")
    size_bytes: int = Field(gt=0, description="Capacity available to the core, bytes.")
    bandwidth_bytes_per_cycle: float = Field(gt=0, description="Sustained read bandwidth to the core, bytes/cycle.")
    energy_j_per_byte: float = Field(gt=0, description="Access energy per byte, J/byte.")
    source: str = Field(min_length=1, description="Public source of the numbers above.")


class CpuCoreSpec(Spec):
    """A CPU core for the analytical model: compute, cache hierarchy, DRAM, energies, leakage."""

    name: str = Field(min_length=1, description="Preset name.")
    description: str = Field("", description="The core and the SoC it stands for.")
    node_nm: float = Field(gt=0, description="Process node used to scale the 45 nm energies, nm.")
    vdd_v: float = Field(gt=0, description="Core supply used to scale the 45 nm energies, V.")
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


# -- presets -----------------------------------------------------------------------------------
def _horowitz_energies(node_nm: float, vdd_v: float) -> dict[str, float]:
    s = scale_energy(1.0, node_nm, vdd_v)
    return {
        "mac_energy_fp32_j": H45_FP32_MAC_J * s, "mac_energy_int8_j": H45_INT8_MAC_J * s,
        "op_energy_fp32_j": H45_FP32_OP_J * s, "op_energy_int8_j": H45_INT8_OP_J * s,
        "instruction_energy_j": H45_INSTRUCTION_J * s,
    }


def _cache(name: str, size: int, bw: float, node_nm: float, vdd_v: float, source: str) -> dict[str, Any]:
    return {"name": name, "size_bytes": size, "bandwidth_bytes_per_cycle": bw,
            "energy_j_per_byte": scale_energy(sram_energy_45nm(size), node_nm, vdd_v),
            "source": f"{source}; energy: {H45_SOURCE} SRAM read vs size, scaled ({SCALING_RULE})"}


_ENERGY_SOURCES = {
    "mac_energy_fp32_j": f"{H45_SOURCE}: fp32 mult 3.7 pJ + add 0.9 pJ, scaled ({SCALING_RULE})",
    "mac_energy_int8_j": f"{H45_SOURCE}: int8 mult 0.2 pJ + int32 add 0.1 pJ, scaled ({SCALING_RULE})",
    "op_energy_fp32_j": f"{H45_SOURCE}: fp32 add 0.9 pJ, scaled ({SCALING_RULE})",
    "op_energy_int8_j": f"{H45_SOURCE}: int8 add 0.03 pJ, scaled ({SCALING_RULE})",
    "instruction_energy_j": f"{H45_SOURCE}: ~70 pJ instruction overhead (I-cache, RF, control) of a 45 nm core, "
    f"scaled ({SCALING_RULE}); paid once per SIMD instruction",
    "layer_overhead_s": "0: an ideal, fused inference runtime (the model counts hardware only)",
}

KIB = 1024
MIB = 1024 * 1024


def _a53() -> dict[str, Any]:
    node, vdd = 40.0, 1.2
    trm = "Arm Cortex-A53 MPCore TRM (DDI 0500): 64-bit L1 load path"
    return {
        "name": "cortex-a53",
        "description": "Arm Cortex-A53 at 1.4 GHz as in the Raspberry Pi 3 B+ (Broadcom BCM2837B0, 40 nm): "
        "in-order, 128-bit NEON executed as dual-issued 64-bit halves; 32 KiB L1D, 512 KiB shared L2, LPDDR2.",
        "node_nm": node, "vdd_v": vdd, "frequency_hz": 1.4e9,
        "simd_width_bits": 128, "simd_pipes": 1, "fp32_macs_per_cycle": 4.0, "int8_macs_per_cycle": 8.0,
        "int8_accumulator_bits": 16,
        "caches": [
            _cache("L1", 32 * KIB, 8.0, node, vdd, trm + " (8 B/cycle)"),
            _cache("L2", 512 * KIB, 4.0, node, vdd,
                   "BCM2837B0 512 KiB L2 (Raspberry Pi documentation); ~4 B/cycle from public A53 "
                   "memory-bandwidth micro-benchmarks (our reading, ~5-6 GB/s at 1.4 GHz)"),
        ],
        "dram_bandwidth_bytes_per_s": 2.0e9, "dram_energy_j_per_byte": 10e-12 * 8,
        **_horowitz_energies(node, vdd),
        "static_power_w": 0.05, "active_power_w": 0.5,
        "sources": {
            "frequency_hz": "Raspberry Pi 3 B+ product brief: BCM2837B0, 4x Cortex-A53 at 1.4 GHz",
            "node_nm": "BCM2837 family is a 40 nm LP part (public die and Raspberry Pi documentation)",
            "vdd_v": "our estimate: ~1.2 V core supply at 1.4 GHz (Raspberry Pi 3 B+ over-voltage tables)",
            "simd_width_bits": "Armv8-A Advanced SIMD (NEON) 128-bit registers; A53 TRM",
            "simd_pipes": "A53 TRM: one NEON/FP unit, 64-bit datapath dual-issuing the two halves of a 128-bit op",
            "fp32_macs_per_cycle": "peak 8 SP FLOP/cycle = one 128-bit FMLA/cycle (WikiChip FLOPS table; "
            "vfpbench logs of A53 boards); kernels reach less (in-order, 64-bit loads)",
            "int8_macs_per_cycle": "Armv8.0 has no SDOT: widening SMLAL/UMLAL, 8 x 16-bit MAC lanes per 128 bits "
            "(Arm A64 ISA; gemmlowp's A53 kernels)",
            "caches": "see each level's source",
            "dram_bandwidth_bytes_per_s": "LPDDR2-900 x32 = 3.6 GB/s peak (Raspberry Pi 3 B+ spec); ~2 GB/s "
            "single-core sustained (our estimate from public STREAM-like results, ~55 % of peak)",
            "dram_energy_j_per_byte": "our estimate: 10 pJ/bit for LPDDR2 (1.2 V I/O), ~2x the 4-6 pJ/bit "
            "commonly quoted for LPDDR4",
            "static_power_w": "our estimate: ~10 % of ~0.5 W active core power (public Raspberry Pi 3 B+ "
            "board power: ~1.9 W idle, ~5 W all-core load)",
            "active_power_w": "~0.5 W per loaded core: (~5 W all-core load - ~1.9 W idle) / 4 cores, from "
            "public Raspberry Pi 3 B+ board power measurements (our reading; includes the core's share of L2)",
            **_ENERGY_SOURCES,
        },
    }


def _a76() -> dict[str, Any]:
    node, vdd = 16.0, 0.9
    trm = "Arm Cortex-A76 Core TRM (100798): two 128-bit L1D read paths to the datapath"
    return {
        "name": "cortex-a76",
        "description": "Arm Cortex-A76 at 2.4 GHz as in the Raspberry Pi 5 (Broadcom BCM2712, 16 nm): "
        "out-of-order, two 128-bit NEON FMA pipes, dot-product int8; 64 KiB L1D, 512 KiB L2, 2 MiB L3.",
        "node_nm": node, "vdd_v": vdd, "frequency_hz": 2.4e9,
        "simd_width_bits": 128, "simd_pipes": 2, "fp32_macs_per_cycle": 8.0, "int8_macs_per_cycle": 32.0,
        "int8_accumulator_bits": 32,
        "caches": [
            _cache("L1", 64 * KIB, 32.0, node, vdd, trm + " (32 B/cycle)"),
            _cache("L2", 512 * KIB, 32.0, node, vdd,
                   "A76 TRM: 256-bit L2 read interface (32 B/cycle); 512 KiB per core on BCM2712"),
            _cache("L3", 2 * MIB, 16.0, node, vdd,
                   "BCM2712 2 MiB shared L3 (Raspberry Pi 5 documentation); ~16 B/cycle, our estimate "
                   "(half the L2 interface, a DSU shared by four cores)"),
        ],
        "dram_bandwidth_bytes_per_s": 10e9, "dram_energy_j_per_byte": 5e-12 * 8,
        **_horowitz_energies(node, vdd),
        "static_power_w": 0.1, "active_power_w": 1.0,
        "sources": {
            "frequency_hz": "Raspberry Pi 5 product brief: BCM2712, 4x Cortex-A76 at 2.4 GHz",
            "node_nm": "BCM2712 is a 16 nm part (Raspberry Pi 5 launch material)",
            "vdd_v": "our estimate: ~0.9 V at 2.4 GHz on 16 nm",
            "simd_width_bits": "Armv8.2-A Advanced SIMD 128-bit; A76 TRM",
            "simd_pipes": "A76: two 128-bit SIMD pipes V0/V1 (Arm Cortex-A76 Software Optimization Guide; "
            "Anandtech 'Arm's Cortex-A76 CPU Unveiled', 2018; WikiChip)",
            "fp32_macs_per_cycle": "2 x 128-bit FMLA per cycle = 8 fp32 MAC/cycle (A76 Software Optimization Guide)",
            "int8_macs_per_cycle": "2 x 128-bit SDOT per cycle, 16 int8 MACs each (Armv8.2 dot product; "
            "A76 Software Optimization Guide)",
            "caches": "see each level's source",
            "dram_bandwidth_bytes_per_s": "LPDDR4X-4267 x32 = 17 GB/s peak (Raspberry Pi 5 spec); 10 GB/s "
            "single-core sustained, our estimate (~60 % of peak)",
            "dram_energy_j_per_byte": "5 pJ/bit, middle of the 4-6 pJ/bit commonly quoted for LPDDR4/4X "
            "access + I/O",
            "static_power_w": "our estimate: ~10 % of ~1 W active core power (public Raspberry Pi 5 board "
            "power: ~2.7 W idle, ~7 W all-core load)",
            "active_power_w": "~1 W per loaded core: (~7 W all-core load - ~2.7 W idle) / 4 cores, from public "
            "Raspberry Pi 5 board power measurements (our reading; includes the core's share of L3)",
            **_ENERGY_SOURCES,
        },
    }


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _size_to_bytes(text: str) -> int | None:
    text = text.strip().upper()
    mult = {"K": KIB, "M": MIB, "G": 1024 * MIB}
    try:
        if text and text[-1] in mult:
            return int(float(text[:-1]) * mult[text[-1]])
        return int(text) if text else None
    except ValueError:
        return None


def host_facts() -> dict[str, Any]:
    """What this machine tells about its first core: model name, MHz, flags, cache sizes.

    Missing entries (a VM hiding cpufreq, a non-x86 machine) stay absent; :func:`_host` falls back
    to stated defaults for them."""
    info = _read_text("/proc/cpuinfo")
    facts: dict[str, Any] = {"flags": set()}
    for line in info.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key == "model name" and "model" not in facts:
            facts["model"] = val
        elif key == "cpu mhz" and "mhz" not in facts:
            try:
                facts["mhz"] = float(val)
            except ValueError:
                pass
        elif key in ("flags", "features") and not facts["flags"]:
            facts["flags"] = set(val.split())
    max_khz = _read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if max_khz.isdigit():
        facts["mhz"] = int(max_khz) / 1000.0
    caches: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")) if base.exists() else []:
        kind = _read_text(str(idx / "type")).strip()
        level = _read_text(str(idx / "level")).strip()
        size = _size_to_bytes(_read_text(str(idx / "size")))
        if kind in ("Data", "Unified") and level and size:
            caches[f"L{level}"] = size
    facts["caches"] = caches
    return facts


HOST_DEFAULTS = {"mhz": 2000.0, "L1": 32 * KIB, "L2": 1 * MIB, "L3": 8 * MIB}


def _host() -> dict[str, Any]:
    f = host_facts()
    flags: set[str] = f["flags"]
    mhz = f.get("mhz", HOST_DEFAULTS["mhz"])
    if "avx512f" in flags:
        width = 512
    elif "avx2" in flags or "avx" in flags:
        width = 256
    else:
        width = 128  # SSE2 on x86-64, NEON/ASIMD on aarch64: the baseline of both ISAs
    pipes = 2  # stated default: two FMA ports (Intel Skylake-SP..Sapphire Rapids servers, Zen 4, Neoverse)
    lanes = width // 32
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "asimddp"})
    int8_macs = 4 * lanes * pipes if vnni else 2 * lanes * pipes
    node, vdd = 10.0, 1.0  # stated default (Intel 7 class); only scales energies, which are not checked here
    c = f["caches"]
    l1, l2, l3 = c.get("L1", HOST_DEFAULTS["L1"]), c.get("L2", HOST_DEFAULTS["L2"]), c.get("L3", HOST_DEFAULTS["L3"])
    sysfs = "read from /sys/devices/system/cpu/cpu0/cache" if c else "stated default (no /sys cache info)"
    opt = "Intel 64 and IA-32 Architectures Optimization Reference Manual"
    caches = [_cache("L1", l1, 2.0 * width / 8, node, vdd, f"size {sysfs}; two full-width loads/cycle ({opt})"),
              _cache("L2", l2, 32.0, node, vdd, f"size {sysfs}; 64 B/cycle peak, ~32 sustained ({opt})")]
    if l3 > l2:
        caches.append(_cache("L3", l3, 12.0, node, vdd,
                             f"size {sysfs}; ~12 B/cycle single-core, our estimate from public mesh-L3 "
                             "micro-benchmarks of Xeon servers"))
    seen = {512: "avx512f", 256: "avx2/avx"}.get(width, "none")
    flag_note = f"read from /proc/cpuinfo flags ({seen})"
    return {
        "name": "host",
        "description": f"this machine's core 0: {f.get('model', 'unknown CPU')} at {mhz:.0f} MHz, "
        f"{width}-bit SIMD{' with int8 dot-product' if vnni else ''}",
        "node_nm": node, "vdd_v": vdd, "frequency_hz": mhz * 1e6,
        "simd_width_bits": width, "simd_pipes": pipes, "fp32_macs_per_cycle": float(lanes * pipes),
        "int8_macs_per_cycle": float(int8_macs), "int8_accumulator_bits": 32 if vnni else 16,
        "caches": caches,
        "dram_bandwidth_bytes_per_s": 12e9, "dram_energy_j_per_byte": 15e-12 * 8,
        **_horowitz_energies(node, vdd),
        "static_power_w": 1.0,
        "sources": {
            "frequency_hz": "/sys cpufreq max or /proc/cpuinfo 'cpu MHz' (nominal; turbo not visible in a VM), "
            f"default {HOST_DEFAULTS['mhz']:.0f} MHz",
            "simd_width_bits": flag_note,
            "simd_pipes": "stated default: 2 FMA ports (Intel server cores since Skylake-SP; " + opt + ")",
            "fp32_macs_per_cycle": "lanes x pipes (one FMA per lane per pipe per cycle)",
            "int8_macs_per_cycle": "VNNI/dot-product (vpdpbusd: 4 int8 MACs per 32-bit lane) if the flag is "
            "present, else a widening 16-bit multiply-add (2 per 32 bits)",
            "caches": "see each level's source",
            "dram_bandwidth_bytes_per_s": "our estimate: ~12 GB/s single-core on a server mesh (latency-bound)",
            "dram_energy_j_per_byte": "our estimate: 15 pJ/bit, between DDR3's 20-40 pJ/bit (Horowitz 2014) "
            "and LPDDR4's 4-6 pJ/bit",
            "node_nm": "stated default: a 10 nm-class (Intel 7) server part; energies are not validated here",
            "vdd_v": "stated default: 1.0 V",
            "static_power_w": "our estimate: ~1 W leakage share of one server core (not validated here)",
            "active_power_w": "unknown for a virtual-machine guest core: no top-down energy for the host",
            **_ENERGY_SOURCES,
            "layer_overhead_s": "0 by default; measure_dispatch_overhead() gives the PyTorch eager value "
            "(a named calibration, used only in the check against PyTorch)",
        },
    }


PRESETS = {"cortex-a53": _a53, "cortex-a76": _a76, "host": _host}


def list_presets() -> list[str]:
    return sorted(PRESETS)


@cache
def _preset(name: str) -> CpuCoreSpec:
    return parse_spec(PRESETS[name](), CpuCoreSpec, source=f"cpu preset {name!r}")


def load_core(name_or_path: str | Path | CpuCoreSpec = "cortex-a76", **overrides: Any) -> CpuCoreSpec:
    """A core by preset name (:func:`list_presets`) or from a YAML file; ``overrides`` replace fields."""
    if isinstance(name_or_path, CpuCoreSpec):
        spec = name_or_path
    elif str(name_or_path) in PRESETS:
        spec = _preset(str(name_or_path))
    else:
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            raise ConfigError(f"unknown CPU preset {str(name_or_path)!r}; known presets: {', '.join(list_presets())}"
                              " (or give a YAML file)")
        spec = parse_spec(read_yaml(path), CpuCoreSpec, source=str(path))
    if overrides:
        spec = parse_spec({**spec.model_dump(), **overrides}, CpuCoreSpec, source=f"{spec.name} + overrides")
    return spec


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; the CPU model supports {', '.join(PRECISIONS)}")
    return precision


# -- workload ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerWork:
    """One layer's work for a whole batch (counts, not bytes: bytes depend on the precision)."""

    name: str
    kind: str  # conv, fc, pool, act, bn
    macs: int
    ops: int  # element-wise ops other than MACs (bias, activation, pooling, BN)
    weights: int  # weight elements (stored at the layer precision)
    biases: int  # bias elements (fp32 / int32)
    in_elems: int
    out_elems: int
    out_channels: int  # the SIMD-vectorized dimension of MAC layers (0 for others)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def weight_bytes(self, precision: str) -> int:
        return self.weights * BYTES_PER_ELEMENT[precision] + self.biases * BIAS_BYTES[precision]

    def activation_bytes(self, precision: str) -> int:
        return (self.in_elems + self.out_elems) * BYTES_PER_ELEMENT[precision]

    def bytes(self, precision: str) -> int:
        return self.weight_bytes(precision) + self.activation_bytes(precision)


@dataclass(frozen=True)
class Workload:
    model: str
    batch: int
    layers: tuple[LayerWork, ...]

    @property
    def macs(self) -> int:
        return sum(lw.macs for lw in self.layers)


_SKIP = ("Flatten", "Dropout", "Identity", "Unflatten")  # views or no-ops at inference: no cost
_ACT_OPS = {"ReLU": 1, "ReLU6": 2, "LeakyReLU": 2, "Hardtanh": 2, "Tanh": TANH_OPS, "Sigmoid": SIGMOID_OPS,
            "GELU": TANH_OPS, "SiLU": SIGMOID_OPS + 1}


def _leaf_modules(seq: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    kids = list(seq.named_children())
    if not kids:
        return [(prefix, seq)]
    out = []
    for n, m in kids:
        out += _leaf_modules(m, f"{prefix}.{n}")
    return out


def _layer_work(name: str, m: Any, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> LayerWork | None:
    t = type(m).__name__
    n_in, n_out = math.prod(x_shape), math.prod(y_shape)
    common: dict[str, Any] = {"name": name, "in_elems": n_in, "out_elems": n_out, "in_shape": x_shape,
                              "out_shape": y_shape}
    if t in _SKIP:
        return None
    if t == "Conv2d":
        k = math.prod(m.kernel_size) * m.in_channels // m.groups
        has_b = m.bias is not None
        return LayerWork(kind="conv", macs=n_out * k, ops=n_out if has_b else 0, weights=m.weight.numel(),
                         biases=m.out_channels if has_b else 0, out_channels=m.out_channels, **common)
    if t == "Linear":
        has_b = m.bias is not None
        return LayerWork(kind="fc", macs=n_out * m.in_features, ops=n_out if has_b else 0,
                         weights=m.weight.numel(), biases=m.out_features if has_b else 0,
                         out_channels=m.out_features, **common)
    if t in ("AvgPool2d", "MaxPool2d"):
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
        per_out = math.prod(ks) - 1 + (1 if t == "AvgPool2d" else 0)
        return LayerWork(kind="pool", macs=0, ops=n_out * per_out, weights=0, biases=0, out_channels=0, **common)
    if t in ("BatchNorm1d", "BatchNorm2d"):
        # inference: y = a*x + b per element (a kernel may fold it into the conv: then remove it)
        return LayerWork(kind="bn", macs=0, ops=2 * n_out, weights=0, biases=2 * m.num_features,
                         out_channels=0, **common)
    return LayerWork(kind="act", macs=0, ops=_ACT_OPS[t] * n_out, weights=0, biases=0, out_channels=0, **common)


_SUPPORTED = ("Conv2d", "Linear", "AvgPool2d", "MaxPool2d", "BatchNorm1d", "BatchNorm2d", *_ACT_OPS, *_SKIP)


def _check_supported(name: str, m: nn.Module) -> None:
    t = type(m).__name__
    if t not in _SUPPORTED:
        raise ConfigError(f"the CPU model cannot cost layer {name} ({t}); supported: Conv2d, Linear, AvgPool2d, "
                          f"MaxPool2d, BatchNorm1d/2d, {', '.join(_ACT_OPS)} (and {', '.join(_SKIP)} at no cost)")


def _walk(module: nn.Module, x: Any, prefix: str) -> tuple[list[LayerWork], Any]:
    """Run ``x`` through the leaf modules of ``module`` in order, recording each layer's work."""
    import torch

    layers: list[LayerWork] = []
    with torch.no_grad():
        leaves = _leaf_modules(module, prefix)
        for name, m in leaves:
            _check_supported(name, m)  # before running anything: a clear error, not a shape crash
        for name, m in leaves:
            y = m(x)
            lw = _layer_work(name, m, tuple(x.shape), tuple(y.shape))
            if lw is not None:
                layers.append(lw)
            x = y
    return layers, x


def mlp_workload(sizes: Sequence[int], batch: int = 1, activation: str = "Sigmoid",
                 name: str = "mlp") -> Workload:
    """FC layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between layers (and after the
    last one: the IMAC neuron is on every layer) on the CPU, e.g. the binary head's sizes."""
    if len(sizes) < 2:
        raise ConfigError(f"an MLP needs at least two sizes, got {list(sizes)}")
    if activation not in _ACT_OPS:
        raise ConfigError(f"unknown activation {activation!r}; known: {', '.join(_ACT_OPS)}")
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(LayerWork(f"fc{i}", "fc", batch * a * b, batch * b, a * b, b, batch * a, batch * b, b,
                                (batch, a), (batch, b)))
        layers.append(LayerWork(f"fc{i}.act", "act", 0, batch * b * _ACT_OPS[activation], 0, 0, batch * b,
                                batch * b, 0, (batch, b), (batch, b)))
    return Workload(name, batch, tuple(layers))


def model_workload(model: Any, batch: int = 1, fc: Literal["float", "binary", "none"] = "float",
                   name: str | None = None) -> Workload:
    """Per-layer work of a registered model (or its name) for a batch of ``batch`` images.

    ``fc``: ``float`` adds the float FC head (the CPU-only baseline), ``binary`` the binary head's
    sizes as CPU FC layers with a sigmoid, ``none`` only the conv trunk (what stays on the CPU in
    CPU-IMAC)."""
    import numpy as np

    if isinstance(model, str):
        from imac.nn.models import build_model

        name = name or model
        model = build_model(model)
    name = name or type(model).__name__
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if fc not in ("float", "binary", "none"):
        raise ConfigError(f"fc must be 'float', 'binary' or 'none', got {fc!r}")
    model.eval()
    layers: list[LayerWork] = []
    trunk = getattr(model, "trunk", None)
    input_shape = getattr(model, "input_shape", None)
    if input_shape:
        x = model.prepare(np.zeros((batch, *input_shape), dtype=np.uint8))
    else:
        raise ConfigError(f"model {name} has no input_shape to build a dummy input from")
    if trunk is not None:
        trunk_layers, x = _walk(trunk, x, "trunk")
        layers += trunk_layers
    if fc == "float":
        head = getattr(model, "float_head", None)
        if head is not None:
            layers += _walk(head, x.reshape(batch, -1), "float_head")[0]
    elif fc == "binary":
        sizes = model.fc_layer_sizes()
        layers += [LayerWork(f"head.{lw.name}", lw.kind, lw.macs, lw.ops, lw.weights, lw.biases, lw.in_elems,
                             lw.out_elems, lw.out_channels, lw.in_shape, lw.out_shape)
                   for lw in mlp_workload(sizes, batch).layers]
    if not layers:
        raise ConfigError(f"model {name} has no layers for the CPU model (fc={fc!r}): nothing to cost")
    return Workload(name, batch, tuple(layers))


# -- the cost model ----------------------------------------------------------------------------
ENERGY_COMPONENTS = ("energy_mac_j", "energy_op_j", "energy_instruction_j", "energy_memory_j", "energy_static_j")


@dataclass
class CpuCost:
    """Per-layer rows (for the whole batch) and their totals; rows sum to the totals exactly."""

    core: str
    precision: str
    model: str
    batch: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latency_s(self) -> float:
        return sum(r["latency_s"] for r in self.rows)

    @property
    def energy_j(self) -> float:
        return sum(r["energy_j"] for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r["macs"] for r in self.rows)

    @property
    def energy_per_inference_j(self) -> float:
        return self.energy_j / self.batch

    def component_totals(self) -> dict[str, float]:
        return {c: sum(r[c] for r in self.rows) for c in ENERGY_COMPONENTS}

    def by_kind(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for r in self.rows:
            d = out.setdefault(r["kind"], {"latency_s": 0.0, "energy_j": 0.0, "macs": 0})
            d["latency_s"] += r["latency_s"]
            d["energy_j"] += r["energy_j"]
            d["macs"] += r["macs"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"core": self.core, "precision": self.precision, "model": self.model, "batch": self.batch,
                "latency_s": self.latency_s, "energy_j": self.energy_j,
                "energy_per_inference_j": self.energy_per_inference_j, "macs": self.macs,
                "components": self.component_totals(), "rows": self.rows}

    def table(self) -> str:
        """A Markdown table of the rows and the total (latency in us, energy in nJ)."""
        head = "| layer | kind | MACs | bytes | level | bound | latency us | energy nJ | mac | instr | mem | static |"
        lines = [f"{self.model} on {self.core}, {self.precision}, batch {self.batch}", "", head,
                 "|" + "---|" * 12]
        for r in [*self.rows, self._total_row()]:
            lines.append(
                f"| {r['layer']} | {r['kind']} | {r['macs']:,} | {r['bytes']:,} | {r['level']} | {r['bound']} | "
                f"{r['latency_s'] * 1e6:.2f} | {r['energy_j'] * 1e9:.2f} | "
                f"{(r['energy_mac_j'] + r['energy_op_j']) * 1e9:.2f} | {r['energy_instruction_j'] * 1e9:.2f} | "
                f"{r['energy_memory_j'] * 1e9:.2f} | {r['energy_static_j'] * 1e9:.2f} |")
        return "\n".join(lines)

    def _total_row(self) -> dict[str, Any]:
        tot: dict[str, Any] = {"layer": "**total**", "kind": "", "level": "", "bound": ""}
        for k in ("macs", "bytes", "latency_s", "energy_j", *ENERGY_COMPONENTS):
            tot[k] = sum(r[k] for r in self.rows)
        return tot


def lane_utilization(out_channels: int, lanes: int) -> float:
    """Fraction of SIMD lanes doing useful MACs when output channels are spread over ``lanes``."""
    if out_channels <= 0:
        return 1.0
    return out_channels / (math.ceil(out_channels / lanes) * lanes)


def memory_level(core: CpuCoreSpec, working_set_bytes: float) -> tuple[str, float, float]:
    """(name, bandwidth bytes/s, energy J/byte) of the level the working set is served from."""
    for c in core.caches:
        if working_set_bytes <= c.size_bytes:
            return c.name, c.bandwidth_bytes_per_cycle * core.frequency_hz, c.energy_j_per_byte
    return "DRAM", core.dram_bandwidth_bytes_per_s, core.dram_energy_j_per_byte


def layer_cost(core: CpuCoreSpec, lw: LayerWork, precision: str) -> dict[str, Any]:
    """Latency (s) and energy (J, by component) of one layer on one core: one tidy row."""
    check_precision(precision)
    f = core.frequency_hz
    macs_per_cycle = core.fp32_macs_per_cycle if precision == "fp32" else core.int8_macs_per_cycle
    util = lane_utilization(lw.out_channels, core.lanes(precision)) if lw.macs else 1.0
    ops = lw.ops + (REQUANT_OPS * lw.out_elems if precision == "int8" and lw.macs else 0)
    el_lanes = core.elementwise_lanes(precision)
    t_mac = lw.macs / (macs_per_cycle * util * f)
    t_ops = ops / (el_lanes * core.simd_pipes * f)
    t_compute = t_mac + t_ops
    nbytes = lw.bytes(precision)
    level, bw, e_byte = memory_level(core, nbytes)
    t_memory = nbytes / bw
    latency = max(t_compute, t_memory) + core.layer_overhead_s
    e_mac = core.mac_energy_fp32_j if precision == "fp32" else core.mac_energy_int8_j
    e_op = core.op_energy_fp32_j if precision == "fp32" else core.op_energy_int8_j
    # instructions: MAC instructions (idle lanes still cost an instruction) + element-wise ones
    macs_per_instr = macs_per_cycle / core.simd_pipes
    n_instr = lw.macs / (macs_per_instr * util) + ops / el_lanes
    row: dict[str, Any] = {
        "layer": lw.name, "kind": lw.kind, "macs": lw.macs, "ops": ops,
        "weight_bytes": lw.weight_bytes(precision), "activation_bytes": lw.activation_bytes(precision),
        "bytes": nbytes, "level": level, "lane_utilization": util,
        "t_compute_s": t_compute, "t_memory_s": t_memory, "latency_s": latency,
        "bound": "memory" if t_memory > t_compute else "compute",
        "energy_mac_j": lw.macs * e_mac, "energy_op_j": ops * e_op,
        "energy_instruction_j": n_instr * core.instruction_energy_j,
        "energy_memory_j": nbytes * e_byte, "energy_static_j": core.static_power_w * latency,
    }
    row["energy_j"] = sum(float(row[c]) for c in ENERGY_COMPONENTS)
    return row


def estimate(core: CpuCoreSpec | str, workload: Workload | nn.Module | str, precision: str = "fp32",
             **workload_kw: Any) -> CpuCost:
    """The per-layer cost table of ``workload`` (or a model / model name) on ``core`` (or a preset name)."""
    check_precision(precision)
    spec = core if isinstance(core, CpuCoreSpec) else load_core(core)
    wl = workload if isinstance(workload, Workload) else model_workload(workload, **workload_kw)
    if not wl.layers:
        raise ConfigError(f"workload {wl.model} has no layers: nothing to cost")
    return CpuCost(spec.name, precision, wl.model, wl.batch, [layer_cost(spec, lw, precision) for lw in wl.layers])


# -- the check against PyTorch on this machine -----------------------------------------------
def _time_call(fn: Any, warmup: int, repeats: int, min_rep_s: float) -> list[float]:
    """Seconds per call: ``repeats`` samples, each the mean over enough calls to last ``min_rep_s``."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, math.ceil(min_rep_s / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def measure_layers(model: Any, batch: int = 1, warmup: int = 5, repeats: int = 15,
                   min_rep_s: float = 2e-3, threads: int = 1) -> list[dict[str, Any]]:
    """Median PyTorch time of each trunk / float-head layer on this machine (``threads`` threads).

    Each layer runs on a copy of the very input it sees inside ``model.features`` (same memory
    format: the VGG models run channels-last), in inference mode."""
    import numpy as np
    import torch

    if isinstance(model, str):
        from imac.nn.models import build_model

        model = build_model(model)
    model.eval()
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = model.prepare(np.random.default_rng(0).integers(0, 256, (batch, *model.input_shape)).astype(np.uint8))
        leaves: list[tuple[str, nn.Module]] = []
        if getattr(model, "trunk", None) is not None:
            leaves += _leaf_modules(model.trunk, "trunk")
        inputs: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: inputs.__setitem__(n, a[0].clone()))
                 for n, m in leaves]
        with torch.inference_mode():
            feats = model.features(x) if leaves else x.reshape(batch, -1)
        for h in hooks:
            h.remove()
        head = getattr(model, "float_head", None)
        if head is not None:
            h_leaves = _leaf_modules(head, "float_head")
            z = feats.reshape(batch, -1)
            with torch.inference_mode():
                for n, m in h_leaves:
                    inputs[n] = z.clone()
                    z = m(z)
            leaves += h_leaves
        rows = []
        with torch.inference_mode():
            for n, m in leaves:
                if type(m).__name__ in _SKIP:
                    continue
                xin = inputs[n]
                samples = _time_call(lambda m=m, xin=xin: m(xin), warmup, repeats, min_rep_s)
                rows.append({"layer": n, "type": type(m).__name__, "batch": batch,
                             "measured_s": statistics.median(samples), "min_s": min(samples),
                             "max_s": max(samples)})
        return rows
    finally:
        torch.set_num_threads(prev)


def measure_dispatch_overhead(warmup: int = 20, repeats: int = 30, threads: int = 1) -> float:
    """Median seconds of a PyTorch eager call that does (almost) no work: a 1x1 conv on one
    pixel, one channel.  The fixed software cost of calling a layer (a named calibration of the
    host preset's ``layer_overhead_s``, measured independently of the layers being checked)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        conv = torch.nn.Conv2d(1, 1, 1).eval()
        x = torch.zeros(1, 1, 1, 1)
        with torch.inference_mode():
            return statistics.median(_time_call(lambda: conv(x), warmup, repeats, 2e-3))
    finally:
        torch.set_num_threads(prev)


def check_against_pytorch(model_name: str, batches: Iterable[int] = (1, 32), core: CpuCoreSpec | str = "host",
                          kinds: Iterable[str] = ("conv",), with_overhead: bool = True,
                          **measure_kw: Any) -> list[dict[str, Any]]:
    """Model/measured latency ratio per layer (fp32) on this machine, for each batch size.

    Returns rows with ``model_s`` (pure hardware model, no software overhead), ``model_oh_s``
    (plus the measured dispatch overhead, if ``with_overhead``), ``measured_s`` and the ratios."""
    from imac.nn.models import build_model

    spec = load_core(core) if not isinstance(core, CpuCoreSpec) else core
    overhead = measure_dispatch_overhead() if with_overhead else 0.0
    spec_oh = load_core(spec, layer_overhead_s=overhead)
    kinds = tuple(kinds)
    model = build_model(model_name)
    out = []
    for batch in batches:
        wl = model_workload(model, batch=batch, fc="float", name=model_name)
        measured = {r["layer"]: r for r in measure_layers(model, batch=batch, **measure_kw)}
        for lw in wl.layers:
            if lw.kind not in kinds or lw.name not in measured:
                continue
            m = measured[lw.name]
            t0 = layer_cost(spec, lw, "fp32")
            t1 = layer_cost(spec_oh, lw, "fp32")
            out.append({"model": model_name, "layer": lw.name, "kind": lw.kind, "batch": batch,
                        "macs": lw.macs, "bound": t0["bound"], "level": t0["level"],
                        "lane_utilization": t0["lane_utilization"],
                        "model_s": t0["latency_s"], "model_oh_s": t1["latency_s"],
                        "measured_s": m["measured_s"], "measured_min_s": m["min_s"], "measured_max_s": m["max_s"],
                        "ratio": t0["latency_s"] / m["measured_s"], "ratio_oh": t1["latency_s"] / m["measured_s"],
                        "overhead_s": overhead})
    return out


def _ratio_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | layer | batch | MACs | lane util | model us | +overhead us | measured us (min-max) | "
             "ratio | ratio +oh |", "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layer']} | {r['batch']} | {r['macs']:,} | {r['lane_utilization']:.2f} | "
            f"{r['model_s'] * 1e6:.1f} | {r['model_oh_s'] * 1e6:.1f} | {r['measured_s'] * 1e6:.1f} "
            f"({r['measured_min_s'] * 1e6:.1f}-{r['measured_max_s'] * 1e6:.1f}) | {r['ratio']:.2f} | "
            f"{r['ratio_oh']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m imac.system.cpu [MODEL ...] [--core C ...] [--check] [--runs N] [--batches 1,32]``."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m imac.system.cpu", description=main.__doc__)
    p.add_argument("models", nargs="*", default=["lenet-mnist", "vgg11-cifar10"])
    p.add_argument("--core", action="append", help=f"preset(s): {', '.join(list_presets())}")
    p.add_argument("--fc", default="float", choices=["float", "binary", "none"])
    p.add_argument("--check", action="store_true", help="measure PyTorch per-layer times on this machine")
    p.add_argument("--runs", type=int, default=1, help="repeat the measurement (spread between runs)")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.check:
        all_rows = []
        for run in range(a.runs):
            for mname in a.models:
                rows = check_against_pytorch(mname, [int(b) for b in a.batches.split(",")])
                for r in rows:
                    r["run"] = run
                all_rows += rows
                if not a.json:
                    print(f"\nrun {run + 1}, load average {os.getloadavg()[0]:.2f}, "
                          f"dispatch overhead {rows[0]['overhead_s'] * 1e6:.1f} us" if rows else "")
                    print(_ratio_table(rows))
        if a.json:
            print(json.dumps(all_rows, indent=1))
        return 0
    out = []
    for core in a.core or ["cortex-a53", "cortex-a76"]:
        for mname in a.models:
            for prec in PRECISIONS:
                cost = estimate(core, mname, prec, fc=a.fc)
                out.append(cost.to_dict())
                if not a.json:
                    print(cost.table(), "\n")
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
