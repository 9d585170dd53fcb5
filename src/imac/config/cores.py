"""CPU core presets: YAML files under ``configs/cores/`` and ``host``, read from this machine.

A core is named in a spec as ``cpu: cortex-a53`` (a preset), ``cpu: path/to/core.yaml`` (a file
in the same format) or as the fields themselves, optionally on top of a preset
(``cpu: {preset: cortex-a53, frequency_hz: 1.2e9}``).  ``host`` describes the core this code runs
on, from ``/proc/cpuinfo`` and ``/sys`` (used to check the model against PyTorch timings here).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imac.config.base import PRESET_DIR, read_yaml
from imac.errors import ConfigError

CORE_DIR = PRESET_DIR / "cores"
KIB = 1024
MIB = 1024 * 1024


def core_preset_names() -> list[str]:
    """Names of the shipped core presets (``host`` included)."""
    return sorted([p.stem for p in CORE_DIR.glob("*.yaml")] + ["host"])


def core_data(ref: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The fields of a core named by preset, file path, or a mapping (``preset:`` + overrides)."""
    if isinstance(ref, dict):
        data = dict(ref)
        base = data.pop("preset", None)
        if base is None:
            return data
        if not isinstance(base, str):
            raise ConfigError(f"cpu.preset: expected a preset name, got {type(base).__name__}")
        return {**core_data(base), **data}
    text = str(ref)
    if text == "host":
        return _host()
    if re.fullmatch(r"[A-Za-z0-9_.-]+", text) and (CORE_DIR / f"{text}.yaml").is_file():
        data = read_yaml(CORE_DIR / f"{text}.yaml")
    elif text.endswith((".yaml", ".yml")) and Path(text).is_file():
        data = read_yaml(Path(text))
    else:
        raise ConfigError(f"unknown CPU preset {text[:80]!r}; known presets: {', '.join(core_preset_names())} "
                          "(or give a YAML file)")
    if not isinstance(data, dict):
        raise ConfigError(f"CPU core {text}: expected a mapping, got {type(data).__name__}")
    return data


def _host_cache(name: str, size: int, bw: float, node_nm: float, vdd_v: float, source: str) -> dict[str, Any]:
    # energy left out: derived from the size (imac.config.system.CpuCoreSpec)
    return {"name": name, "size_bytes": size, "bandwidth_bytes_per_cycle": bw, "source": source}


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
    caches = [_host_cache("L1", l1, 2.0 * width / 8, node, vdd, f"size {sysfs}; two full-width loads/cycle ({opt})"),
              _host_cache("L2", l2, 32.0, node, vdd, f"size {sysfs}; 64 B/cycle peak, ~32 sustained ({opt})")]
    if l3 > l2:
        caches.append(_host_cache("L3", l3, 12.0, node, vdd,
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
            "layer_overhead_s": "0 by default; measure_dispatch_overhead() gives the PyTorch eager value "
            "(a named calibration, used only in the check against PyTorch)",
        },
    }
