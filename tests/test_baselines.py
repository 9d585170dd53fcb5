"""Mixed-signal and digital baselines, and the hardware commands on a committed checkpoint."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imac.config import ImacSpec, parse_spec, with_overrides
from imac.devices.neuron_curve import default_neuron_curve
from imac.hardware.mapping import BinaryLayer, map_network
from imac.hardware.simulate import compile_network
from imac.system.baselines import compare
from imac.system.converters import quantize


def small_net(rng: np.random.Generator, spec: ImacSpec | None = None):  # type: ignore[no-untyped-def]
    layers = [BinaryLayer(rng.choice([-1.0, 1.0], (b, a)), rng.choice([-1.0, 1.0], b), 0.3 / np.sqrt(a))
              for a, b in itertools.pairwise([40, 12, 4])]
    return compile_network(map_network(layers, spec or ImacSpec(), rows=16, cols=8), default_neuron_curve(),
                           "circuit")


def test_quantizer_steps_and_clips() -> None:
    q = quantize(np.array([-3.0, -0.26, 0.05, 0.26, 0.7, 3.0]), -1.0, 1.0, 2)  # 4 levels: +-1, +-1/3
    np.testing.assert_allclose(q, [-1.0, -1 / 3, 1 / 3, 1 / 3, 1.0, 1.0])
    assert np.unique(quantize(np.linspace(-2, 2, 1001), -1.0, 1.0, 3)).size == 8


def test_compare_rows_and_ratios_are_consistent(rng: np.random.Generator) -> None:
    net = small_net(rng)
    x = rng.choice([-1.0, 1.0], (50, 40))
    labels = rng.integers(0, 4, 50)
    res = compare(net, x, labels, acc_software=0.5)
    names = [d["design"] for d in res["designs"]]
    assert names == ["imac (circuit)", "mixed-signal", "digital-cpu", "digital-gpu"]
    imac = res["designs"][0]
    for d in res["designs"]:
        assert d["latency_s"] > 0 and d["energy_per_inference_j"] > 0
        # the breakdown sums to the headline energy
        assert sum(r["energy_j"] for r in d["breakdown"]) == pytest.approx(d["energy_per_inference_j"], rel=1e-9)
    for d in res["designs"][1:]:
        r = res["imac_vs"][d["design"]]
        assert r["imac_speedup"] == pytest.approx(d["latency_s"] / imac["latency_s"])
    # the mixed-signal read-out waits for an ADC conversion that IMAC never does
    assert res["designs"][1]["latency_s"] > imac["latency_s"]


def test_more_adc_bits_cost_more_energy(rng: np.random.Generator) -> None:
    x = rng.choice([-1.0, 1.0], (20, 40))
    labels = rng.integers(0, 4, 20)
    state = rng.bit_generator.state
    e = []
    for bits in (4, 10):
        rng.bit_generator.state = state
        net = small_net(rng, parse_spec({"baselines": {"adc_bits": bits}}))
        e.append(compare(net, x, labels, 0.5)["designs"][1]["energy_per_inference_j"])
    assert e[1] > e[0]


@pytest.mark.slow
def test_simulate_and_compare_commands_on_the_committed_mlp(mnist_available: bool) -> None:
    from imac.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "mlp-mnist", "--fidelity", "circuit", "--limit", "300", "--json",
                              "--no-breakdown", "--no-calibrated"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    for key in ("accuracy", "accuracy_software", "power_w", "latency_s", "energy_per_inference_j", "area_m2",
                "n_subarrays", "build_time_s", "sim_time_s", "ratio_to_ideal"):
        assert key in out
    assert out["n_subarrays"] == 26 and out["hpar"] == [25, 1]
    assert 0 < out["accuracy"] <= 1 and out["power_w"] > 0 and out["latency_s"] > 0
    res = runner.invoke(app, ["compare", "mlp-mnist", "--limit", "200", "--json", "--no-calibrated"])
    assert res.exit_code == 0, res.output
    cmp = json.loads(res.stdout[res.stdout.index("{"):])
    assert {d["design"] for d in cmp["designs"]} >= {"mixed-signal", "digital-cpu", "digital-gpu"}


@pytest.mark.slow
def test_calibration_is_named_tied_to_its_base_and_used(mnist_available: bool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from imac.errors import DataError
    from imac.hardware.network import calibrate, calibrated_path, simulate_model
    from imac.nn.checkpoint import committed_checkpoint_path

    base = tmp_path / "mlp-mnist.pt"
    shutil.copy(committed_checkpoint_path("mlp-mnist"), base)
    spec = ImacSpec()
    dest, info = calibrate("mlp-mnist", spec, rows=32, epochs=1, checkpoint=base, limit=512)
    assert dest == calibrated_path(base, 32, "difference") and dest.is_file()
    assert info["kind"].startswith("hardware-aware fine-tuning") and info["train_images"] == 512
    res = simulate_model("mlp-mnist", "behavioral", spec, checkpoint=base, calibrated=True, limit=100).result
    assert res["calibration"] == "hardware-aware fine-tuning"
    assert res["checkpoint"] == dest.name
    assert info["design"]["subarray rows"] == "32" and set(info["design"]) >= {"mtj", "synapse", "neuron", "wires"}
    # a head is used only for the design it was calibrated for: another MTJ (TMR 150 %) stops the
    # command, naming what changed; variation (a test condition of the design) keeps it
    other = with_overrides(spec, {"mtj.tmr": 1.5})
    with pytest.raises(DataError, match=r"another design \(mtj, synapse, neuron differ.*imac calibrate mlp-mnist"):
        simulate_model("mlp-mnist", "behavioral", other, checkpoint=base, limit=50)
    res = simulate_model("mlp-mnist", "behavioral", other, checkpoint=base, calibrated=False, limit=50).result
    assert res["calibration"] is None
    varied = with_overrides(spec, {"variation.kind": "gaussian", "variation.amount": 0.05})
    res = simulate_model("mlp-mnist", "behavioral", varied, checkpoint=base, limit=50).result
    assert res["calibration"] == "hardware-aware fine-tuning"
    # a changed base checkpoint makes the calibration stale: refused
    base.write_bytes(base.read_bytes() + b"\0")
    for asked in (True, None):
        with pytest.raises(DataError, match="another version"):
            simulate_model("mlp-mnist", "behavioral", spec, checkpoint=base, calibrated=asked, limit=50)


def test_calibrate_cli_behavioural_only(mnist_available: bool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from imac.cli import app
    from imac.nn.checkpoint import committed_checkpoint_path

    runner = CliRunner()
    bad = runner.invoke(app, ["calibrate", "mlp-mnist", "--circuit-epochs", "-1"])
    assert bad.exit_code != 0 and "circuit-epochs" in bad.output
    base = tmp_path / "mlp-mnist.pt"
    shutil.copy(committed_checkpoint_path("mlp-mnist"), base)
    res = runner.invoke(app, ["calibrate", "mlp-mnist", "--checkpoint", str(base), "--epochs", "1",
                              "--circuit-epochs", "0", "--limit", "256"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout[res.stdout.index("{"):])
    assert info["circuit_epochs"] == 0 and info["history_circuit"] == [] and info["train_images"] == 256
    sidecar = json.loads(Path(info["checkpoint"]).with_suffix(".json").read_text())
    assert sidecar["calibration"]["train_images"] == 256  # readable without torch
    # calibrating again replaces that calibration; a user's own file at the place is never replaced
    again = runner.invoke(app, ["calibrate", "mlp-mnist", "--checkpoint", str(base), "--epochs", "1",
                                "--circuit-epochs", "0", "--limit", "64"])
    assert again.exit_code == 0, again.output
    target = Path(info["checkpoint"])
    target.unlink()
    target.with_suffix(".json").unlink()
    target.write_bytes(b"my notes")
    refused = runner.invoke(app, ["calibrate", "mlp-mnist", "--checkpoint", str(base), "--epochs", "1",
                                  "--circuit-epochs", "0", "--limit", "64"])
    assert refused.exit_code != 0 and "not an imac checkpoint" in str(refused.exception)
    assert target.read_bytes() == b"my notes" and not target.with_suffix(".json").exists()
