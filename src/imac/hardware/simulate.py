"""Run a mapped network at one of four fidelities, batched over a whole test set.

* ``ideal``: the binary network's math with the fitted neuron curve (what training computed);
* ``behavioral``: real device conductances (with variation/faults) and the fitted neuron; the
  arrays are solved without wires and neurons drive their next layer as ideal sources;
* ``circuit``: wire parasitics, amplifier loading, drivers and each neuron's Thevenin output
  resistance loading the next layer's input lines.  The whole layer (all its tiles and their
  shared drivers) is reduced to one affine map ``z = T v_oc + z0`` (see :func:`compile_layer`),
  so a batch costs one dense product per layer;
* ``spice``: the whole network as one ngspice netlist (see :mod:`imac.hardware.spice_net`).

Inputs: the first layer takes x in {-1, +1} (driven at +-V_DD); each later layer takes the
previous neurons' outputs.  Read-out: the class with the LOWEST last-layer neuron output (the
neuron is a falling sigmoid; same convention as :mod:`imac.nn.models`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from imac.circuit.netlist import Subarray
from imac.circuit.solve import SolvedSubarray, solve_subarray
from imac.circuit.wires import cell_parasitics
from imac.devices.neuron_curve import NeuronCurve
from imac.errors import ConfigError, ShapeError
from imac.hardware.mapping import LayerMap, NetworkMap, Tile

Fidelity = Literal["ideal", "behavioral", "circuit", "spice"]
FIDELITIES: tuple[str, ...] = ("ideal", "behavioral", "circuit", "spice")
GAIN_ITERATIONS = 8
GAIN_TOLERANCE = 1e-6  # relative, on every tile column and neuron
GAIN_MIN = 1e-6


def check_fidelity(fidelity: str) -> str:
    if fidelity not in FIDELITIES:
        raise ConfigError(f"unknown fidelity {fidelity!r}; choose one of {', '.join(FIDELITIES)}")
    return fidelity


@dataclass
class CompiledLayer:
    """A layer reduced to z = T @ v_oc + z0 (V), plus what the cost model needs."""

    T: np.ndarray  # (fan_out, fan_in) V/V
    z0: np.ndarray  # (fan_out,) V, from the bias line
    D: np.ndarray | None  # (fan_in+1, fan_in+1) driver-node per source voltage; None = identity
    solved: list[SolvedSubarray]
    r_source: np.ndarray  # (fan_in + 1,) ohm, the bias driver last
    gain_shortfall: float = 0.0  # max |realised / trained scale - 1| over the neurons
    # per-driver source voltage as a function of the previous neuron's z: (z grid, (n, grid))
    source_table: tuple[np.ndarray, np.ndarray] | None = None
    A_drv: np.ndarray | None = None  # (fan_out, fan_in + 1) neuron inputs per driver-node voltage
    Y: np.ndarray | None = None  # summed input admittance of the layer's lines (S)
    W_chord: np.ndarray | None = None  # (diag(G) + Y)^-1 of the nonlinear driver solve
    g_chord: np.ndarray | None = None


@dataclass
class CompiledNetwork:
    netmap: NetworkMap
    curve: NeuronCurve
    fidelity: str
    layers: list[CompiledLayer]
    build_time_s: float
    info: dict[str, Any] = field(default_factory=dict)


def _tile_subarray(tile: Tile, netmap: NetworkMap, wires: bool) -> Subarray:
    spec = netmap.spec
    par = cell_parasitics(spec.wires)
    return Subarray(
        tile.g_plus,
        tile.g_minus,
        r_vertical=par.r_vertical if wires else 0.0,
        r_horizontal=par.r_horizontal if wires else 0.0,
        r_driver=0.0,  # drivers are joined at the layer level (shared by vertical partitions)
        amp_gain=tile.gain,
        amp_r_in=spec.amplifier.r_in_ohm,
        amp_topology=spec.amplifier.topology,
        has_bias=tile.has_bias,
        c_vertical=par.c_vertical if wires else 0.0,
        c_horizontal=par.c_horizontal if wires else 0.0,
    )


def _tile_lines(tile: Tile, fan_in: int) -> np.ndarray:
    """Layer-level driver index of each tile row: the inputs, then the bias line (= fan_in)."""
    return np.append(tile.input_idx, fan_in) if tile.has_bias else tile.input_idx


def _compose(lm: LayerMap, solved: list[SolvedSubarray], r_source: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Join the tiles of one layer through their shared drivers (module doc, ``circuit``).

    Drivers: one per input plus one for the bias line (index fan_in), each an open-circuit
    source behind ``r_source``; a driver feeds the same line in every vertical partition.  KCL at
    the driver nodes d: (v_oc - d)/R = sum over tiles of I_t = Y_t d_t, so d = D v_oc with
    D = (diag(1/R) + sum_t Y_t)^-1 diag(1/R); then z = sum_t A_t d_t = T v_oc.
    Returns T (fan_out, fan_in + 1), D (None when every driver is ideal: D = I), A_drv (z per
    driver-node voltage) and the summed line admittance sum_t Y_t (None for ideal drivers).
    """
    n_in, n_out = lm.layer.fan_in, lm.layer.fan_out
    A_drv = np.zeros((n_out, n_in + 1))  # neuron inputs per driver-node voltage
    for tile, s in zip(lm.tiles, solved, strict=True):
        A_drv[np.ix_(tile.output_idx, _tile_lines(tile, n_in))] += s.A_full
    if np.all(r_source == 0):
        return A_drv, None, A_drv, None
    if np.any(r_source <= 0):
        raise ConfigError("driver resistances must be all zero or all positive within a layer")
    M = np.diag(1.0 / r_source)
    for tile, s in zip(lm.tiles, solved, strict=True):
        k = _tile_lines(tile, n_in)
        M[np.ix_(k, k)] += s.input_admittance()
    W = np.linalg.inv(M)
    D = W / r_source[None, :]
    return A_drv @ D, D, A_drv, M - np.diag(1.0 / r_source)


def compile_layer(lm: LayerMap, netmap: NetworkMap, wires: bool, r_source: np.ndarray,
                  target_v_per_v: float) -> CompiledLayer:
    """Derive the tile gains for this circuit and reduce the layer to ``z = T v + z0``.

    Gains (module doc of :mod:`imac.hardware.mapping`): every tile column is scaled so that the
    mean of a_i w_i over its own rows is ``target`` (each partial sum weighs its inputs
    equally), then each neuron's tiles together so that the mean of T_jk w_jk over all its
    lines (bias included) is ``target`` (this compensates the attenuation of loaded drivers).
    The transfer is nearly proportional to the gain, so a few rounds converge.  A strongly
    unbalanced column (far more +1 than -1 weights) read by the loaded difference amplifier
    has a largest reachable scale: raising R3 = R4 also raises the I+ line's load, so the output
    stops growing with the gain.  Gains are kept within ``amplifier.max_gain`` and the layer
    reports how far it fell short (``gain_shortfall``) instead of diverging.
    """
    v_dd = netmap.spec.subarray.v_dd
    n_in = lm.layer.fan_in
    w_full = np.hstack([lm.layer.weight, _bias_weights(lm)[:, None]])
    for tile in lm.tiles:
        if tile.gain.size != tile.shape[1]:
            tile.gain = np.ones(tile.shape[1])
    g_max = netmap.spec.amplifier.max_gain

    def rescale(gain: np.ndarray, eff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # eff <= 0: this gain cannot realise the weights' sign at all; push towards g_max
        ratio = np.where(eff > 0, target_v_per_v / np.where(eff > 0, eff, 1.0), g_max / gain)
        new = np.clip(gain * ratio, GAIN_MIN, g_max)
        return new, new / gain

    for _ in range(GAIN_ITERATIONS):
        solved = [solve_subarray(_tile_subarray(t, netmap, wires)) for t in lm.tiles]
        worst = 0.0
        for tile, s in zip(lm.tiles, solved, strict=True):
            eff_t = np.mean(s.A_full * tile.weights.T, axis=1)
            worst = max(worst, float(np.max(np.abs(eff_t / target_v_per_v - 1.0))))
            tile.gain, ratio_t = rescale(tile.gain, eff_t)
            s.A_full = s.A_full * ratio_t[:, None]  # first-order update, exact at convergence
        T = _compose(lm, solved, r_source)[0]
        eff_n = np.mean(T * w_full, axis=1)
        worst = max(worst, float(np.max(np.abs(eff_n / target_v_per_v - 1.0))))
        ratio = np.where(eff_n > 0, target_v_per_v / np.where(eff_n > 0, eff_n, 1.0), 1.0)
        for tile in lm.tiles:
            tile.gain = np.clip(tile.gain * ratio[tile.output_idx], GAIN_MIN, g_max)
        if worst < GAIN_TOLERANCE:
            break
    solved = [solve_subarray(_tile_subarray(t, netmap, wires)) for t in lm.tiles]
    T, D, A_drv, Y = _compose(lm, solved, r_source)
    # how far the neurons' effective scale ended from the trained one (0 = reached exactly)
    shortfall = float(np.max(np.abs(np.mean(T * w_full, axis=1) / target_v_per_v - 1.0)))
    return CompiledLayer(T[:, :n_in], T[:, n_in] * v_dd, D, solved, r_source, shortfall, A_drv=A_drv, Y=Y)


def _bias_weights(lm: LayerMap) -> np.ndarray:
    """The bias line's weight per neuron, as placed on the tiles."""
    out = np.zeros(lm.layer.fan_out)
    for tile in lm.tiles:
        if tile.has_bias:
            out[tile.output_idx] = tile.weights[-1]
    return out


def compile_network(netmap: NetworkMap, curve: NeuronCurve, fidelity: str,
                    neuron_r_out_ohm: float | None = None, progress: Any = None,
                    x_op: np.ndarray | None = None) -> CompiledNetwork:
    """Build everything a fidelity needs before the batch: gains, solves, layer maps.

    ``circuit`` models each neuron that drives a line as a linear source: by default its
    small-signal open-circuit Thevenin model at z = 0 (``output_resistance(0)``).  With
    operating-point inputs ``x_op`` (e.g. a few hundred training images) and a neuron curve
    that carries the ngspice output I-V table, each neuron is instead linearized where it
    actually works under its load: at its mean input z_k and mean output V_k over ``x_op``,
    R_k = -dV/dI there and the source voltage becomes V_k + R_k I(z, V_k), a per-neuron
    function of z (see :meth:`source_voltages`).  Two passes: open-circuit model, then
    linearized at the operating point it gives.
    """
    check_fidelity(fidelity)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    net = CompiledNetwork(netmap, curve, fidelity, [], 0.0, info)
    if fidelity in ("behavioral", "circuit"):
        wires = fidelity == "circuit"
        v_dd = netmap.spec.subarray.v_dd
        r_default = float(curve.output_resistance(0.0)) if neuron_r_out_ohm is None else neuron_r_out_ohm
        info["neuron_r_out_ohm"] = r_default if wires else 0.0
        r_layers = []
        for lm in netmap.layers:
            if wires:
                r = netmap.spec.subarray.driver_resistance_ohm if lm.index == 0 else r_default
            else:
                r = 0.0
            # the bias line's driver is a replica of the input drivers (same output resistance),
            # so the bias is attenuated by the line loading exactly like the inputs
            r_layers.append(np.full(lm.layer.fan_in + 1, float(r)))
        net.layers = []
        for lm, r_src in zip(netmap.layers, r_layers, strict=True):
            net.layers.append(compile_layer(lm, netmap, wires, r_src, lm.layer.volts_per_unit_sum / v_dd))
            if progress:
                progress(lm.index)
        if wires and x_op is not None and neuron_r_out_ohm is None and curve.has_iv() and len(netmap.layers) > 1:
            _linearize_at_operating_point(net, np.asarray(x_op, dtype=float), r_layers, progress)
            info["neuron_model"] = "linearized at the operating point of x_op"
        elif wires:
            info["neuron_model"] = "open-circuit Thevenin at z = 0"
        info["gain_shortfall"] = [cl.gain_shortfall for cl in net.layers]
        info["gain_range"] = [
            [float(min(t.gain.min() for t in lm.tiles)), float(max(t.gain.max() for t in lm.tiles))]
            for lm in netmap.layers
        ]
    net.build_time_s = time.perf_counter() - t0
    return net


def _linearize_at_operating_point(net: CompiledNetwork, x_op: np.ndarray, r_layers: list[np.ndarray],
                                  progress: Any) -> None:
    """Second pass of :func:`compile_network`: per-neuron sources at their operating point."""
    netmap, curve = net.netmap, net.curve
    v_dd = netmap.spec.subarray.v_dd
    out = run_batch(net, x_op)
    z_grid = np.asarray(curve.iv_z_v)
    for li in range(1, len(netmap.layers)):
        lm, cl = netmap.layers[li], net.layers[li]
        n_in = lm.layer.fan_in
        z_prev = out[li - 1]["z"]
        v_full = np.hstack([out[li]["v_in"], np.full((len(x_op), 1), v_dd)])
        d = v_full if cl.D is None else v_full @ cl.D.T
        r_new = r_layers[li].copy()
        table = np.empty((n_in, z_grid.size))
        for k in range(n_in):
            z_k, v_k = float(np.mean(z_prev[:, k])), float(np.mean(d[:, k]))
            r_k, _ = curve.linearized_source(z_k, v_k)
            r_new[k] = r_k
            table[k] = v_k + r_k * curve.output_current(z_grid, v_k)
        net.layers[li] = compile_layer(lm, netmap, True, r_new, lm.layer.volts_per_unit_sum / v_dd)
        net.layers[li].source_table = (z_grid, table)
        if progress:
            progress(f"{li} (at its loaded operating point)")


def source_voltages(net: CompiledNetwork, layer: int, z_prev: np.ndarray) -> np.ndarray:
    """Source voltages (V) of a layer's line drivers, from the previous layer's neuron inputs."""
    if layer < len(net.layers):
        tab = net.layers[layer].source_table
        if tab is not None:
            z_grid, table = tab
            return np.column_stack([np.interp(z_prev[:, k], z_grid, table[k]) for k in range(table.shape[0])])
    return net.curve(z_prev)


def run_batch(net: CompiledNetwork, x: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Neuron inputs z and outputs y (V) of every layer for first-layer inputs x in {-1, +1}.

    ``y`` is each neuron's open-circuit output (what a high-impedance read-out of the last
    layer sees); ``v_in`` the source voltages of the layer's line drivers.
    """
    x = np.asarray(x, dtype=float)
    first = net.netmap.layers[0].layer
    if x.ndim != 2 or x.shape[1] != first.fan_in:
        raise ShapeError(f"inputs must have shape (batch, {first.fan_in}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ShapeError("inputs contain NaN or infinite values")
    v_dd = net.netmap.spec.subarray.v_dd
    out: list[dict[str, np.ndarray]] = []
    v_src = x * v_dd  # source voltages of the first layer's drivers
    for li, lm in enumerate(net.netmap.layers):
        if net.fidelity == "ideal":
            z = lm.layer.volts_per_unit_sum * lm.layer.raw_sum(v_src / v_dd)
        else:
            cl = net.layers[li]
            z = v_src @ cl.T.T + cl.z0
            if cl.source_table is not None and li > 0:
                z = _solve_loaded_neurons(net, cl, out[li - 1]["z"], v_src)
        y = net.curve(z)
        out.append({"z": z, "y": y, "v_in": v_src})
        if li + 1 < len(net.netmap.layers):
            v_src = source_voltages(net, li + 1, z) if net.fidelity == "circuit" else y
    return out


NONLINEAR_ITERATIONS = 30
NONLINEAR_TOLERANCE_V = 1e-5  # far below the neuron fit error (~5 mV) and the solver's 1 uV check


def _solve_loaded_neurons(net: CompiledNetwork, cl: CompiledLayer, z_prev: np.ndarray,
                          v_src: np.ndarray) -> np.ndarray:
    """Neuron inputs of a layer whose line drivers are the previous neurons, with their
    nonlinear output I-V (ngspice table) instead of a linear source.

    KCL at the driver nodes d: I(z_prev, d) = Y d (the bias driver stays linear).  Chord
    iteration with a constant conductance G: d <- (G + Y)^-1 (I(z, d) + G d).  The error shrinks
    by (G - g)/(G + Y) per step where g = -dI/dV >= 0 is the neuron's true output conductance,
    so G = half the largest g in the table makes every step contract; one dense product per step.
    The linearized solution is the starting point.  Returns z = A_drv d.
    """
    assert cl.Y is not None and cl.A_drv is not None and cl.D is not None
    v_dd = net.netmap.spec.subarray.v_dd
    n = z_prev.shape[1]
    if cl.W_chord is None:
        # G = g_max/2 bounds |G - g| by G for every g in [0, g_max]: the fastest sure contraction
        g = np.append(np.full(n, 0.5 * _max_output_conductance(net.curve)), 1.0 / cl.r_source[n])
        cl.W_chord = np.linalg.inv(np.diag(g) + cl.Y)
        cl.g_chord = g
    g = np.asarray(cl.g_chord)
    w_chord = cl.W_chord
    v_full = np.hstack([v_src, np.full((len(v_src), 1), v_dd)])
    d = v_full @ cl.D.T
    rhs_bias = np.full((len(d), 1), v_dd * g[n])
    current = _current_in_v(net.curve, z_prev)  # z is fixed during the iteration

    def chord(dv: np.ndarray) -> np.ndarray:
        return np.hstack([current(dv[:, :n]) + g[:n] * dv[:, :n], rhs_bias]) @ w_chord.T

    # Anderson(1) acceleration per image: the slow direction is the lines' common mode, which a
    # one-step secant on the chord map removes
    f_old = d_old = None
    for _ in range(NONLINEAR_ITERATIONS):
        f = chord(d)
        r = f - d
        step = float(np.max(np.abs(r)))
        if step < NONLINEAR_TOLERANCE_V:
            d = f
            break
        if f_old is not None and d_old is not None:
            dr = r - (f_old - d_old)
            gamma = np.sum(r * dr, axis=1, keepdims=True) / np.maximum(np.sum(dr * dr, axis=1, keepdims=True), 1e-300)
            d_next = f - gamma * (f - f_old)
        else:
            d_next = f
        f_old, d_old = f, d
        d = d_next
    return d @ cl.A_drv.T


IV_POLY_DEGREE = 7  # max error 0.5 uA of ~1 mA over the table: ~30 uV at the driver nodes


def _current_in_v(curve: NeuronCurve, z: np.ndarray) -> Any:
    """I(z, V) for fixed z as a fast function of V alone: at every z grid point the table's
    current is fitted by a degree-7 polynomial in V, the coefficients are interpolated
    linearly in z once, and each call is a Horner evaluation (no table look-ups)."""
    zg, vg, table = curve._iv_arrays()
    coef = np.polynomial.polynomial.polyfit(vg, table.T, IV_POLY_DEGREE)  # (deg+1, n_z)
    fz = np.clip((z - zg[0]) / (zg[1] - zg[0]), 0, zg.size - 1)
    iz = np.minimum(np.floor(fz).astype(int), zg.size - 2)
    tz = fz - iz
    c = [(1 - tz) * row[iz] + tz * row[iz + 1] for row in coef]

    def current(v: np.ndarray) -> np.ndarray:
        out = c[-1].copy()
        for ck in reversed(c[:-1]):
            out *= v
            out += ck
        return out

    return current


def _max_output_conductance(curve: NeuronCurve) -> float:
    """Largest -dI/dV of the neuron's output over its I-V table, S."""
    _, vg, table = curve._iv_arrays()
    return float(np.max(-np.diff(table, axis=1) / np.diff(vg)[None, :]))


def predict(net: CompiledNetwork, x: np.ndarray) -> np.ndarray:
    """Predicted class per row of x: the lowest last-layer neuron output."""
    return np.argmin(run_batch(net, x)[-1]["y"], axis=1)
