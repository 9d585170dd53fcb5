"""Tile solves for the layer compiler: one gain-independent reduction per tile, reused.

A tile's circuit depends on its amplifier gains only through the amplifier stamp on the 2m
summing-line ends (ports P = the I+ and I- ends of every column).  Without that stamp the tile is
a reciprocal resistive network G0 (symmetric); we factor it once and keep three small matrices:

* ``Z = P G0^-1 P^T`` (2m x 2m): port voltages per current injected at the ports;
* ``H = P G0^-1 B`` (2m x r): port voltages per source (line) voltage, amplifiers removed;
* ``Y0 = diag(1^T B) - B^T G0^-1 B`` (r x r): the lines' input admittance, amplifiers removed.

The amplifiers load the ports with ``i = -L(g) v_P`` (:mod:`imac.circuit.netlist`: I+ sees
r_in (1 + g) to ground, I- sees r_in to the op-amp node held at g/(1+g) V+; the instrumentation
amplifier draws nothing, L = 0).  With G = G0 + P^T L P, Woodbury gives exactly

    v_P = (I + Z L)^-1 H u,   A = diag(g) (v_P+ - v_P-),   Y = Y0 + H^T L (I + Z L)^-1 H,

a 2m x 2m solve per gain vector instead of a sparse factorization: the gain fixed point of
:func:`imac.hardware.simulate.compile_layer` and the operating-point pass reuse one reduction.

Identical tiles (same conductances, wires) are reduced once; reductions are kept in memory and on
disk (``$IMAC_CACHE_DIR`` or ``~/.cache/imac``, ``tiles/<key>.npz``), keyed by a hash of exactly
what they depend on (:func:`tile_key`), so repeated builds, studies and sweeps skip them.  Tiles
left to solve are spread over processes with joblib (``$IMAC_JOBS``, default: all cores).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imac.circuit.netlist import Subarray

REDUCTION_VERSION = "imac-tile-reduction-1"  # bump when the reduction's meaning changes
MEMORY_CACHE_BYTES = 512 * 2**20
DISK_MIN_UNKNOWNS = 1000  # smaller tiles (no wires) are solved faster than read back
PARALLEL_MIN_UNKNOWNS = 200_000  # below this much work (sum of tile unknowns) one process is faster
CHUNKS_PER_JOB = 4


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


def solve_tile(red: TileReduction, sub: Subarray) -> TileSolution:
    """The tile ``sub`` (at its ``amp_gain``) from its reduction."""
    A, Y = apply_gains(red, sub.amp_gain, sub.amp_r_in, sub.amp_topology)
    return TileSolution(sub, A, Y)


# -- cache --------------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    """Where reductions are kept on disk: ``$IMAC_CACHE_DIR`` or ``~/.cache/imac``; None when
    ``IMAC_CACHE_DIR`` is ``off`` (memory only)."""
    env = os.environ.get("IMAC_CACHE_DIR")
    if env is not None and env.strip().lower() in ("", "off", "none", "0"):
        return None
    return Path(env) if env else Path.home() / ".cache" / "imac"


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


def _reduce_many(subs: Sequence[Subarray]) -> list[TileReduction]:
    return [reduce_tile(s) for s in subs]


def reduce_tiles(subs: Sequence[Subarray], cache: TileCache | None = None, jobs: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[TileReduction]:
    """The reduction of every tile in ``subs``: from the cache, else solved once per distinct
    tile (in parallel when there is enough work).  ``progress(done, total)`` after each chunk."""
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
        work = sum(_unknowns(s) for _, s in items)
        jobs = n_jobs() if jobs is None else max(1, jobs)
        if jobs > 1 and work >= PARALLEL_MIN_UNKNOWNS and len(items) > 1:
            from joblib import Parallel, delayed

            n_chunks = min(len(items), jobs * CHUNKS_PER_JOB)
            chunks = [list(c) for c in np.array_split(np.arange(len(items)), n_chunks) if c.size]
            done = 0
            results = Parallel(n_jobs=jobs, return_as="generator")(
                delayed(_reduce_many)([items[i][1] for i in c]) for c in chunks)
            for c, reds in zip(chunks, results, strict=True):
                for i, red in zip(c, reds, strict=True):
                    out[items[i][0]] = red
                    cache.put(items[i][0], red, _unknowns(items[i][1]) >= DISK_MIN_UNKNOWNS)
                done += len(c)
                if progress:
                    progress(done, len(items))
        else:
            for i, (k, s) in enumerate(items):
                red = reduce_tile(s)
                out[k] = red
                cache.put(k, red, _unknowns(s) >= DISK_MIN_UNKNOWNS)
                if progress and (i + 1) % 16 == 0:
                    progress(i + 1, len(items))
        cache.stats["solved"] += len(items)
    return [out[k] for k in keys]


def _unknowns(sub: Subarray) -> int:
    n, m = sub.rows, sub.cols
    return (n * m if sub.r_vertical > 0 else n) + (2 * n * m if sub.r_horizontal > 0 else 0) + 2 * m
