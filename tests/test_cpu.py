"""The analytical CPU model: workload counts, roofline, energies, presets, errors (no timing)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from imac.errors import ConfigError
from imac.system.cpu import (
    ENERGY_COMPONENTS,
    SOURCED_FIELDS,
    CpuCoreSpec,
    LayerWork,
    Workload,
    estimate,
    lane_utilization,
    layer_cost,
    load_core,
    mlp_workload,
    model_workload,
    scale_energy,
    sram_energy_45nm,
)

MOBILE = ("cortex-a53", "cortex-a76")


@pytest.fixture(scope="module")
def lenet_wl() -> Workload:
    return model_workload("lenet-mnist", batch=1, fc="float")


def test_lenet_mac_and_byte_counts(lenet_wl: Workload) -> None:
    by = {lw.name: lw for lw in lenet_wl.layers}
    conv1, conv2 = by["trunk.0"], by["trunk.3"]
    assert conv1.macs == 6 * 28 * 28 * 5 * 5 * 1 == 117_600
    assert conv2.macs == 16 * 10 * 10 * 5 * 5 * 6 == 240_000
    assert (conv1.weights, conv1.biases) == (6 * 25, 6)
    assert (conv2.weights, conv2.biases) == (16 * 6 * 25, 16)
    assert conv1.in_elems == 32 * 32 and conv1.out_elems == 6 * 28 * 28
    # bytes: fp32 weights + biases + in/out activations; int8 weights/activations, int32 bias
    assert conv1.bytes("fp32") == 4 * (150 + 6) + 4 * (1024 + 4704)
    assert conv1.bytes("int8") == 150 + 4 * 6 + (1024 + 4704)
    pools = [lw for lw in lenet_wl.layers if lw.kind == "pool"]
    assert [p.out_elems for p in pools] == [6 * 14 * 14, 16 * 5 * 5]
    assert pools[0].ops == 6 * 14 * 14 * 4  # 3 adds + 1 scale per 2x2 average
    fcs = [lw for lw in lenet_wl.layers if lw.kind == "fc"]
    assert [f.macs for f in fcs] == [400 * 120, 120 * 84, 84 * 10]
    assert lenet_wl.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert not any(lw.kind == "Flatten" for lw in lenet_wl.layers)


def test_fc_choice_and_batch_scaling() -> None:
    trunk = model_workload("lenet-mnist", fc="none")
    assert all(lw.name.startswith("trunk") for lw in trunk.layers)
    binary = model_workload("lenet-mnist", fc="binary")
    assert [lw.macs for lw in binary.layers if lw.kind == "fc"] == [48_000, 10_080, 840]
    b4 = model_workload("lenet-mnist", batch=4, fc="none")
    assert [lw.macs for lw in b4.layers] == [4 * lw.macs for lw in trunk.layers]
    assert [lw.weights for lw in b4.layers] == [lw.weights for lw in trunk.layers]  # weights once per batch


def test_vgg_workload_walks_bn_relu_maxpool() -> None:
    wl = model_workload("vgg11-cifar10", fc="none")
    kinds = {lw.kind for lw in wl.layers}
    assert kinds == {"conv", "bn", "act", "pool"}
    conv0 = wl.layers[0]
    assert conv0.macs == 32 * 32 * 32 * 3 * 9 and conv0.biases == 0  # 1/2 width: 32 channels, no bias
    assert wl.layers[-1].out_shape == (1, 256, 1, 1)


@pytest.mark.parametrize("name", [*MOBILE, "host"])
def test_presets_load_and_carry_sources(name: str) -> None:
    core = load_core(name)
    assert isinstance(core, CpuCoreSpec) and core.name == name
    for f in SOURCED_FIELDS:
        assert core.sources.get(f), f"{name}: no source for {f}"
    assert all(c.source for c in core.caches)
    assert core.fp32_macs_per_cycle > 0 and core.frequency_hz > 1e8


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown CPU preset 'cortex-x9'.*cortex-a53.*cortex-a76.*host"):
        load_core("cortex-x9")


def test_core_from_yaml_and_missing_source_refused(tmp_path: Path) -> None:
    data = load_core("cortex-a76").model_dump(mode="json")
    ok = tmp_path / "my.yaml"
    ok.write_text(yaml.safe_dump(data))
    assert load_core(ok).model_dump() == load_core("cortex-a76").model_dump()  # the same values, given
    del data["sources"]["static_power_w"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="static_power_w"):
        load_core(bad)
    data = load_core("cortex-a76").model_dump(mode="json")
    data["turbo"] = True
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="turbo: unknown key"):
        load_core(bad)


def test_bad_precision_and_empty_model_are_refused(lenet_wl: Workload) -> None:
    with pytest.raises(ConfigError, match=r"unknown precision 'fp16'.*fp32, int8"):
        estimate("cortex-a76", lenet_wl, "fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        layer_cost(load_core("cortex-a76"), lenet_wl.layers[0], "int4")
    with pytest.raises(ConfigError, match="no layers"):
        model_workload("mlp-mnist", fc="none")  # no trunk and nothing else asked for
    with pytest.raises(ConfigError, match="unknown model"):
        model_workload("resnet-imagenet")
    with pytest.raises(ConfigError, match="at least two sizes"):
        mlp_workload([400])


def test_unsupported_layer_is_named() -> None:
    import torch
    from torch import nn

    from imac.system.cpu.workload import _walk

    with pytest.raises(ConfigError, match=r"trunk\.1 \(LSTM\)"):
        _walk(nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), torch.zeros(1, 4), "trunk")


@pytest.mark.parametrize("core", MOBILE)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_table_sums_to_totals(lenet_wl: Workload, core: str, precision: str) -> None:
    cost = estimate(core, lenet_wl, precision)
    assert len(cost.rows) == len(lenet_wl.layers)
    for r in cost.rows:
        assert r["energy_j"] == pytest.approx(sum(r[c] for c in ENERGY_COMPONENTS))
        assert r["latency_s"] == pytest.approx(max(r["t_compute_s"], r["t_memory_s"]))
        assert r["energy_static_j"] == pytest.approx(load_core(core).static_power_w * r["latency_s"])
    assert cost.energy_j == pytest.approx(sum(cost.component_totals().values()))
    assert cost.latency_s == pytest.approx(sum(d["latency_s"] for d in cost.by_kind().values()))
    assert cost.macs == lenet_wl.macs
    assert "**total**" in cost.table()
    d = cost.to_dict()
    assert d["energy_j"] == pytest.approx(cost.energy_j) and len(d["rows"]) == len(cost.rows)


@pytest.mark.parametrize("core", [*MOBILE, "host"])
def test_int8_cheaper_than_fp32(lenet_wl: Workload, core: str) -> None:
    fp, i8 = estimate(core, lenet_wl, "fp32"), estimate(core, lenet_wl, "int8")
    assert i8.energy_j < fp.energy_j and i8.latency_s < fp.latency_s
    conv_fp, conv_i8 = fp.rows[0], i8.rows[0]
    assert conv_i8["energy_mac_j"] < conv_fp["energy_mac_j"] and conv_i8["bytes"] < conv_fp["bytes"]


def test_a76_faster_than_a53(lenet_wl: Workload) -> None:
    assert estimate("cortex-a76", lenet_wl).latency_s < estimate("cortex-a53", lenet_wl).latency_s


def test_roofline_memory_bound_layer_gets_dram_energy() -> None:
    core = load_core("cortex-a76")
    l2 = core.caches[1].size_bytes
    # a batch-1 FC layer: 1 MAC per 4-byte weight, weights far beyond every cache level
    n = 2048
    big = mlp_workload([n, n], batch=1).layers[0]
    assert big.weight_bytes("fp32") > core.caches[-1].size_bytes > l2
    r = layer_cost(core, big, "fp32")
    assert r["level"] == "DRAM" and r["bound"] == "memory"
    assert r["energy_memory_j"] == pytest.approx(big.bytes("fp32") * core.dram_energy_j_per_byte)
    assert r["latency_s"] == pytest.approx(big.bytes("fp32") / core.dram_bandwidth_bytes_per_s)
    # the same layer small enough for L1 is served from L1 at L1 energy
    small = mlp_workload([32, 32], batch=1).layers[0]
    rs = layer_cost(core, small, "fp32")
    assert rs["level"] == "L1"
    assert rs["energy_memory_j"] == pytest.approx(small.bytes("fp32") * core.caches[0].energy_j_per_byte)
    # a conv with the same weights but lots of reuse is compute-bound
    conv = LayerWork("c", "conv", macs=10**9, ops=0, weights=1000, biases=0, in_elems=1000, out_elems=1000,
                     out_channels=64)
    assert layer_cost(core, conv, "fp32")["bound"] == "compute"


def test_level_boundaries() -> None:
    core = load_core("cortex-a53")  # L1 32 KiB, L2 512 KiB, then DRAM
    for nbytes, level in ((32 * 1024, "L1"), (32 * 1024 + 8, "L2"), (512 * 1024 + 8, "DRAM")):
        lw = LayerWork("x", "act", 0, 1, 0, 0, nbytes // 8, nbytes // 8, 0)
        assert layer_cost(core, lw, "fp32")["level"] == level


def test_lane_utilization_and_compute_time() -> None:
    assert lane_utilization(6, 4) == pytest.approx(6 / 8)
    assert lane_utilization(16, 16) == 1.0 and lane_utilization(0, 4) == 1.0
    core = load_core("cortex-a76")
    lw = LayerWork("c", "conv", macs=8_000_000, ops=0, weights=10, biases=0, in_elems=10, out_elems=10,
                   out_channels=8)
    r = layer_cost(core, lw, "fp32")
    assert r["t_compute_s"] == pytest.approx(8e6 / (core.fp32_macs_per_cycle * core.frequency_hz))


def test_layer_overhead_adds_to_every_layer(lenet_wl: Workload) -> None:
    base = estimate("cortex-a76", lenet_wl)
    slow = estimate(load_core("cortex-a76", layer_overhead_s=1e-6), lenet_wl)
    assert slow.latency_s == pytest.approx(base.latency_s + 1e-6 * len(lenet_wl.layers))


def test_energy_scaling_rules() -> None:
    assert scale_energy(1.0, 45, 0.9) == 1.0
    assert scale_energy(1.0, 22.5, 0.9) == pytest.approx(0.5)
    assert sram_energy_45nm(8 * 1024) == pytest.approx(10e-12 / 8)
    assert sram_energy_45nm(1024 * 1024) == pytest.approx(100e-12 / 8)
    assert sram_energy_45nm(4 * 1024 * 1024) > sram_energy_45nm(1024 * 1024)
    assert math.isclose(sram_energy_45nm(1024), 10e-12 / 8)


def test_vgg_full_fc_layers_come_from_dram() -> None:
    cost = estimate("cortex-a76", "vgg11-full-cifar10", "fp32")
    fc = [r for r in cost.rows if r["kind"] == "fc"]
    assert fc[1]["level"] == "DRAM" and fc[1]["bound"] == "memory"  # 4096x4096 fp32 = 64 MiB
