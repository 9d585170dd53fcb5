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
from scipy.linalg import lapack
from scipy.linalg.blas import dsyrk, dtrsm

from imac.circuit.netlist import NodeMap, Subarray
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


def _split(size: int, leaf: int) -> int:
    """First part of a split: the largest leaf * 2^k up to half of ``size``.

    Power-of-two multiples of the leaf keep most tiles the same shape (one stacked group);
    taking at most half pushes a remainder (the bias row of a 1025-row array) down the tree
    to a leaf instead of making it a separator of its own at the top (a 1024 + 1 split would
    cost a full-width merge for one row).
    """
    a = leaf
    while 4 * a <= size:
        a *= 2
    return a


def split(key: TileKey) -> tuple[TileKey, tuple[int, int], TileKey, tuple[int, int], bool] | None:
    """The two halves of a tile (keys and offsets) and whether they sit side by side; None for a leaf."""
    h, w = key.h, key.w
    if h <= LEAF_ROWS and w <= LEAF_COLS:
        return None
    # a column cut shares h ports, a row cut 2w: cut where the separator is smaller
    if h <= LEAF_ROWS or (w > LEAF_COLS and h <= 2 * w):
        a = _split(w, LEAF_COLS)
        left = TileKey(h, a, key.has_t, True, key.is_l, key.is_b)
        right = TileKey(h, w - a, key.has_t, key.has_r, False, key.is_b)
        return left, (0, 0), right, (0, a), True
    a = _split(h, LEAF_ROWS)
    top = TileKey(a, w, key.has_t, key.has_r, key.is_l, False)
    bottom = TileKey(h - a, w, True, key.has_r, key.is_l, key.is_b)
    return top, (0, 0), bottom, (a, 0), False


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

    @property
    def shared_a(self) -> slice:
        return slice(int(self.sa[0]), int(self.sa[-1]) + 1)

    @property
    def shared_b(self) -> slice:
        return slice(int(self.sb[0]), int(self.sb[-1]) + 1)

    @property
    def runs_a(self) -> list[tuple[slice, slice]]:
        return _paired_runs(self.ka, self.pa)

    @property
    def runs_b(self) -> list[tuple[slice, slice]]:
        return _paired_runs(self.kb, self.pb)


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
    if t == 1 and p >= LARGE_PORTS:
        return merge_one(SA[0], SB[0], plan)[None]
    sa, sb, ra, rb = plan.shared_a, plan.shared_b, plan.runs_a, plan.runs_b
    M_ii = SA[:, sa, sa] + SB[:, sb, sb]
    M_ik = np.zeros((t, k, p))
    _copy_block(M_ik, SA, [(sa, slice(0, k))], ra)
    _copy_block(M_ik, SB, [(sb, slice(0, k))], rb)
    out = np.zeros((t, p, p))
    _copy_block(out, SA, ra, ra)
    _copy_block(out, SB, rb, rb)
    try:
        X = np.linalg.solve(M_ii, M_ik)
    except np.linalg.LinAlgError:
        raise SolverError("singular separator in the nested-dissection merge") from None
    out -= np.swapaxes(M_ik, 1, 2) @ X
    return out


def _paired_runs(src: np.ndarray, dst: np.ndarray) -> list[tuple[slice, slice]]:
    """Split an index map src -> dst into runs contiguous in both (block copies by slicing)."""
    if src.size == 0:
        return []
    cut = np.flatnonzero((np.diff(src) != 1) | (np.diff(dst) != 1)) + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [src.size]])
    return [(slice(int(src[a]), int(src[b - 1]) + 1), slice(int(dst[a]), int(dst[b - 1]) + 1))
            for a, b in zip(starts, stops, strict=True)]


def _copy_block(out: np.ndarray, S: np.ndarray, rows: list[tuple[slice, slice]],
                cols: list[tuple[slice, slice]]) -> None:
    """out[..., dst_rows, dst_cols] = S[..., src_rows, src_cols], run by run (last two axes)."""
    for rs, rd in rows:
        for cs, cd in cols:
            out[..., rd, cd] = S[..., rs, cs]


# LAPACK dpotrf (OpenBLAS) goes multi-threaded from n = 128 on and then collapses on a loaded
# machine (measured: 512x512 in 0.7 s instead of 4 ms); below that it is single-threaded and
# fast.  So Cholesky is done recursively: small diagonal blocks by dpotrf, the rest by dtrsm
# and dsyrk, which stay efficient.
_POTRF_BLOCK = 96


def cholesky_lower(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor (Fortran order) of the SPD matrix A; only A's lower triangle is read."""
    n = A.shape[0]
    if n <= _POTRF_BLOCK:
        L, info = lapack.dpotrf(A, lower=1, clean=1)
        if info != 0:
            raise np.linalg.LinAlgError("matrix is not positive definite")
        return np.asarray(L)
    h = n // 2
    L11 = cholesky_lower(A[:h, :h])
    L21 = dtrsm(1.0, L11, A[h:, :h], side=1, lower=1, trans_a=1)  # A21 L11^-T
    A22 = dsyrk(-1.0, L21, beta=1.0, c=np.asfortranarray(A[h:, h:]), lower=1, overwrite_c=1)
    L = np.zeros((n, n), order="F")
    L[:h, :h] = L11
    L[h:, :h] = L21
    L[h:, h:] = cholesky_lower(A22)
    return L


def merge_one(SA: np.ndarray, SB: np.ndarray, plan: MergePlan) -> np.ndarray:
    """Merge two large tiles: Cholesky of the separator and a symmetric rank-k update."""
    p, k = plan.key.n_ports, plan.sa.size
    sa, sb, ra, rb = plan.shared_a, plan.shared_b, plan.runs_a, plan.runs_b
    M_ii = SA[sa, sa] + SB[sb, sb]
    M_ik = np.zeros((k, p), order="F")
    out = np.zeros((p, p), order="F")
    _copy_block(M_ik, SA, [(sa, slice(0, k))], ra)
    _copy_block(M_ik, SB, [(sb, slice(0, k))], rb)
    _copy_block(out, SA, ra, ra)
    _copy_block(out, SB, rb, rb)
    try:
        L = cholesky_lower(np.asfortranarray(M_ii))
    except np.linalg.LinAlgError:
        raise SolverError("singular separator in the nested-dissection merge") from None
    W = dtrsm(1.0, L, M_ik, side=0, lower=1, overwrite_b=1)  # L^-1 M_ik
    out = dsyrk(-1.0, W, beta=1.0, c=out, trans=1, lower=1, overwrite_c=1)
    # dsyrk updated the lower triangle: mirror it block by block
    step = 512
    for j0 in range(0, p, step):
        j1 = min(j0 + step, p)
        d = out[j0:j1, j0:j1]
        out[j0:j1, j0:j1] = np.tril(d) + np.tril(d, -1).T
        out[j0:j1, j1:] = out[j1:, j0:j1].T
    return out.T  # symmetric: the C-ordered view of the same matrix


# ---------------------------------------------------------------------------------------------
# leaves: the local nodal matrix of a few cells, interior eliminated
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeafPlan:
    n_local: int
    n_ports: int  # local nodes 0 .. n_ports-1 are the ports, in the tile's port order; then the interior
    a: np.ndarray  # edge ends (local indices)
    b: np.ndarray
    inc: np.ndarray  # (edges, n_local): 1 where an edge touches a node (diagonal stamps)
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
    bottom = E if key.is_b else np.stack([P[-1], Q[-1]], axis=1).ravel()
    ports = np.concatenate([L, X[:, -1] if key.has_r else L[:0], T, bottom])
    interior = np.setdiff1d(np.arange(n_local), ports)
    # renumber: ports first (in the tile's port order), then the interior, so that the blocks
    # of the local matrix are slices
    new = np.empty(n_local, dtype=np.int64)
    new[np.concatenate([ports, interior])] = np.arange(n_local)
    a = new[np.concatenate([g[0] for g in groups])]
    b = new[np.concatenate([g[1] for g in groups])]
    inc = np.zeros((a.size, n_local))
    inc[np.arange(a.size), a] = 1.0
    inc[np.arange(a.size), b] = 1.0
    return LeafPlan(n_local, ports.size, a, b, inc, tuple(g[0].size for g in groups))


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
    n_p = plan.n_ports
    M_pp = M[:, :n_p, :n_p]
    if n_p == plan.n_local:
        return M_pp
    M_ip = M[:, n_p:, :n_p]
    try:
        X = np.linalg.solve(M[:, n_p:, n_p:], M_ip)
    except np.linalg.LinAlgError:
        raise SolverError("singular leaf in the nested-dissection reduction") from None
    return M_pp - np.swapaxes(M_ip, 1, 2) @ X


# ---------------------------------------------------------------------------------------------
# the tree: breadth-first (stacked) below CHUNK_CELLS, depth-first above
# ---------------------------------------------------------------------------------------------


Ref = tuple[int, int]  # (group, index in the group's stack)


@dataclass(frozen=True)
class Gather:
    """Where the tiles of one side of a merge group come from: (group, indices, positions)."""

    parts: tuple[tuple[int, np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class Schedule:
    """Breadth-first plan of a tile's subtree, relative to the tile's origin.

    Groups run in order: first the leaf groups (one per leaf class), then the merge groups
    (one per (class A, class B, direction) and level); each produces one stack of tiles.
    """

    leaves: tuple[tuple[TileKey, np.ndarray, np.ndarray], ...]  # class, row and column offsets
    merges: tuple[tuple[MergePlan, Gather, Gather], ...]
    last_use: tuple[int, ...]  # per group: the group after which its stack can be freed


def _gather(refs: list[Ref]) -> Gather:
    src = np.array([r[0] for r in refs])
    idx = np.array([r[1] for r in refs])
    parts = []
    for g in np.unique(src):
        pos = np.flatnonzero(src == g)
        parts.append((int(g), idx[pos], pos))
    return Gather(tuple(parts))


@lru_cache(maxsize=64)
def schedule(key: TileKey) -> Schedule:
    """The breadth-first schedule of a tile class (cached: interior tiles share one)."""
    # nodes: (key, r0, c0, children or None, side_by_side), numbered in post-order
    nodes: list[tuple[TileKey, int, int, tuple[int, int] | None, bool]] = []
    height: list[int] = []

    def build(k: TileKey, r0: int, c0: int) -> int:
        parts = split(k)
        if parts is None:
            nodes.append((k, r0, c0, None, False))
            height.append(0)
        else:
            ka, (ra, ca), kb, (rb, cb), sbs = parts
            ia = build(ka, r0 + ra, c0 + ca)
            ib = build(kb, r0 + rb, c0 + cb)
            nodes.append((k, r0, c0, (ia, ib), sbs))
            height.append(1 + max(height[ia], height[ib]))
        return len(nodes) - 1

    root = build(key, 0, 0)
    ref: dict[int, Ref] = {}
    leaf_groups: dict[TileKey, list[int]] = {}
    for i, (k, _, _, kids, _) in enumerate(nodes):
        if kids is None:
            leaf_groups.setdefault(k, []).append(i)
    leaves = []
    for g, (k, members) in enumerate(leaf_groups.items()):
        leaves.append((k, np.array([nodes[i][1] for i in members]), np.array([nodes[i][2] for i in members])))
        for j, i in enumerate(members):
            ref[i] = (g, j)
    merges = []
    consumers: dict[int, int] = {}
    group = len(leaves)
    for lvl in range(1, height[root] + 1):
        groups: dict[tuple[TileKey, TileKey, bool], list[int]] = {}
        for i, (_, _, _, kids, sbs) in enumerate(nodes):
            if kids is not None and height[i] == lvl:
                groups.setdefault((nodes[kids[0]][0], nodes[kids[1]][0], sbs), []).append(i)
        for (ka, kb, sbs), members in groups.items():
            kid_pairs = [nodes[i][3] for i in members]
            refs_a = [ref[c[0]] for c in kid_pairs if c is not None]
            refs_b = [ref[c[1]] for c in kid_pairs if c is not None]
            for r in refs_a + refs_b:
                consumers[r[0]] = group
            merges.append((merge_plan(ka, kb, sbs), _gather(refs_a), _gather(refs_b)))
            for j, i in enumerate(members):
                ref[i] = (group, j)
            group += 1
    assert ref[root] == (group - 1, 0)
    last_use = tuple(consumers.get(g, g) for g in range(group))
    return Schedule(tuple(leaves), tuple(merges), last_use)


def _take(stacks: list[np.ndarray | None], gather: Gather, n: int) -> np.ndarray:
    if len(gather.parts) == 1:
        g, idx, _ = gather.parts[0]
        src = stacks[g]
        assert src is not None
        return src[idx]
    first = stacks[gather.parts[0][0]]
    assert first is not None
    out = np.empty((n, *first.shape[1:]))
    for g, idx, pos in gather.parts:
        src = stacks[g]
        assert src is not None
        out[pos] = src[idx]
    return out


def _solve_stacked(sub: Subarray, key: TileKey, r0: int, c0: int) -> np.ndarray:
    """Port matrix of the tile (key, r0, c0), its subtree processed level by level in stacks."""
    sched = schedule(key)
    stacks: list[np.ndarray | None] = []
    for k, rr, cc in sched.leaves:
        stacks.append(leaves_stacked(sub, k, r0 + rr, c0 + cc))
    for plan, ga, gb in sched.merges:
        n = sum(p[1].size for p in ga.parts)
        out = merge_stacked(_take(stacks, ga, n), _take(stacks, gb, n), plan)
        stacks.append(out)
        done = len(stacks) - 1
        for g, last in enumerate(sched.last_use):
            if last == done and g != done:
                stacks[g] = None
    root = stacks[-1]
    assert root is not None
    return root[0]


def _solve_tile(sub: Subarray, key: TileKey, r0: int, c0: int, chunk_cells: int) -> np.ndarray:
    parts = split(key)
    if key.h * key.w <= chunk_cells or parts is None:
        return _solve_stacked(sub, key, r0, c0)
    ka, (ra, ca), kb, (rb, cb), sbs = parts
    SA = _solve_tile(sub, ka, r0 + ra, c0 + ca, chunk_cells)
    SB = _solve_tile(sub, kb, r0 + rb, c0 + cb, chunk_cells)
    return merge_stacked(SA[None], SB[None], merge_plan(ka, kb, sbs))[0]


def terminal_matrix(sub: Subarray, chunk_cells: int | None = None) -> np.ndarray:
    """Schur complement (rows + 2 cols square, S) of the passive array onto its terminals.

    Order: the line sources (one per row, bias line last), then the amplifier ends of each
    column, p then q.  Amplifier loads are not included.
    """
    if not (sub.r_vertical > 0 and sub.r_horizontal > 0):
        raise SolverError("the nested-dissection reduction needs positive wire resistance in both directions")
    root = TileKey(sub.rows, sub.cols, False, False, True, True)
    S = _solve_tile(sub, root, 0, 0, CHUNK_CELLS if chunk_cells is None else chunk_cells)
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


def reduce_subarray(sub: Subarray, chunk_cells: int | None = None) -> Terminals:
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


def dissection_order(nodes: NodeMap, rows: int, cols: int) -> np.ndarray:
    """The same nested dissection as a permutation of the sparse system's unknowns.

    Each tile's interior before its separator (the right column of x nodes of a left half, or
    the bottom row of p/q nodes of a top half), the amplifier ends last.  Given to SuperLU as
    its column order it cuts the fill of the 256x256 factor ~10x against minimum degree
    (docs/benchmarks.md).  Needs wire resistance both ways (no merged nodes).
    """
    taken = np.zeros(nodes.n_unknowns, dtype=bool)
    order: list[np.ndarray] = []

    def visit(key: TileKey, r0: int, c0: int) -> None:
        parts = split(key)
        if parts is None or key.h * key.w <= 64:
            block = (slice(r0, r0 + key.h), slice(c0, c0 + key.w))
            ids = np.concatenate([nodes.x[block].ravel(), nodes.p[block].ravel(), nodes.q[block].ravel()])
            ids = ids[~taken[ids]]
            taken[ids] = True
            order.append(ids)
            return
        ka, (ra, ca), kb, (rb, cb), sbs = parts
        if sbs:
            sep = nodes.x[r0:r0 + key.h, c0 + ka.w - 1]
        else:
            row = r0 + ka.h - 1
            sep = np.stack([nodes.p[row, c0:c0 + key.w], nodes.q[row, c0:c0 + key.w]], axis=1).ravel()
        taken[sep] = True
        visit(ka, r0 + ra, c0 + ca)
        visit(kb, r0 + rb, c0 + cb)
        order.append(sep)

    visit(TileKey(rows, cols, False, False, True, True), 0, 0)
    order.append(np.flatnonzero(~taken))
    perm = np.concatenate(order)
    if perm.size != nodes.n_unknowns:
        raise SolverError("dissection order does not cover the unknowns (merged nodes?)")
    return perm
