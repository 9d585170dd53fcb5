"""IMAC cost per inference: power, latency, energy and area, in the Accelergy shape.

Each component (synapse arrays, line drivers, amplifiers, neurons) has named actions with a
count, an energy and a latency; the rows of :meth:`ImacCost.table` sum to the totals.

* Arrays: the power the line drivers deliver into each tile, u^T Y u (Y = the tile's input
  admittance from the solve, so wires, devices and amplifier input resistors are all in it),
  averaged over the batch; plus the loss in each driver's own output resistance.
* Amplifiers: OTA quiescent power from the gm/I_D sizing in :class:`imac.config.CostSpec`.
* Neurons: the characterized static supply current at each neuron's input voltage.
* Latency per layer: array settling (Elmore delay of the worst input line and summing line,
  times the settling factor) + amplifier closed-loop settling + the neuron's SPICE delay;
  layers run in sequence.  IMAC is static (no clock), so energy = power x latency.
* Area: two synapse cells per weight at the wire spec's cell pitch, neurons, amplifiers, plus
  the routing overhead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imac.costs import CostRow, CostTable
from imac.hardware.fidelity import Fidelity
from imac.hardware.simulate import CompiledNetwork, compile_network


@dataclass
class ImacCost(CostTable):
    """IMAC's rows (:class:`imac.costs.CostRow`, part ``imac``) and each layer's latency; the
    inference latency, energy, power and area are the sums of the rows."""

    layer_latency_s: list[float] = field(default_factory=list)


def opamp_quiescent_power(spec: Any) -> float:
    """OTA power, W: two branches of I_D = 2 pi GBW C_L / (g_m/I_D) from V_DD."""
    c = spec.cost
    i_d = 2 * math.pi * c.opamp_gbw_hz * c.opamp_c_load_f / c.opamp_gm_over_id
    return 2 * i_d * spec.subarray.v_dd


def settle_time_constants(bits: int) -> float:
    """Time constants a first-order node needs to settle within 2^-(bits+1) of its step: the one
    settling rule of the cost models (arrays, amplifiers, interface lines)."""
    return (bits + 1) * math.log(2)


def settle_tolerance(bits: int) -> float:
    """The settling error that rule allows, as a fraction of the step: 2^-(bits+1)."""
    return 2.0 ** -(bits + 1)


def settle_factor(spec: Any) -> float:
    """Time constants to settle to the design's criterion (``cost.settle_bits``)."""
    return settle_time_constants(spec.cost.settle_bits)


def imac_cost(net: CompiledNetwork, outputs: list[dict[str, np.ndarray]] | None = None) -> ImacCost:
    """Cost of one inference of ``net``, averaged over the batch in ``outputs`` (run_batch)."""
    if net.fidelity not in (Fidelity.BEHAVIORAL, Fidelity.CIRCUIT):
        # the ideal math has no circuit: price the same mapping with real devices
        net = compile_network(net.netmap, net.curve, "behavioral")
        outputs = None
    spec = net.netmap.spec
    v_dd = spec.subarray.v_dd
    k_settle = settle_factor(spec)
    curve = net.curve
    cost = ImacCost()
    p_amp = opamp_quiescent_power(spec)
    cell_area = spec.wires.cell_width_m * spec.wires.cell_height_m
    total_latency = 0.0
    for lm, cl in zip(net.netmap.layers, net.layers, strict=True):
        fan_in = lm.layer.fan_in
        if outputs is not None:
            v_oc = outputs[lm.index]["v_in"]
            z = outputs[lm.index]["z"]
        else:  # mid-scale stand-in: every input at V_DD/2, neurons at their centre
            v_oc = np.full((1, fan_in), 0.5 * v_dd)
            z = np.zeros((1, lm.layer.fan_out))
        v_full = np.hstack([v_oc, np.full((len(v_oc), 1), v_dd)])
        d = v_full if cl.D is None else v_full @ cl.D.T
        p_arr = 0.0
        for tile, s in zip(lm.tiles, cl.solved, strict=True):
            k = np.append(tile.input_idx, fan_in) if tile.has_bias else tile.input_idx
            u = d[:, k]
            p_arr += float(np.mean(np.einsum("bi,ij,bj->b", u, s.input_admittance(), u)))
        r_src = cl.r_source
        p_drv = 0.0
        if cl.D is not None:
            p_drv = float(np.mean(np.sum((v_full - d) ** 2 / r_src[None, :], axis=1)))
        n_amp = sum(t.shape[1] for t in lm.tiles)
        n_neuron = lm.layer.fan_out
        p_neuron = float(np.mean(np.sum(v_dd * curve.supply_current(z), axis=1)))
        # latency: worst tile's array settling, its amplifiers, then the neuron
        t_arr, t_amp = 0.0, 0.0
        for s in cl.solved:
            sub = s.sub
            n, m = sub.rows, sub.cols
            r_drv = float(np.max(r_src))
            # Elmore time constants.  An input line is held by its driver in parallel with the
            # devices it feeds (their far ends sit at the nearly fixed summing-line voltages);
            # a summing line is held by all the devices on it in parallel.  Then each line's
            # own distributed RC.
            g_in_line = float(np.min(np.sum(sub.g_plus + sub.g_minus, axis=1)))
            r_in_hold = 1.0 / (g_in_line + (1.0 / r_drv if r_drv > 0 else np.inf))
            tau_in = r_in_hold * m * sub.c_vertical + sub.r_vertical * sub.c_vertical * m * (m + 1) / 2
            g_sum_line = float(np.min(np.minimum(np.sum(sub.g_plus, axis=0), np.sum(sub.g_minus, axis=0))))
            tau_sum = n * sub.c_horizontal / g_sum_line + sub.r_horizontal * sub.c_horizontal * n * (n + 1) / 2
            t_arr = max(t_arr, k_settle * (tau_in + tau_sum))
            f_cl = spec.cost.opamp_gbw_hz / (1.0 + float(np.max(sub.amp_gain)))
            t_amp = max(t_amp, k_settle / (2 * math.pi * f_cl))
        t_neu = float(curve.delay_s) if math.isfinite(curve.delay_s) else 0.0
        t_layer = t_arr + t_amp + t_neu
        cost.layer_latency_s.append(t_layer)
        total_latency += t_layer
        name = f"layer{lm.index}"
        n_dev = int(sum(2 * t.weights.size for t in lm.tiles))
        cost.rows += [
            _row(f"{name}.arrays", "read", n_dev, p_arr, t_arr, n_dev * cell_area,
                 "u^T Y u from the solved tiles (devices, wires, amplifier inputs)"),
            _row(f"{name}.drivers", "drive", fan_in + 1, p_drv, 0.0, 0.0, "loss in the drivers' output resistance"),
            _row(f"{name}.amplifiers", "amplify", n_amp, n_amp * p_amp, t_amp, n_amp * spec.cost.opamp_area_m2,
                 "gm/ID OTA model (CostSpec)"),
            _row(f"{name}.neurons", "activate", n_neuron, p_neuron, t_neu, n_neuron * spec.cost.neuron_area_m2,
                 "ngspice static current and delay"),
        ]
    for r in cost.rows:  # static read: every component draws power for the whole inference
        r.energy_j = r.power_w * total_latency
    routing = spec.cost.routing_overhead * cost.area_m2
    cost.rows.append(routing_row(routing))
    return cost


def _row(component: str, action: str, count: float, power_w: float, latency_s: float, area_m2: float,
         basis: str) -> CostRow:
    """A static IMAC component: it draws ``power_w`` for the whole inference (energy set later)."""
    return CostRow(component, action, count, latency_s=latency_s, area_m2=area_m2, power_w=power_w, part="imac",
                   group="imac " + component.split(".")[-1], basis=basis)


def routing_row(area_m2: float) -> CostRow:
    """The routing and periphery overhead: area only."""
    return CostRow("routing", "-", 1, area_m2=area_m2, part="imac", group="imac routing",
                   basis="routing overhead fraction (CostSpec)")
