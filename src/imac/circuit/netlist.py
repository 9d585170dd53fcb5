"""An n x m synapse subarray as a linear resistive circuit.

Layout (SYSTEM.md section 3).  Input line ``i`` (rows, the bias line last when present) is
driven at column 0 through the driver resistance and runs across all m output columns, one wire
segment ``r_vertical`` per cell.  Output ``j`` has two summing lines, I+ and I-, that run across
all rows, one segment ``r_horizontal`` per cell, into a difference amplifier after the last row.
Each weight is a differential pair: conductance ``g_plus[i, j]`` from input node (i, j) onto the
I+ line, ``g_minus[i, j]`` onto the I- line.

The ``difference`` amplifier (the published read-out) is an ideal op-amp with R1 = R2 = r_in and R3 = R4 = gain * r_in:
V_out = gain * (V+ - V-).  It loads the lines: I+ sees r_in (1 + gain) to ground; I- sees r_in to
the op-amp input node, which an ideal op-amp holds at V+ * gain / (1 + gain).  The solver stamps
exactly that; the SPICE export draws the op-amp and its four resistors explicitly, so the
comparison with ngspice also checks this reduction.  The ``instrumentation`` option senses both
line ends without loading them (V_out = gain (V+ - V-), no current drawn).

Nodes joined by a zero-resistance wire are merged, so ``r_vertical = 0`` or ``r_horizontal = 0``
gives the ideal (parasitic-free) array exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imac.errors import ConfigError, ShapeError

# Below this a resistor is numerically a short: the nodal matrix would lose ~16 digits.  Use 0
# (merged nodes) for an ideal wire instead.
MIN_RESISTANCE_OHM = 1e-6
MAX_CONDUCTANCE_S = 1.0 / MIN_RESISTANCE_OHM
FIXED = -1  # marker base: fixed (source) nodes are encoded as -1 - k for source k


@dataclass(frozen=True)
class Subarray:
    """Electrical description of one subarray.

    g_plus, g_minus: (rows, cols) device conductances, S.  r_vertical / r_horizontal: wire
    resistance per cell, ohm.  r_driver: driver output resistance per input line, ohm (scalar
    or one per row).  amp_gain: difference-amplifier gain, scalar or one per column.
    amp_r_in: amplifier input resistors R1 = R2, ohm.  has_bias: the last row is the bias line.
    """

    g_plus: np.ndarray
    g_minus: np.ndarray
    r_vertical: float = 0.0
    r_horizontal: float = 0.0
    r_driver: Any = 0.0  # scalar or per row; stored as a (rows,) array
    amp_gain: Any = 30.0  # scalar or per column; stored as a (cols,) array
    amp_r_in: float = 1000.0
    has_bias: bool = False
    amp_topology: str = "difference"
    c_vertical: float = 0.0
    c_horizontal: float = 0.0
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        gp = np.asarray(self.g_plus, dtype=float)
        gm = np.asarray(self.g_minus, dtype=float)
        if gp.ndim != 2 or 0 in gp.shape:
            raise ShapeError(f"g_plus must be a non-empty 2-D array, got shape {gp.shape}")
        if gm.shape != gp.shape:
            raise ShapeError(f"g_minus shape {gm.shape} differs from g_plus shape {gp.shape}")
        for name, g in (("g_plus", gp), ("g_minus", gm)):
            if not np.all(np.isfinite(g)):
                raise ShapeError(f"{name} contains NaN or infinite conductances")
            if np.any(g <= 0):
                raise ConfigError(f"{name} must be positive (a device has zero or negative conductance)")
        for name, g in (("g_plus", gp), ("g_minus", gm)):
            if np.any(g > MAX_CONDUCTANCE_S):
                raise ConfigError(f"{name} has a conductance above {MAX_CONDUCTANCE_S:g} S (below 1 micro-ohm)")
        for name, v in (("r_vertical", self.r_vertical), ("r_horizontal", self.r_horizontal),
                        ("c_vertical", self.c_vertical), ("c_horizontal", self.c_horizontal)):
            if not np.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be finite and >= 0, got {v}")
        if self.amp_topology not in ("difference", "instrumentation"):
            raise ConfigError(f"unknown amplifier topology {self.amp_topology!r}")
        if not np.isfinite(self.amp_r_in) or self.amp_r_in <= 0:
            raise ConfigError(f"amp_r_in must be positive, got {self.amp_r_in}")
        try:
            rd = np.broadcast_to(np.asarray(self.r_driver, dtype=float), (gp.shape[0],)).copy()
        except ValueError:
            raise ShapeError(f"r_driver must be a scalar or one value per row ({gp.shape[0]})") from None
        if not np.all(np.isfinite(rd)) or np.any(rd < 0):
            raise ConfigError("r_driver must be finite and >= 0 for every input line")
        for name, r in (("r_vertical", self.r_vertical), ("r_horizontal", self.r_horizontal)):
            if 0 < r < MIN_RESISTANCE_OHM:
                raise ConfigError(f"{name} = {r:g} ohm is below {MIN_RESISTANCE_OHM:g} ohm; use 0 for an ideal wire")
        if np.any((rd > 0) & (rd < MIN_RESISTANCE_OHM)):
            raise ConfigError(f"r_driver below {MIN_RESISTANCE_OHM:g} ohm; use 0 for an ideal driver")
        try:
            gain = np.broadcast_to(np.asarray(self.amp_gain, dtype=float), (gp.shape[1],)).copy()
        except ValueError:
            raise ShapeError(
                f"amp_gain must be a scalar or one value per column ({gp.shape[1]})"
            ) from None
        if not np.all(np.isfinite(gain)) or np.any(gain <= 0):
            raise ConfigError("amp_gain must be finite and positive")
        object.__setattr__(self, "g_plus", gp)
        object.__setattr__(self, "g_minus", gm)
        object.__setattr__(self, "r_driver", rd)
        object.__setattr__(self, "amp_gain", gain)

    @property
    def rows(self) -> int:
        return int(self.g_plus.shape[0])

    @property
    def cols(self) -> int:
        return int(self.g_plus.shape[1])

    @property
    def n_inputs(self) -> int:
        """Input lines driven by the caller (the bias line excluded)."""
        return self.rows - int(self.has_bias)


@dataclass(frozen=True)
class NodeMap:
    """Node numbering of a subarray.  Entries >= 0 are unknowns; -1 - k is source k."""

    x: np.ndarray  # (rows, cols) input-line nodes
    p: np.ndarray  # (rows, cols) I+ summing-line nodes
    q: np.ndarray  # (rows, cols) I- summing-line nodes
    p_end: np.ndarray  # (cols,) I+ line at the amplifier
    q_end: np.ndarray  # (cols,) I- line at the amplifier
    n_unknowns: int


@dataclass(frozen=True)
class Resistors:
    """Two-terminal conductances between nodes (NodeMap encoding), vectorised."""

    a: np.ndarray
    b: np.ndarray
    g: np.ndarray


def number_nodes(sub: Subarray) -> NodeMap:
    """Number the unknown nodes, merging those joined by zero-resistance wire."""
    n, m = sub.rows, sub.cols
    next_id = 0

    def fresh(shape: tuple[int, ...]) -> np.ndarray:
        nonlocal next_id
        size = int(np.prod(shape))
        ids = np.arange(next_id, next_id + size).reshape(shape)
        next_id += size
        return ids

    # input lines: fixed at the source when there is no resistance between them at all
    x = np.empty((n, m), dtype=np.int64)
    for i in range(n):
        if sub.r_vertical == 0 and sub.r_driver[i] == 0:
            x[i, :] = FIXED - i
        elif sub.r_vertical == 0:
            x[i, :] = fresh((1,))[0]
        else:
            x[i, :] = fresh((m,))
    if sub.r_horizontal == 0:
        p_end = fresh((m,))
        q_end = fresh((m,))
        p = np.broadcast_to(p_end, (n, m)).copy()
        q = np.broadcast_to(q_end, (n, m)).copy()
    else:
        p = fresh((n, m))
        q = fresh((n, m))
        p_end = fresh((m,))
        q_end = fresh((m,))
    return NodeMap(x, p, q, p_end, q_end, next_id)


def resistors(sub: Subarray, nodes: NodeMap) -> Resistors:
    """Every two-terminal conductance of the subarray (wires, devices, drivers).

    The amplifier loads are not included here: they are not two-terminal (see module doc).
    """
    n = sub.rows
    a_parts, b_parts, g_parts = [], [], []

    def add(a: np.ndarray, b: np.ndarray, r_or_g: np.ndarray | float, is_g: bool = False) -> None:
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        g = np.broadcast_to(np.asarray(r_or_g, dtype=float), a.shape).ravel()
        a, b = a.ravel(), b.ravel()
        if not is_g:
            g = 1.0 / g
        keep = a != b
        a_parts.append(a[keep])
        b_parts.append(b[keep])
        g_parts.append(np.asarray(g)[keep])

    sources = FIXED - np.arange(n)
    # driver + first wire segment of each input line (merged when both are zero)
    r_first = sub.r_driver + sub.r_vertical
    nz = np.asarray(r_first > 0)
    if nz.any():
        add(sources[nz], nodes.x[nz, 0], r_first[nz])
    if sub.r_vertical > 0:
        add(nodes.x[:, :-1], nodes.x[:, 1:], sub.r_vertical)
    add(nodes.x, nodes.p, sub.g_plus, is_g=True)
    add(nodes.x, nodes.q, sub.g_minus, is_g=True)
    if sub.r_horizontal > 0:
        for line, end in ((nodes.p, nodes.p_end), (nodes.q, nodes.q_end)):
            add(line[:-1, :], line[1:, :], sub.r_horizontal)
            add(line[-1, :], end, sub.r_horizontal)
    return Resistors(np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(g_parts))
