"""Nodal analysis of a subarray and its effective transfer matrix.

The array is linear, so its amplifier outputs are an affine map of the input-line voltages:
``v_out = A @ u + b`` (b comes from the bias line held at V_DD).  A batch of input vectors then
costs one dense matrix product, exactly as the ideal product would.  Two exact ways to get A:

* ``"nested"`` (:mod:`imac.circuit.nested`): eliminate every inner node by nested dissection
  over tiles of cells, down to the terminals (line sources, amplifier ends), then stamp the
  amplifiers on that small dense system.  Cost ~n^3 with a small constant and memory
  ~(rows + 2 cols)^2: a 1024x1024 array in seconds (docs/benchmarks.md).  Needs positive wire
  resistance in both directions.
* ``"sparse"``: assemble the nodal conductance matrix G from triplets, LU-factor it once
  (SuperLU), and obtain A by the adjoint method (m solves with G^T, one per output).  Handles
  merged nodes (zero-resistance wires) and is the faster one for tiny arrays.

``solve_subarray`` picks ``"nested"`` for arrays of at least ``NESTED_MIN_CELLS`` cells with
wire resistance, ``"sparse"`` otherwise; both agree to ~1e-12 V (tests/test_solver.py).  The
full node voltages (``node_voltages``, ``device_currents``, ``kirchhoff_residual``) always come
from the sparse factorization, built on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from imac.circuit.nested import Terminals, dissection_order, reduce_subarray
from imac.circuit.netlist import FIXED, NodeMap, Resistors, Subarray, number_nodes, resistors
from imac.errors import ConfigError, ShapeError, SolverError

# From this many cells up (and with wire resistance) the nested-dissection reduction is the
# faster exact method (measured: 16x16 about even, 32x32 1.7x, 128x128 13x faster).
NESTED_MIN_CELLS = 256

Method = Literal["auto", "nested", "sparse"]


class _PermutedLU:
    """SuperLU factors of P^T G P, solving with G (the ``solve`` of ``spla.SuperLU``)."""

    def __init__(self, lu: spla.SuperLU, perm: np.ndarray) -> None:
        self.factors = lu
        self.perm = perm

    def solve(self, rhs: np.ndarray, trans: str = "N") -> np.ndarray:
        x = np.empty_like(np.asarray(rhs, dtype=float))
        x[self.perm] = self.factors.solve(np.asarray(rhs, dtype=float)[self.perm], trans=trans)
        return x


class LUFactors(Protocol):
    """What the solver needs of an LU factorization (``spla.SuperLU`` or ``_PermutedLU``)."""

    def solve(self, rhs: np.ndarray, trans: str = ...) -> np.ndarray: ...


@dataclass
class SparseSystem:
    """The assembled nodal system of a subarray and its SuperLU factors."""

    nodes: NodeMap
    elements: Resistors
    G: sp.csc_matrix
    B: sp.csc_matrix  # (n_unknowns, rows): injection from the source voltages
    C: sp.csr_matrix  # (cols, n_unknowns): amplifier outputs from node voltages
    lu: LUFactors


def sparse_system(sub: Subarray, ordering: Literal["mmd", "nested"] = "mmd") -> SparseSystem:
    """Assemble and LU-factor the nodal matrix of ``sub``.

    ``ordering``: SuperLU's minimum degree on A^T + A (the nodal matrix is structurally
    symmetric), or the nested-dissection order of :func:`imac.circuit.nested.dissection_order`
    given as the column order (3x faster factor at 256x256, but slower adjoint solves: used
    for the node voltages of a nested solve, not for the transfer matrix).
    """
    nodes, el, G, B, C = assemble(sub)
    try:
        if ordering == "nested" and nested_applies(sub):
            perm = dissection_order(nodes, sub.rows, sub.cols)
            P = sp.csc_matrix((np.ones(perm.size), (perm, np.arange(perm.size))), shape=G.shape)
            lu: LUFactors = _PermutedLU(spla.splu((P.T @ G @ P).tocsc(), permc_spec="NATURAL",
                                                  diag_pivot_thresh=0.0, options={"SymmetricMode": True}), perm)
        else:
            lu = spla.splu(G, permc_spec="MMD_AT_PLUS_A")
    except RuntimeError as err:  # SuperLU: "Factor is exactly singular"
        raise SolverError(f"the {sub.rows}x{sub.cols} subarray's nodal matrix is singular: {err}") from None
    return SparseSystem(nodes, el, G, B, C, lu)


@dataclass(eq=False)
class SolvedSubarray:
    """A solved subarray: its transfer matrix and the means to recover node voltages.

    ``nodes``, ``elements``, ``G``, ``B``, ``C`` and ``lu`` are the sparse nodal system; after a
    nested-dissection solve they are assembled and factored on first access.
    """

    sub: Subarray
    A_full: np.ndarray  # (cols, rows): outputs per source voltage, bias line included
    method: str = "sparse"
    _system: SparseSystem | None = field(default=None, repr=False)
    _terminals: Terminals | None = field(default=None, repr=False)
    _Y: np.ndarray | None = field(default=None, repr=False)

    def system(self) -> SparseSystem:
        """The sparse nodal system (assembled and factored on first use)."""
        if self._system is None:
            self._system = sparse_system(self.sub, "nested" if self.method == "nested" else "mmd")
        return self._system

    @property
    def nodes(self) -> NodeMap:
        return self.system().nodes

    @property
    def elements(self) -> Resistors:
        return self.system().elements

    @property
    def G(self) -> sp.csc_matrix:
        return self.system().G

    @property
    def B(self) -> sp.csc_matrix:
        return self.system().B

    @property
    def C(self) -> sp.csr_matrix:
        return self.system().C

    @property
    def lu(self) -> LUFactors:
        return self.system().lu

    @property
    def A(self) -> np.ndarray:
        """Transfer matrix from the caller's inputs (bias line excluded), V/V, (cols, n_inputs)."""
        return self.A_full[:, : self.sub.n_inputs]

    def offset(self, v_bias: float) -> np.ndarray:
        """Output offset (V) from the bias line at ``v_bias`` (V); zeros without a bias line."""
        if not self.sub.has_bias:
            return np.zeros(self.sub.cols)
        return self.A_full[:, -1] * v_bias

    def sources(self, inputs: np.ndarray, v_bias: float) -> np.ndarray:
        """Source-voltage matrix (rows, batch) from inputs (batch, n_inputs)."""
        u = _check_inputs(inputs, self.sub.n_inputs)
        if self.sub.has_bias:
            u = np.hstack([u, np.full((u.shape[0], 1), float(v_bias))])
        return u.T

    def outputs(self, inputs: np.ndarray, v_bias: float = 0.8) -> np.ndarray:
        """Amplifier outputs (batch, cols), V, for inputs (batch, n_inputs), V."""
        u = _check_inputs(inputs, self.sub.n_inputs)
        return u @ self.A.T + self.offset(v_bias)

    def node_voltages(self, inputs: np.ndarray, v_bias: float = 0.8) -> np.ndarray:
        """All unknown node voltages (n_unknowns, batch) by a full solve (for checks/power)."""
        u = self.sources(inputs, v_bias)
        return self.lu.solve(np.asarray(self.B @ u))

    def kirchhoff_residual(self, inputs: np.ndarray, v_bias: float = 0.8) -> float:
        """max |G v - B u| (A) over the batch: the current-law error of a full solve."""
        u = self.sources(inputs, v_bias)
        v = self.lu.solve(np.asarray(self.B @ u))
        return float(np.max(np.abs(self.G @ v - self.B @ u)))

    def input_admittance(self) -> np.ndarray:
        """Y (rows x rows, S): currents drawn from the line sources, I = Y @ u.

        I_k = sum of g (u_k - v_node) over the elements tied to source k, with v = G^-1 B u, so
        Y = diag(column sums of B) - B^T G^-1 B: the Schur complement of the whole circuit onto
        the sources (the nested reduction has it directly).  Used to join subarrays that share
        a driver.
        """
        if self._Y is None:
            if self._terminals is not None:
                self._Y = self._terminals.input_admittance()
            else:
                Bd = self.B.toarray()
                self._Y = np.diag(Bd.sum(axis=0)) - Bd.T @ self.lu.solve(Bd)
        return self._Y

    def device_currents(self, inputs: np.ndarray, v_bias: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """Currents (A) through the I+ and I- devices, shape (batch, rows, cols)."""
        u = self.sources(inputs, v_bias)
        v = self.lu.solve(np.asarray(self.B @ u))
        nodes = self.nodes

        def volt(idx: np.ndarray) -> np.ndarray:
            fixed = idx < 0
            out = np.empty((*idx.shape, u.shape[1]))
            out[~fixed] = v[idx[~fixed]]
            out[fixed] = u[FIXED - idx[fixed]]
            return np.moveaxis(out, -1, 0)

        vx = volt(nodes.x)
        return (vx - volt(nodes.p)) * self.sub.g_plus, (vx - volt(nodes.q)) * self.sub.g_minus


def _check_inputs(inputs: np.ndarray, n: int) -> np.ndarray:
    u = np.asarray(inputs, dtype=float)
    if u.ndim == 1:
        u = u[None, :]
    if u.ndim != 2 or u.shape[1] != n:
        raise ShapeError(f"inputs must have shape (batch, {n}), got {np.shape(inputs)}")
    if not np.all(np.isfinite(u)):
        raise ShapeError("inputs contain NaN or infinite values")
    return u


def assemble(sub: Subarray) -> tuple[NodeMap, Resistors, sp.csc_matrix, sp.csc_matrix, sp.csr_matrix]:
    """Nodal matrices G (n x n), B (n x rows) and output map C (cols x n) of a subarray."""
    nodes = number_nodes(sub)
    el = resistors(sub, nodes)
    n_unk = nodes.n_unknowns
    a, b, g = el.a, el.b, el.g
    au, bu = a >= 0, b >= 0
    both = au & bu
    # G: diagonal for every unknown terminal, off-diagonal for unknown-unknown pairs
    rows = [a[au], b[bu], a[both], b[both]]
    cols = [a[au], b[bu], b[both], a[both]]
    vals = [g[au], g[bu], -g[both], -g[both]]
    # amplifier loads (module doc of netlist.py): I+ end to ground through r_in (1 + gain);
    # I- end to the op-amp node held at V+ * gain/(1+gain), through r_in
    gain = sub.amp_gain
    g_in = 1.0 / sub.amp_r_in
    if sub.amp_topology == "difference":
        rows += [nodes.p_end, nodes.q_end, nodes.q_end]
        cols += [nodes.p_end, nodes.q_end, nodes.p_end]
        vals += [g_in / (1.0 + gain), np.full(sub.cols, g_in), -g_in * gain / (1.0 + gain)]
    G = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_unk, n_unk)
    )
    # B: a resistor from unknown node k to source s injects g * V_s into row k
    ka = au & ~bu
    kb = bu & ~au
    B = sp.csc_matrix(
        (
            np.concatenate([g[ka], g[kb]]),
            (np.concatenate([a[ka], b[kb]]), np.concatenate([FIXED - b[ka], FIXED - a[kb]])),
        ),
        shape=(n_unk, sub.rows),
    )
    j = np.arange(sub.cols)
    C = sp.csr_matrix(
        (np.concatenate([gain, -gain]), (np.concatenate([j, j]), np.concatenate([nodes.p_end, nodes.q_end]))),
        shape=(sub.cols, n_unk),
    )
    return nodes, el, G, B, C


def nested_applies(sub: Subarray) -> bool:
    """Whether the nested-dissection reduction can solve ``sub`` (wire resistance both ways)."""
    return sub.r_vertical > 0 and sub.r_horizontal > 0


def solve_subarray(sub: Subarray, method: Method = "auto") -> SolvedSubarray:
    """Solve ``sub`` exactly: its effective transfer matrix (see the module doc for ``method``)."""
    if method == "auto":
        method = "nested" if nested_applies(sub) and sub.rows * sub.cols >= NESTED_MIN_CELLS else "sparse"
    if method == "nested":
        if not nested_applies(sub):
            raise ConfigError("method='nested' needs r_vertical > 0 and r_horizontal > 0; use 'sparse'")
        terminals = reduce_subarray(sub)
        return SolvedSubarray(sub, terminals.A_full, "nested", _terminals=terminals)
    if method != "sparse":
        raise ConfigError(f"unknown solver method {method!r} (auto, nested or sparse)")
    system = sparse_system(sub)
    # adjoint: A = C G^-1 B = (G^-T C^T)^T B, m solves instead of one per input vector
    Y = system.lu.solve(np.asarray(system.C.T.todense()), trans="T")
    A_full = np.asarray((system.B.T @ Y).T)
    return SolvedSubarray(sub, A_full, "sparse", _system=system)


def ideal_outputs(sub: Subarray, inputs: np.ndarray, v_bias: float = 0.8) -> np.ndarray:
    """Closed-form amplifier outputs (batch, cols), V, with no wire or driver resistance.

    Instrumentation amplifier: each line is the conductance-weighted mean of the inputs.
    Difference amplifier:
    each summing line is then a single node; KCL at the I+ node gives
    V+ = sum_i g+_i u_i / (sum_i g+_i + 1/(r_in (1+gain))), and at the I- node
    V- = (sum_i g-_i u_i + V+ gain/((1+gain) r_in)) / (sum_i g-_i + 1/r_in).
    """
    u = _check_inputs(inputs, sub.n_inputs)
    if sub.has_bias:
        u = np.hstack([u, np.full((u.shape[0], 1), float(v_bias))])
    gain = sub.amp_gain
    if sub.amp_topology == "instrumentation":
        return gain * ((u @ sub.g_plus) / sub.g_plus.sum(0) - (u @ sub.g_minus) / sub.g_minus.sum(0))
    g_in = 1.0 / sub.amp_r_in
    v_plus = (u @ sub.g_plus) / (sub.g_plus.sum(0) + g_in / (1.0 + gain))
    v_minus = (u @ sub.g_minus + v_plus * gain / (1.0 + gain) * g_in) / (sub.g_minus.sum(0) + g_in)
    return gain * (v_plus - v_minus)
