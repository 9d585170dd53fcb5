"""The same network as a mixed-signal design and as a digital one, next to IMAC.

* **Mixed-signal** (the analog crossbar with converters): the same tiles and amplifiers, but
  every tile output is digitized by an ADC; partial sums are added and the sigmoid applied in
  digital logic, and DACs drive the next layer's input lines.  Arrays are powered only during
  their own layer's read.  Accuracy: the tiles' behavioural outputs quantized by the ADC over a
  range set on the batch (+-4 sigma of the tile outputs), then an exact digital neuron.
* **Digital CPU**: the FC layers in fp32 on the design's mobile core (``spec.cpu``), priced by the
  one CPU model of :mod:`imac.system.cpu` (MACs, element-wise sigmoids, instructions, memory,
  static power).
* **Digital GPU**: a mobile GPU, whose latency for such small layers is the kernel launches.

Every parameter lives in :class:`imac.config.BaselineSpec` (or, for the CPU, the core spec) with
its source.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imac.costs import CostRow, CostTable
from imac.hardware.cost import ImacCost, imac_cost, opamp_quiescent_power
from imac.hardware.fidelity import Fidelity
from imac.hardware.simulate import CompiledNetwork, compile_network, run_batch
from imac.system.converters import quantize


def mixed_signal(net: CompiledNetwork, x: np.ndarray, labels: np.ndarray | None,
                 imac: ImacCost) -> dict[str, Any]:
    """Latency, energy, power, area and accuracy of the mixed-signal version of ``net``'s mapping:
    an ADC per tile output, digital partial sums and sigmoid, DACs (``dac_bits``) rebuilding the
    next layer's inputs; area = the arrays and amplifiers + the ADCs."""
    spec = net.netmap.spec
    b = spec.baselines
    v_dd = spec.subarray.v_dd
    beh = net if net.fidelity == Fidelity.BEHAVIORAL else compile_network(net.netmap, net.curve, Fidelity.BEHAVIORAL)
    e_adc = b.adc_fom_j_per_step * 2**b.adc_bits
    rows, latency, energy, area = [], 0.0, 0.0, 0.0
    v_in = x * v_dd
    for li, (lm, cl) in enumerate(zip(beh.netmap.layers, beh.layers, strict=True)):
        n_in = lm.layer.fan_in
        v_full = np.hstack([v_in, np.full((len(v_in), 1), v_dd)])
        partials = []
        for tile, s in zip(lm.tiles, cl.solved, strict=True):
            k = np.append(tile.input_idx, n_in) if tile.has_bias else tile.input_idx
            partials.append((tile, v_full[:, k] @ s.A_full.T))
        fs = 4.0 * float(np.std(np.concatenate([p.ravel() for _, p in partials]))) or 1.0
        z = np.zeros((len(v_in), lm.layer.fan_out))
        for tile, p in partials:
            z[:, tile.output_idx] += quantize(p, -fs, fs, b.adc_bits)
        y = net.curve(z)
        # DACs rebuild the neuron outputs on the next layer's lines, at their resolution
        v_in = quantize(y, 0.0, v_dd, b.dac_bits)
        n_conv = sum(t.shape[1] for t in lm.tiles)
        n_add = n_conv - lm.layer.fan_out
        imac_rows = {r.component.split(".")[1]: r for r in imac.rows if r.component.startswith(f"layer{li}.")}
        t_read = imac_rows["arrays"].latency_s + imac_rows["amplifiers"].latency_s
        t_dac = b.dac_settle_s if li > 0 else 0.0
        t_digital = 2 * b.digital_cycle_s  # accumulate + LUT
        t_layer = t_dac + t_read + b.adc_conversion_s + t_digital
        p_analog = imac_rows["arrays"].power_w + imac_rows["drivers"].power_w + imac_rows["amplifiers"].power_w
        parts = {
            "dacs": (n_in if li > 0 else 0) * b.dac_energy_j,
            "arrays_and_amplifiers": p_analog * (t_read + b.adc_conversion_s),
            "adcs": n_conv * e_adc,
            "accumulate": n_add * b.digital_add_j,
            "sigmoid": lm.layer.fan_out * b.sigmoid_lut_j,
        }
        for comp, e in parts.items():
            rows.append(CostRow(f"layer{li}.{comp}", "read", energy_j=e, part="mixed-signal", group=comp))
        energy += sum(parts.values())
        # the same arrays and amplifiers, an ADC per tile output instead of the analog neurons
        area += imac_rows["arrays"].area_m2 + imac_rows["amplifiers"].area_m2 + n_conv * b.adc_area_m2
        latency += t_layer
    pred = np.argmin(y, axis=1)
    return {
        "design": "mixed-signal",
        "latency_s": latency,
        "energy_per_inference_j": energy,
        "power_w": energy / latency,
        "area_m2": area,
        "accuracy": None if labels is None else float(np.mean(pred == labels)),
        "breakdown": CostTable(rows).table(),
    }


def digital(net: CompiledNetwork, labels: np.ndarray | None, acc_software: float | None) -> list[dict[str, Any]]:
    """CPU and GPU versions of the same network (accuracy = the software binary network).

    The CPU runs the FC layers and their sigmoids in fp32 on the design's core (``spec.cpu``),
    priced by the one CPU model (:mod:`imac.system.cpu`); the GPU's latency is its kernel launches.
    """
    from imac.system.cpu import estimate, mlp_workload

    spec = net.netmap.spec
    b = spec.baselines
    layers = [lm.layer for lm in net.netmap.layers]
    sizes = [layers[0].fan_in, *(lay.fan_out for lay in layers)]
    cpu = estimate(spec.cpu, mlp_workload(sizes, activation="Sigmoid", name="imac head"), "fp32")
    macs = cpu.macs
    gpu_t = len(layers) * b.gpu_kernel_launch_s
    gpu_e = b.gpu_power_w * gpu_t
    return [
        {"design": "digital-cpu", "latency_s": cpu.latency_s, "energy_per_inference_j": cpu.energy_j,
         "power_w": cpu.energy_j / cpu.latency_s, "accuracy": acc_software, "macs": macs, "core": spec.cpu.name,
         "breakdown": CostTable([CostRow("cpu", c.removeprefix("energy_").removesuffix("_j"), energy_j=e,
                                         part="digital-cpu", basis=f"CPU model on {spec.cpu.name}")
                                 for c, e in cpu.component_totals().items()]).table()},
        {"design": "digital-gpu", "latency_s": gpu_t, "energy_per_inference_j": gpu_e, "power_w": b.gpu_power_w,
         "accuracy": acc_software, "macs": macs,
         "breakdown": CostTable([CostRow("gpu", "kernel launches", len(layers), energy_j=gpu_e, latency_s=gpu_t,
                                         power_w=b.gpu_power_w, part="digital-gpu",
                                         basis="BaselineSpec gpu_kernel_launch_s, gpu_power_w")]).table()},
    ]


def compare(net: CompiledNetwork, x: np.ndarray, labels: np.ndarray, acc_software: float) -> dict[str, Any]:
    """IMAC (``net``, circuit or behavioural fidelity) vs mixed-signal and digital designs."""
    outs = run_batch(net, x)
    cost = imac_cost(net, outs)
    acc = float(np.mean(np.argmin(outs[-1]["y"], axis=1) == labels))
    imac_row = {
        "design": f"imac ({net.fidelity})",
        "latency_s": cost.latency_s,
        "energy_per_inference_j": cost.energy_j,
        "power_w": cost.power_w,
        "area_m2": cost.area_m2,
        "accuracy": acc,
        "breakdown": cost.table(),
    }
    designs = [imac_row, mixed_signal(net, x, labels, cost), *digital(net, labels, acc_software)]
    ratios = {}
    for d in designs[1:]:
        ratios[d["design"]] = {
            "imac_speedup": d["latency_s"] / cost.latency_s,
            "imac_energy_advantage": d["energy_per_inference_j"] / cost.energy_j,
        }
    return {
        "designs": designs,
        "imac_vs": ratios,
        "published_claims": {"vs mixed-signal": ">= 100x faster", "vs GPU": ">= 10,000x faster",
                             "SOT neuron paper, analog vs mixed-signal": "1.1x power, 12x latency, 13.3x energy"},
        "opamp_power_w": opamp_quiescent_power(net.netmap.spec),
        "note": "IMAC is static: its energy is its power over the whole inference; the mixed-signal "
                "arrays are powered only during their own layer.",
    }


def compare_model(name: str, spec: Any, fidelity: str = "circuit", checkpoint: Any = None,
                  calibrated: bool | None = None, limit: int | None = None, progress: Any = None) -> dict[str, Any]:
    """:func:`compare` for a trained model's head (on the spec's subarrays) on its test set (the
    first ``limit`` images): IMAC at ``fidelity`` (behavioral or circuit), the software binary-head
    accuracy beside it."""
    from imac.errors import ConfigError
    from imac.hardware.engine import Fidelity, build_head
    from imac.hardware.network import CALIBRATION_LABEL
    from imac.nn.data import load_dataset

    if Fidelity.parse(fidelity) not in (Fidelity.BEHAVIORAL, Fidelity.CIRCUIT):
        raise ConfigError(f"compare runs IMAC at behavioral or circuit fidelity, not {fidelity!r}")
    say = progress or (lambda msg: None)
    say(f"compiling {name}'s head ({fidelity})")
    head = build_head(name, spec, fidelity, checkpoint=checkpoint, calibrated=calibrated, progress=say)
    test = load_dataset(head.model.dataset, "test").subset(limit)
    say("computing the CPU features")
    x = head.inputs(test.images)
    acc_sw = head.software_accuracy(test.images, test.labels)
    return compare(head.net, x, test.labels, acc_sw) | {
        "model": name, "n_images": len(test), "accuracy_software": acc_sw,
        "checkpoint": head.checkpoint.name if head.checkpoint else None,
        "calibration": CALIBRATION_LABEL if head.calibrated else None}
