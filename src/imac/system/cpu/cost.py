"""The roofline latency and the bottom-up energy of a workload on a core, layer by layer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imac.config import CpuCoreSpec
from imac.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily inside the functions that need it
    from torch import nn

from imac.system.cpu.cores import check_precision, load_core
from imac.system.cpu.workload import REQUANT_OPS, LayerWork, Workload, model_workload

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


