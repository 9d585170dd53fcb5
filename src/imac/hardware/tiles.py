"""Tile solves for the layer compiler: one gain-independent reduction per tile, reused.

A tile's circuit depends on its amplifier gains only through the amplifier stamp on the 2m
summing-line ends (ports P = the I+ and I- ends of every column).  Without that stamp the tile is
a reciprocal resistive network G0 (symmetric); we reduce it once to three small matrices:

* ``Z = P G0^-1 P^T`` (2m x 2m): port voltages per current injected at the ports;
* ``H = P G0^-1 B`` (2m x r): port voltages per source (line) voltage, amplifiers removed;
* ``Y0 = diag(1^T B) - B^T G0^-1 B`` (r x r): the lines' input admittance, amplifiers removed.

Tiles with wires are reduced in batches of same-shape tiles by a dense sweep along the input
lines (:func:`reduce_tiles_dense`, ~10x faster than a sparse LU per tile at 32x32 and 128x128);
:func:`reduce_tile` (one SuperLU factorization, n + 2m solves) is the reference and serves the
wire-free tiles.

The amplifiers load the ports with ``i = -L(g) v_P`` (:mod:`imac.circuit.netlist`: I+ sees
r_in (1 + g) to ground, I- sees r_in to the op-amp node held at g/(1+g) V+; the instrumentation
amplifier draws nothing, L = 0).  With G = G0 + P^T L P, Woodbury gives exactly

    v_P = (I + Z L)^-1 H u,   A = diag(g) (v_P+ - v_P-),   Y = Y0 + H^T L (I + Z L)^-1 H,

a 2m x 2m solve per gain vector instead of a sparse factorization: the gain fixed point of
:func:`imac.hardware.simulate.compile_layer` and the operating-point pass reuse one reduction.

Identical tiles (same conductances, wires) are reduced once; reductions are kept in memory and on
disk (``$IMAC_CACHE_DIR`` or ``~/.cache/imac``, ``tiles/<key>.npz``), keyed by a hash of exactly
what they depend on (:func:`tile_key`), so repeated builds, studies and sweeps skip them.  The
disk cache is bounded (``$IMAC_TILE_CACHE_MB``, default 2048): the least recently used go first.  Tiles
left to solve are spread over processes with joblib (``$IMAC_JOBS``, default: all cores).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imac.circuit.netlist import Subarray

REDUCTION_VERSION = "imac-tile-reduction-2"  # bump when the reduction changes, even in its last bits
MEMORY_CACHE_BYTES = 512 * 2**20
# the disk cache's size bound: least recently used reductions go first (IMAC_TILE_CACHE_MB)
DISK_CACHE_MB = 2048
STALE_TMP_S = 3600.0  # a half-written file this old belongs to a run that died
DISK_MIN_UNKNOWNS = 1000  # smaller tiles (no wires) are solved faster than read back
PARALLEL_MIN_SECONDS = 3.0  # below this much work, starting worker processes costs more than it saves
NESTED_MIN_CELLS = 64 * 64  # larger tiles: nested dissection (equal speed at 64x64, faster above)
DENSE_CHUNK_ELEMENTS = 32 * 96**2 * 32  # tiles per dense chunk: 32 of 32x32 (the fastest here)


@dataclass
class TileReduction:
    """The gain-independent part of a tile's solve (module doc)."""

    Z: np.ndarray  # (2m, 2m) ohm
    H: np.ndarray  # (2m, rows) V/V
    Y0: np.ndarray  # (rows, rows) S

    @property
    def nbytes(self) -> int:
        return int(self.Z.nbytes + self.H.nbytes + self.Y0.nbytes)


@dataclass
class TileSolution:
    """One tile at its gains: what the layer compiler, the cost model and the exports read.

    ``A_full`` (cols, rows): amplifier outputs per line voltage (bias line included);
    ``input_admittance()`` (rows, rows): currents drawn from the lines, I = Y u; ``sub``: the
    tile's :class:`~imac.circuit.netlist.Subarray` with these gains."""

    sub: Subarray
    A_full: np.ndarray
    _Y: np.ndarray

    def input_admittance(self) -> np.ndarray:
        return self._Y


def tile_key(sub: Subarray) -> str:
    """Content hash of what a reduction depends on: conductances, wire resistances, shape.
    (Gains, amplifier resistors and capacitances enter after the reduction.)"""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{REDUCTION_VERSION}|{sub.rows}x{sub.cols}|{sub.r_vertical!r}|{sub.r_horizontal!r}|".encode())
    h.update(np.ascontiguousarray(sub.r_driver, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(sub.g_plus, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(sub.g_minus, dtype=np.float64).tobytes())
    return h.hexdigest()


def reduce_tile(sub: Subarray) -> TileReduction:
    """Factor the tile without its amplifiers once and reduce it to ``Z, H, Y0`` (module doc)."""
    import scipy.sparse.linalg as spla

    from imac.circuit.solve import assemble
    from imac.errors import SolverError

    # the instrumentation topology stamps no amplifier load: assemble gives G0 exactly
    nodes, _, G0, B, _ = assemble(replace(sub, amp_topology="instrumentation", amp_gain=1.0))
    ports = np.concatenate([nodes.p_end, nodes.q_end])
    n_unk, r = G0.shape[0], B.shape[1]
    try:
        lu = spla.splu(G0.tocsc(), permc_spec="MMD_AT_PLUS_A")
    except RuntimeError as err:
        raise SolverError(f"the {sub.rows}x{sub.cols} subarray's nodal matrix is singular: {err}") from None
    rhs = np.zeros((n_unk, r + ports.size), order="F")
    rhs[:, :r] = B.toarray()
    rhs[ports, r + np.arange(ports.size)] = 1.0
    X = lu.solve(rhs)
    XB = X[:, :r]
    Bd = rhs[:, :r]
    Y0 = np.diag(Bd.sum(axis=0)) - Bd.T @ XB
    return TileReduction(Z=np.ascontiguousarray(X[ports, r:]), H=np.ascontiguousarray(XB[ports]),
                         Y0=0.5 * (Y0 + Y0.T))


def _sweep(gp: np.ndarray, gm: np.ndarray, r_v: float, r_h: float, r_first: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense reduction of T same-shape tiles at once (see :func:`reduce_tiles_dense`).

    gp, gm: (T, n, m) S; r_first: (T, n) ohm from each source to its line's first node.
    Returns Z (T, 2m, 2m), H (T, 2m, n), Y0 (T, n, n)."""
    T, n, m = gp.shape
    gv, gh = 1.0 / r_v, 1.0 / r_h
    gs = 1.0 / r_first  # (T, n)
    # chains: (T, m, n, n) tridiagonal per column
    def chain(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # the chain's tridiagonal matrix, scaled by 1/gh: diagonal a_i = g_i/gh + 1 (+1 below the
        # first node), off-diagonal -1; its inverse W'_ij = th_{i-1} ph_{j+1} / th_n (i <= j)
        # from the leading (th) and trailing (ph) principal minors, which only grow (a_i >= 1)
        gc = np.moveaxis(g, 2, 1)  # (T, m, n)
        a = gc / gh + 1.0
        a[..., 1:] += 1.0
        th = np.empty((*gc.shape[:-1], n + 1))
        ph = np.empty((*gc.shape[:-1], n + 1))
        th[..., 0] = 1.0
        th[..., 1] = a[..., 0]
        for k in range(2, n + 1):
            th[..., k] = a[..., k - 1] * th[..., k - 1] - th[..., k - 2]
        ph[..., n] = 1.0
        ph[..., n - 1] = a[..., n - 1]
        for k in range(n - 2, -1, -1):
            ph[..., k] = a[..., k] * ph[..., k + 1] - ph[..., k + 2]
        # W = inverse of the unscaled chain = W' / gh
        u = th[..., :n] / (gh * th[..., n:])  # th_{i-1} / (gh th_n), i = 0..n-1
        v = ph[..., 1:]  # ph_{j+1}
        iu = np.triu(np.ones((n, n), bool))
        W = np.where(iu, u[..., :, None] * v[..., None, :], u[..., None, :] * v[..., :, None])
        Wlast = W[..., :, n - 1].copy()
        W *= gc[..., :, None]
        W *= -gc[..., None, :]
        i = np.arange(n)
        W[..., i, i] += gc
        SxP = -gh * gc * Wlast
        SPP = gh - gh * gh * Wlast[..., n - 1]
        return W, SxP, SPP
    Sp, Xp, Pp = chain(gp)
    Sq, Xq, Pq = chain(gm)
    Mxx = Sp + Sq  # (T, m, n, n)
    i = np.arange(n)
    Mxx[:, :, i, i] += gv  # left neighbour (or source for column 0, fixed below) ...
    Mxx[:, :-1, i, i] += gv  # ... and right neighbour
    Mxx[:, 0, i, i] += gs - gv
    def block(c: int) -> np.ndarray:
        B = np.zeros((T, n + 2, n + 2))
        B[:, :n, :n] = Mxx[:, c]
        B[:, :n, n] = B[:, n, :n] = Xp[:, c]
        B[:, :n, n + 1] = B[:, n + 1, :n] = Xq[:, c]
        B[:, n, n] = Pp[:, c]
        B[:, n + 1, n + 1] = Pq[:, c]
        return B
    S = block(m - 1)
    eye = np.broadcast_to(np.eye(n), (T, n, n))
    for c in range(m - 2, -1, -1):
        k2 = S.shape[1] - n
        R = np.linalg.solve(S[:, :n, :n], np.concatenate([eye, S[:, :n, n:]], axis=2))
        F, FS = R[:, :, :n], R[:, :, n:]
        B = block(c)
        new = np.zeros((T, n + k2 + 2, n + k2 + 2))
        new[:, :n, :n] = B[:, :n, :n] - gv * gv * F
        new[:, :n, n:n + k2] = gv * FS
        new[:, n:n + k2, :n] = gv * np.swapaxes(FS, 1, 2)
        new[:, n:n + k2, n:n + k2] = S[:, n:, n:] - S[:, n:, :n] @ FS
        new[:, :n, n + k2:] = B[:, :n, n:]
        new[:, n + k2:, :n] = B[:, n:, :n]
        new[:, n + k2:, n + k2:] = B[:, n:, n:]
        S = new
    R = np.linalg.solve(S[:, :n, :n], np.concatenate([eye, S[:, :n, n:]], axis=2))
    F, FS = R[:, :, :n], R[:, :, n:]
    Yss = -(gs[:, :, None] * F * gs[:, None, :])
    Yss[:, i, i] += gs
    Ysp = gs[:, :, None] * FS  # (T, n, 2m)
    Ypp = S[:, n:, n:] - S[:, n:, :n] @ FS
    # port order: (P+_{m-1}, P-_{m-1}), (P+_{m-2}, P-_{m-2}), ... -> [P+_0..P+_{m-1}, P-_0..P-_{m-1}]
    cols = np.arange(m)
    pos_plus = 2 * (m - 1 - cols)
    perm = np.concatenate([pos_plus, pos_plus + 1])
    Ypp = Ypp[:, perm][:, :, perm]
    Ysp = Ysp[:, :, perm]
    Z = np.linalg.inv(Ypp)
    H = -Z @ np.swapaxes(Ysp, 1, 2)
    Y0 = Yss - Ysp @ (Z @ np.swapaxes(Ysp, 1, 2))
    return Z, H, Y0

def reduce_tiles_dense(subs: Sequence[Subarray]) -> list[TileReduction]:
    """The reductions of same-shape tiles with wires, by dense block elimination along the
    input lines, batched over the tiles (exact; ~10x faster than the sparse LU at 32x32).

    Each column's I+ and I- summing lines are chains (tridiagonal) touching only that column's
    input-line nodes and its port: their inverses come in closed form from the chains' principal
    minors, so each column reduces to a dense block on (its n input-line nodes, its 2 ports).
    Columns are joined only along the input lines (one wire segment per cell): sweeping from the
    far column to the driver end eliminates one column of input-line nodes per step, keeping
    the ports of the columns already passed.  At column 0 the sources are attached and the last
    input-line nodes eliminated, which leaves the admittance of the (sources, ports) multiport:
    ``Z`` is the inverse of its port block, ``H`` and ``Y0`` follow (module doc).
    """
    s0 = subs[0]
    if any(s.g_plus.shape != s0.g_plus.shape or s.r_vertical != s0.r_vertical
           or s.r_horizontal != s0.r_horizontal for s in subs):
        raise ValueError("reduce_tiles_dense needs tiles of one shape and one wire resistance")
    if not (s0.r_vertical > 0 and s0.r_horizontal > 0):
        raise ValueError("reduce_tiles_dense needs wire resistance on both line kinds")
    gp = np.stack([s.g_plus for s in subs])
    gm = np.stack([s.g_minus for s in subs])
    r_first = np.stack([s.r_driver for s in subs]) + s0.r_vertical
    Z, H, Y0 = _sweep(gp, gm, s0.r_vertical, s0.r_horizontal, r_first)
    Y0 = 0.5 * (Y0 + np.swapaxes(Y0, 1, 2))
    return [TileReduction(Z[t], H[t], Y0[t]) for t in range(len(subs))]


def apply_gains(red: TileReduction, gain: np.ndarray, r_in: float, topology: str) -> tuple[np.ndarray, np.ndarray]:
    """The tile's ``A_full`` (cols, rows) and input admittance (rows, rows) at amplifier gains
    ``gain`` (cols,), amplifier input resistors ``r_in`` (ohm), from its reduction (exact)."""
    g = np.asarray(gain, dtype=float)
    m = g.size
    if topology == "instrumentation":
        return g[:, None] * (red.H[:m] - red.H[m:]), red.Y0.copy()
    g_in = 1.0 / r_in
    lp = g_in / (1.0 + g)  # I+ end to ground
    lq = np.full(m, g_in)  # I- end to the op-amp node ...
    lqp = -g_in * g / (1.0 + g)  # ... held at g/(1+g) V+
    # I + Z L, with L's nonzeros on the diagonal of both halves and at (q_c, p_c)
    ZL = np.empty_like(red.Z)
    ZL[:, :m] = red.Z[:, :m] * lp + red.Z[:, m:] * lqp
    ZL[:, m:] = red.Z[:, m:] * lq
    ZL[np.diag_indices(2 * m)] += 1.0
    vp = np.linalg.solve(ZL, red.H)
    A = g[:, None] * (vp[:m] - vp[m:])
    Lv = np.empty_like(vp)
    Lv[:m] = lp[:, None] * vp[:m]
    Lv[m:] = lqp[:, None] * vp[:m] + lq[:, None] * vp[m:]
    return A, red.Y0 + red.H.T @ Lv


def apply_gains_stacked(reds: Sequence[TileReduction], gains: np.ndarray, r_in: float, topology: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`apply_gains` for same-shape tiles at once: gains (T, cols) -> A (T, cols, rows),
    Y (T, rows, rows); the same arithmetic, batched (one LAPACK call for the T solves)."""
    g = np.asarray(gains, dtype=float)
    m = g.shape[1]
    H = np.stack([r.H for r in reds])
    if topology == "instrumentation":
        return g[:, :, None] * (H[:, :m] - H[:, m:]), np.stack([r.Y0 for r in reds])
    Z = np.stack([r.Z for r in reds])
    g_in = 1.0 / r_in
    lp = g_in / (1.0 + g)
    lq = np.full_like(g, g_in)
    lqp = -g_in * g / (1.0 + g)
    ZL = np.empty_like(Z)
    ZL[:, :, :m] = Z[:, :, :m] * lp[:, None, :] + Z[:, :, m:] * lqp[:, None, :]
    ZL[:, :, m:] = Z[:, :, m:] * lq[:, None, :]
    i = np.arange(2 * m)
    ZL[:, i, i] += 1.0
    vp = np.linalg.solve(ZL, H)
    A = g[:, :, None] * (vp[:, :m] - vp[:, m:])
    Lv = np.empty_like(vp)
    Lv[:, :m] = lp[:, :, None] * vp[:, :m]
    Lv[:, m:] = lqp[:, :, None] * vp[:, :m] + lq[:, :, None] * vp[:, m:]
    Y = np.stack([r.Y0 for r in reds]) + np.swapaxes(H, 1, 2) @ Lv
    return A, Y


def solve_tile(red: TileReduction, sub: Subarray) -> TileSolution:
    """The tile ``sub`` (at its ``amp_gain``) from its reduction."""
    A, Y = apply_gains(red, sub.amp_gain, sub.amp_r_in, sub.amp_topology)
    return TileSolution(sub, A, Y)


# -- cache --------------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """Where reductions are kept on disk: ``$IMAC_CACHE_DIR`` or ``~/.cache/imac``; None when
    ``IMAC_CACHE_DIR`` is ``off`` (memory only)."""
    from imac import io

    return None if io.cache_disabled() else io.cache_dir()


class TileCache:
    """Reductions by :func:`tile_key`: an LRU in memory (bounded in bytes) over a disk folder."""

    def __init__(self, directory: Path | str | None = "default", max_bytes: int = MEMORY_CACHE_BYTES) -> None:
        self._dir_arg = directory
        self.max_bytes = max_bytes
        self._mem: OrderedDict[str, TileReduction] = OrderedDict()
        self._bytes = 0
        self.stats = {"memory": 0, "disk": 0, "solved": 0, "duplicates": 0}

    @property
    def directory(self) -> Path | None:
        d = cache_dir() if self._dir_arg == "default" else self._dir_arg
        return None if d is None else Path(d) / "tiles"

    def get(self, key: str) -> TileReduction | None:
        red = self._mem.get(key)
        if red is not None:
            self._mem.move_to_end(key)
            self.stats["memory"] += 1
            return red
        d = self.directory
        if d is None:
            return None
        path = d / f"{key[:2]}" / f"{key}.npz"
        try:
            with np.load(path) as f:
                red = TileReduction(f["Z"], f["H"], f["Y0"])
            os.utime(path)  # recently used: the last to be pruned
        except (OSError, KeyError, ValueError):
            return None
        self.stats["disk"] += 1
        self._remember(key, red)
        return red

    def put(self, key: str, red: TileReduction, disk: bool = True) -> None:
        self._remember(key, red)
        d = self.directory
        if d is None or not disk:
            return
        path = d / f"{key[:2]}" / f"{key}.npz"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, Z=red.Z, H=red.H, Y0=red.Y0)
            os.replace(tmp, path)
        except OSError:  # a read-only or full cache folder only costs speed
            pass

    def prune_disk(self, max_mb: float | None = None) -> int:
        """Remove the least recently used reductions until the disk cache holds at most
        ``max_mb`` (default ``IMAC_TILE_CACHE_MB`` or :data:`DISK_CACHE_MB`), down to 80 % of it so
        that pruning is rare, and half-written files of dead runs; returns the files removed."""
        d = self.directory
        if d is None or not d.is_dir():
            return 0
        if max_mb is None:
            try:
                max_mb = float(os.environ.get("IMAC_TILE_CACHE_MB", DISK_CACHE_MB))
            except ValueError:
                max_mb = DISK_CACHE_MB
        files, removed, now = [], 0, time.time()
        for f in d.glob("*/*"):
            try:
                st = f.stat()
            except OSError:
                continue
            if f.suffix == ".tmp":
                if now - st.st_mtime > STALE_TMP_S:
                    f.unlink(missing_ok=True)
                    removed += 1
            elif f.suffix == ".npz":
                files.append((st.st_mtime, st.st_size, f))
        total, limit = sum(size for _, size, _ in files), max_mb * 2**20
        if total <= limit:
            return removed
        for _, size, f in sorted(files):
            if total <= 0.8 * limit:
                break
            try:
                f.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        return removed

    def _remember(self, key: str, red: TileReduction) -> None:
        if key in self._mem:
            return
        self._mem[key] = red
        self._bytes += red.nbytes
        while self._bytes > self.max_bytes and len(self._mem) > 1:
            _, old = self._mem.popitem(last=False)
            self._bytes -= old.nbytes

    def clear_memory(self) -> None:
        self._mem.clear()
        self._bytes = 0


_CACHE: TileCache | None = None


def default_cache() -> TileCache:
    global _CACHE
    if _CACHE is None:
        _CACHE = TileCache()
    return _CACHE


def n_jobs() -> int:
    """Processes for tile solves: ``$IMAC_JOBS`` or every core."""
    env = os.environ.get("IMAC_JOBS")
    if env:
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


def reduce_tiles_wireless(subs: Sequence[Subarray]) -> list[TileReduction]:
    """Closed-form reductions of tiles without wire or driver resistance (the behavioral
    fidelity): every input line is its source, each summing line one node, so Z is diagonal
    (1 / the line's total conductance), H the conductance-weighted mean and Y0 what the lines
    draw through the devices into the floating summing lines."""
    out = []
    for s in subs:
        if s.r_vertical != 0 or s.r_horizontal != 0 or np.any(s.r_driver != 0):
            raise ValueError("reduce_tiles_wireless needs tiles without wire or driver resistance")
        g = np.concatenate([s.g_plus, s.g_minus], axis=1)  # (rows, 2m): line i to summing line c
        tot = g.sum(axis=0)
        H = (g / tot).T
        Y0 = np.diag(g.sum(axis=1)) - (g / tot) @ g.T
        out.append(TileReduction(np.diag(1.0 / tot), H, 0.5 * (Y0 + Y0.T)))
    return out


def reduce_tile_nested(sub: Subarray) -> TileReduction:
    """The reduction of one large tile from the nested-dissection terminal matrix of
    :mod:`imac.circuit.nested` (the passive array's Schur complement onto [sources, ends])."""
    from imac.circuit.nested import terminal_matrix

    S = terminal_matrix(sub)
    n, m = sub.rows, sub.cols
    ends = n + np.concatenate([2 * np.arange(m), 2 * np.arange(m) + 1])  # theirs: p, q per column
    Z = np.linalg.inv(S[np.ix_(ends, ends)])
    S_es = S[ends, :n]
    H = -Z @ S_es
    Y0 = S[:n, :n] + S_es.T @ H
    return TileReduction(0.5 * (Z + Z.T), H, 0.5 * (Y0 + Y0.T))


def _reduce_group(subs: Sequence[Subarray]) -> list[TileReduction]:
    """Reductions of a chunk of tiles: for tiles with wires, the dense sweep batched over
    same-shape tiles up to NESTED_MIN_CELLS cells, nested dissection above (one large tile at a
    time: 128x128 ~7x, 401x120 ~7x faster than the sweep); the closed form without any wire or
    driver resistance; the sparse LU otherwise."""
    s0 = subs[0]
    if s0.r_vertical > 0 and s0.r_horizontal > 0:
        if s0.rows * s0.cols > NESTED_MIN_CELLS:
            return [reduce_tile_nested(s) for s in subs]
        return reduce_tiles_dense(subs)
    if s0.r_vertical == 0 and s0.r_horizontal == 0 and all(not np.any(s.r_driver) for s in subs):
        return reduce_tiles_wireless(subs)
    return [reduce_tile(s) for s in subs]


def _chunks(items: list[tuple[str, Subarray]]) -> list[list[int]]:
    """Indices of ``items`` in chunks of one kind (shape, wires), sized for the cache."""
    groups: dict[tuple[int, int, float, float], list[int]] = {}
    for i, (_, s) in enumerate(items):
        groups.setdefault((s.rows, s.cols, s.r_vertical, s.r_horizontal), []).append(i)
    out = []
    for (n, m, _, _), idx in groups.items():
        size = max(1, DENSE_CHUNK_ELEMENTS // ((n + 2 * m) ** 2 * m))
        out += [idx[i:i + size] for i in range(0, len(idx), size)]
    return out


def reduce_tiles(subs: Sequence[Subarray], cache: TileCache | None = None, jobs: int | None = None,
                 progress: Callable[[int, int], None] | None = None, keep: bool = True) -> list[TileReduction]:
    """The reduction of every tile in ``subs``: from the cache, else solved once per distinct
    tile, in chunks of same-shape tiles (in parallel processes when there is enough work).
    ``progress(done, total)`` after each chunk; ``keep=False`` does not add new reductions to the
    cache (one-off tiles, e.g. a random head of ~20,000 tiles, ~1 GB)."""
    cache = default_cache() if cache is None else cache
    keys = [tile_key(s) for s in subs]
    out: dict[str, TileReduction] = {}
    todo: dict[str, Subarray] = {}
    for k, s in zip(keys, subs, strict=True):
        if k in out or k in todo:
            cache.stats["duplicates"] += 1
            continue
        red = cache.get(k)
        if red is None:
            todo[k] = s
        else:
            out[k] = red
    if todo:
        items = list(todo.items())
        chunks = _chunks(items)
        jobs = n_jobs() if jobs is None else max(1, jobs)
        work = sum(_work_s(s) for _, s in items)
        if jobs > 1 and work >= PARALLEL_MIN_SECONDS and len(chunks) > 1:
            from joblib import Parallel, delayed

            results: Any = Parallel(n_jobs=jobs, return_as="generator")(
                delayed(_reduce_group)([items[i][1] for i in c]) for c in chunks)
        else:
            results = (_reduce_group([items[i][1] for i in c]) for c in chunks)
        done = 0
        for c, reds in zip(chunks, results, strict=True):
            for i, red in zip(c, reds, strict=True):
                key, sub = items[i]
                out[key] = red
                if keep:
                    cache.put(key, red, _unknowns(sub) >= DISK_MIN_UNKNOWNS)
            done += len(c)
            if progress:
                progress(done, len(items))
        cache.stats["solved"] += len(items)
        if keep:
            cache.prune_disk()
    return [out[k] for k in keys]


def _work_s(sub: Subarray) -> float:
    """Rough seconds of one tile's reduction on one core (2 ms for 32x32 with wires; the closed
    form without wires is ~100x cheaper than handing the tile to a worker process)."""
    n, m = sub.rows, sub.cols
    if sub.r_vertical == 0 and sub.r_horizontal == 0:
        return 2e-5 * n * m / (32 * 32)
    return 2e-3 * n * m * (n + 2 * m) ** 2 / (32 * 32 * 96**2)


def _unknowns(sub: Subarray) -> int:
    n, m = sub.rows, sub.cols
    return (n * m if sub.r_vertical > 0 else n) + (2 * n * m if sub.r_horizontal > 0 else 0) + 2 * m
