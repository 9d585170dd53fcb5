"""Exact terminal reduction of a subarray by nested dissection (block elimination over tiles).

The transfer matrix only depends on the array's terminals: the line sources (one per input
line) and the amplifier ends of the summing lines (two per output).  Everything else (the
3 rows x cols inner nodes) can be eliminated exactly, and the structure tells how to do it
cheaply: input line ``i`` is a chain of ``x`` nodes along the row, each summing line a chain
of ``p`` (or ``q``) nodes down the column, and the chains meet only through the device
conductances of their cell.  So a rectangle of cells touches the rest of the array only
through

* the ``x`` node just left of it on each of its rows (or the line source on column 0),
* its own right column of ``x`` nodes (one per row),
* the ``p``/``q`` pair just above it on each of its columns, and
* its own bottom row of ``p``/``q`` pairs (or the amplifier ends on the last row).

A tile is that rectangle with its interior eliminated: a dense, symmetric positive
semi-definite matrix over those *ports* (a Schur complement of the nodal conductance matrix).
Two neighbouring tiles are merged by adding their matrices on the union of their ports and
eliminating the ports they share (the right column of the left tile, or the bottom row of the
top tile), which no other element touches.  Splitting the array recursively in two (columns
when the tile is wide, rows when it is tall, the dimension whose separator is smaller) is a
nested-dissection ordering; the factors are never stored, only the tiles alive at one time,
so memory stays ~(rows + 2 cols)^2 doubles at the top of the tree.  Small tiles (the bottom
of the tree) are processed breadth-first as stacked matrices, so numpy/LAPACK loop in C; the
few large merges near the root use Cholesky and a symmetric rank-k update (BLAS level 3).

The result is the Schur complement ``S`` of the passive part of the array (wires, devices,
drivers) onto [sources, amplifier ends].  The amplifiers, the only non-symmetric part, are
then a small stamp on the ends block, and::

    K = S_ee + amplifier loads,     v_ends = -K^-1 S_es u,     A = C_e v_ends / u,
    Y (currents drawn from the sources) = S_ss - S_se K^-1 S_es.

Needs positive wire resistance in both directions (zero-resistance wires merge nodes; the
sparse LU in :mod:`imac.circuit.solve` handles those, and they have few unknowns).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dsyrk

from imac.circuit.netlist import Subarray
from imac.errors import SolverError

# Leaf tile (rows x cols of cells) eliminated directly; 4 x 2 balances its dense elimination
# (which grows as (rows x cols)^2 per cell) against the per-level overhead of the merges.
LEAF_ROWS = 4
LEAF_COLS = 2
# Subtrees up to this many cells are processed breadth-first as stacked matrices; above it,
# one merge at a time (depth first, so only the tiles along one path of the tree are alive).
CHUNK_CELLS = 1 << 14
# Merges with at least this many ports use Cholesky + dsyrk one at a time instead of the
# stacked LU solve.
LARGE_PORTS = 384


@dataclass(frozen=True)
class TileKey:
    """Shape and position class of a tile; tiles with equal keys share one port layout.

    Port order: L (h: left neighbours, or the sources on column 0), R (h: own right column,
    absent on the last column), T (2w: p/q pairs above, absent on row 0), B (2w: own bottom
    row, or the amplifier ends on the last row).  p and q alternate within T and B.
    """

    h: int
    w: int
    has_t: bool
    has_r: bool
    is_l: bool
    is_b: bool

    @property
    def n_r(self) -> int:
        return self.h if self.has_r else 0

    @property
    def n_t(self) -> int:
        return 2 * self.w if self.has_t else 0

    @property
    def n_ports(self) -> int:
        return self.h + self.n_r + self.n_t + 2 * self.w

    def span(self, part: str) -> np.ndarray:
        """Indices of one port group ('L', 'R', 'T' or 'B') in this tile's layout."""
        start = {"L": 0, "R": self.h, "T": self.h + self.n_r, "B": self.h + self.n_r + self.n_t}[part]
        size = {"L": self.h, "R": self.n_r, "T": self.n_t, "B": 2 * self.w}[part]
        return np.arange(start, start + size)


@dataclass
class _Node:
    r0: int
    c0: int
    key: TileKey
    children: tuple[_Node, _Node] | None = None
    side_by_side: bool = False  # children split the columns (True) or the rows (False)

    @property
    def cells(self) -> int:
        return self.key.h * self.key.w


def _split(size: int, leaf: int) -> int:
    """First part of a split: the largest leaf * 2^k below ``size`` (uniform tile shapes)."""
    a = leaf
    while 2 * a < size:
        a *= 2
    return a


def build_tree(rows: int, cols: int, r0: int = 0, h: int | None = None, c0: int = 0,
               w: int | None = None) -> _Node:
    """The nested-dissection tree of the region [r0, r0+h) x [c0, c0+w) of a rows x cols array."""
    h = rows if h is None else h
    w = cols if w is None else w
    key = TileKey(h, w, r0 > 0, c0 + w < cols, c0 == 0, r0 + h == rows)
    if h <= LEAF_ROWS and w <= LEAF_COLS:
        return _Node(r0, c0, key)
    # a column cut shares h ports, a row cut 2w: cut where the separator is smaller
    by_cols = h <= LEAF_ROWS or (w > LEAF_COLS and h <= 2 * w)
    if by_cols:
        a = _split(w, LEAF_COLS)
        kids = (build_tree(rows, cols, r0, h, c0, a), build_tree(rows, cols, r0, h, c0 + a, w - a))
    else:
        a = _split(h, LEAF_ROWS)
        kids = (build_tree(rows, cols, r0, a, c0, w), build_tree(rows, cols, r0 + a, h - a, c0, w))
    return _Node(r0, c0, key, kids, by_cols)


# ---------------------------------------------------------------------------------------------
# merge plans: which ports are shared, where the others go
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergePlan:
    key: TileKey
    sa: np.ndarray  # shared ports in A's layout
    sb: np.ndarray  # the same ports in B's layout
    ka: np.ndarray  # A's kept ports ...
    pa: np.ndarray  # ... and their place in the merged layout
    kb: np.ndarray
    pb: np.ndarray


@lru_cache(maxsize=4096)
def merge_plan(a: TileKey, b: TileKey, side_by_side: bool) -> MergePlan:
    """Plan of merging tile ``a`` with ``b`` (b right of a, or below it)."""
    if side_by_side:
        assert a.has_r and a.h == b.h and a.has_t == b.has_t and a.is_b == b.is_b
        new = TileKey(a.h, a.w + b.w, a.has_t, b.has_r, a.is_l, a.is_b)
        t_new, b_new = new.span("T"), new.span("B")
        na, nb = (2 * a.w if a.has_t else 0), 2 * a.w
        ka = np.concatenate([a.span("L"), a.span("T"), a.span("B")])
        pa = np.concatenate([new.span("L"), t_new[:na], b_new[:nb]])
        kb = np.concatenate([b.span("R"), b.span("T"), b.span("B")])
        pb = np.concatenate([new.span("R"), t_new[na:], b_new[nb:]])
        sa, sb = a.span("R"), b.span("L")
    else:
        assert b.has_t and a.w == b.w and a.has_r == b.has_r and a.is_l == b.is_l
        new = TileKey(a.h + b.h, a.w, a.has_t, a.has_r, a.is_l, b.is_b)
        l_new, r_new = new.span("L"), new.span("R")
        ka = np.concatenate([a.span("L"), a.span("R"), a.span("T")])
        pa = np.concatenate([l_new[: a.h], r_new[: a.n_r], new.span("T")])
        kb = np.concatenate([b.span("L"), b.span("R"), b.span("B")])
        pb = np.concatenate([l_new[a.h:], r_new[a.n_r:], new.span("B")])
        sa, sb = a.span("B"), b.span("T")
    return MergePlan(new, sa, sb, ka, pa, kb, pb)


def merge_stacked(SA: np.ndarray, SB: np.ndarray, plan: MergePlan) -> np.ndarray:
    """Merge stacks of tiles (T, Pa, Pa) and (T, Pb, Pb) into (T, P, P)."""
    t, p, k = SA.shape[0], plan.key.n_ports, plan.sa.size
    sa, sb, ka, kb, pa, pb = plan.sa, plan.sb, plan.ka, plan.kb, plan.pa, plan.pb
    if t == 1 and p >= LARGE_PORTS:
        return merge_one(SA[0], SB[0], plan)[None]
    M_ii = SA[:, sa[:, None], sa] + SB[:, sb[:, None], sb]
    M_ik = np.zeros((t, k, p))
    M_ik[:, :, pa] = SA[:, sa[:, None], ka]
    M_ik[:, :, pb] = SB[:, sb[:, None], kb]
    out = np.zeros((t, p, p))
    out[:, pa[:, None], pa] = SA[:, ka[:, None], ka]
    out[:, pb[:, None], pb] = SB[:, kb[:, None], kb]
    try:
        X = np.linalg.solve(M_ii, M_ik)
    except np.linalg.LinAlgError:
        raise SolverError("singular separator in the nested-dissection merge") from None
    out -= np.swapaxes(M_ik, 1, 2) @ X
    return out


def merge_one(SA: np.ndarray, SB: np.ndarray, plan: MergePlan) -> np.ndarray:
    """Merge two large tiles: Cholesky of the separator and a symmetric rank-k update."""
    p = plan.key.n_ports
    sa, sb, ka, kb, pa, pb = plan.sa, plan.sb, plan.ka, plan.kb, plan.pa, plan.pb
    M_ii = SA[np.ix_(sa, sa)] + SB[np.ix_(sb, sb)]
    M_ik = np.zeros((sa.size, p))
    M_ik[:, pa] = SA[np.ix_(sa, ka)]
    M_ik[:, pb] = SB[np.ix_(sb, kb)]
    out = np.zeros((p, p), order="F")
    out[np.ix_(pa, pa)] = SA[np.ix_(ka, ka)]
    out[np.ix_(pb, pb)] = SB[np.ix_(kb, kb)]
    try:
        L = sla.cholesky(M_ii, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        raise SolverError("singular separator in the nested-dissection merge") from None
    W = sla.solve_triangular(L, M_ik, lower=True, overwrite_b=True, check_finite=False)
    out = dsyrk(-1.0, W, beta=1.0, c=out, trans=1, lower=1, overwrite_c=1)
    # dsyrk updates one triangle: mirror it
    iu = np.triu_indices(p, 1)
    out[iu] = out.T[iu]
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------
# leaves: the local nodal matrix of a few cells, interior eliminated
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeafPlan:
    n_local: int
    a: np.ndarray  # edge ends (local indices)
    b: np.ndarray
    inc: np.ndarray  # (edges, n_local): 1 where an edge touches a node (diagonal stamps)
    ports: np.ndarray  # local indices in the tile's port order
    interior: np.ndarray
    # edge groups in order: left (h), along x (h*(w-1)), x-p (h*w), x-q (h*w), top (2w),
    # along p/q (2*(h-1)*w), into the ends (2w)
    counts: tuple[int, ...]


@lru_cache(maxsize=256)
def leaf_plan(key: TileKey) -> LeafPlan:
    h, w = key.h, key.w
    L = np.arange(h)
    T = h + np.arange(key.n_t)
    base = h + key.n_t
    X = base + np.arange(h * w).reshape(h, w)
    P = base + h * w + 2 * np.arange(h * w).reshape(h, w)
    Q = P + 1
    base_e = base + 3 * h * w
    E = base_e + np.arange(2 * w if key.is_b else 0)
    n_local = base_e + E.size
    groups = [
        (L, X[:, 0]),
        (X[:, :-1].ravel(), X[:, 1:].ravel()),
        (X.ravel(), P.ravel()),
        (X.ravel(), Q.ravel()),
        (T, np.stack([P[0], Q[0]], axis=1).ravel() if key.has_t else T),
        (np.concatenate([P[:-1].ravel(), Q[:-1].ravel()]), np.concatenate([P[1:].ravel(), Q[1:].ravel()])),
        (np.stack([P[-1], Q[-1]], axis=1).ravel() if key.is_b else E, E),
    ]
    a = np.concatenate([g[0] for g in groups])
    b = np.concatenate([g[1] for g in groups])
    inc = np.zeros((a.size, n_local))
    inc[np.arange(a.size), a] = 1.0
    inc[np.arange(a.size), b] = 1.0
    bottom = E if key.is_b else np.stack([P[-1], Q[-1]], axis=1).ravel()
    ports = np.concatenate([L, X[:, -1] if key.has_r else L[:0], T, bottom])
    interior = np.setdiff1d(np.arange(n_local), ports)
    return LeafPlan(n_local, a, b, inc, ports, interior, tuple(g[0].size for g in groups))


def leaves_stacked(sub: Subarray, key: TileKey, r0s: np.ndarray, c0s: np.ndarray) -> np.ndarray:
    """Port matrices (T, P, P) of the leaf tiles at (r0s, c0s), all of class ``key``."""
    plan = leaf_plan(key)
    h, w, t = key.h, key.w, r0s.size
    g_v, g_h = 1.0 / sub.r_vertical, 1.0 / sub.r_horizontal
    rows = r0s[:, None, None] + np.arange(h)[None, :, None]
    cols = c0s[:, None, None] + np.arange(w)[None, None, :]
    if key.is_l:
        g_left = 1.0 / (sub.r_driver[r0s[:, None] + np.arange(h)] + sub.r_vertical)
    else:
        g_left = np.full((t, h), g_v)
    n_x, n_t, n_pq, n_e = plan.counts[1], plan.counts[4], plan.counts[5], plan.counts[6]
    vals = np.concatenate([
        g_left,
        np.full((t, n_x), g_v),
        sub.g_plus[rows, cols].reshape(t, -1),
        sub.g_minus[rows, cols].reshape(t, -1),
        np.full((t, n_t + n_pq + n_e), g_h),
    ], axis=1)
    M = np.zeros((t, plan.n_local, plan.n_local))
    M[:, plan.a, plan.b] = -vals
    M[:, plan.b, plan.a] = -vals
    diag = np.arange(plan.n_local)
    M[:, diag, diag] = vals @ plan.inc
    pi, ii = plan.ports, plan.interior
    M_pp = M[:, pi[:, None], pi]
    if ii.size == 0:
        return M_pp
    M_ip = M[:, ii[:, None], pi]
    try:
        X = np.linalg.solve(M[:, ii[:, None], ii], M_ip)
    except np.linalg.LinAlgError:
        raise SolverError("singular leaf in the nested-dissection reduction") from None
    return M_pp - np.swapaxes(M_ip, 1, 2) @ X


# ---------------------------------------------------------------------------------------------
# the tree: breadth-first (stacked) below CHUNK_CELLS, depth-first above
# ---------------------------------------------------------------------------------------------


def _solve_stacked(sub: Subarray, root: _Node) -> np.ndarray:
    """Port matrix of ``root`` by processing its subtree level by level in stacks."""
    levels: list[list[_Node]] = []
    height: dict[int, int] = {}

    def visit(node: _Node) -> int:
        if node.children is None:
            lvl = 0
        else:
            lvl = 1 + max(visit(node.children[0]), visit(node.children[1]))
        height[id(node)] = lvl
        while len(levels) <= lvl:
            levels.append([])
        levels[lvl].append(node)
        return lvl

    visit(root)
    mats: dict[int, np.ndarray] = {}
    leaf_groups: dict[TileKey, list[_Node]] = {}
    for node in levels[0]:
        leaf_groups.setdefault(node.key, []).append(node)
    for key, nodes in leaf_groups.items():
        out = leaves_stacked(sub, key, np.array([n.r0 for n in nodes]), np.array([n.c0 for n in nodes]))
        for i, n in enumerate(nodes):
            mats[id(n)] = out[i]
    for lvl in levels[1:]:
        groups: dict[tuple[TileKey, TileKey, bool], list[_Node]] = {}
        for node in lvl:
            assert node.children is not None
            a, b = node.children
            groups.setdefault((a.key, b.key, node.side_by_side), []).append(node)
        for (ka, kb, sbs), nodes in groups.items():
            plan = merge_plan(ka, kb, sbs)
            kids = [n.children for n in nodes]
            SA = np.stack([mats.pop(id(c[0])) for c in kids if c is not None])
            SB = np.stack([mats.pop(id(c[1])) for c in kids if c is not None])
            out = merge_stacked(SA, SB, plan)
            del SA, SB
            for i, n in enumerate(nodes):
                mats[id(n)] = out[i]
    return mats[id(root)]


def _solve_node(sub: Subarray, node: _Node, chunk_cells: int) -> np.ndarray:
    if node.cells <= chunk_cells or node.children is None:
        return _solve_stacked(sub, node)
    a, b = node.children
    SA = _solve_node(sub, a, chunk_cells)
    SB = _solve_node(sub, b, chunk_cells)
    plan = merge_plan(a.key, b.key, node.side_by_side)
    return merge_stacked(SA[None], SB[None], plan)[0]


def terminal_matrix(sub: Subarray, chunk_cells: int = CHUNK_CELLS) -> np.ndarray:
    """Schur complement (rows + 2 cols square, S) of the passive array onto its terminals.

    Order: the line sources (one per row, bias line last), then the amplifier ends of each
    column, p then q.  Amplifier loads are not included.
    """
    if not (sub.r_vertical > 0 and sub.r_horizontal > 0):
        raise SolverError("the nested-dissection reduction needs positive wire resistance in both directions")
    root = build_tree(sub.rows, sub.cols)
    S = _solve_node(sub, root, chunk_cells)
    return 0.5 * (S + S.T)


@dataclass
class Terminals:
    """The reduced array: what the transfer matrix and the input admittance need."""

    S_ss: np.ndarray  # (rows, rows): source block
    S_es: np.ndarray  # (2 cols, rows): ends from sources
    Z: np.ndarray  # (2 cols, rows): K^-1 S_es, the end voltages per unit source voltage (negated)
    A_full: np.ndarray  # (cols, rows)

    def input_admittance(self) -> np.ndarray:
        """Y = S_ss - S_se K^-1 S_es (S): currents drawn from the sources, I = Y u."""
        return self.S_ss - self.S_es.T @ self.Z


def amplifier_block(sub: Subarray, S_ee: np.ndarray) -> np.ndarray:
    """The ends block with the amplifier loads stamped (netlist.py module doc)."""
    K = np.array(S_ee, dtype=float, copy=True)
    if sub.amp_topology == "difference":
        gain = sub.amp_gain
        g_in = 1.0 / sub.amp_r_in
        j = np.arange(sub.cols)
        K[2 * j, 2 * j] += g_in / (1.0 + gain)
        K[2 * j + 1, 2 * j + 1] += g_in
        K[2 * j + 1, 2 * j] -= g_in * gain / (1.0 + gain)
    return K


def reduce_subarray(sub: Subarray, chunk_cells: int = CHUNK_CELLS) -> Terminals:
    """Transfer matrix (cols x rows, bias column included) by nested dissection."""
    n = sub.rows
    S = terminal_matrix(sub, chunk_cells)
    K = amplifier_block(sub, S[n:, n:])
    S_es = np.ascontiguousarray(S[n:, :n])
    try:
        lu = sla.lu_factor(K, overwrite_a=True, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        raise SolverError("singular amplifier-end block") from None
    Z = sla.lu_solve(lu, S_es, check_finite=False)
    if not np.all(np.isfinite(Z)):
        raise SolverError(f"the {sub.rows}x{sub.cols} subarray's reduced matrix is singular")
    A_full = -sub.amp_gain[:, None] * (Z[0::2] - Z[1::2])
    return Terminals(np.ascontiguousarray(S[:n, :n]), S_es, Z, A_full)
