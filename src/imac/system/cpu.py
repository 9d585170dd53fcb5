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

The core is :class:`imac.config.CpuCoreSpec` (the ``cpu`` section of the one spec tree).  Presets:
``cortex-a53`` (Raspberry Pi 3 B+) and ``cortex-a76`` (Raspberry Pi 5) as YAML files under
``configs/cores/``, and ``host`` (the machine this runs on, read from ``/proc/cpuinfo`` and
``/sys``).  ``python -m imac.system.cpu`` prints the per-layer tables and, with ``--check``, the
model/measured ratio against PyTorch.
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

from imac.config import DEFAULT_CORE, CpuCoreSpec, core_data, core_preset_names, parse_spec
from imac.config.horowitz import H45_SOURCE, SCALING_RULE, scale_energy, sram_energy_45nm
from imac.config.system import BYTES_PER_ELEMENT
from imac.errors import ConfigError

if TYPE_CHECKING:  # torch is imported lazily inside the functions that need it
    from torch import nn

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
BIAS_BYTES = {"fp32": 4, "int8": 4}  # int8 kernels keep int32 biases (accumulator width)

# Horowitz 2014 energies and the node scaling rule live in imac.config.horowitz (the cores'
# derived energies use them); re-exported here for the reports
__all__ = ["H45_SOURCE", "SCALING_RULE", "scale_energy", "sram_energy_45nm"]

# Element-wise operations per output element of each non-MAC layer kind (our counts, stated so
# they can be changed): tanh as a vectorized rational approximation (~7th/6th-order polynomials,
# a division, clamps), pooling as k*k-1 adds or compares (+1 scale for average pooling).
TANH_OPS = 20
SIGMOID_OPS = 20
REQUANT_OPS = 3  # int8: scale the int32 accumulator, round, clamp (per output element)


# -- cores: the spec is imac.config.CpuCoreSpec, the presets YAML files (imac.config.cores) ----------
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
