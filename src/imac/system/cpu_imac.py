"""CPU-IMAC: a CNN whose convolutions run on a mobile CPU core and whose FC layers run on IMAC.

For a named model this prices, per inference (batch 1), two systems and compares them:

* **CPU-only**: the whole network on one core (:mod:`imac.system.cpu`), fp32 or int8, with the
  model's float FC head (the binary head when the model has no float head);
* **CPU-IMAC**: the conv trunk on the core (plus the sign that binarizes its features), the
  interface (:mod:`imac.system.interface`: buffer, sign drivers or DACs, ADCs or comparators,
  handshake), and the FC layers on IMAC priced by :func:`imac.hardware.cost.imac_cost` from the
  solved circuit; accuracy from the ``circuit`` fidelity over the test set.

**Placement** (:func:`evaluate`): IMAC takes the first ``k`` binary FC layers (k = 1 .. L; the
analog chain starts where the binarized conv features enter); when ``k < L`` the last IMAC
layer is read by ADCs and the CPU runs the remaining binary layers in software with the neuron
curve.  Every placement is simulated (accuracy) and priced (energy, latency); the chosen one
minimizes energy, or the energy-delay product, among those within the accuracy budget of the
CPU-only network.

**Energy studies** (:func:`energy_study`): models without a trained checkpoint (the full-width
VGGs with the classic 4096-4096 head) are priced with random binary weights, each layer a -> b
compiled on its own at its real input voltages (from the random network's ideal math) and every
tile priced (~19,000 subarrays of 32x32 for 512-4096-4096-10).  The earlier shortcut, a sample
of tile columns scaled up by b / b', is still available as ``sample_tiles=k``: its power is
unbiased but its latency is the sample's worst tile, biased low (~20 % for 2 of 8 tile columns).
No accuracy.

Each system's breakdown is a list of rows ``part, component, action, energy_j, latency_s``
whose energies and latencies sum to the totals (the stages run one after the other).  Units
are SI: joules, seconds.  ``cpu_energy_model="top-down"`` prices the CPU parts at the core's
public active power x the modelled latency instead of bottom-up (see docs/cpu_model.md: the
bottom-up energies are the low end, so the saving is shown under both).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imac.config import ImacSpec
from imac.costs import CostRow, CostTable
from imac.errors import ConfigError
from imac.hardware.fidelity import Fidelity
from imac.hardware.mapping import partition_counts
from imac.hardware.network import CALIBRATION_LABEL
from imac.system.cpu import (
    CpuCoreSpec,
    LayerWork,
    Workload,
    check_precision,
    estimate,
    load_core,
    mlp_workload,
    model_workload,
)
from imac.system.interface import DRIVERS, READOUTS, InterfaceSpec, interface_cost, load_interface

OBJECTIVES = ("energy", "edp")
CPU_ENERGY_MODELS = ("bottom-up", "top-down")
FEATURE_BATCH = 1000


@dataclass
class SystemCost(CostTable):
    """One system's cost per inference: its rows (:class:`imac.costs.CostRow`: the CPU's layers,
    the interface, IMAC's components) in the order they run; totals are their sums."""

    name: str = ""
    accuracy: float | None = None

    def by_part(self) -> dict[str, dict[str, float]]:
        """Energy and latency summed per part (cpu, interface, imac)."""
        return {k: {"energy_j": v["energy_j"], "latency_s": v["latency_s"]} for k, v in self.by("part").items()}

    def by_group(self) -> dict[str, float]:
        """Energy per group for the stacked plots: conv (and pool/act/bn of the trunk), fc on
        the CPU, the interface, each IMAC component kind."""
        return {k: v["energy_j"] for k, v in self.by("group").items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "energy_j": self.energy_j, "latency_s": self.latency_s,
                "accuracy": self.accuracy, "by_part": self.by_part(), "by_group": self.by_group(),
                "rows": self.table()}


# -- pricing -----------------------------------------------------------------------------------
def _cpu_rows(cost: Any, core: CpuCoreSpec, energy_model: str) -> list[CostRow]:
    """The CPU model's layers (:class:`imac.system.cpu.CpuCost`) as cost rows, energy bottom-up
    (its own per-operation sum) or top-down (the core's active power x the layer's latency)."""
    rows = []
    for r in cost.rows:
        if energy_model == "top-down":
            assert core.active_power_w is not None  # checked by _check_energy_model
            energy = core.active_power_w * r["latency_s"]
        else:
            energy = r["energy_j"]
        group = "cpu fc" if r["layer"].startswith(("float_head", "head", "cpu_head")) else "cpu conv trunk"
        rows.append(CostRow(r["layer"], r["kind"], r["macs"], energy_j=energy / cost.batch, latency_s=r["latency_s"],
                            part="cpu", group=group, basis=f"{energy_model} CPU model, {r['bound']}-bound"))
    return rows


def _check_energy_model(core: CpuCoreSpec, energy_model: str) -> None:
    if energy_model not in CPU_ENERGY_MODELS:
        raise ConfigError(f"unknown CPU energy model {energy_model!r}; known: {', '.join(CPU_ENERGY_MODELS)}")
    if energy_model == "top-down" and core.active_power_w is None:
        raise ConfigError(f"core {core.name!r} has no active_power_w: the top-down CPU energy needs one")


def cpu_only_cost(model: Any, core: CpuCoreSpec, precision: str, energy_model: str = "bottom-up") -> SystemCost:
    """The whole network on the CPU core: trunk + float head (or the binary head in software)."""
    check_precision(precision)
    _check_energy_model(core, energy_model)
    _fc_sizes(model)  # a clear error for a network without binary FC layers
    fc: Literal["float", "binary"] = "float" if getattr(model, "float_head", None) is not None else "binary"
    cost = estimate(core, model_workload(model, 1, fc=fc, name=_name(model)), precision)
    return SystemCost(_cpu_rows(cost, core, energy_model), name=f"CPU-only {core.name} {precision}")


def cpu_part_workload(model: Any, k: int) -> Workload:
    """What stays on the CPU when IMAC runs the first ``k`` binary FC layers: the conv trunk,
    the sign of its features, and the remaining binary layers (with the neuron curve)."""
    sizes = _fc_sizes(model)
    n_layers = len(sizes) - 1
    if not 1 <= k <= n_layers:
        raise ConfigError(f"IMAC can take 1..{n_layers} FC layers of {_name(model)}, not {k}")
    layers: list[LayerWork] = []
    if getattr(model, "trunk", None) is not None:
        layers += model_workload(model, 1, fc="none", name=_name(model)).layers
    n = sizes[0]
    layers.append(LayerWork("binarize", "act", 0, n, 0, 0, n, n, 0, (1, n), (1, n)))
    if k < n_layers:
        rest = mlp_workload(sizes[k:], 1, activation="Sigmoid").layers
        layers += [LayerWork(f"cpu_head.{lw.name}", lw.kind, lw.macs, lw.ops, lw.weights, lw.biases, lw.in_elems,
                             lw.out_elems, lw.out_channels, lw.in_shape, lw.out_shape) for lw in rest]
    return Workload(_name(model), 1, tuple(layers))


def cpu_imac_cost(model: Any, core: CpuCoreSpec, precision: str, imac: Any, k: int, line_segments: int,
                  driver: str = "sign", readout: str = "adc", interface: InterfaceSpec | None = None,
                  energy_model: str = "bottom-up") -> SystemCost:
    """CPU part + interface + the IMAC cost ``imac`` (:class:`imac.hardware.cost.ImacCost` of
    the first ``k`` layers).  Partial placements read the IMAC outputs with ADCs."""
    check_precision(precision)
    _check_energy_model(core, energy_model)
    sizes = _fc_sizes(model)
    n_layers = len(sizes) - 1
    cpu = _cpu_rows(estimate(core, cpu_part_workload(model, k), precision), core, energy_model)
    iface = interface_cost(sizes[0], sizes[k], driver, readout if k == n_layers else "adc",  # type: ignore[arg-type]
                           interface, line_segments=line_segments)
    iface_rows = [replace(r) for r in iface.rows]
    imac_rows = [replace(r) for r in imac.rows if r.component != "routing"]  # routing is area only
    # the rows' order is the schedule: the binary layers left on the CPU run after IMAC
    before = [r for r in cpu if not r["component"].startswith("cpu_head")]
    after = [r for r in cpu if r["component"].startswith("cpu_head")]
    rows = before + iface_rows + imac_rows + after
    return SystemCost(rows, name=f"CPU-IMAC {core.name} {precision} (IMAC: FC 1-{k})")


# -- accuracy ----------------------------------------------------------------------------------
@dataclass
class Features:
    """A test set through the CPU trunk once: CPU-only predictions and the IMAC inputs."""

    labels: np.ndarray
    imac_inputs: np.ndarray
    cpu_only_pred: np.ndarray


def trunk_features(model: Any, images: np.ndarray, labels: np.ndarray, precision: str,
                   progress: Callable[[str], None] | None = None, every_s: float = 5.0) -> Features:
    """Run the trunk (float, or the checkpoint's calibrated int8 trunk) over ``images`` once;
    ``progress`` hears how far it got at most every ``every_s`` seconds."""
    import time

    import torch

    trunk = None
    if precision == "int8" and getattr(model, "trunk", None) is not None:
        trunk = getattr(model, "_calibrated_int8", None)
        if trunk is None:
            raise ConfigError(f"precision int8 needs the int8 calibration of {_name(model)}'s conv trunk; "
                              "its checkpoint has none (retrain, or use --precision fp32)")
    xs, preds = [], []
    model.eval()
    last = time.perf_counter()
    threads = torch.get_num_threads()
    # batches of 1000 images: every core helps (callers may have pinned torch to one thread)
    torch.set_num_threads(max(threads, os.cpu_count() or 1))
    with contextlib.ExitStack() as stack, torch.no_grad():
        stack.callback(torch.set_num_threads, threads)
        for i in range(0, len(images), FEATURE_BATCH):
            if progress and i and time.perf_counter() - last >= every_s:
                last = time.perf_counter()
                progress(f"CPU trunk ({precision}): {i}/{len(images)} images")
            f = model.features(model.prepare(images[i:i + FEATURE_BATCH]), trunk)
            x = model.binarize(f)
            xs.append(x.reshape(len(x), -1).numpy())
            if getattr(model, "float_head", None) is not None:
                preds.append(torch.argmax(model.float_head(f), dim=1).numpy())
            else:  # no float head: the CPU runs the binary head in software
                preds.append(torch.argmin(model.head(x), dim=1).numpy())
    return Features(np.asarray(labels), np.concatenate(xs).astype(float), np.concatenate(preds))


def adc_quantize(y: np.ndarray, v_full_scale: float, bits: int) -> np.ndarray:
    """Neuron outputs (V) as a ``bits``-bit ADC over 0..v_full_scale reads them (V)."""
    from imac.system.converters import quantize

    return quantize(y, 0.0, v_full_scale, bits)


def software_suffix(model: Any, y_volts: np.ndarray, k: int, v_dd: float) -> np.ndarray:
    """The binary layers after IMAC layer ``k`` on the CPU: outputs (fraction of V_DD)."""
    import torch

    head = model.head
    y = torch.as_tensor(y_volts / v_dd, dtype=torch.float32)
    with torch.no_grad():
        for lin, neu in zip(list(head.linears)[k:], list(head.neurons)[k:], strict=True):
            y = neu(lin(y))
    return y.numpy()


@dataclass
class Placement:
    k: int
    accuracy: float
    imac: Any  # ImacCost of the first k layers
    line_segments: int
    n_subarrays: int
    build_time_s: float
    sim_time_s: float


def simulate_placements(model: Any, feats: Features, spec: ImacSpec, rows: int, cols: int, fidelity: str,
                        x_op: np.ndarray | None, adc_bits: int, ks: Sequence[int] | None = None,
                        say: Callable[[str], None] | None = None,
                        cache: dict[Any, Any] | None = None) -> list[Placement]:
    """Accuracy and IMAC cost of every placement k (IMAC runs binary FC layers 1..k).

    ``cache``: the compiled head by (rows, cols, fidelity), reused across calls on the same head
    (e.g. the fp32 and int8 trunks feed the same IMAC circuit)."""
    import time

    from imac.hardware.cost import imac_cost
    from imac.hardware.engine import build_head, on_subarrays
    from imac.hardware.network import binary_layers
    from imac.hardware.simulate import run_batch

    say = say or (lambda m: None)
    n_layers = len(binary_layers(model))
    v_dd = spec.subarray.v_dd
    design = on_subarrays(spec, rows, cols)
    key = (rows, cols, fidelity)
    t0 = time.perf_counter()
    if cache is not None and key in cache:
        full, build = cache[key]
    else:
        # one compile serves every placement: layer i's circuit depends only on its own tiles and
        # on the neurons driving it, so the first k compiled layers ARE the k-layer prefix (its
        # last neurons unloaded, read by the ADCs)
        say(f"mapping and compiling the {n_layers}-layer IMAC head ({fidelity})")
        head = build_head(model, design, fidelity, x_op=x_op,
                          tile_progress=_tile_reporter(say))
        full = head.net
        say(f"{head.netmap.n_subarrays} subarrays compiled in {time.perf_counter() - t0:.1f} s")
        build = time.perf_counter() - t0
        if cache is not None:
            cache[key] = (full, build)
    priced = full
    if fidelity == Fidelity.IDEAL:  # the ideal math has no circuit: price the mapping with real devices
        priced = build_head(model, design, "behavioral").net
    out = []
    ks = list(ks or range(1, n_layers + 1))
    # one batch through the deepest placement serves them all: layer i's outputs depend only on the
    # layers before it, so the k-layer prefix's outputs are the first k of them (sim_time_s: shared)
    t1 = time.perf_counter()
    outs_all = run_batch(_prefix(full, max(ks)), feats.imac_inputs)
    t_batch = time.perf_counter() - t1
    priced_all = outs_all if priced is full else run_batch(_prefix(priced, max(ks)), feats.imac_inputs)
    for k in ks:
        net = _prefix(full, k)
        t1 = time.perf_counter()
        y = outs_all[k - 1]["y"]
        if k < n_layers:
            y = software_suffix(model, adc_quantize(y, v_dd, adc_bits), k, v_dd)
        sim = t_batch + time.perf_counter() - t1
        acc = float(np.mean(np.argmin(y, axis=1) == feats.labels))
        if priced is not full:
            net = _prefix(priced, k)
        out.append(Placement(k, acc, imac_cost(net, priced_all[:k]), int(net.netmap.layers[0].vpar),
                             net.netmap.n_subarrays, build, sim))
    return out


def _prefix(net: Any, k: int) -> Any:
    """The first ``k`` layers of a compiled network."""

    if k == len(net.layers):
        return net
    return replace(net, netmap=replace(net.netmap, layers=net.netmap.layers[:k]), layers=net.layers[:k])


def choose(candidates: list[dict[str, Any]], accuracy_cpu_only: float | None, budget_points: float,
           objective: str) -> dict[str, Any]:
    """The candidate with the lowest energy (or EDP) whose accuracy is within ``budget_points``
    of the CPU-only accuracy (every candidate qualifies when accuracies are unknown)."""
    _check_choice(objective, budget_points)
    key = "energy_j" if objective == "energy" else "edp_js"

    def ok(c: dict[str, Any]) -> bool:  # 1e-9: 100 * (1.0 - 0.985) is 1.5000000000000013
        return (accuracy_cpu_only is None or c["accuracy"] is None
                or 100 * (accuracy_cpu_only - c["accuracy"]) <= budget_points + 1e-9)

    feasible = [c for c in candidates if ok(c)]
    best = min(feasible, key=lambda c: c[key])  # CPU-only is always feasible
    return {"objective": objective, "accuracy_budget_points": budget_points, "chosen": best["placement"],
            "feasible": [c["placement"] for c in feasible]}


# -- the evaluation ----------------------------------------------------------------------------
@dataclass
class SystemRun:
    """A trained model's test set through the CPU trunk at one precision and every simulated
    IMAC placement: what :func:`system_result` prices for any CPU core."""

    name: str
    model: Any
    checkpoint: str
    calibrated: bool
    precision: str
    fidelity: str
    rows: int
    cols: int
    n_images: int
    accuracy_cpu_only: float
    placements: list[Placement]
    spec: Any = None  # the design: its CPU core and interface are the defaults of system_result


def run_system(name: str, precision: str = "fp32", spec: ImacSpec | None = None, rows: int | None = None,
               fidelity: str = "circuit", limit: int | None = None, checkpoint: str | Path | None = None,
               calibrated: bool | None = None, placements: bool = True, adc_bits: int | None = None,
               progress: Callable[[str], None] | None = None, cache: dict[Any, Any] | None = None) -> SystemRun:
    """Accuracy of CPU-only and of every CPU-IMAC placement (``placements=False``: all FC layers
    on IMAC only) of a trained model, with each placement's IMAC cost.  ``cache``: see
    :func:`simulate_placements` (one cache per model and head)."""
    from imac.config import ImacSpec as _Spec
    from imac.hardware.network import operating_point_inputs, select_head
    from imac.hardware.simulate import check_fidelity
    from imac.nn.data import load_dataset

    spec = spec or _Spec()
    check_precision(precision)
    check_fidelity(fidelity)
    if Fidelity.parse(fidelity) == Fidelity.SPICE:
        raise ConfigError("the spice fidelity runs a handful of images: use `imac spice-check`")
    rows = spec.subarray.rows if rows is None else rows
    say = progress or (lambda m: None)
    model, used, base = select_head(name, spec, rows, checkpoint, calibrated, say)
    n_layers = len(_fc_sizes(model)) - 1  # a clear error for models without binary FC layers
    say(f"loading the {model.dataset} test set")
    test = load_dataset(model.dataset, "test").subset(limit)
    say(f"CPU trunk ({precision}) over {len(test)} test images")
    feats = trunk_features(model, test.images, test.labels, precision, say)
    acc_cpu = float(np.mean(feats.cpu_only_pred == feats.labels))
    x_op = operating_point_inputs(model) if fidelity == Fidelity.CIRCUIT else None
    ks = range(1, n_layers + 1) if placements else [n_layers]
    bits = spec.interface.adc_bits if adc_bits is None else adc_bits
    sims = simulate_placements(model, feats, spec, rows, spec.subarray.cols, fidelity, x_op, bits, ks, say, cache)
    return SystemRun(name, model, used.name, model is not base, precision, fidelity, rows, spec.subarray.cols,
                     len(test), acc_cpu, sims, spec)


def _core_and_interface(spec: ImacSpec | None, core: str | CpuCoreSpec | None,
                         interface: dict[str, Any] | InterfaceSpec | None) -> tuple[CpuCoreSpec, InterfaceSpec]:
    """The CPU core and the interface to price with: the given ones, else the design's."""
    from imac.config import ImacSpec as _Spec

    design = spec or _Spec()
    core_spec = design.cpu if core is None else core if isinstance(core, CpuCoreSpec) else load_core(core)
    return core_spec, design.interface if interface is None else load_interface(interface)


def system_result(run: SystemRun, core: str | CpuCoreSpec | None = None, driver: str = "sign",
                  readout: str = "adc", interface: dict[str, Any] | InterfaceSpec | None = None,
                  objective: str = "energy", accuracy_budget_points: float = 1.5,
                  energy_model: str = "bottom-up") -> dict[str, Any]:
    """CPU-only vs CPU-IMAC of ``run`` on ``core`` (default: the design's ``cpu``) with
    ``interface`` (default: the design's): the JSON object of ``imac cpu-imac``."""
    core_spec, iface = _core_and_interface(run.spec, core, interface)
    _check_interface(driver, readout)
    _check_energy_model(core_spec, energy_model)
    _check_choice(objective, accuracy_budget_points)
    model = run.model
    sizes = _fc_sizes(model)
    n_layers = len(sizes) - 1
    cpu_only = cpu_only_cost(model, core_spec, run.precision, energy_model)
    cpu_only.accuracy = run.accuracy_cpu_only
    systems: dict[int, SystemCost] = {}
    for p in run.placements:
        s = cpu_imac_cost(model, core_spec, run.precision, p.imac, p.k, p.line_segments, driver, readout, iface,
                          energy_model)
        s.accuracy = p.accuracy
        systems[p.k] = s
    if n_layers not in systems:
        raise ConfigError("the run has no placement with every FC layer on IMAC")
    full = systems[n_layers]
    full_sim = next(p for p in run.placements if p.k == n_layers)
    candidates = [_candidate("cpu-only", 0, cpu_only)] + [_candidate(f"imac-fc1-{k}", k, s)
                                                          for k, s in sorted(systems.items())]
    return {
        "model": run.name,
        "checkpoint": run.checkpoint,
        "calibration": CALIBRATION_LABEL if run.calibrated else None,
        "core": core_spec.name,
        "precision": run.precision,
        "fidelity": run.fidelity,
        "subarray": [run.rows, run.cols],
        "driver": driver,
        "readout": readout,
        "cpu_energy_model": energy_model,
        "n_images": run.n_images,
        "fc_layer_sizes": sizes,
        "n_subarrays": full_sim.n_subarrays,
        "energy_cpu_only_j": cpu_only.energy_j,
        "energy_cpu_imac_j": full.energy_j,
        "energy_saving": 1.0 - full.energy_j / cpu_only.energy_j,
        "latency_cpu_only_s": cpu_only.latency_s,
        "latency_cpu_imac_s": full.latency_s,
        "latency_saving": 1.0 - full.latency_s / cpu_only.latency_s,
        "accuracy_cpu_only": run.accuracy_cpu_only,
        "accuracy_cpu_imac": full.accuracy,
        "accuracy_drop_points": 100 * (run.accuracy_cpu_only - (full.accuracy or 0.0)),
        "fc_share_of_cpu_only_energy": _fc_share(cpu_only),
        "imac_energy_j": full.by_part()["imac"]["energy_j"],
        "imac_latency_s": full.by_part()["imac"]["latency_s"],
        "imac_build_time_s": full_sim.build_time_s,
        "breakdown": {"cpu_only": cpu_only.to_dict(), "cpu_imac": full.to_dict()},
        "placements": candidates,
        "placement": choose(candidates, run.accuracy_cpu_only, accuracy_budget_points, objective),
    }


def evaluate(name: str, core: str | CpuCoreSpec | None = None, precision: str = "fp32",
             spec: ImacSpec | None = None, rows: int | None = None, fidelity: str = "circuit",
             driver: str = "sign", readout: str = "adc", interface: dict[str, Any] | InterfaceSpec | None = None,
             limit: int | None = None, checkpoint: str | Path | None = None, calibrated: bool | None = None,
             objective: str = "energy", accuracy_budget_points: float = 1.5, placements: bool = True,
             energy_model: str = "bottom-up", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """CPU-only vs CPU-IMAC for a trained model: accuracy, energy, latency, breakdown, placement
    (:func:`run_system` then :func:`system_result`; options are checked before any simulation).
    ``core`` and ``interface`` default to the design's (``spec.cpu``, ``spec.interface``)."""
    core_spec, iface = _core_and_interface(spec, core, interface)
    _check_interface(driver, readout)
    _check_energy_model(core_spec, energy_model)
    _check_choice(objective, accuracy_budget_points)
    run = run_system(name, precision, spec, rows, fidelity, limit, checkpoint, calibrated, placements,
                     iface.adc_bits, progress)
    return system_result(run, core_spec, driver, readout, iface, objective, accuracy_budget_points, energy_model)


def energy_study(name: str, core: str | CpuCoreSpec | None = None, precision: str = "fp32",
                 spec: ImacSpec | None = None, rows: int | None = None, fidelity: str = "circuit",
                 driver: str = "sign", readout: str = "adc", interface: dict[str, Any] | InterfaceSpec | None = None,
                 sample_tiles: int | None = None, seed: int = 0, energy_model: str = "bottom-up",
                 imac: Any = None, model: Any = None, progress: Callable[[str], None] | None = None
                 ) -> dict[str, Any]:
    """Energy and latency of CPU-only vs CPU-IMAC (all FC layers on IMAC) for a model without a
    trained checkpoint: random binary weights, every tile priced (``sample_tiles=k``: the quick,
    biased estimate of :func:`sampled_head_cost`).  Pass
    ``imac`` (the ``_imac_cost`` of an earlier call with the same head) to reuse it, and
    ``model`` (``build_model(name)``) to skip building it again."""
    from imac.config import ImacSpec as _Spec
    from imac.nn.models import build_model

    spec = spec or _Spec()
    core_spec, iface = _core_and_interface(spec, core, interface)
    check_precision(precision)
    _check_interface(driver, readout)
    _check_energy_model(core_spec, energy_model)
    rows = spec.subarray.rows if rows is None else rows
    model = build_model(name) if model is None else model
    sizes = _fc_sizes(model)
    if imac is None:
        vpus = [float(i["volts_per_unit_sum"]) for i in model.head.layer_info()]
        imac = cached_head_cost(sizes, vpus, spec, rows, spec.subarray.cols, fidelity, sample_tiles, seed,
                                progress)
    segments = partition_counts(sizes[0], sizes[1], rows, spec.subarray.cols)[1]  # first layer's vpar
    cpu_only = cpu_only_cost(model, core_spec, precision, energy_model)
    full = cpu_imac_cost(model, core_spec, precision, imac, len(sizes) - 1, segments, driver, readout, iface,
                         energy_model)
    return {
        "model": name, "core": core_spec.name, "precision": precision, "fidelity": fidelity,
        "weights": f"random +-1 (seed {seed}), " + ("every tile priced" if sample_tiles is None
                                                     else f"{sample_tiles} sampled tile columns per layer"),
        "cpu_energy_model": energy_model, "fc_layer_sizes": sizes,
        "energy_cpu_only_j": cpu_only.energy_j, "energy_cpu_imac_j": full.energy_j,
        "energy_saving": 1.0 - full.energy_j / cpu_only.energy_j,
        "latency_cpu_only_s": cpu_only.latency_s, "latency_cpu_imac_s": full.latency_s,
        "latency_saving": 1.0 - full.latency_s / cpu_only.latency_s,
        "accuracy_cpu_only": None, "accuracy_cpu_imac": None,
        "fc_share_of_cpu_only_energy": _fc_share(cpu_only),
        "imac_energy_j": full.by_part()["imac"]["energy_j"],
        "breakdown": {"cpu_only": cpu_only.to_dict(), "cpu_imac": full.to_dict()},
        "_imac_cost": imac,
    }


def sampled_head_cost(sizes: Sequence[int], volts_per_unit_sum: Sequence[float], spec: ImacSpec, rows: int,
                      cols: int, fidelity: str = "circuit", sample_tiles: int | None = None, seed: int = 0,
                      progress: Callable[[str], None] | None = None) -> Any:
    """IMAC cost of a random binary head ``sizes`` (neuron input per unit raw sum
    ``volts_per_unit_sum`` per layer, V).

    Each layer i (a -> b) is compiled on its own, driven by the preset's line drivers at the
    voltages the full random network's ideal math gives its inputs, and run on 16 random inputs.
    ``sample_tiles=None`` (the default) prices every tile of every layer.  ``sample_tiles=k`` is
    the quick estimate: layer i is solved as a -> b' = min(b, k * cols) neurons and its power
    rows are scaled by b / b'; its latency is then the sample's worst tile, which misses the
    layer's largest amplifier gain, so latency and energy are biased low (~20 % for 2 of 8 tile
    columns); the rows' ``basis`` says so.  The per-layer latencies add up; energy = power x
    total latency, as in :func:`imac.hardware.cost.imac_cost`."""
    from imac.hardware.cost import ImacCost, imac_cost, routing_row
    from imac.hardware.engine import build_head, on_subarrays
    from imac.hardware.mapping import BinaryLayer
    from imac.hardware.network import hardware_curve
    from imac.hardware.simulate import run_batch
    if len(volts_per_unit_sum) != len(sizes) - 1:
        raise ConfigError(f"{len(sizes) - 1} layers need {len(sizes) - 1} volts_per_unit_sum values")
    if sample_tiles is not None and sample_tiles < 1:
        raise ConfigError(f"sample_tiles must be >= 1, got {sample_tiles}")
    say = progress or (lambda m: None)
    rng = np.random.default_rng(seed)
    curve = hardware_curve(spec)
    v_dd = spec.subarray.v_dd
    batch = 16
    x = rng.choice([-1.0, 1.0], size=(batch, sizes[0]))  # binarized features: about half +1
    design = on_subarrays(spec, rows, cols)
    total = ImacCost()
    scaled_rows: list[tuple[CostRow, float]] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = rng.choice([-1.0, 1.0], size=(b, a))
        bias = rng.choice([-1.0, 1.0], size=b)
        vpus = float(volts_per_unit_sum[i])
        b_s = b if sample_tiles is None else min(b, sample_tiles * cols)
        say(f"pricing FC layer {i} ({a} -> {b})" + (f": {b_s} sampled neurons" if b_s < b else "")
            + f" ({fidelity})")
        # a one-off random layer: its reductions stay out of the tile cache
        net = build_head([BinaryLayer(w[:b_s], bias[:b_s], vpus)], design, fidelity,
                         curve=curve, tile_progress=_tile_reporter(say, f"FC layer {i}"), cache_tiles=False).net
        netmap = net.netmap
        cost = imac_cost(net, run_batch(net, x))
        del net, netmap
        for r in cost.rows:
            if r.component != "routing":
                r.component = r.component.replace("layer0", f"layer{i}")
                if b_s < b:
                    r.basis += f" (sampled: {b_s} of {b} neurons, scaled; latency of the sample's worst tile)"
                scaled_rows.append((r, b / b_s))
        total.layer_latency_s.append(cost.latency_s)
        # the next layer's inputs: this layer's ideal outputs over all b neurons, as V_DD fractions
        z = vpus * (x @ w.T + bias)
        x = curve(z) / v_dd
    t_total = float(sum(total.layer_latency_s))
    for r, s in scaled_rows:
        if not r.component.endswith(".drivers"):  # drivers are the layer's input lines: not sampled
            r.count *= s
        r.power_w *= s
        r.area_m2 *= s
        r.energy_j = r.power_w * t_total
        total.rows.append(r)
    total.rows.append(routing_row(spec.cost.routing_overhead * total.area_m2))
    return total


STUDY_CACHE_VERSION = "imac-head-cost-1"


def cached_head_cost(sizes: Sequence[int], volts_per_unit_sum: Sequence[float], spec: ImacSpec, rows: int,
                     cols: int, fidelity: str = "circuit", sample_tiles: int | None = None, seed: int = 0,
                     progress: Callable[[str], None] | None = None) -> Any:
    """:func:`sampled_head_cost`, kept on disk (``<cache>/studies/<key>.json``, the tile cache's
    folder) under a hash of everything it depends on: its arguments, the whole spec, the neuron
    curve and the source of the modules that compute it, so a repeated study (the three full-width
    VGGs of every `imac reproduce`) skips the ~19,000 tiles and a changed model never reads a
    stale cost.  ``IMAC_CACHE_DIR=off``: computed every time."""
    import hashlib
    import json
    import sys

    from imac.hardware.cost import ImacCost
    from imac.hardware.network import hardware_curve
    from imac.hardware.tiles import cache_dir

    say = progress or (lambda m: None)
    folder = cache_dir()
    if folder is None:
        return sampled_head_cost(sizes, volts_per_unit_sum, spec, rows, cols, fidelity, sample_tiles, seed, progress)
    from imac.circuit import netlist, wires
    from imac.hardware import cost, mapping, simulate, tiles

    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps([STUDY_CACHE_VERSION, list(map(int, sizes)), list(map(float, volts_per_unit_sum)), rows,
                         cols, fidelity, sample_tiles, seed]).encode())
    h.update(spec.model_dump_json().encode())
    h.update(repr(hardware_curve(spec)).encode())
    for mod in (cost, mapping, simulate, tiles, netlist, wires, sys.modules[__name__]):
        h.update(Path(str(mod.__file__)).read_bytes())
    path = folder / "studies" / f"{h.hexdigest()}.json"
    try:
        data = json.loads(path.read_text())
        say(f"IMAC cost of the random {'-'.join(map(str, sizes))} head from the cache ({path.name})")
        return ImacCost([CostRow(**r) for r in data["rows"]], data["layer_latency_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = sampled_head_cost(sizes, volts_per_unit_sum, spec, rows, cols, fidelity, sample_tiles, seed, progress)
    try:
        from imac.io import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"rows": result.table(), "layer_latency_s": result.layer_latency_s}))
    except OSError:  # a read-only or full cache folder only costs time
        pass
    return result


def _tile_reporter(say: Callable[[str], None], name: str | None = None, every_s: float = 5.0
                   ) -> Callable[[int, int, int], None]:
    """A tile_progress callback for compile_network that reports at most every ``every_s``
    (``name``: what to call the layer instead of "layer <index>")."""
    import time

    last = [time.perf_counter()]

    def report(layer: int, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= every_s:
            last[0] = now
            say(f"{name or f'layer {layer}'}: {done}/{total} tiles solved")

    return report


# -- small helpers -----------------------------------------------------------------------------
def _name(model: Any) -> str:
    return type(model).__name__


def _fc_sizes(model: Any) -> list[int]:
    head = getattr(model, "head", None)
    if head is None or not hasattr(model, "fc_layer_sizes"):
        raise ConfigError(f"model {_name(model)} has no binary FC layers: nothing to put on IMAC")
    sizes = list(model.fc_layer_sizes())
    if len(sizes) < 2:
        raise ConfigError(f"model {_name(model)} has no binary FC layers: nothing to put on IMAC")
    return sizes


def _check_choice(objective: str, budget_points: float) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if not (math.isfinite(budget_points) and budget_points >= 0):
        raise ConfigError(f"the accuracy budget must be >= 0 points, got {budget_points}")


def _check_interface(driver: str, readout: str) -> None:
    if driver not in DRIVERS:
        raise ConfigError(f"unknown driver {driver!r}; known: {', '.join(DRIVERS)}")
    if readout not in READOUTS:
        raise ConfigError(f"unknown readout {readout!r}; known: {', '.join(READOUTS)}")


def _fc_share(cost: SystemCost) -> float:
    fc = sum(r["energy_j"] for r in cost.rows if r["group"] == "cpu fc")
    return fc / cost.energy_j


def _candidate(label: str, k: int, s: SystemCost) -> dict[str, Any]:
    return {"placement": label, "imac_fc_layers": k, "accuracy": s.accuracy, "energy_j": s.energy_j,
            "latency_s": s.latency_s, "edp_js": s.energy_j * s.latency_s}
