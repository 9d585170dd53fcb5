"""Compiled (numba) kernel of the circuit fidelity's loaded-neuron solve.

:func:`imac.hardware.simulate._solve_loaded_neurons` solves, per image, the KCL of a layer whose
line drivers are the previous neurons with their nonlinear output I-V (see
:class:`~imac.hardware.simulate.LoadedSolver`).  Its numpy path runs ~80 array operations over
each chunk of images, every one a pass over memory; :func:`solve_chunk` runs the same algorithm
on the same chunks in loops that touch each element once per step, with no temporaries:

* the same start (the block-diagonal or dense linear map of ``y_prev``), the same coefficient
  lookup (interval and position in float32, value + position x change), the same Horner
  evaluation, residual, Newton matrix (diagonal + one common mode per partition, inverted by
  Sherman-Morrison), clipping, tolerance, refresh rule and stopping rule, all in float32 with the
  numpy path's operations in its order;
* the images of a chunk iterate in lockstep, as in numpy: the Newton matrix is refreshed on the
  first ``jac_steps`` steps and whenever the chunk's largest step was above ``refresh_step``; an
  image whose step fell below ``tol`` from step 2 on is frozen;
* the block products are chains of fused multiply-adds in the order of the sum, as OpenBLAS's
  sgemm computes the numpy path's (bit for bit on the development machine); only the
  Sherman-Morrison sums (OpenBLAS's sgemv there) add in another order, so the solutions agree
  to float32 rounding and the Newton tolerance's leftover.

Compiled on first use (``cache=True``: once per machine and numba version, kept in
``__pycache__``; where that is not writable numba compiles in memory in every process).
``error_model="numpy"``: a division by zero gives inf as in numpy instead of raising.  numba is
optional: :func:`available` says whether the kernel is used (``IMAC_NUMBA=0`` turns it off).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

try:  # numba is a dependency, but the numpy path keeps working without it
    import numba
    from numba.core.extending import intrinsic

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None  # type: ignore[assignment]
    _HAVE_NUMBA = False

_fma: Any
if _HAVE_NUMBA:
    @intrinsic
    def _fma_intrinsic(typingctx: Any, a: Any, b: Any, c: Any) -> Any:  # pragma: no cover - compiled
        """a * b + c rounded once (IEEE fused multiply-add, ``llvm.fma``): OpenBLAS's sgemm
        kernels round each term so, and the numpy path's block products are theirs."""
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.fma(*args)

        return a(a, b, c), codegen

    _fma = _fma_intrinsic
else:  # pragma: no cover
    def _fma(a: Any, b: Any, c: Any) -> Any:
        return a * b + c


def available() -> bool:
    """Whether the compiled kernel is used: numba importable and ``$IMAC_NUMBA`` not ``0``."""
    return _HAVE_NUMBA and os.environ.get("IMAC_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")


def _njit(fn: Any) -> Any:
    if not _HAVE_NUMBA:
        return fn
    return numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")(fn)


DEG1 = 8  # coefficients of the current polynomial (degree 7, simulate.IV_POLY_DEGREE): unrolled below
G = 4  # images per group: their block products and sums run side by side (independent dependency chains)


@_njit
def solve_chunk(z_prev, y_prev, tab, z_first, inv_dz, fz_max, bstart, sizes, y3, st3, dense, st_bias, i_const,
                y_hat, u, v, vu, kappa, r_line, tol, s_limit, refresh_step, jac_steps, max_its, v_half,
                v_centre, c, sp, dinv, shrink, frozen, s, d, v_in):  # pragma: no cover - compiled
    """One chunk of m images, start to outputs (module doc).

    The lines are kept in a padded layout: block b's lines bstart[b] .. bstart[b + 1] - 1 in slots
    b * smax .. (the padding's tables are zero and its y_hat one, so it stays at zero).  In: z_prev,
    y_prev (m, n) float64; ``tab`` (intervals + 1, 2 DEG1) float32: per z interval the
    coefficients of s^j, then their change over the interval, and a last row of zeros (the
    padding's); ``y3``, ``st3`` (blocks, smax, smax) float32: v_half Y_red^T and the start per
    block, zero beyond the block's size (``sizes``: rounded up to a multiple of 8); ``dense`` (n, n): the start as
    one dense matrix instead (when it has rows); the per-slot tables (npad,) float32, ``kappa``
    per block.  Work arrays: c (m, DEG1, npad), sp and dinv (m, npad), shrink (m, blocks)
    float32, frozen (m,) bool.  Out: s (m, n) float32 (the solution), d and v_in (m, n) float64."""
    m, n = z_prev.shape
    nb, smax = y3.shape[0], y3.shape[1]
    npad = nb * smax
    f32 = np.float32
    zero = f32(0.0)
    one = f32(1.0)
    cur = np.empty((G, npad), f32)
    slope = np.empty((G, npad), f32)
    tmp = np.empty((G, npad), f32)
    acc = np.empty((G, npad), f32)
    tmp_bits = tmp.view(np.int32)
    top_bits = np.zeros(1, np.int32)
    top_f = top_bits.view(f32)
    dense_s = np.empty(n, f32)
    steps = np.empty(m, f32)
    idx = np.empty(G, np.int64)
    tsum = np.empty((G, nb), f32)
    local = np.arange(G)
    act = np.empty(m, np.int64)
    # block views of the same memory (loops index from 0, so numba's negative-index wraparound
    # folds away and the loops over a block's lines vectorize)
    cur3 = cur.reshape((G, nb, smax))
    tmp3 = tmp.reshape((G, nb, smax))
    acc3 = acc.reshape((G, nb, smax))
    sp3 = sp.reshape((m, nb, smax))
    dinv3 = dinv.reshape((m, nb, smax))
    u3 = u.reshape((nb, smax))
    # the current polynomial's coefficients per image and slot: value + position x change
    izs = np.empty(npad, np.int64)
    frs = np.empty(npad, f32)
    pad_row = tab.shape[0] - 1
    for i in range(m):
        frozen[i] = False
        for b in range(nb):
            zb = z_prev[i, bstart[b] : bstart[b + 1]]
            izb = izs[b * smax : (b + 1) * smax]
            frb = frs[b * smax : (b + 1) * smax]
            for q in range(zb.shape[0]):
                f = f32(zb[q] - z_first)
                f *= inv_dz
                fc = f if f >= zero else zero  # np.clip; a NaN is taken as 0 here ...
                fc = fc if fc <= fz_max else fz_max
                iz = int(fc)
                izb[q] = iz
                fr = fc - f32(iz)
                frb[q] = fr if f == f else f  # ... and still propagates
            for q in range(zb.shape[0], smax):
                izb[q] = pad_row
                frb[q] = zero
        _coefficients(izs, frs, tab, i_const, c[i])
    # the linear start s = [y_prev, 1] @ start, G images at a time
    if dense.shape[0] > 0:
        for i in range(m):
            for q in range(n):
                dense_s[q] = zero
            for p in range(n):
                yp = f32(y_prev[i, p])
                for q in range(n):
                    dense_s[q] += yp * dense[p, q]
            for k in range(npad):
                sp[i, k] = zero
            for b in range(nb):
                db = dense_s[bstart[b] : bstart[b + 1]]
                sb = sp[i, b * smax : (b + 1) * smax]
                bb = st_bias[b * smax : (b + 1) * smax]
                for q in range(db.shape[0]):
                    sb[q] = db[q] + bb[q]
    else:
        for g0 in range(0, m, G):
            cnt = min(G, m - g0)
            for g in range(G):
                i = g0 + min(g, cnt - 1)
                for k in range(npad):
                    tmp[g, k] = zero
                    acc[g, k] = zero
                for b in range(nb):
                    yb = y_prev[i, bstart[b] : bstart[b + 1]]
                    tb = tmp[g, b * smax : (b + 1) * smax]
                    for q in range(yb.shape[0]):
                        tb[q] = f32(yb[q])
            for b in range(nb):
                _block_product4(tmp3, local, st3, b, acc3, sizes[b])
            for g in range(cnt):
                for k in range(npad):
                    sp[g0 + g, k] = acc[g, k] + st_bias[k]
    # Newton, the chunk's images in lockstep, G at a time
    last = np.inf
    for its in range(1, max_its + 1):
        fresh = its <= jac_steps or last > refresh_step
        na = 0
        for i in range(m):
            steps[i] = zero
            if not frozen[i]:
                act[na] = i
                na += 1
        n_left = 0
        for g0 in range(0, na, G):
            cnt = min(G, na - g0)
            for g in range(G):  # a short last group repeats its last image (computed, not written)
                idx[g] = act[g0 + min(g, cnt - 1)]
            # the current polynomial (and, fresh, its derivative) by Horner's rule, in the numpy
            # path's operations and order (c7 s once)
            for g in range(G):
                ii = idx[g]
                if fresh:
                    for k in range(npad):
                        x = sp[ii, k]
                        sl = c[ii, 7, k] * x
                        cu = sl + c[ii, 6, k]
                        sl = sl + cu
                        cu = cu * x + c[ii, 5, k]
                        sl = sl * x + cu
                        cu = cu * x + c[ii, 4, k]
                        sl = sl * x + cu
                        cu = cu * x + c[ii, 3, k]
                        sl = sl * x + cu
                        cu = cu * x + c[ii, 2, k]
                        sl = sl * x + cu
                        cu = cu * x + c[ii, 1, k]
                        sl = sl * x + cu
                        cur[g, k] = cu * x + c[ii, 0, k]
                        slope[g, k] = sl
                else:
                    for k in range(npad):
                        x = sp[ii, k]
                        cu = c[ii, 7, k] * x + c[ii, 6, k]
                        cu = cu * x + c[ii, 5, k]
                        cu = cu * x + c[ii, 4, k]
                        cu = cu * x + c[ii, 3, k]
                        cu = cu * x + c[ii, 2, k]
                        cu = cu * x + c[ii, 1, k]
                        cur[g, k] = cu * x + c[ii, 0, k]
            # the block-diagonal Y_red product, then the KCL residual (into cur)
            for g in range(G):
                for k in range(npad):
                    acc[g, k] = zero
            for b in range(nb):
                _block_product4(sp3, idx, y3, b, acc3, sizes[b])
            for g in range(G):
                for k in range(npad):
                    cur[g, k] -= acc[g, k]
            if fresh:  # diagonal: the output conductance -dI/ds >= 0 plus y_hat; then the common modes
                for g in range(G):
                    ii = idx[g]
                    for k in range(npad):
                        x = slope[g, k]
                        x = x if x < zero else zero
                        dinv[ii, k] = one / (y_hat[k] - x)
                    for k in range(npad):
                        tmp[g, k] = dinv[ii, k] * vu[k]
                for b in range(nb):
                    w0, w1, w2, w3 = _sums4(tmp3, b)
                    kb = kappa[b]
                    shrink[idx[0], b] = kb / (one - w0 * kb)
                    shrink[idx[1], b] = kb / (one - w1 * kb)
                    shrink[idx[2], b] = kb / (one - w2 * kb)
                    shrink[idx[3], b] = kb / (one - w3 * kb)
            for g in range(G):
                ii = idx[g]
                for k in range(npad):
                    x = cur[g, k] * dinv[ii, k]
                    cur[g, k] = x
                    tmp[g, k] = x * v[k]
            for b in range(nb):
                t0, t1, t2, t3 = _sums4(tmp3, b)
                tsum[0, b] = t0 * shrink[idx[0], b]
                tsum[1, b] = t1 * shrink[idx[1], b]
                tsum[2, b] = t2 * shrink[idx[2], b]
                tsum[3, b] = t3 * shrink[idx[3], b]
            for g in range(G):  # one image per loop: few pointers to check, so the loop vectorizes
                ii = idx[g]
                for b in range(nb):
                    tb = tsum[g, b]
                    for q in range(smax):
                        cur3[g, b, q] += tb * u3[b, q] * dinv3[ii, b, q]
            # the step, clipped to the rails' neighbourhood; its size per image, as the largest
            # bit pattern of |r| (non-negative floats order as their bits; an integer maximum
            # vectorizes, and a NaN step stays NaN, as in numpy)
            for g in range(cnt):
                ii = idx[g]
                for k in range(npad):
                    r = cur[g, k]
                    x = sp[ii, k] + r
                    x = -s_limit if x < -s_limit else x
                    x = s_limit if x > s_limit else x
                    sp[ii, k] = x  # a NaN stays NaN (run_batch refuses it), as with np.clip
                    tmp[g, k] = abs(r)
                top = np.int32(0)
                for k in range(npad):
                    top = max(top, tmp_bits[g, k])
                top_bits[0] = top
                step = top_f[0]
                steps[ii] = step
                if step >= tol:
                    n_left += 1
        if n_left == 0:
            break
        last = 0.0
        for a in range(na):
            i = act[a]
            last = max(last, np.float64(steps[i]))
            if its >= 2 and steps[i] < tol:
                frozen[i] = True
    # the neurons' current at the solution, the node voltages and the Thevenin sources
    for i in range(m):
        for k in range(npad):
            x = sp[i, k]
            cu = c[i, 7, k] * x + c[i, 6, k]
            cu = cu * x + c[i, 5, k]
            cu = cu * x + c[i, 4, k]
            cu = cu * x + c[i, 3, k]
            cu = cu * x + c[i, 2, k]
            cu = cu * x + c[i, 1, k]
            cu = cu * x + c[i, 0, k]
            cu -= i_const[k]
            cur[0, k] = cu * r_line[k]
        for b in range(nb):
            a, e = bstart[b], bstart[b + 1]
            sb, db, vb = s[i, a:e], d[i, a:e], v_in[i, a:e]
            xb = sp[i, b * smax : (b + 1) * smax]
            cb = cur[0, b * smax : (b + 1) * smax]
            for q in range(e - a):
                x = xb[q]
                sb[q] = x
                dk = np.float64(x) * v_half + v_centre
                db[q] = dk
                vb[q] = dk + np.float64(cb[q])


@_njit
def _coefficients(izs, frs, tab, i_const, ci):  # pragma: no cover - compiled
    """ci[j, k] = the coefficient of s^j at slot k: the table's value + position x change
    (plus i_const for j = 0); ``izs`` the interval per slot (the padding's: the zero row)."""
    for k in range(izs.shape[0]):
        row = np.uint64(izs[k])
        fr = frs[k]
        for j in range(DEG1):
            ci[j, k] = tab[row, DEG1 + j] * fr + tab[row, j]
    c0 = ci[0]
    for k in range(izs.shape[0]):
        c0[k] += i_const[k]


@_njit
def _sums4(x, b):  # pragma: no cover - compiled
    """sum over q of x[g, b, q] for g = 0..3, each in the order of q (four independent chains)."""
    f32 = np.float32
    w0 = w1 = w2 = w3 = f32(0.0)
    for q in range(x.shape[2]):
        w0 += x[0, b, q]
        w1 += x[1, b, q]
        w2 += x[2, b, q]
        w3 += x[3, b, q]
    return w0, w1, w2, w3


@_njit
def _block_product4(x, ix, mats, b, out, size):  # pragma: no cover - compiled
    """out[g, b] += x[ix[g], b, :size] @ mats[b, :size] for g = 0..3 (size a multiple of 8), each
    out[g, b, q] a chain of fused multiply-adds in the order of p (as OpenBLAS's sgemm: the
    numpy path's block products, bit for bit); 8 rows of the matrix per pass, the four images
    side by side (independent dependency chains), the loop over q vectorized."""
    i0, i1, i2, i3 = ix[0], ix[1], ix[2], ix[3]
    for p in range(0, size, 8):
        a0, a1, a2, a3 = x[i0, b, p], x[i0, b, p + 1], x[i0, b, p + 2], x[i0, b, p + 3]
        a4, a5, a6, a7 = x[i0, b, p + 4], x[i0, b, p + 5], x[i0, b, p + 6], x[i0, b, p + 7]
        b0, b1, b2, b3 = x[i1, b, p], x[i1, b, p + 1], x[i1, b, p + 2], x[i1, b, p + 3]
        b4, b5, b6, b7 = x[i1, b, p + 4], x[i1, b, p + 5], x[i1, b, p + 6], x[i1, b, p + 7]
        c0, c1, c2, c3 = x[i2, b, p], x[i2, b, p + 1], x[i2, b, p + 2], x[i2, b, p + 3]
        c4, c5, c6, c7 = x[i2, b, p + 4], x[i2, b, p + 5], x[i2, b, p + 6], x[i2, b, p + 7]
        d0, d1, d2, d3 = x[i3, b, p], x[i3, b, p + 1], x[i3, b, p + 2], x[i3, b, p + 3]
        d4, d5, d6, d7 = x[i3, b, p + 4], x[i3, b, p + 5], x[i3, b, p + 6], x[i3, b, p + 7]
        for q in range(out.shape[2]):
            m0, m1, m2, m3 = mats[b, p, q], mats[b, p + 1, q], mats[b, p + 2, q], mats[b, p + 3, q]
            m4, m5, m6, m7 = mats[b, p + 4, q], mats[b, p + 5, q], mats[b, p + 6, q], mats[b, p + 7, q]
            out[0, b, q] = _fma(a7, m7, _fma(a6, m6, _fma(a5, m5, _fma(a4, m4, _fma(
                a3, m3, _fma(a2, m2, _fma(a1, m1, _fma(a0, m0, out[0, b, q]))))))))
            out[1, b, q] = _fma(b7, m7, _fma(b6, m6, _fma(b5, m5, _fma(b4, m4, _fma(
                b3, m3, _fma(b2, m2, _fma(b1, m1, _fma(b0, m0, out[1, b, q]))))))))
            out[2, b, q] = _fma(c7, m7, _fma(c6, m6, _fma(c5, m5, _fma(c4, m4, _fma(
                c3, m3, _fma(c2, m2, _fma(c1, m1, _fma(c0, m0, out[2, b, q]))))))))
            out[3, b, q] = _fma(d7, m7, _fma(d6, m6, _fma(d5, m5, _fma(d4, m4, _fma(
                d3, m3, _fma(d2, m2, _fma(d1, m1, _fma(d0, m0, out[3, b, q]))))))))


def warm_up() -> float:
    """Compile the kernel (or load it from numba's cache) on a tiny dummy chunk, with the argument
    types of a real solve; returns the seconds it took (0 where the kernel is not used)."""
    import time

    if not available():
        return 0.0
    t0 = time.perf_counter()
    f32, m, n, nb, smax = np.float32, 1, 8, 1, 8
    tab = np.zeros((2, 2 * DEG1), f32)
    y3 = np.zeros((nb, smax, smax), f32)
    per_slot = [np.ones(nb * smax, f32) for _ in range(7)]  # i_const, y_hat, u, v, vu, kappa, r_line
    solve_chunk(np.zeros((m, n)), np.zeros((m, n)), tab, 0.0, f32(1.0), f32(0.5), np.array([0, n]),
                np.array([smax]), y3, y3.copy(), np.empty((0, 0), f32), np.zeros(nb * smax, f32), *per_slot[:6],
                per_slot[6], f32(1e-5), f32(1.05), 0.01, 2, 12, 1.0, 0.0, np.empty((m, DEG1, nb * smax), f32),
                np.empty((m, nb * smax), f32), np.empty((m, nb * smax), f32), np.empty((m, nb), f32),
                np.empty(m, np.bool_), np.empty((m, n), f32), np.empty((m, n)), np.empty((m, n)))
    return time.perf_counter() - t0
