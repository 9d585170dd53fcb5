"""The whole-network ngspice netlist against the circuit fidelity, on a small network."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from imac.config import ImacSpec
from imac.devices.neuron_curve import default_neuron_curve
from imac.errors import ConfigError, OutputExistsError, ShapeError
from imac.hardware.mapping import BinaryLayer, map_network
from imac.hardware.simulate import compile_network, run_batch
from imac.hardware.spice_net import export_network, network_netlist, spice_check, spice_network_outputs


def small_network(rng: np.random.Generator, x_op: bool = True):  # type: ignore[no-untyped-def]
    sizes = [12, 6, 3]
    layers = [BinaryLayer(rng.choice([-1.0, 1.0], (b, a)), rng.choice([-1.0, 1.0], b), 0.4 / np.sqrt(a))
              for a, b in itertools.pairwise(sizes)]
    netmap = map_network(layers, ImacSpec(), rows=8, cols=4)
    ops = rng.choice([-1.0, 1.0], (64, 12)) if x_op else None
    return compile_network(netmap, default_neuron_curve(), "circuit", x_op=ops)


@pytest.mark.spice
def test_spice_matches_circuit_on_a_small_network(rng: np.random.Generator) -> None:
    state = rng.bit_generator.state
    net = small_network(rng)
    rng.bit_generator.state = state
    open_circuit = small_network(rng, x_op=False)  # same weights, neurons as open-circuit sources
    assert net.info["neuron_model"].startswith("linearized")
    x = rng.choice([-1.0, 1.0], (4, 12))
    circ, circ_open = run_batch(net, x), run_batch(open_circuit, x)
    sp = spice_network_outputs(net, x)
    err_lin = err_open = 0.0
    for i, s in enumerate(sp):
        # first layer: ideal drivers, linear arrays: the solver is exact
        np.testing.assert_allclose(s["z0"], circ[0]["z"][i], atol=1e-6)
        # hidden layer: transistor-level neurons under load vs the circuit fidelity's
        # nonlinear driver solve (ngspice I-V table), and vs plain open-circuit sources
        err_lin = max(err_lin, float(np.max(np.abs(s["z1"] - circ[1]["z"][i]))))
        err_open = max(err_open, float(np.max(np.abs(s["z1"] - circ_open[1]["z"][i]))))
        # the read-out sees the last neurons unloaded: only the fit error of the curve is left
        assert np.max(np.abs(s["y"] - circ[-1]["y"][i])) < 0.010
    assert err_lin < 0.005
    assert err_open > 10 * err_lin  # loading matters, and the nonlinear solve captures it


@pytest.mark.spice
def test_spice_check_reports_agreement_and_speed(rng: np.random.Generator) -> None:
    net = small_network(rng)
    res = spice_check(net, rng.choice([-1.0, 1.0], (2, 12)), n_jobs=1)
    assert res["n_images"] == 2
    assert res["same_class"] + res["different_class"] == 2
    assert res["max_abs_dz_per_layer_v"][0] < 1e-6
    assert res["circuit_speedup_per_image"] > 1


def test_netlist_draws_every_tile_and_neuron(rng: np.random.Generator) -> None:
    net = small_network(rng, x_op=False)
    text = network_netlist(net, np.ones(12))
    n_tiles = net.netmap.n_subarrays
    assert sum(line.startswith("X") for line in text.splitlines()) == 6 + 3
    assert len({line.split("_")[0] for line in text.splitlines() if line.startswith("RL")}) == n_tiles
    assert ".include" in text and text.rstrip().endswith(".end")
    with pytest.raises(ShapeError):
        network_netlist(net, np.ones(5))
    with pytest.raises(ConfigError, match="circuit"):
        network_netlist(compile_network(net.netmap, net.curve, "behavioral"), np.ones(12))


def test_export_writes_netlist_and_maps_atomically(rng: np.random.Generator, tmp_path: Path) -> None:
    net = small_network(rng, x_op=False)
    out = tmp_path / "export"
    files = export_network(net, np.ones(12), out)
    assert [f.name for f in files] == ["network.cir", "tiles.npz", "mapping.json"]
    maps = np.load(out / "tiles.npz")
    assert maps["L0T0_g_plus"].shape == net.netmap.layers[0].tiles[0].weights.shape
    assert json.loads((out / "mapping.json").read_text())["n_subarrays"] == net.netmap.n_subarrays
    with pytest.raises(OutputExistsError):
        export_network(net, np.ones(12), out)
