"""Mapping of binary layers onto subarrays and the simulation fidelities."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from imac.config import ImacSpec, parse_spec
from imac.devices.neuron_curve import default_neuron_curve
from imac.errors import ConfigError, ShapeError
from imac.hardware.mapping import BinaryLayer, map_network, partition_counts
from imac.hardware.simulate import compile_network, predict, run_batch

LENET_HEAD = [400, 120, 84, 10]


@pytest.fixture(autouse=True)
def _tile_cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tile reductions go to a temporary cache folder, not the user's ~/.cache/imac."""
    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "imac-cache"))


def random_layers(rng: np.random.Generator, sizes: list[int], bias: bool = True,
                  scale: float = 0.05) -> list[BinaryLayer]:
    """Random binary layers; ``scale`` / sqrt(fan_in) V per unit sum (trained LeNet: ~0.1-0.5)."""
    return [
        BinaryLayer(rng.choice([-1.0, 1.0], (b, a)), rng.choice([-1.0, 1.0], b) if bias else None, scale / np.sqrt(a))
        for a, b in itertools.pairwise(sizes)
    ]


def test_lenet_head_on_32x32_gives_the_published_partitioning(rng: np.random.Generator) -> None:
    m = map_network(random_layers(rng, LENET_HEAD), ImacSpec(), 32, 32)
    assert m.hpar == [13, 4, 3]
    assert m.vpar == [4, 3, 1]
    assert m.n_subarrays == 67
    for lm in m.layers:
        # every input line and every neuron is placed exactly once, the bias once per column group
        rows = np.concatenate([t.input_idx for t in lm.tiles if t.v == 0])
        assert np.array_equal(np.sort(rows), np.arange(lm.layer.fan_in))
        cols = np.concatenate([t.output_idx for t in lm.tiles if t.h == 0])
        assert np.array_equal(np.sort(cols), np.arange(lm.layer.fan_out))
        assert sum(t.has_bias for t in lm.tiles) == lm.vpar
        assert all(t.shape[0] <= 32 and t.shape[1] <= 32 for t in lm.tiles)


@pytest.mark.parametrize(("fan_in", "fan_out", "rows", "cols", "expect"),
                         [(31, 32, 32, 32, (1, 1)), (32, 33, 32, 32, (2, 2)), (784, 16, 64, 16, (13, 1))])
def test_partition_counts(fan_in: int, fan_out: int, rows: int, cols: int, expect: tuple[int, int]) -> None:
    assert partition_counts(fan_in, fan_out, rows, cols) == expect


def test_unpartitioned_map_is_one_array_per_layer(rng: np.random.Generator) -> None:
    m = map_network(random_layers(rng, LENET_HEAD), partitioned=False)
    assert m.n_subarrays == 3
    assert [t.shape for lm in m.layers for t in lm.tiles] == [(401, 120), (121, 84), (85, 10)]


def test_bad_inputs_are_refused(rng: np.random.Generator) -> None:
    with pytest.raises(ConfigError, match="no binary FC layers"):
        map_network([])
    with pytest.raises(ConfigError, match="at least 2 rows"):
        map_network(random_layers(rng, [8, 4]), rows=1, cols=4)
    with pytest.raises(ShapeError, match="layer 1 takes"):
        map_network(random_layers(rng, [8, 4]) + random_layers(rng, [5, 2]))
    with pytest.raises(ShapeError, match="binary"):
        BinaryLayer(np.array([[0.5, 1.0]]), None, 0.1)
    with pytest.raises(ShapeError, match="NaN"):
        BinaryLayer(np.array([[np.nan, 1.0]]), None, 0.1)
    with pytest.raises(ConfigError, match="volts_per_unit_sum"):
        BinaryLayer(np.ones((2, 2)), None, -1.0)
    with pytest.raises(ConfigError, match="unknown fidelity"):
        compile_network(map_network(random_layers(rng, [8, 4])), default_neuron_curve(), "magic")
    with pytest.raises(ConfigError, match="variation"):
        parse_spec({"variation": {"kind": "uniform", "amount": 1.5}})


def test_ideal_fidelity_is_the_binary_math(rng: np.random.Generator) -> None:
    layers = random_layers(rng, [20, 8, 3])
    curve = default_neuron_curve()
    net = compile_network(map_network(layers, rows=8, cols=4), curve, "ideal")
    x = rng.choice([-1.0, 1.0], (50, 20))
    out = run_batch(net, x)
    z0 = layers[0].volts_per_unit_sum * (x @ layers[0].weight.T + layers[0].bias)
    np.testing.assert_allclose(out[0]["z"], z0)
    y0 = curve(z0)
    z1 = layers[1].volts_per_unit_sum * ((y0 / 0.8) @ layers[1].weight.T + layers[1].bias)
    np.testing.assert_allclose(out[1]["y"], curve(z1))
    np.testing.assert_array_equal(predict(net, x), np.argmin(curve(z1), axis=1))


@pytest.mark.parametrize("topology", ["difference", "instrumentation"])
def test_gains_give_every_tile_column_the_trained_scale(rng: np.random.Generator, topology: str) -> None:
    spec = parse_spec({"amplifier": {"topology": topology}})
    layers = random_layers(rng, [40, 12, 5])
    m = map_network(layers, spec, rows=16, cols=8)
    for fidelity in ("behavioral", "circuit"):
        net = compile_network(m, default_neuron_curve(), fidelity)
        for lm, cl in zip(m.layers, net.layers, strict=True):
            target = lm.layer.volts_per_unit_sum / spec.subarray.v_dd
            if cl.D is None:  # ideal drivers: every tile column on its own
                for tile, s in zip(lm.tiles, cl.solved, strict=True):
                    np.testing.assert_allclose(np.mean(s.A_full * tile.weights.T, axis=1), target, rtol=1e-5)
            # whole neuron, through loaded drivers too (the bias line weighs like an input)
            w_full = np.hstack([lm.layer.weight, lm.layer.bias[:, None]])
            T_full = np.hstack([cl.T, cl.z0[:, None] / spec.subarray.v_dd])
            np.testing.assert_allclose(np.mean(T_full * w_full, axis=1), target, rtol=1e-5)
            # every effective weight keeps the sign of the trained weight
            assert np.all(np.sign(cl.T) == lm.layer.weight)
        assert max(net.info["gain_shortfall"]) < 1e-5


def test_unreachable_scale_is_reported_not_diverging(rng: np.random.Generator) -> None:
    # an all-+1 column on the loaded difference amplifier cannot reach a large scale
    layer = BinaryLayer(np.ones((2, 12)), np.ones(2), 2.0)
    net = compile_network(map_network([layer], rows=16, cols=2), default_neuron_curve(), "behavioral")
    assert net.info["gain_shortfall"][0] > 0.1
    assert net.info["gain_range"][0][1] <= ImacSpec().amplifier.max_gain
    assert np.all(np.isfinite(net.layers[0].T))


def test_circuit_without_parasitics_equals_behavioral(rng: np.random.Generator) -> None:
    spec = parse_spec({"wires": {"r_vertical_ohm": 0.0, "r_horizontal_ohm": 0.0}})
    layers = random_layers(rng, [30, 10, 4])
    m = map_network(layers, spec, rows=8, cols=4)
    curve = default_neuron_curve()
    beh = compile_network(m, curve, "behavioral")
    # ideal drivers everywhere: circuit must then be the behavioural model exactly
    cir = compile_network(m, curve, "circuit", neuron_r_out_ohm=0.0)
    x = rng.choice([-1.0, 1.0], (20, 30))
    np.testing.assert_allclose(run_batch(cir, x)[-1]["z"], run_batch(beh, x)[-1]["z"], atol=1e-9)


def test_loaded_drivers_attenuate_and_gains_compensate(rng: np.random.Generator) -> None:
    layers = random_layers(rng, [30, 10, 4])
    m = map_network(layers, rows=8, cols=4)
    net = compile_network(m, default_neuron_curve(), "circuit", neuron_r_out_ohm=2000.0)
    hidden = net.layers[1]
    assert hidden.D is not None
    assert 0 < np.mean(np.diag(hidden.D)) < 0.9  # the neuron output sags under the line load
    target = layers[1].volts_per_unit_sum / 0.8
    w_full = np.hstack([layers[1].weight, layers[1].bias[:, None]])
    T_full = np.hstack([hidden.T, hidden.z0[:, None] / 0.8])
    np.testing.assert_allclose(np.mean(T_full * w_full, axis=1), target, rtol=1e-5)


def test_hardware_aware_forward_equals_behavioral_fidelity(rng: np.random.Generator) -> None:
    from imac.hardware.aware import AwareHead
    from imac.nn.layers import ImacMLP

    torch.manual_seed(0)
    head = ImacMLP([24, 10, 4]).double()
    info = head.layer_info()
    layers = [
        BinaryLayer(w.numpy().astype(float), b.numpy().astype(float), i["volts_per_unit_sum"])
        for (w, b), i in zip(head.export_binary(), info, strict=True)
    ]
    spec = ImacSpec()
    net = compile_network(map_network(layers, spec, rows=8, cols=4), head.neurons[0].curve, "behavioral")
    x = rng.choice([-1.0, 1.0], (30, 24))
    aware = AwareHead(head, spec, rows=8)
    with torch.no_grad():
        y = aware(torch.as_tensor(x)).numpy() * spec.subarray.v_dd
    np.testing.assert_allclose(y, run_batch(net, x)[-1]["y"], atol=1e-6)  # both converge gains to 1e-6


@pytest.mark.parametrize("rows", [8, 2])  # 2: 21 lines in 11 partitions, the last one the bias line alone
def test_loaded_neuron_newton_solve_satisfies_kcl(rng: np.random.Generator, rows: int) -> None:
    # hidden-layer lines driven by neurons with their nonlinear output I-V: the solved node
    # voltages must satisfy KCL with the ngspice table current, and the layer's outputs follow
    layers = random_layers(rng, [40, 20, 6], scale=0.4)
    curve = default_neuron_curve()
    net = compile_network(map_network(layers, rows=rows, cols=8), curve, "circuit",
                          x_op=rng.choice([-1.0, 1.0], (64, 40)))
    x = rng.choice([-1.0, 1.0], (30, 40))
    out = run_batch(net, x)
    cl = net.layers[1]
    assert cl.loaded is not None and cl.Y is not None and cl.A_drv is not None and cl.D is not None
    n, v_dd = 20, 0.8
    d = out[1]["d"]
    g_bias = 1.0 / cl.r_source[n]
    d_bias = (g_bias * v_dd - d @ cl.Y[n, :n]) / (g_bias + cl.Y[n, n])
    d_full = np.hstack([d, d_bias[:, None]])
    kcl = curve.output_current(out[0]["z"], d) - d_full @ cl.Y[:n].T  # A, zero at the solution
    # within the table's z range (beyond it the solve holds the edge row: a saturated neuron)
    # only the table's bilinear vs the solve's polynomial current differ, by ~1 uA
    inside = np.abs(out[0]["z"]) <= 0.8
    assert inside.mean() > 0.5
    assert np.max(np.abs(kcl[inside])) < 2e-6
    np.testing.assert_allclose(out[1]["z"], d_full @ cl.A_drv.T, atol=1e-5)
    # the reported source voltages are the Thevenin equivalents: D maps them back to d
    v_full = np.hstack([out[1]["v_in"], np.full((30, 1), v_dd)])
    np.testing.assert_allclose(v_full @ cl.D.T, d_full, atol=1e-3)



def test_loaded_neuron_newton_survives_a_bad_start(rng: np.random.Generator) -> None:
    # a start far outside the rails (where the I-V polynomial explodes) once overflowed to NaN
    # on a VGG head with high gains; the iterates are now held near the fitted range and reach
    # the same solution as the fitted start
    from imac.hardware import simulate as sim

    layers = random_layers(rng, [40, 20, 6], scale=0.4)
    net = compile_network(map_network(layers, rows=8, cols=8), default_neuron_curve(), "circuit",
                          x_op=rng.choice([-1.0, 1.0], (64, 40)))
    x = rng.choice([-1.0, 1.0], (30, 40))
    good = run_batch(net, x)
    ls = net.layers[1].loaded
    assert ls is not None
    ls.start = np.zeros_like(ls.start)
    ls.start[-1] = np.where(np.arange(ls.start.shape[1]) % 2, 40.0, -40.0)  # s = +-40: 20 V_DD out
    with np.errstate(all="raise"):
        bad = run_batch(net, x)
    assert np.isfinite(bad[-1]["y"]).all()
    assert sim.NEWTON_S_LIMIT >= 1.0
    np.testing.assert_allclose(bad[1]["z"], good[1]["z"], atol=1e-4)
    np.testing.assert_allclose(bad[-1]["y"], good[-1]["y"], atol=1e-4)
    # a solve that still ends non-finite is an error naming the layer, never NaN results
    from imac.errors import SolverError

    ls.start[-1] = np.nan
    with pytest.raises(SolverError, match="layer 1 diverged on 30 of 30 images"):
        run_batch(net, x)

def test_circuit_in_the_loop_finetune_runs_on_the_circuit(rng: np.random.Generator) -> None:
    from imac.hardware.aware import finetune_circuit_in_loop
    from imac.nn.layers import ImacMLP

    torch.manual_seed(0)
    head = ImacMLP([24, 10, 4])

    class Model:  # the two things the fine-tune needs from a model
        def __init__(self) -> None:
            self.head = head

        def logits(self, y: torch.Tensor) -> torch.Tensor:
            return -10.0 * y

    def layers() -> list[BinaryLayer]:
        return [BinaryLayer(w.numpy().astype(float), b.numpy().astype(float), i["volts_per_unit_sum"])
                for (w, b), i in zip(head.export_binary(), head.layer_info(), strict=True)]

    x = rng.choice([-1.0, 1.0], (200, 24))
    labels = rng.integers(0, 4, 200)
    compiles = []

    def build():  # type: ignore[no-untyped-def]
        net = compile_network(map_network(layers(), rows=8, cols=4), default_neuron_curve(), "circuit",
                              x_op=x[:32])
        compiles.append(net)
        return lambda xb: [o["z"] for o in run_batch(net, xb)]

    w0 = [lin.binary_weight().clone() for lin in head.linears]
    hist = finetune_circuit_in_loop(Model(), x, labels, ImacSpec(), 8, build, epochs=2, lr=0.05,
                                    batch_size=50, recompile_every=3, progress=False)
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert len(compiles) == 3  # steps 0, 3 and 6 of 8
    assert any(not torch.equal(a, lin.binary_weight()) for a, lin in zip(w0, head.linears, strict=True))


# -- tile reductions (hardware/tiles.py): exact, cached, identical tiles once, parallel ----------
def _random_sub(rng: np.random.Generator, n: int, m: int, topology: str, wires: bool = True,
                r_driver: float = 0.0) -> Any:
    from imac.circuit.netlist import Subarray

    w = rng.choice([-1.0, 1.0], (n, m))
    g_l, g_h = 1 / 4.0e3, 1 / 11.0e3
    return Subarray(np.where(w > 0, g_l, g_h), np.where(w > 0, g_h, g_l), 9.56 if wires else 0.0,
                    11.95 if wires else 0.0, r_driver, rng.uniform(0.5, 80.0, m), 1000.0, True, topology)


@pytest.mark.parametrize("topology", ["difference", "instrumentation"])
@pytest.mark.parametrize(("wires", "r_driver"), [(True, 0.0), (False, 0.0), (True, 250.0), (False, 250.0)])
def test_tile_reduction_equals_the_full_solve(rng: np.random.Generator, topology: str, wires: bool,
                                              r_driver: float) -> None:
    from imac.circuit.solve import solve_subarray
    from imac.hardware.tiles import reduce_tile, reduce_tiles_dense, reduce_tiles_wireless, solve_tile

    sub = _random_sub(rng, 9, 6, topology, wires, r_driver)
    ref = solve_subarray(sub)
    reds = [reduce_tile(sub)]
    if wires:
        reds.append(reduce_tiles_dense([sub])[0])
    elif r_driver == 0:
        reds.append(reduce_tiles_wireless([sub])[0])
    for red in reds:
        got = solve_tile(red, sub)
        np.testing.assert_allclose(got.A_full, ref.A_full, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(got.input_admittance(), ref.input_admittance(), rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize(("n", "m"), [(1, 3), (5, 1), (2, 2), (32, 32), (40, 7)])
def test_dense_sweep_equals_the_sparse_reduction(rng: np.random.Generator, n: int, m: int) -> None:
    from imac.hardware.tiles import reduce_tile, reduce_tile_nested, reduce_tiles_dense

    subs = [_random_sub(rng, n, m, "difference", True, r) for r in (0.0, 120.0, 0.0)]
    for sub, red in zip(subs, reduce_tiles_dense(subs), strict=True):
        ref = reduce_tile(sub)
        for got, want in ((red.Z, ref.Z), (red.H, ref.H), (red.Y0, ref.Y0)):  # floor: Y0 = 0 for one line
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * max(np.max(np.abs(want)), 1e-4))
        nested = reduce_tile_nested(sub)
        for got, want in ((nested.Z, ref.Z), (nested.H, ref.H), (nested.Y0, ref.Y0)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-11 * max(np.max(np.abs(want)), 1e-4))
    with pytest.raises(ValueError, match="one shape"):
        reduce_tiles_dense([subs[0], _random_sub(rng, n + 1, m, "difference")])
    with pytest.raises(ValueError, match="wire resistance"):
        reduce_tiles_dense([_random_sub(rng, n, m, "difference", wires=False)])


def test_tile_cache_memory_disk_and_duplicates(rng: np.random.Generator, tmp_path: Any) -> None:
    from dataclasses import replace

    from imac.hardware.tiles import TileCache, reduce_tiles, tile_key

    a = _random_sub(rng, 32, 16, "difference")  # large enough to be kept on disk
    b = _random_sub(rng, 32, 16, "difference")
    cache = TileCache(tmp_path, max_bytes=10**9)
    reds = reduce_tiles([a, b, a], cache=cache, jobs=1)
    assert cache.stats["solved"] == 2 and cache.stats["duplicates"] == 1
    assert reds[0] is reds[2]
    assert len(list((tmp_path / "tiles").rglob("*.npz"))) == 2
    # a fresh process (empty memory) reads them back from disk, identical
    fresh = TileCache(tmp_path)
    again = reduce_tiles([b, a], cache=fresh, jobs=1)
    assert fresh.stats == {"memory": 0, "disk": 2, "solved": 0, "duplicates": 0}
    np.testing.assert_array_equal(again[1].Z, reds[0].Z)
    np.testing.assert_array_equal(again[0].Y0, reds[1].Y0)
    # the key is what the reduction depends on: conductances and wires, not gains or capacitances
    assert tile_key(a) == tile_key(replace(a, amp_gain=3.0, c_vertical=1e-15))
    assert tile_key(a) != tile_key(replace(a, r_vertical=5.0))
    g = a.g_plus.copy()
    g[3, 2] *= 1.0 + 1e-12
    assert tile_key(a) != tile_key(replace(a, g_plus=g))
    # memory only: nothing written
    off = TileCache(None)
    reduce_tiles([a], cache=off, jobs=1)
    assert off.directory is None


def test_tile_cache_folder_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from imac.hardware.tiles import TileCache, cache_dir

    monkeypatch.setenv("IMAC_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path and TileCache().directory == tmp_path / "tiles"
    monkeypatch.setenv("IMAC_CACHE_DIR", "off")
    assert cache_dir() is None
    monkeypatch.delenv("IMAC_CACHE_DIR")
    assert cache_dir() is not None and cache_dir().name == "imac"  # type: ignore[union-attr]


def test_parallel_tile_solves_equal_serial(rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    import imac.hardware.tiles as tiles

    subs = [_random_sub(rng, 16, 8, "difference") for _ in range(6)]
    serial = tiles.reduce_tiles(subs, cache=tiles.TileCache(None), jobs=1)
    monkeypatch.setattr(tiles, "PARALLEL_MIN_SECONDS", 0.0)
    seen: list[tuple[int, int]] = []
    par = tiles.reduce_tiles(subs, cache=tiles.TileCache(None), jobs=2, progress=lambda d, t: seen.append((d, t)))
    for s, p in zip(serial, par, strict=True):
        np.testing.assert_array_equal(s.Z, p.Z)
        np.testing.assert_array_equal(s.H, p.H)
    assert seen[-1] == (6, 6)


def test_compiled_network_is_the_same_from_a_warm_cache(rng: np.random.Generator) -> None:
    from imac.hardware.tiles import default_cache

    m = map_network(random_layers(rng, [40, 12, 5]), ImacSpec(), rows=16, cols=8)
    x = rng.choice([-1.0, 1.0], (20, 40))
    cold = run_batch(compile_network(m, default_neuron_curve(), "circuit"), x)[-1]["z"]
    hits = default_cache().stats["memory"]
    m2 = map_network(random_layers(np.random.default_rng(0), [40, 12, 5]), ImacSpec(), rows=16, cols=8)
    m2.layers = m.layers  # same tiles, gains reset below
    for lm in m2.layers:
        for t in lm.tiles:
            t.gain = np.zeros(0)
    warm = run_batch(compile_network(m2, default_neuron_curve(), "circuit"), x)[-1]["z"]
    assert default_cache().stats["memory"] > hits
    np.testing.assert_array_equal(cold, warm)


# -- the batch on a torch device (hardware/device.py): tested on the CPU ---------------------------
def test_torch_batch_equals_numpy_on_cpu(rng: np.random.Generator) -> None:
    from imac.devices.neuron_curve import default_neuron_curve as curve_fn

    m = map_network(random_layers(rng, [48, 40, 24, 6], scale=0.3), ImacSpec(), rows=16, cols=16)
    x = rng.choice([-1.0, 1.0], (300, 48))
    x_op = rng.choice([-1.0, 1.0], (64, 48))
    for fidelity in ("ideal", "behavioral", "circuit"):
        net = compile_network(m, curve_fn(), fidelity, x_op=x_op if fidelity == "circuit" else None)
        a, b = run_batch(net, x), run_batch(net, x, device="cpu")
        for la, lb in zip(a, b, strict=True):
            assert set(la) == set(lb)
            for k in la:  # float32 Newton on the loaded layers: within its tolerance
                np.testing.assert_allclose(lb[k], la[k], rtol=0, atol=2e-4)
        np.testing.assert_array_equal(np.argmin(b[-1]["y"], axis=1), np.argmin(a[-1]["y"], axis=1))
    assert any(cl.loaded is not None for cl in net.layers)  # the circuit net exercised the Newton solve


def test_unknown_or_absent_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from imac.hardware.device import resolve_device

    assert resolve_device(None) is None and resolve_device("numpy") is None
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("abacus")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")


def test_stacked_gains_equal_one_tile_at_a_time(rng: np.random.Generator) -> None:
    from imac.hardware.tiles import apply_gains, apply_gains_stacked, reduce_tiles_dense

    for topology in ("difference", "instrumentation"):
        subs = [_random_sub(rng, 12, 5, topology) for _ in range(4)]
        reds = reduce_tiles_dense(subs)
        gains = rng.uniform(0.5, 80.0, (4, 5))
        A, Y = apply_gains_stacked(reds, gains, 1000.0, topology)
        for k, red in enumerate(reds):
            a, y = apply_gains(red, gains[k], 1000.0, topology)
            np.testing.assert_allclose(A[k], a, rtol=1e-13, atol=1e-16)
            np.testing.assert_allclose(Y[k], y, rtol=1e-13, atol=1e-18)
