"""The core and the precision a CPU estimate runs with: presets by name, files, overrides."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from imac.config import DEFAULT_CORE, CpuCoreSpec, core_data, core_preset_names, parse_spec
from imac.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily inside the functions that need it
    pass

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
BIAS_BYTES = {"fp32": 4, "int8": 4}  # int8 kernels keep int32 biases (accumulator width)


SOURCED_FIELDS = (
    "frequency_hz", "simd_width_bits", "simd_pipes", "fp32_macs_per_cycle", "int8_macs_per_cycle", "caches",
    "dram_bandwidth_bytes_per_s", "dram_energy_j_per_byte", "mac_energy_fp32_j", "mac_energy_int8_j",
    "op_energy_fp32_j", "op_energy_int8_j", "instruction_energy_j", "static_power_w", "node_nm", "vdd_v",
    "layer_overhead_s", "active_power_w",
)


def list_presets() -> list[str]:
    """Names of the core presets."""
    return core_preset_names()


@cache
def _preset(name: str) -> CpuCoreSpec:
    return parse_spec(core_data(name), CpuCoreSpec, source=f"cpu preset {name!r}")


def load_core(name_or_path: str | Path | CpuCoreSpec = DEFAULT_CORE, **overrides: Any) -> CpuCoreSpec:
    """A core by preset name (:func:`list_presets`) or from a YAML file; ``overrides`` replace fields
    (energies not overridden are derived again from the resulting node and supply)."""
    if isinstance(name_or_path, CpuCoreSpec):
        spec = name_or_path
    elif str(name_or_path) in core_preset_names():
        spec = _preset(str(name_or_path))
    else:
        spec = parse_spec(core_data(str(name_or_path)), CpuCoreSpec, source=str(name_or_path))
    if overrides:
        derived = {k for k in spec.derived if "." not in k}
        base = spec.model_dump(exclude=derived)
        base["caches"] = [{k: v for k, v in c.items() if f"caches.{i}.{k}" not in spec.derived}
                          for i, c in enumerate(base["caches"])]
        spec = parse_spec({**base, **overrides}, CpuCoreSpec, source=f"{spec.name} + overrides")
    return spec


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; the CPU model supports {', '.join(PRECISIONS)}")
    return precision


