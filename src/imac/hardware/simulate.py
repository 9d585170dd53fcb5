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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imac.circuit.netlist import Subarray
from imac.circuit.wires import cell_parasitics
from imac.devices.neuron_curve import NeuronCurve
from imac.errors import ConfigError, ShapeError, SolverError
from imac.hardware.fidelity import Fidelity
from imac.hardware.mapping import LayerMap, NetworkMap, Tile
from imac.hardware.tiles import (
    TileReduction,
    TileSolution,
    apply_gains,
    apply_gains_stacked,
    reduce_tiles,
    solve_tile,
)

FIDELITIES: tuple[str, ...] = tuple(f.value for f in Fidelity)
GAIN_ITERATIONS = 8
GAIN_TOLERANCE = 1e-6  # relative, on every tile column and neuron
GAIN_MIN = 1e-6


def check_fidelity(fidelity: str | Fidelity) -> Fidelity:
    """The :class:`Fidelity` named ``fidelity``, or a ConfigError listing the known ones."""
    return Fidelity.parse(fidelity)


@dataclass
class CompiledLayer:
    """A layer reduced to z = T @ v_oc + z0 (V), plus what the cost model needs."""

    T: np.ndarray  # (fan_out, fan_in) V/V
    z0: np.ndarray  # (fan_out,) V, from the bias line
    D: np.ndarray | None  # (fan_in+1, fan_in+1) driver-node per source voltage; None = identity
    solved: list[TileSolution]
    r_source: np.ndarray  # (fan_in + 1,) ohm, the bias driver last
    gain_shortfall: float = 0.0  # max |realised / trained scale - 1| over the neurons
    A_drv: np.ndarray | None = None  # (fan_out, fan_in + 1) neuron inputs per driver-node voltage
    Y: np.ndarray | None = None  # summed input admittance of the layer's lines (S)
    loaded: LoadedSolver | None = None  # nonlinear solve of the loaded neuron outputs driving this layer


@dataclass
class CompiledNetwork:
    netmap: NetworkMap
    curve: NeuronCurve
    fidelity: Fidelity
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


def _line_blocks(lm: LayerMap) -> list[np.ndarray]:
    """The driver lines of each horizontal partition (the bias line in the last one): the
    lines of different partitions share no tile, so the driver system is block diagonal."""
    return [_tile_lines(t, lm.layer.fan_in) for t in lm.tiles if t.v == 0]


def _compose(lm: LayerMap, solved: list[TileSolution], r_source: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Join the tiles of one layer through their shared drivers (module doc, ``circuit``).

    Drivers: one per input plus one for the bias line (index fan_in), each an open-circuit
    source behind ``r_source``; a driver feeds the same line in every vertical partition.  KCL at
    the driver nodes d: (v_oc - d)/R = sum over tiles of I_t = Y_t d_t, so d = D v_oc with
    D = (diag(1/R) + sum_t Y_t)^-1 diag(1/R); then z = sum_t A_t d_t = T v_oc.  The matrix is
    block diagonal (one block per horizontal partition), inverted block by block.
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
    Y = np.zeros((n_in + 1, n_in + 1))
    for tile, s in zip(lm.tiles, solved, strict=True):
        k = _tile_lines(tile, n_in)
        Y[np.ix_(k, k)] += s.input_admittance()
    D = np.zeros_like(Y)
    T = np.empty_like(A_drv)
    for k in _line_blocks(lm):
        ix = np.ix_(k, k)
        Dk = np.linalg.inv(Y[ix] + np.diag(1.0 / r_source[k])) / r_source[k][None, :]
        D[ix] = Dk
        T[:, k] = A_drv[:, k] @ Dk
    return T, D, A_drv, Y


def _reductions(lm: LayerMap, netmap: NetworkMap, wires: bool,
                tile_progress: Callable[[int, int, int], None] | None = None, keep: bool = True
                ) -> list[TileReduction]:
    """Every tile's gain-independent reduction (:mod:`imac.hardware.tiles`: cached, parallel)."""
    subs = [_tile_subarray(t, netmap, wires) for t in lm.tiles]
    report = None
    if tile_progress is not None:
        def report(done: int, total: int) -> None:
            tile_progress(lm.index, done, total)
    return reduce_tiles(subs, progress=report, keep=keep)


class _TileView:
    """A tile's transfer at trial gains inside the gain fixed point (A_full and Y only)."""

    __slots__ = ("A_full", "_Y")

    def __init__(self, A_full: np.ndarray, Y: np.ndarray) -> None:
        self.A_full, self._Y = A_full, Y

    def input_admittance(self) -> np.ndarray:
        return self._Y


TRIAL_CHUNK = 256  # tiles whose trial gains are applied in one stacked call


def _trial(lm: LayerMap, netmap: NetworkMap, reds: list[TileReduction]) -> list[Any]:
    """Every tile at its current trial gains: runs of same-shape tiles in stacked calls."""
    amp = netmap.spec.amplifier
    tiles = lm.tiles
    out: list[Any] = []
    i = 0
    while i < len(tiles):
        j = i + 1
        while j < len(tiles) and j - i < TRIAL_CHUNK and tiles[j].shape == tiles[i].shape:
            j += 1
        if j - i == 1:
            out.append(_TileView(*apply_gains(reds[i], tiles[i].gain, amp.r_in_ohm, amp.topology)))
        else:
            A, Y = apply_gains_stacked(reds[i:j], np.stack([t.gain for t in tiles[i:j]]), amp.r_in_ohm,
                                       amp.topology)
            out += [_TileView(a, y) for a, y in zip(A, Y, strict=True)]
        i = j
    return out


def compile_layer(lm: LayerMap, netmap: NetworkMap, wires: bool, r_source: np.ndarray,
                  target_v_per_v: float, tile_progress: Callable[[int, int, int], None] | None = None,
                  cache_tiles: bool = True) -> CompiledLayer:
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

    reds = _reductions(lm, netmap, wires, tile_progress, cache_tiles)
    for _ in range(GAIN_ITERATIONS):
        solved = _trial(lm, netmap, reds)
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
        del solved  # a layer of ~16,000 tiles holds ~300 MB of trial transfers
        if worst < GAIN_TOLERANCE:
            break
    solved = [solve_tile(r, _tile_subarray(t, netmap, wires)) for t, r in zip(lm.tiles, reds, strict=True)]
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


def compile_network(netmap: NetworkMap, curve: NeuronCurve, fidelity: str | Fidelity,
                    neuron_r_out_ohm: float | None = None, progress: Any = None,
                    x_op: np.ndarray | None = None,
                    tile_progress: Callable[[int, int, int], None] | None = None,
                    cache_tiles: bool = True) -> CompiledNetwork:
    """Build everything a fidelity needs before the batch: gains, solves, layer maps.

    ``circuit`` models each neuron that drives a line as a linear source: by default its
    small-signal open-circuit Thevenin model at z = 0 (``output_resistance(0)``).  With
    operating-point inputs ``x_op`` (e.g. a few hundred training images) and a neuron curve
    that carries the ngspice output I-V table, each neuron is instead linearized where it
    actually works under its load: at its mean input z_k and mean output V_k over ``x_op``,
    R_k = -dV/dI there (the gains are derived for these resistances), and the batch then solves
    the neurons' full nonlinear output I-V under the load (:func:`_solve_loaded_neurons`).
    Two passes: open-circuit model, then linearized at the operating point it gives.
    Each tile is reduced once (:mod:`imac.hardware.tiles`) and reused by the gain iterations and
    both passes; ``tile_progress(layer, done, total)`` reports the tile solves; ``cache_tiles=False``
    keeps new reductions out of the tile cache (one-off random heads of ~20,000 tiles).
    """
    fidelity = check_fidelity(fidelity)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    net = CompiledNetwork(netmap, curve, fidelity, [], 0.0, info)
    if fidelity in (Fidelity.BEHAVIORAL, Fidelity.CIRCUIT):
        wires = fidelity == Fidelity.CIRCUIT
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
            net.layers.append(compile_layer(lm, netmap, wires, r_src, lm.layer.volts_per_unit_sum / v_dd,
                                            tile_progress, cache_tiles))
            if progress:
                progress(lm.index)
        if wires and x_op is not None and neuron_r_out_ohm is None and curve.has_iv() and len(netmap.layers) > 1:
            _linearize_at_operating_point(net, np.asarray(x_op, dtype=float), r_layers, progress)
            info["neuron_model"] = "linearized at the operating point of x_op (gains), nonlinear I-V (solve)"
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
    """Second pass of :func:`compile_network`: per-neuron sources at their operating point,
    then the nonlinear (Newton) solve of the loaded neurons, whose linear start is fitted to
    its own converged solutions on ``x_op``."""
    netmap, curve = net.netmap, net.curve
    v_dd = netmap.spec.subarray.v_dd
    out = run_batch(net, x_op)
    for li in range(1, len(netmap.layers)):
        lm, cl = netmap.layers[li], net.layers[li]
        n_in = lm.layer.fan_in
        z_prev = out[li - 1]["z"]
        v_full = np.hstack([out[li]["v_in"], np.full((len(x_op), 1), v_dd)])
        d = v_full if cl.D is None else v_full @ cl.D.T
        r_new = r_layers[li].copy()
        for k in range(n_in):
            r_new[k], _ = curve.linearized_source(float(np.mean(z_prev[:, k])), float(np.mean(d[:, k])))
        net.layers[li] = compile_layer(lm, netmap, True, r_new, lm.layer.volts_per_unit_sum / v_dd)
        net.layers[li].loaded = _loaded_solver(lm, net.layers[li], curve, v_dd)
        if progress:
            progress(f"{li} (at its loaded operating point)")
    out = run_batch(net, x_op)
    for li in range(1, len(netmap.layers)):
        ls = net.layers[li].loaded
        assert ls is not None
        _fit_start(ls, netmap.layers[li], out[li - 1]["y"], out[li]["d"])


def run_batch(net: CompiledNetwork, x: np.ndarray, device: str | None = None) -> list[dict[str, np.ndarray]]:
    """Neuron inputs z and outputs y (V) of every layer for first-layer inputs x in {-1, +1}.

    ``y`` is each neuron's open-circuit output (what a high-impedance read-out of the last
    layer sees); ``v_in`` the source voltages of the layer's line drivers (for loaded neuron
    drivers, the Thevenin-equivalent ones: node voltage plus linearized resistance times the
    solved output current, so ``D`` maps them to the solved node voltages ``d``, also returned).
    ``device``: None (numpy, the default) or a torch device ("cpu", "cuda") for the same batch
    with torch tensors (:mod:`imac.hardware.device`).
    """
    x = np.asarray(x, dtype=float)
    first = net.netmap.layers[0].layer
    if x.ndim != 2 or x.shape[1] != first.fan_in:
        raise ShapeError(f"inputs must have shape (batch, {first.fan_in}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ShapeError("inputs contain NaN or infinite values")
    if device is not None:
        from imac.hardware.device import resolve_device, run_batch_torch

        dev = resolve_device(device)
        if dev is not None:
            return run_batch_torch(net, x, dev)
    v_dd = net.netmap.spec.subarray.v_dd
    out: list[dict[str, np.ndarray]] = []
    v_src = x * v_dd  # source voltages of the first layer's drivers
    for li, lm in enumerate(net.netmap.layers):
        extra: dict[str, np.ndarray] = {}
        if net.fidelity == Fidelity.IDEAL:
            z = lm.layer.volts_per_unit_sum * lm.layer.raw_sum(v_src / v_dd)
        elif li > 0 and net.layers[li].loaded is not None:
            ls = net.layers[li].loaded
            assert ls is not None
            z, d, v_src = _solve_loaded_neurons(ls, out[li - 1]["z"], out[li - 1]["y"])
            extra["d"] = d
            bad = ~np.isfinite(z).all(axis=1)
            if bad.any():  # never let a diverged solve reach accuracies or energies as NaN
                raise SolverError(f"the loaded-neuron solve of layer {li} diverged on {int(bad.sum())} of "
                                  f"{len(z)} images (first: image {int(np.argmax(bad))})")
        else:
            cl = net.layers[li]
            z = v_src @ cl.T.T + cl.z0
        y = net.curve(z)
        out.append({"z": z, "y": y, "v_in": v_src, **extra})
        v_src = y
    return out


NEWTON_MAX_ITERATIONS = 12
NEWTON_JACOBIAN_STEPS = 2  # steps that refresh the Newton matrix; later ones reuse it
NEWTON_TOLERANCE_V = 2e-5  # V, per image: largest Newton step on any line (~10 uV left at the next neurons)
# (images x lines) per chunk: the chunk's ~14 float32 work arrays stay in the cache (256 images of
# the VGG head's 512 lines); fewer elements per numpy call cost more in call overhead
NEWTON_CHUNK_ELEMENTS = 131_072
# OpenBLAS runs a product of m x n x k multiply-adds on one thread below 2 x 65536 x 4 of them: a
# threaded product this small waits on its hand-offs (5x slower batches measured under load)
BLAS_SERIAL_MNK = 524_000
NEWTON_REFRESH_STEP = 0.01  # largest step (units of v_half) after which the Newton matrix is refreshed
NEWTON_S_LIMIT = 1.05  # iterates are kept within 5 % beyond the fitted range of the I-V table
IV_POLY_DEGREE = 7  # max error 0.35 uA of ~1 mA over the table (degree 6: 0.65 uA moves z by ~1 mV)
F32 = np.float32


@dataclass
class LoadedSolver:
    """What the Newton solve of a layer's loaded line drivers needs, precomputed at build time.

    The bias line (a linear driver) is eliminated first (Schur complement): the neuron-driven
    lines k = 0..n-1 obey ``I(z_k, d_k) + i_bias = Y_red d`` and the layer's neuron inputs are
    ``z = A_red d + z_bias``.  ``Y_red`` is block diagonal, one block per horizontal partition
    (lines of different partitions share no summing line).  Every block has one small
    eigenvalue mu (the lines' common mode, held only by the amplifier inputs) and all others
    close to one value y_hat (the differential modes, held by the synapses: every differential
    pair puts g_L + g_H on its input line whatever its sign), so ``Y_red ~ y_hat I - kappa u v^T``
    per block (u, v: right and left eigenvectors of mu, v.u = 1, kappa = y_hat - mu).  With the
    neurons' own output conductances g the Newton matrix diag(g) + Y_red is then inverted per
    image in closed form (Sherman-Morrison), in O(n) per image; the residual uses the exact
    Y_red, so only the convergence rate depends on the approximation.

    The unknowns are the scaled node voltages s = (d - v_centre) / v_half in [-1, 1] (the
    variable of the current polynomial), so every matrix below is pre-scaled to take s.
    """

    coef: np.ndarray  # (n_z - 1, 2 (deg + 1)) float32, A: polynomial in s per z interval, then its change per interval
    z_first: float  # V, first z grid point
    dz: float  # V, z grid step
    v_centre: float  # V
    v_half: float  # V
    i_const: np.ndarray  # (n,) float32, A: bias driver's current minus Y_red v_centre
    blocks: list[tuple[int, int]]  # line ranges of the horizontal partitions
    y_t: list[np.ndarray]  # per block (size, size) float32, A: v_half Y_red^T of the block
    a_t: np.ndarray  # (n, fan_out) float32, V: v_half A_red^T
    z_const: np.ndarray  # (fan_out,) V
    y_hat: np.ndarray  # (n,) float32, A: v_half y_hat of the line's block
    kappa: np.ndarray  # (blocks,) float32, A: v_half kappa
    u: np.ndarray  # (n, blocks) float32, block eigenvectors placed in their block's column
    u_t: np.ndarray  # (blocks, n) float32
    v: np.ndarray  # (n, blocks) float32
    vu: np.ndarray  # (n, blocks) float32, v * u
    r_line: np.ndarray  # (n,) ohm, the lines' linearized driver resistances (for v_in)
    start: np.ndarray  # (n + 1, n) float32: s ~ [y_prev, 1] @ start (linear start)
    # derived from the fields above on first use (_plan); start is read on every solve
    plan: _Plan | None = field(default=None, repr=False, compare=False)


def _loaded_solver(lm: LayerMap, cl: CompiledLayer, curve: NeuronCurve, v_dd: float) -> LoadedSolver:
    """Precompute the Newton solve of a compiled layer (see :class:`LoadedSolver`)."""
    assert cl.Y is not None and cl.A_drv is not None and cl.D is not None
    n = lm.layer.fan_in
    zg, vg, table = curve._iv_arrays()
    v_c, v_h = 0.5 * (vg[0] + vg[-1]), 0.5 * (vg[-1] - vg[0])
    coef = np.polynomial.polynomial.polyfit((vg - v_c) / v_h, table.T, IV_POLY_DEGREE)  # (deg+1, n_z)
    coef_tab = np.concatenate([coef[:, :-1], np.diff(coef, axis=1)]).T  # linear in z within an interval
    g_bias = 1.0 / cl.r_source[n]
    Y = cl.Y
    den = g_bias + Y[n, n]
    y_red = Y[:n, :n] - np.outer(Y[:n, n], Y[n, :n]) / den
    a_red = cl.A_drv[:, :n] - np.outer(cl.A_drv[:, n], Y[n, :n]) / den
    # the data lines of each horizontal partition (the bias line is eliminated above); with 2-row
    # subarrays the last partition can hold the bias line alone: no data line, no block
    blocks = [t.input_idx for t in lm.tiles if t.v == 0 and len(t.input_idx)]
    if any(not np.array_equal(k, np.arange(k[0], k[-1] + 1)) for k in blocks):
        raise ConfigError("the loaded-neuron solve needs each horizontal partition on consecutive lines")
    u = np.zeros((n, len(blocks)))
    v = np.zeros((n, len(blocks)))
    y_hat = np.zeros(n)
    kappa = np.zeros(len(blocks))
    for b, k in enumerate(blocks):
        yb = y_red[np.ix_(k, k)]
        w, right = np.linalg.eig(yb)
        i0 = int(np.argmin(w.real))
        wl, left = np.linalg.eig(yb.T)
        ub = right[:, i0].real
        vb = left[:, int(np.argmin(wl.real))].real
        u[k, b] = ub
        v[k, b] = vb / (vb @ ub)
        rest = np.delete(w.real, i0)
        y_hat[k] = np.mean(rest) if rest.size else w[i0].real
        kappa[b] = y_hat[k[0]] - w[i0].real
    # start before any operating point is known: the linearized sources through D, from y
    d_start = cl.D[:n, :].T.copy()  # (n + 1, n): [y, v_dd] @ D^T, restricted to the neuron lines
    d_start[n] *= v_dd
    d_start[n] -= v_c
    return LoadedSolver(
        coef=coef_tab.astype(F32), z_first=float(zg[0]), dz=float(zg[1] - zg[0]), v_centre=float(v_c),
        v_half=float(v_h),
        i_const=(-Y[:n, n] * g_bias * v_dd / den - v_c * y_red.sum(axis=1)).astype(F32),
        blocks=[(int(k[0]), int(k[-1]) + 1) for k in blocks],
        y_t=[(v_h * y_red[np.ix_(k, k)].T).astype(F32) for k in blocks], a_t=(v_h * a_red.T).astype(F32),
        z_const=cl.A_drv[:, n] * g_bias * v_dd / den + v_c * a_red.sum(axis=1),
        y_hat=(v_h * y_hat).astype(F32), kappa=(v_h * kappa).astype(F32), u=u.astype(F32),
        u_t=u.T.astype(F32), v=v.astype(F32), vu=(u * v).astype(F32), r_line=cl.r_source[:n].astype(F32),
        start=(d_start / v_h).astype(F32),
    )


def _fit_start(ls: LoadedSolver, lm: LayerMap, y_prev: np.ndarray, d: np.ndarray) -> None:
    """Least-squares linear start d ~ [y_prev, 1] @ M per horizontal partition (a line's node
    voltage depends only on the neurons of its own partition), from solved training images."""
    n = lm.layer.fan_in
    start = np.zeros((n + 1, n))
    feats = np.hstack([y_prev, np.ones((len(y_prev), 1))])
    s = (d - ls.v_centre) / ls.v_half
    for k in (t.input_idx for t in lm.tiles if t.v == 0):
        cols = np.append(k, n)
        m, *_ = np.linalg.lstsq(feats[:, cols], s[:, k], rcond=None)
        start[np.ix_(cols, k)] = m
    ls.start = start.astype(F32)


def _solve_loaded_neurons(ls: LoadedSolver, z_prev: np.ndarray, y_prev: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neuron inputs z of a layer whose line drivers are the previous neurons with their
    nonlinear output I-V (ngspice table), by Newton's method (see :class:`LoadedSolver`).

    I(z, V) at fixed z is a degree-7 polynomial in V whose coefficients are interpolated
    linearly in z (set up once per image and line); each Newton step evaluates it and its
    derivative by Horner's rule, forms the exact KCL residual, and solves the approximate
    Newton system in closed form.  Start: a linear map of the open-circuit outputs ``y_prev``.
    Images leave the iteration once their largest step is below ``NEWTON_TOLERANCE_V``.
    Works in float32 (relative precision 6e-8, far below the uV tolerance) on chunks of
    images that stay in the cache, in work arrays allocated once per call (:class:`_Workspace`).
    Returns z (batch, fan_out), the driver-node voltages d (batch, n) and the
    Thevenin-equivalent source voltages d + r I (batch, n), with I the neurons' current at the
    solution, all in V.
    """
    b, n = z_prev.shape
    plan = _plan(ls)
    start = _start_blocks(ls, plan)
    s = np.empty((b, n), F32)
    d = np.empty((b, n))
    v_in = np.empty((b, n))
    # rows per chunk: ~NEWTON_CHUNK_ELEMENTS per work array, each block product (rows x size x
    # size) below OpenBLAS's threading size
    rows = max(16, min(NEWTON_CHUNK_ELEMENTS // n, BLAS_SERIAL_MNK // max(size for _, size, _ in plan.runs) ** 2))
    starts = list(range(0, b, rows))
    kernel = _kernel_args(ls, plan, start) if use_kernel(plan.deg1) else None
    if kernel is not None:
        z_prev = np.ascontiguousarray(z_prev, dtype=np.float64)
        y_prev = np.ascontiguousarray(y_prev, dtype=np.float64)
    threads = min(newton_threads(kernel is not None), len(starts))
    todo = iter(starts)
    lock = threading.Lock()

    def take() -> int | None:  # chunks are handed out one at a time: a slowed thread takes fewer
        with lock:
            return next(todo, None)

    def work(_: int) -> None:  # in place on disjoint rows of s, d and v_in
        m = min(rows, b)
        if kernel is not None:
            from imac.hardware.batch_kernels import solve_chunk

            npad = kernel[6].shape[0] * kernel[6].shape[1]
            kws = (np.empty((m, plan.deg1, npad), F32), np.empty((m, npad), F32), np.empty((m, npad), F32),
                   np.empty((m, len(ls.blocks)), F32), np.empty(m, np.bool_))
        else:
            ws = _Workspace(plan.deg1, m, n)
        while (i := take()) is not None:
            sl = slice(i, i + rows)
            if kernel is not None:
                k = min(rows, b - i)
                solve_chunk(z_prev[sl], y_prev[sl], *kernel, *(w[:k] for w in kws), s[sl], d[sl], v_in[sl])
            else:
                _chunk(ls, plan, ws, start, z_prev[sl], y_prev[sl], s[sl], d[sl], v_in[sl])

    if threads > 1:  # numpy's array operations and the compiled kernel release the GIL
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))
    else:
        work(0)
    return np.add(s @ ls.a_t, ls.z_const), d, v_in


def use_kernel(deg1: int = IV_POLY_DEGREE + 1) -> bool:
    """Whether the loaded-neuron solve runs the compiled kernel (:mod:`imac.hardware.batch_kernels`:
    numba installed, ``$IMAC_NUMBA`` not ``0``, and the kernel's polynomial degree) instead of the
    numpy array operations."""
    from imac.hardware import batch_kernels

    return deg1 == batch_kernels.DEG1 and batch_kernels.available()


def _kernel_args(ls: LoadedSolver, plan: _Plan, start: list[np.ndarray] | None) -> tuple[Any, ...]:
    """The layer's tables in the padded layout :func:`imac.hardware.batch_kernels.solve_chunk`
    takes (block b's lines in slots b * smax ..; see its doc), between its inputs
    (z_prev, y_prev) and its work and output arrays."""
    n = ls.a_t.shape[0]
    nb = len(ls.blocks)
    sizes = np.array([e - a for a, e in ls.blocks], np.int64)
    smax = -(-int(sizes.max()) // 8) * 8  # slots per block: a multiple of 8 (the kernel's block product)
    slot = np.concatenate([b * smax + np.arange(sz) for b, sz in enumerate(sizes)])  # each line's slot
    block = np.repeat(np.arange(nb), sizes)

    def padded(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full(nb * smax, fill, F32)
        out[slot] = values
        return out

    def blocks3(mats: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((nb, smax, smax), F32)
        for b, mat in enumerate(mats):
            out[b, : mat.shape[0], : mat.shape[1]] = mat
        return out

    if plan.kernel is None:
        lines = np.arange(n)
        # per z interval the coefficients of s^j, then their change (one 64-byte row), then the
        # padding's row of zeros
        tab = np.zeros((plan.lo.shape[1] + 1, 2 * plan.deg1), F32)
        tab[:-1] = np.concatenate([plan.lo, plan.dz_coef]).T
        bstart = np.array([a for a, _ in ls.blocks] + [n], np.int64)
        plan.kernel = (
            (tab, float(ls.z_first), F32(1.0 / ls.dz), F32(plan.lo.shape[1] - 1e-3), bstart, -(-sizes // 8) * 8,
             blocks3(ls.y_t)),
            (padded(ls.i_const), padded(ls.y_hat, 1.0), padded(ls.u[lines, block]), padded(ls.v[lines, block]),
             padded(ls.vu[lines, block]), np.ascontiguousarray(ls.kappa, F32), padded(ls.r_line),
             F32(NEWTON_TOLERANCE_V / ls.v_half), F32(NEWTON_S_LIMIT), float(NEWTON_REFRESH_STEP),
             NEWTON_JACOBIAN_STEPS, NEWTON_MAX_ITERATIONS, float(ls.v_half), float(ls.v_centre)),
        )
    head, tail = plan.kernel
    if start is None:  # someone set a start that is not block diagonal: one dense product
        st3, dense = np.zeros((nb, smax, smax), F32), np.ascontiguousarray(ls.start[:n], F32)
    else:
        st3 = blocks3([blk for run in start for blk in run])
        dense = np.empty((0, 0), F32)
    return (*head, st3, dense, padded(ls.start[n]), *tail)


def newton_threads(kernel: bool = False) -> int:
    """Threads for the Newton chunks of a batch: ``$IMAC_THREADS`` when set.  Otherwise 1 for the
    numpy path (on the shared 2-core development machine 2 threads were slower than one), and for
    the compiled kernel as many as BLAS may use (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``
    when set, as joblib's workers and ``--blas-threads`` do, else the cores this process may run
    on): its chunks are handed out one at a time, and 2 threads were faster on 2 loaded cores."""
    import os

    env = os.environ.get("IMAC_THREADS")
    if env:
        return max(1, int(env))
    if not kernel:
        return 1
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit():
            return max(1, int(os.environ[var]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class _Plan:
    """What the chunks of a layer's solve share, derived once from its :class:`LoadedSolver`:
    the current polynomial's coefficient tables per power (contiguous, for one gather each) and
    the block-diagonal Y_red as runs of consecutive equal-size blocks (one batched product per run)."""

    deg1: int
    lo: np.ndarray  # (deg + 1, n_z - 1) float32: coefficient of s^j at the interval's first z
    dz_coef: np.ndarray  # (deg + 1, n_z - 1) float32: its change over the interval
    runs: list[tuple[int, int, int]]  # (first line, block size, blocks)
    y_runs: list[np.ndarray]  # per run (blocks, size, size) float32: v_half Y_red^T per block
    u_runs: list[np.ndarray]  # per run (blocks, 1, size) float32: the blocks' common-mode eigenvectors
    v_runs: list[np.ndarray]  # per run (blocks, size, 1) float32
    vu_runs: list[np.ndarray]  # per run (blocks, size, 1) float32
    kappa_runs: list[np.ndarray]  # per run (blocks, 1, 1) float32
    off_block: np.ndarray  # (n, n) bool: outside the diagonal blocks
    kernel: tuple[Any, ...] | None = None  # the tables in the compiled kernel's flat form (_kernel_args)


def _block_runs(blocks: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Consecutive blocks of equal size grouped into runs: (first line, size, count)."""
    runs: list[tuple[int, int, int]] = []
    for a, e in blocks:
        if runs and runs[-1][1] == e - a and runs[-1][0] + runs[-1][1] * runs[-1][2] == a:
            runs[-1] = (runs[-1][0], e - a, runs[-1][2] + 1)
        else:
            runs.append((a, e - a, 1))
    return runs


def _plan(ls: LoadedSolver) -> _Plan:
    """The layer's :class:`_Plan`, derived on first use and kept on the solver."""
    if ls.plan is not None:
        return ls.plan
    n = ls.a_t.shape[0]
    deg1 = ls.coef.shape[1] // 2
    runs = _block_runs(ls.blocks)
    y_runs, u_runs, v_runs, vu_runs, kappa_runs = [], [], [], [], []
    k = 0
    for a, size, cnt in runs:
        bl = range(k, k + cnt)
        y_runs.append(np.stack(ls.y_t[k : k + cnt]))
        u_runs.append(np.stack([ls.u[a + j * size : a + (j + 1) * size, b] for j, b in enumerate(bl)])[:, None, :])
        v_runs.append(np.stack([ls.v[a + j * size : a + (j + 1) * size, b] for j, b in enumerate(bl)])[:, :, None])
        vu_runs.append(np.stack([ls.vu[a + j * size : a + (j + 1) * size, b] for j, b in enumerate(bl)])[:, :, None])
        kappa_runs.append(ls.kappa[k : k + cnt, None, None])
        k += cnt
    off = np.ones((n, n), bool)
    for a, e in ls.blocks:
        off[a:e, a:e] = False
    ls.plan = _Plan(deg1, np.ascontiguousarray(ls.coef[:, :deg1].T), np.ascontiguousarray(ls.coef[:, deg1:].T),
                    runs, y_runs, u_runs, v_runs, vu_runs, kappa_runs, off)
    return ls.plan


def _blocks(x: np.ndarray, run: tuple[int, int, int]) -> np.ndarray:
    """The lines of a run of blocks in x (m, n) as a (blocks, m, size) view (no copy)."""
    a, size, cnt = run
    # splitting the contiguous last axis of a row slice is always a view: out= writes land in x
    return x[:, a : a + size * cnt].reshape(x.shape[0], cnt, size).transpose(1, 0, 2)


def _block_product(x: np.ndarray, runs: list[tuple[int, int, int]], mats: list[np.ndarray], out: np.ndarray
                   ) -> None:
    """``out = x @ blockdiag(mats)`` on rows of x (m, n): one batched product per run of blocks.
    Each product (rows x size x size) stays below the size at which OpenBLAS starts threads,
    whose hand-offs cost far more than such a product when the other cores are busy."""
    for run, mat in zip(runs, mats, strict=True):
        np.matmul(_blocks(x, run), mat, out=_blocks(out, run))


def _common_modes(plan: _Plan, r: np.ndarray, dinv: np.ndarray, shrink: list[np.ndarray] | None,
                  tmp: np.ndarray) -> list[np.ndarray]:
    """The Newton step r <- (diag(1/dinv) - kappa u v^T)^-1 r per block, in place, by
    Sherman-Morrison (block by block: per-image scalars, no (rows x n x blocks) product).
    ``shrink`` (per run, (blocks, rows, 1)): kappa / (1 - kappa v.(dinv u)) per block and
    image, computed when None (a fresh Newton matrix) and returned."""
    if shrink is None:
        shrink = []
        for run, vu, kappa in zip(plan.runs, plan.vu_runs, plan.kappa_runs, strict=True):
            w = np.matmul(_blocks(dinv, run), vu)
            w *= kappa
            np.subtract(1.0, w, out=w)
            shrink.append(np.divide(kappa, w, out=w))
    r *= dinv
    for run, v, u, sh in zip(plan.runs, plan.v_runs, plan.u_runs, shrink, strict=True):
        t = np.matmul(_blocks(r, run), v)
        t *= sh
        np.multiply(t, u, out=_blocks(tmp, run))
    tmp *= dinv
    r += tmp
    return shrink


def _start_blocks(ls: LoadedSolver, plan: _Plan) -> list[np.ndarray] | None:
    """The linear start s = [y_prev, 1] @ start is fitted per horizontal partition, so
    ``start`` is block diagonal (bias row apart): its blocks per run, or None when someone set
    another start (then it is applied as one dense product)."""
    n = ls.a_t.shape[0]
    if np.any(ls.start[:n][plan.off_block]):
        return None
    return [np.stack([ls.start[a + j * size : a + (j + 1) * size, a + j * size : a + (j + 1) * size]
                      for j in range(cnt)]) for a, size, cnt in plan.runs]


class _Workspace:
    """The float32 work arrays of one chunk of images, allocated once per solve and reused by
    every chunk and Newton step (fresh arrays of this size cost page faults on every use)."""

    def __init__(self, deg1: int, m: int, n: int) -> None:
        self.c = np.empty((deg1, m, n), F32)  # the current polynomial's coefficients per image and line
        self.fz = np.empty((m, n), F32)
        self.iz = np.empty((m, n), np.intp)
        self.y, self.cur, self.slope, self.r, self.tmp, self.dinv = (np.empty((m, n), F32) for _ in range(6))


def _chunk(ls: LoadedSolver, plan: _Plan, ws: _Workspace, start: list[np.ndarray] | None, z_prev: np.ndarray,
           y_prev: np.ndarray, s: np.ndarray, d: np.ndarray, v_in: np.ndarray) -> None:
    """One chunk of images, start to outputs, while its arrays are in the cache: the linear
    start into s, the coefficients, Newton in place on s, then the node voltages d and the
    Thevenin-equivalent source voltages v_in = d + r I, with the neurons' current I evaluated
    at the solution (V, float64)."""
    m, n = s.shape
    c = ws.c[:, :m]
    y = ws.y[:m]
    np.copyto(y, y_prev, casting="same_kind")
    if start is None:
        np.matmul(y, ls.start[:n], out=s)
    else:
        _block_product(y, plan.runs, start, s)
    s += ls.start[n]
    _current_coefficients(ls, plan, z_prev, c, ws.fz[:m], ws.iz[:m], ws.tmp[:m])
    _newton(ls, plan, ws, c, s)
    cur = ws.cur[:m]
    _horner(c, s, cur, None)
    cur -= ls.i_const
    cur *= ls.r_line
    np.multiply(s, ls.v_half, out=d, dtype=np.float64)
    d += ls.v_centre
    np.add(d, cur, out=v_in)


def _current_coefficients(ls: LoadedSolver, plan: _Plan, z: np.ndarray, c: np.ndarray, fz: np.ndarray,
                          iz: np.ndarray, tmp: np.ndarray) -> None:
    """Per image and line, the coefficients (A) of I(z, V) + i_const as a polynomial in s, into
    c (deg + 1, m, n): one gather per power from a contiguous table of the interval's value and
    one of its slope in z (gathering whole rows of the table and transposing them was 1.5x slower)."""
    np.subtract(z, ls.z_first, out=fz, casting="same_kind")  # no float64 temporary
    fz *= F32(1.0 / ls.dz)
    np.clip(fz, 0.0, plan.lo.shape[1] - 1e-3, out=fz)
    np.copyto(iz, fz, casting="unsafe")  # fz >= 0: truncation is the floor
    np.subtract(fz, iz, out=fz, casting="unsafe")
    for j in range(plan.deg1):
        np.take(plan.dz_coef[j], iz, out=c[j], mode="clip")
        c[j] *= fz
        np.take(plan.lo[j], iz, out=tmp, mode="clip")
        c[j] += tmp
    c[0] += ls.i_const


def _horner(c: np.ndarray, s: np.ndarray, cur: np.ndarray, slope: np.ndarray | None) -> None:
    """The polynomial sum_j c[j] s^j into ``cur`` and, unless None, its derivative into ``slope``."""
    if slope is None:
        np.multiply(c[-1], s, out=cur)
        cur += c[-2]
    else:  # c7 s once: cur = c7 s + c6, slope = c7 s + cur
        np.multiply(c[-1], s, out=slope)
        np.add(slope, c[-2], out=cur)
        slope += cur
    for ck in c[-3:0:-1]:
        cur *= s
        cur += ck
        if slope is not None:
            slope *= s
            slope += cur
    cur *= s
    cur += c[0]


NEWTON_COMPACT = 0.5  # images still iterating are gathered into fewer rows once at most this fraction is left


def _newton(ls: LoadedSolver, plan: _Plan, ws: _Workspace, c: np.ndarray, s: np.ndarray) -> None:
    """Newton iterations on one chunk, in place on s (float32); converged images are frozen.
    The Newton matrix is refreshed on the first ``NEWTON_JACOBIAN_STEPS`` steps and then kept
    (the later steps are tiny).  Images that have converged stay in the arrays (their step is
    zeroed) while most are still iterating, and are dropped once at most ``NEWTON_COMPACT`` of
    the rows are left (the copy costs more than the work it saves before that)."""
    rows: np.ndarray | None = None  # the images still iterating once dropped (None: all rows of s)
    active: np.ndarray | None = None  # mask of the rows still iterating (None: all)
    ss = s
    tol = NEWTON_TOLERANCE_V / ls.v_half
    dinv: np.ndarray | None = None
    shrink: list[np.ndarray] | None = None
    last = np.inf
    for its in range(1, NEWTON_MAX_ITERATIONS + 1):
        # a fresh Newton matrix on the first steps and whenever a step was still large (a poor
        # start, or a clipped overshoot); the reused one only for the small final steps
        fresh = its <= NEWTON_JACOBIAN_STEPS or last > NEWTON_REFRESH_STEP
        k = ss.shape[0]
        cur, r, tmp = ws.cur[:k], ws.r[:k], ws.tmp[:k]
        slope = ws.slope[:k] if fresh else None
        _horner(c, ss, cur, slope)
        _block_product(ss, plan.runs, plan.y_runs, tmp)  # Y_red is block diagonal
        np.subtract(cur, tmp, out=r)  # KCL residual (A)
        if slope is not None:
            # diagonal: the neuron's output conductance -dI/ds >= 0 plus the block's y_hat
            np.minimum(slope, 0.0, out=slope)
            np.subtract(ls.y_hat, slope, out=slope)
            dinv = np.reciprocal(slope, out=ws.dinv[:k])
            shrink = None
        assert dinv is not None
        shrink = _common_modes(plan, r, dinv, shrink, tmp)
        if active is not None:
            r *= active[:, None]  # converged images stay put
        ss += r
        # the driver nodes lie between the rails (|s| <= 1, where the I-V polynomial was fitted);
        # an overshooting step would put an iterate where the degree-7 polynomial explodes
        np.clip(ss, -NEWTON_S_LIMIT, NEWTON_S_LIMIT, out=ss)
        step = np.abs(r, out=r).max(axis=1)
        last = float(step.max())
        if rows is not None:
            s[rows] = ss
        left = step >= tol
        if not left.any():
            break
        if its >= 2 and not left.all():  # the first two steps move every image a lot
            if np.count_nonzero(left) > NEWTON_COMPACT * k:
                active = left
                continue
            keep = np.flatnonzero(left)
            rows = keep if rows is None else rows[keep]
            ss, c, shrink = ss[keep], c[:, keep], [sh[:, keep] for sh in shrink]
            dinv = ws.dinv[: len(keep)]
            dinv[:] = ws.dinv[keep]
            active = None


def predict(net: CompiledNetwork, x: np.ndarray) -> np.ndarray:
    """Predicted class per row of x: the lowest last-layer neuron output."""
    return np.argmin(run_batch(net, x)[-1]["y"], axis=1)
