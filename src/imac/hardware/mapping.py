"""Map the binary FC layers of a network onto n x m SOT-MRAM subarrays.

Partitioning (SYSTEM.md section 3).  A layer with fan_in inputs (+1 bias line) and fan_out
neurons is split into ``hpar = ceil((fan_in + 1) / rows)`` horizontal partitions (groups of
input lines, the bias line in the last one) and ``vpar = ceil(fan_out / cols)`` vertical
partitions (groups of neurons).  Rows and columns are spread evenly over the partitions
(``np.array_split``) rather than filling the first ones, so no subarray is a small leftover.
Each of the hpar x vpar subarrays ("tiles") has its own difference amplifiers.

Combining horizontal partitions.  Each tile's amplifier output is a partial pre-activation; the
neuron input is their **sum** (an analog summing stage, modelled as ideal).  The authors'
netlist joins the partial outputs through small resistors, which averages them (sum / hpar); an
average is a sum with every gain divided by hpar, so the two differ only by the gain
derivation below, which we state for the sum.

Gain derivation.  Training defines the neuron input as ``v = kappa * s`` volts, where
``s = sum_i sign(W_i) x_i + sign(b)`` is the raw sum with inputs x in units of V_DD (first layer
+-1, hidden layers 0..1) and ``kappa`` (``volts_per_unit_sum``) comes from the model.  A tile
column computes ``V_out = sum_i a_i u_i`` with u = V_DD x, and for a differential pair
``a_i ~ alpha * w_i``: the amplifier gain g scales alpha.  We choose each column's gain so that
the mean of ``a_i * w_i`` over its rows equals ``kappa / V_DD`` for the circuit being simulated:
by the closed form for parasitic-free arrays, and by fixed-point iteration on the solved
transfer matrix when wires and drivers are included (``g <- g * target / mean(a_i w_i)``; the
output is nearly proportional to g, so 3-4 iterations converge to < 1e-6).  Gains are thus a
derivation from the circuit alone, not a fit to data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imac.config import ImacSpec
from imac.devices.synapse import check_weights, synapse_conductances, synapse_levels
from imac.errors import ConfigError, ShapeError

MAX_SUBARRAY_SIDE = 4096


class WeightShape:
    """``fan_in`` / ``fan_out`` of a layer held as an (out, in) ``weight`` matrix."""

    weight: np.ndarray

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def fan_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class BinaryLayer(WeightShape):
    """One binary FC layer as trained.

    weight: (fan_out, fan_in) in {-1, +1}; bias: (fan_out,) in {-1, +1} or None;
    volts_per_unit_sum: neuron input in V per unit of raw sum (inputs in units of V_DD).
    """

    weight: np.ndarray
    bias: np.ndarray | None
    volts_per_unit_sum: float

    def __post_init__(self) -> None:
        w = check_weights(self.weight, "layer weight", allow_zero=False)
        object.__setattr__(self, "weight", w)
        if self.bias is not None:
            b = np.asarray(self.bias, dtype=float).reshape(-1)
            if b.shape != (w.shape[0],):
                raise ShapeError(f"bias has shape {b.shape}, expected ({w.shape[0]},) for this weight")
            check_weights(b[None, :], "layer bias", allow_zero=False)
            object.__setattr__(self, "bias", b)
        if not (math.isfinite(self.volts_per_unit_sum) and self.volts_per_unit_sum > 0):
            raise ConfigError(f"volts_per_unit_sum must be positive, got {self.volts_per_unit_sum}")

    def raw_sum(self, x: np.ndarray) -> np.ndarray:
        """Raw sums (batch, fan_out) for inputs x (batch, fan_in) in units of V_DD."""
        s = np.asarray(x, dtype=float) @ self.weight.T
        return s + self.bias if self.bias is not None else s


@dataclass
class Tile:
    """One subarray: which inputs (rows) and neurons (columns) of its layer it holds."""

    layer: int
    h: int
    v: int
    input_idx: np.ndarray  # indices into the layer's inputs (bias excluded)
    has_bias: bool
    output_idx: np.ndarray  # indices into the layer's neurons
    weights: np.ndarray  # (rows, cols) in {-1, +1}, bias row last when has_bias
    g_plus: np.ndarray  # (rows, cols) S, with variation/faults
    g_minus: np.ndarray
    gain: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (cols,)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.weights.shape[0]), int(self.weights.shape[1])


@dataclass
class LayerMap:
    index: int
    layer: BinaryLayer
    hpar: int
    vpar: int
    tiles: list[Tile]


@dataclass
class NetworkMap:
    """A network on subarrays: per-layer tiles, plus the spec it was mapped with."""

    layers: list[LayerMap]
    spec: ImacSpec
    rows: int
    cols: int
    partitioned: bool

    @property
    def n_subarrays(self) -> int:
        return sum(len(lm.tiles) for lm in self.layers)

    @property
    def hpar(self) -> list[int]:
        return [lm.hpar for lm in self.layers]

    @property
    def vpar(self) -> list[int]:
        return [lm.vpar for lm in self.layers]

    def summary(self) -> dict[str, Any]:
        return {
            "subarray": [self.rows, self.cols] if self.partitioned else "one array per layer",
            "sizes": [self.layers[0].layer.fan_in] + [lm.layer.fan_out for lm in self.layers],
            "hpar": self.hpar,
            "vpar": self.vpar,
            "n_subarrays": self.n_subarrays,
            "n_devices": int(sum(2 * t.weights.size for lm in self.layers for t in lm.tiles)),
        }


def partition_counts(fan_in: int, fan_out: int, rows: int, cols: int) -> tuple[int, int]:
    """(hpar, vpar) of a layer on rows x cols subarrays; the bias takes one row."""
    return math.ceil((fan_in + 1) / rows), math.ceil(fan_out / cols)


def check_subarray_size(rows: int, cols: int) -> None:
    if not (isinstance(rows, int | np.integer) and isinstance(cols, int | np.integer)):
        raise ConfigError(f"subarray size must be integers, got {rows!r} x {cols!r}")
    if rows < 2:
        raise ConfigError(f"subarray needs at least 2 rows (one input line and the bias line), got {rows}")
    if cols < 1:
        raise ConfigError(f"subarray needs at least 1 column, got {cols}")
    if rows > MAX_SUBARRAY_SIDE or cols > MAX_SUBARRAY_SIDE:
        raise ConfigError(f"subarray {rows}x{cols} exceeds the supported {MAX_SUBARRAY_SIDE} per side")


def map_network(
    layers: list[BinaryLayer],
    spec: ImacSpec | None = None,
    rows: int | None = None,
    cols: int | None = None,
    partitioned: bool = True,
) -> NetworkMap:
    """Place every layer on tiles and draw the device conductances (seeded variation/faults).

    Gains are left unset; :mod:`imac.hardware.simulate` derives them for the fidelity it runs.
    ``partitioned=False`` puts each layer on one array of (fan_in + 1) x fan_out.
    """
    spec = spec or ImacSpec()
    if not layers:
        raise ConfigError("the model has no binary FC layers to map onto IMAC")
    for k in range(1, len(layers)):
        if layers[k].fan_in != layers[k - 1].fan_out:
            raise ShapeError(
                f"layer {k} takes {layers[k].fan_in} inputs but layer {k - 1} has {layers[k - 1].fan_out} neurons"
            )
    rows = spec.subarray.rows if rows is None else rows
    cols = spec.subarray.cols if cols is None else cols
    check_subarray_size(rows, cols)
    rng = np.random.default_rng(spec.variation.seed)
    out: list[LayerMap] = []
    for li, layer in enumerate(layers):
        if partitioned:
            hpar, vpar = partition_counts(layer.fan_in, layer.fan_out, rows, cols)
        else:
            hpar, vpar = 1, 1
        row_groups = np.array_split(np.arange(layer.fan_in + 1), hpar)  # index fan_in = bias
        col_groups = np.array_split(np.arange(layer.fan_out), vpar)
        bias_col = layer.bias if layer.bias is not None else None
        tiles = []
        for h, rg in enumerate(row_groups):
            has_bias = bool(rg[-1] == layer.fan_in)
            inputs = rg[:-1] if has_bias else rg
            for v, cg in enumerate(col_groups):
                w = layer.weight[np.ix_(cg, inputs)].T  # (rows, cols)
                if has_bias:
                    # a layer without bias still has its bias line: weights +1 and -1 alternate
                    # so the line's net contribution is ~0 and the array stays uniform
                    brow = bias_col[cg] if bias_col is not None else np.where(np.arange(cg.size) % 2, -1.0, 1.0)
                    w = np.vstack([w, brow[None, :]])
                gp, gm = synapse_conductances(w, spec, rng)
                tiles.append(Tile(li, h, v, inputs, has_bias, cg, w, gp, gm))
        out.append(LayerMap(li, layer, hpar, vpar, tiles))
    return NetworkMap(out, spec, rows, cols, partitioned)


def nominal_levels(spec: ImacSpec) -> tuple[float, float]:
    """Nominal (variation-free) synapse conductances (g_low_resistance, g_high_resistance), S."""
    lv = synapse_levels(spec.synapse, spec.mtj)
    return 1.0 / lv.r_low, 1.0 / lv.r_high
