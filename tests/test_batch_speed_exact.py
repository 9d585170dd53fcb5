"""The circuit fidelity's loaded-neuron batch solve (``simulate._solve_loaded_neurons``) against an
independent tight float64 reference: the work arrays, block-by-block products, chunking, masking and
threads that make it fast must not move its solution.  Both paths: the numpy array operations
(``IMAC_NUMBA=0``) and the compiled kernel (:mod:`imac.hardware.batch_kernels`, where numba is
installed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imac.devices.neuron_curve import default_neuron_curve
from imac.hardware import batch_kernels
from imac.hardware import simulate as sim
from imac.hardware.mapping import BinaryLayer, map_network

needs_numba = pytest.mark.skipif(not batch_kernels._HAVE_NUMBA, reason="numba is not installed")
PATHS = ["numpy", pytest.param("numba", marks=needs_numba)]


@pytest.fixture(autouse=True)
def _tile_cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "imac-cache"))


def use_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("IMAC_NUMBA", "1" if path == "numba" else "0")
    assert sim.use_kernel() == (path == "numba")


def reference_solve(ls: sim.LoadedSolver, z_prev: np.ndarray, y_prev: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full Newton in float64 with the exact block Jacobian diag(dI/ds) - Y_red^T, to 1e-13 in s,
    on the same circuit model (the I-V polynomial table, Y_red, A_red of the LoadedSolver)."""
    n = z_prev.shape[1]
    coef = ls.coef.astype(float)
    deg1 = coef.shape[1] // 2
    fz = ((z_prev - ls.z_first) / ls.dz).astype(np.float32)  # the solver's interval and position
    np.clip(fz, 0.0, coef.shape[0] - 1e-3, out=fz)
    iz = fz.astype(np.intp)
    t = (fz - iz).astype(float)[..., None]
    c = coef[iz][..., :deg1] + t * coef[iz][..., deg1:]
    c[..., 0] += ls.i_const
    s = y_prev @ ls.start[:n].astype(float) + ls.start[n]
    for _ in range(60):
        cur, slope = c[..., -1].copy(), np.zeros_like(s)
        for j in range(deg1 - 2, -1, -1):
            slope = slope * s + cur
            cur = cur * s + c[..., j]
        step = np.empty_like(s)
        for (a, e), y_t in zip(ls.blocks, ls.y_t, strict=True):
            y = y_t.astype(float)
            res = cur[:, a:e] - s[:, a:e] @ y
            jac = slope[:, a:e, None] * np.eye(e - a) - y.T
            step[:, a:e] = np.linalg.solve(jac, -res[..., None])[..., 0]
        s = np.clip(s + step, -sim.NEWTON_S_LIMIT, sim.NEWTON_S_LIMIT)
        if np.abs(step).max() < 1e-13:
            break
    else:
        raise AssertionError("the reference Newton did not converge")
    current = cur - ls.i_const
    d = s * ls.v_half + ls.v_centre
    return s @ ls.a_t.astype(float) + ls.z_const, d, d + ls.r_line * current


def loaded_network(rng: np.random.Generator) -> sim.CompiledNetwork:
    # 16-row subarrays: the hidden layers' partitions have unequal sizes (several runs of blocks)
    sizes = [64, 45, 30, 6]
    layers = [BinaryLayer(rng.choice([-1.0, 1.0], (b, a)), rng.choice([-1.0, 1.0], b), 0.4 / np.sqrt(a))
              for a, b in itertools.pairwise(sizes)]
    return sim.compile_network(map_network(layers, rows=16, cols=16), default_neuron_curve(), "circuit",
                               x_op=rng.choice([-1.0, 1.0], (96, 64)))


@pytest.mark.parametrize("path", PATHS)
def test_loaded_solve_equals_a_float64_reference(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
                                                 path: str) -> None:
    net = loaded_network(rng)
    use_path(monkeypatch, path)
    x = rng.choice([-1.0, 1.0], (700, 64))  # two full chunks of 256 and a remainder
    out = sim.run_batch(net, x)
    checked = 0
    for li in range(1, len(net.layers)):
        ls = net.layers[li].loaded
        assert ls is not None
        assert len(sim._block_runs(ls.blocks)) > 1  # partitions of unequal sizes
        z, d, v_in = reference_solve(ls, out[li - 1]["z"], out[li - 1]["y"])
        # float32 work arrays, Newton tolerance 20 uV on the step: ~0.1-0.4 uV left here
        assert np.abs(out[li]["d"] - d).max() < 2e-6
        assert np.abs(out[li]["z"] - z).max() < 1e-5
        assert np.abs(out[li]["v_in"] - v_in).max() < 5e-6
        checked += 1
    assert checked == 2


@pytest.mark.parametrize("path", PATHS)
def test_chunks_threads_and_a_dense_start_give_the_same_solution(rng: np.random.Generator,
                                                                 monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    net = loaded_network(rng)
    use_path(monkeypatch, path)
    x = rng.choice([-1.0, 1.0], (300, 64))
    base = sim.run_batch(net, x)
    monkeypatch.setattr(sim, "NEWTON_CHUNK_ELEMENTS", 37 * 45)  # ragged chunks of 37 images, masking and compaction
    monkeypatch.setenv("IMAC_THREADS", "2")
    other = sim.run_batch(net, x)
    for la, lb in zip(base, other, strict=True):
        for k in la:
            np.testing.assert_allclose(lb[k], la[k], rtol=0, atol=1e-6)
    # a start that is not block diagonal is applied as one dense product
    ls = net.layers[1].loaded
    assert ls is not None
    ls.start = ls.start.copy()
    ls.start[0, -1] += 1e-3
    assert sim._start_blocks(ls, sim._plan(ls)) is None
    dense = sim.run_batch(net, x)
    np.testing.assert_allclose(dense[1]["d"], base[1]["d"], rtol=0, atol=3e-6)


def test_block_product_equals_the_dense_product(rng: np.random.Generator) -> None:
    blocks = [(0, 5), (5, 10), (10, 14), (14, 18), (18, 25)]
    runs = sim._block_runs(blocks)
    assert runs == [(0, 5, 2), (10, 4, 2), (18, 7, 1)]
    mats = [rng.normal(size=(cnt, size, size)).astype(np.float32) for _, size, cnt in runs]
    dense = np.zeros((25, 25), np.float32)
    for (a, size, cnt), m in zip(runs, mats, strict=True):
        for j in range(cnt):
            dense[a + j * size : a + (j + 1) * size, a + j * size : a + (j + 1) * size] = m[j]
    x = rng.normal(size=(40, 25)).astype(np.float32)
    out = np.full_like(x, np.nan)
    sim._block_product(x[3:33], runs, mats, out[3:33])
    np.testing.assert_allclose(out[3:33], x[3:33] @ dense, rtol=1e-5, atol=1e-5)
    assert np.isnan(out[:3]).all() and np.isnan(out[33:]).all()


@needs_numba
def test_the_compiled_kernel_equals_the_numpy_path(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    # same algorithm, same float32 operations (the block products as OpenBLAS's fused chains): only
    # the Sherman-Morrison sums add in another order, which moves the Newton iterates by rounding
    net = loaded_network(rng)
    x = rng.choice([-1.0, 1.0], (700, 64))
    use_path(monkeypatch, "numpy")
    ref = sim.run_batch(net, x)
    use_path(monkeypatch, "numba")
    out = sim.run_batch(net, x)
    for la, lb in zip(ref, out, strict=True):
        assert la.keys() == lb.keys()
        for k in la:
            np.testing.assert_allclose(lb[k], la[k], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.argmin(out[-1]["y"], axis=1), np.argmin(ref[-1]["y"], axis=1))


def test_imac_numba_0_selects_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for off in ("0", "false", "off"):
        monkeypatch.setenv("IMAC_NUMBA", off)
        assert not sim.use_kernel()
    monkeypatch.delenv("IMAC_NUMBA")
    assert sim.use_kernel() == batch_kernels._HAVE_NUMBA
    assert not sim.use_kernel(deg1=sim.IV_POLY_DEGREE + 2)  # the kernel's degree is fixed: numpy for another
