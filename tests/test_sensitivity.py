"""Every parameter acts (issue 10): each numeric leaf of the spec tree, perturbed, moves at least
one output of a small pipeline, or is listed in EXEMPT with the reason it cannot here.

The pipeline: the MLP and LeNet heads at behavioral and circuit fidelity on a few hundred test
images (their outputs and their cost), a random subarray of the spec's own gain (the circuit
benchmark's), CPU-only vs CPU-IMAC energy of LeNet for both precisions, CPU energy models,
drivers and read-outs (the design's core and interface), and the MLP against its mixed-signal
and digital baselines.  Stages run cheapest first and stop at the first output that moved, so
the whole sweep stays within a couple of minutes.  A field added later without an effect, or a
None-valued field without a probe value, makes this test fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from imac.config import ImacSpec, parse_spec, with_overrides
from imac.errors import ConfigError

# fields that cannot move an output of this pipeline, each with where it acts instead
EXEMPT = {
    "neuron.v_dd": "the one V_DD (v_dd at the top) sets it; perturbed there",
    "subarray.v_dd": "the one V_DD (v_dd at the top) sets it; perturbed there",
    "interface.v_dd": "the one V_DD (v_dd at the top) sets it; perturbed there",
    "amplifier.spice_open_loop_gain": "read only by the spice fidelity (netlists); tests/test_spice_net.py and "
    "the ngspice reference tests of the solver use it",
}
# the value to try where x1.1 (+1 for integers) is not a valid one, or the leaf is None at the base
# point (None means "derived" or "off")
PROBES = {
    "cpu.int8_accumulator_bits": 16,
    "cpu.simd_width_bits": 256,
    "interface.buffer_bytes": 65536,  # below 8 KiB the SRAM energy per byte is flat (Horowitz's first point)
    "subarray.cols": 48,  # columns are split evenly: 32 -> 33 keeps every tile (e.g. 120 = 4 x 30)
    "mtj.tmr_half_bias_v": 1.0,
    "neuron.mtj.tmr_half_bias_v": 1.0,
    "wires.grain_size_m": 30e-9,
    "wires.r_vertical_ohm": 20.0,
    "wires.r_horizontal_ohm": 20.0,
    "neuron.model_card": None,  # a path: not numeric
}
# the base point: variation, faults and a driver resistance on, so that their fields can act
# and the amplifier's gain limit within the range the heads derive (30-140 for LeNet), so it binds
BASE = {"variation": {"kind": "gaussian", "amount": 0.05, "stuck_p_rate": 0.01, "stuck_ap_rate": 0.01, "seed": 0},
        "subarray": {"driver_resistance_ohm": 50.0}, "amplifier": {"max_gain": 60.0},
        "cpu": {"preset": "cortex-a76", "layer_overhead_s": 1e-7}}
N_IMAGES = 200
PAIRED = {"synapse.r_low_ohm": "synapse.r_high_ohm", "synapse.r_high_ohm": "synapse.r_low_ohm"}


def numeric_leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted paths and values of every number (or None) in a dumped spec, lists by index."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for k, v in items:
        path = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            yield from numeric_leaves(v, path + ".")
        elif v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            yield path, v


def perturbed(path: str, value: Any) -> Any:
    if path in PROBES:
        return PROBES[path]
    if value is None:
        raise AssertionError(f"{path} is None at the base point: add a probe value to PROBES")
    if isinstance(value, int):
        return value + 1
    return value * 1.1 if value != 0 else 0.01


def _override(spec: ImacSpec, path: str, value: Any) -> ImacSpec:
    """``spec`` with one leaf replaced; list items (cpu caches) by rewriting the list."""
    parts = path.split(".")
    if any(p.isdigit() for p in parts):
        i = next(k for k, p in enumerate(parts) if p.isdigit())
        top = ".".join(parts[:i])
        if i != 2:
            raise AssertionError(f"cannot perturb {path}")
        # the items as given: a derived value (a cache's energy) is derived again from the change
        items = [{k: v for k, v in c.items() if f"{top}.{n}.{k}" not in spec.derived}
                 for n, c in enumerate(spec.model_dump(mode="json")[parts[0]][parts[1]])]
        items[int(parts[i])][".".join(parts[i + 1:])] = value
        return with_overrides(spec, {top: items})
    partner = PAIRED.get(path)  # fields given together or not at all: the other keeps its value
    extra = {partner: spec.model_dump()[partner.split(".")[0]][partner.split(".")[1]]} if partner else {}
    return with_overrides(spec, {path: value, **extra})


class Pipeline:
    """The small pipeline, one stage at a time; each stage a dict of named output arrays."""

    def __init__(self) -> None:
        from imac.hardware.network import load_model, operating_point_inputs
        from imac.nn.data import load_dataset
        from imac.nn.models import build_model

        self.models = {name: load_model(name)[0] for name in ("mlp-mnist", "lenet-mnist")}
        # CPU-only workloads whose working sets reach the L3 and DRAM (no data needed)
        self.cpu_models = {"vgg11-cifar10": load_model("vgg11-cifar10")[0],
                           "vgg16-full-cifar10": build_model("vgg16-full-cifar10")}
        test = load_dataset("mnist", "test").subset(N_IMAGES)
        from imac.hardware.network import imac_inputs

        self.x = {n: imac_inputs(m, test.images) for n, m in self.models.items()}
        self.x_op = {n: operating_point_inputs(m, 64) for n, m in self.models.items()}
        self.labels = test.labels
        self.imac: Any = None

    def _head(self, spec: ImacSpec, name: str, fidelity: str) -> dict[str, np.ndarray]:
        from imac.hardware.engine import build_head

        head = build_head(self.models[name], spec, fidelity, x_op=self.x_op[name])
        outs = head.run(self.x[name])
        cost = head.cost(outs)
        return {f"{name}.{fidelity}.{k}": np.asarray(v) for k, v in {
            "z": outs[-1]["z"], "y": outs[-1]["y"], "z0": outs[0]["z"], "energy": cost.energy_j,
            "latency": cost.latency_s, "area": cost.area_m2, "power": cost.power_w}.items()}

    def subarray(self, spec: ImacSpec) -> dict[str, np.ndarray]:
        from imac.circuit.solve import solve_subarray
        from imac.experiments.bench_xbar import random_subarray

        sub, _ = random_subarray(16, 16, spec, seed=0)
        u = np.random.default_rng(1).choice([-spec.v_dd, spec.v_dd], size=(8, 15))
        return {"subarray.out": solve_subarray(sub).outputs(u, spec.v_dd)}

    def system(self, spec: ImacSpec) -> dict[str, np.ndarray]:
        """CPU-only vs CPU-IMAC LeNet energy and latency with a fixed IMAC cost (the first
        spec's behavioral head; the IMAC part is the later stages'): the core's and the
        interface's fields."""
        from imac.hardware.engine import build_head
        from imac.hardware.mapping import partition_counts
        from imac.system.cpu_imac import cpu_imac_cost, cpu_only_cost

        model = self.models["lenet-mnist"]
        if self.imac is None:
            self.imac = build_head(model, spec, "behavioral").cost()
        imac = self.imac
        sizes = list(model.fc_layer_sizes())
        segments = partition_counts(sizes[0], sizes[1], spec.subarray.rows, spec.subarray.cols)[1]
        out = {}
        for precision in ("fp32", "int8"):
            for energy_model in ("bottom-up", "top-down"):
                c = cpu_only_cost(model, spec.cpu, precision, energy_model)
                out[f"cpu-only.{precision}.{energy_model}"] = np.array([c.energy_j, c.latency_s])
                for driver in ("sign", "dac"):
                    for readout in ("adc", "comparator"):
                        s = cpu_imac_cost(model, spec.cpu, precision, imac, len(sizes) - 1, segments, driver,
                                          readout, spec.interface, energy_model)
                        out[f"cpu-imac.{precision}.{energy_model}.{driver}.{readout}"] = np.array(
                            [s.energy_j, s.latency_s])
                for name, m in self.cpu_models.items():
                    c = cpu_only_cost(m, spec.cpu, precision, energy_model)
                    out[f"{name}.cpu-only.{precision}.{energy_model}"] = np.array([c.energy_j, c.latency_s])
        return out

    def baselines(self, spec: ImacSpec) -> dict[str, np.ndarray]:
        from imac.hardware.engine import build_head
        from imac.system.baselines import compare

        head = build_head(self.models["mlp-mnist"], spec, "behavioral")
        res = compare(head.net, self.x["mlp-mnist"], self.labels, 0.9)
        return {f"compare.{d['design']}": np.array([d["latency_s"], d["energy_per_inference_j"],
                                                     d.get("area_m2", 0.0), d["accuracy"] or 0.0])
                for d in res["designs"]}

    def stages(self) -> list[Callable[[ImacSpec], dict[str, np.ndarray]]]:
        return [self.system, self.subarray, self.baselines,
                lambda s: self._head(s, "mlp-mnist", "behavioral"),
                lambda s: self._head(s, "mlp-mnist", "circuit"),
                lambda s: self._head(s, "lenet-mnist", "behavioral"),
                lambda s: self._head(s, "lenet-mnist", "circuit")]


@pytest.fixture(scope="module")
def pipeline(mnist_available: bool) -> Pipeline:
    return Pipeline()


@pytest.mark.slow
@pytest.mark.spice
def test_every_numeric_field_moves_an_output(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))  # neuron curves made here
    base = parse_spec(BASE)
    stages = pipeline.stages()
    reference: list[dict[str, np.ndarray] | None] = [None] * len(stages)
    idle, checked = [], 0
    for path, value in numeric_leaves(base.model_dump(mode="json")):
        new = perturbed(path, value)
        if new is None or path in EXEMPT:
            continue
        try:
            spec = _override(base, path, new)
        except ConfigError as err:
            raise AssertionError(f"{path}: the probe value {new!r} is refused ({err}); pick another") from None
        checked += 1
        for k, stage in enumerate(stages):
            if reference[k] is None:
                reference[k] = stage(base)
            out = stage(spec)
            if any(not np.array_equal(out[n], reference[k][n]) for n in reference[k]):  # type: ignore[index]
                break
        else:
            idle.append(path)
    assert checked > 100
    assert not idle, f"these fields move no output: make them act or list them in EXEMPT with why: {idle}"


def test_exempt_and_probes_name_real_fields() -> None:
    leaves = dict(numeric_leaves(parse_spec(BASE).model_dump(mode="json")))
    for path in [*EXEMPT, *PROBES]:
        assert path in leaves, f"{path} is not a numeric leaf of the spec (stale entry)"
