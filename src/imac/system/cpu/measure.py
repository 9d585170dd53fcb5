"""The check of the model against PyTorch on this machine: per-layer eager timings vs the model."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from imac.config import CpuCoreSpec

if TYPE_CHECKING:  # torch is imported lazily inside the functions that need it
    from torch import nn

from imac.system.cpu.cores import load_core
from imac.system.cpu.cost import layer_cost
from imac.system.cpu.workload import NO_COST_LAYERS, leaf_modules, model_workload


def _time_call(fn: Any, warmup: int, repeats: int, min_rep_s: float) -> list[float]:
    """Seconds per call: ``repeats`` samples, each the mean over enough calls to last ``min_rep_s``."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, math.ceil(min_rep_s / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def measure_layers(model: Any, batch: int = 1, warmup: int = 5, repeats: int = 15,
                   min_rep_s: float = 2e-3, threads: int = 1) -> list[dict[str, Any]]:
    """Median PyTorch time of each trunk / float-head layer on this machine (``threads`` threads).

    Each layer runs on a copy of the very input it sees inside ``model.features`` (same memory
    format: the VGG models run channels-last), in inference mode."""
    import numpy as np
    import torch

    if isinstance(model, str):
        from imac.nn.models import build_model

        model = build_model(model)
    model.eval()
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = model.prepare(np.random.default_rng(0).integers(0, 256, (batch, *model.input_shape)).astype(np.uint8))
        leaves: list[tuple[str, nn.Module]] = []
        if getattr(model, "trunk", None) is not None:
            leaves += leaf_modules(model.trunk, "trunk")
        inputs: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: inputs.__setitem__(n, a[0].clone()))
                 for n, m in leaves]
        with torch.inference_mode():
            feats = model.features(x) if leaves else x.reshape(batch, -1)
        for h in hooks:
            h.remove()
        head = getattr(model, "float_head", None)
        if head is not None:
            h_leaves = leaf_modules(head, "float_head")
            z = feats.reshape(batch, -1)
            with torch.inference_mode():
                for n, m in h_leaves:
                    inputs[n] = z.clone()
                    z = m(z)
            leaves += h_leaves
        rows = []
        with torch.inference_mode():
            for n, m in leaves:
                if type(m).__name__ in NO_COST_LAYERS:
                    continue
                xin = inputs[n]
                samples = _time_call(lambda m=m, xin=xin: m(xin), warmup, repeats, min_rep_s)
                rows.append({"layer": n, "type": type(m).__name__, "batch": batch,
                             "measured_s": statistics.median(samples), "min_s": min(samples),
                             "max_s": max(samples)})
        return rows
    finally:
        torch.set_num_threads(prev)


def measure_dispatch_overhead(warmup: int = 20, repeats: int = 30, threads: int = 1) -> float:
    """Median seconds of a PyTorch eager call that does (almost) no work: a 1x1 conv on one
    pixel, one channel.  The fixed software cost of calling a layer (a named calibration of the
    host preset's ``layer_overhead_s``, measured independently of the layers being checked)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        conv = torch.nn.Conv2d(1, 1, 1).eval()
        x = torch.zeros(1, 1, 1, 1)
        with torch.inference_mode():
            return statistics.median(_time_call(lambda: conv(x), warmup, repeats, 2e-3))
    finally:
        torch.set_num_threads(prev)


def check_against_pytorch(model_name: str, batches: Iterable[int] = (1, 32), core: CpuCoreSpec | str = "host",
                          kinds: Iterable[str] = ("conv",), with_overhead: bool = True,
                          **measure_kw: Any) -> list[dict[str, Any]]:
    """Model/measured latency ratio per layer (fp32) on this machine, for each batch size.

    Returns rows with ``model_s`` (pure hardware model, no software overhead), ``model_oh_s``
    (plus the measured dispatch overhead, if ``with_overhead``), ``measured_s`` and the ratios."""
    from imac.nn.models import build_model

    spec = load_core(core) if not isinstance(core, CpuCoreSpec) else core
    overhead = measure_dispatch_overhead() if with_overhead else 0.0
    spec_oh = load_core(spec, layer_overhead_s=overhead)
    kinds = tuple(kinds)
    model = build_model(model_name)
    out = []
    for batch in batches:
        wl = model_workload(model, batch=batch, fc="float", name=model_name)
        measured = {r["layer"]: r for r in measure_layers(model, batch=batch, **measure_kw)}
        for lw in wl.layers:
            if lw.kind not in kinds or lw.name not in measured:
                continue
            m = measured[lw.name]
            t0 = layer_cost(spec, lw, "fp32")
            t1 = layer_cost(spec_oh, lw, "fp32")
            out.append({"model": model_name, "layer": lw.name, "kind": lw.kind, "batch": batch,
                        "macs": lw.macs, "bound": t0["bound"], "level": t0["level"],
                        "lane_utilization": t0["lane_utilization"],
                        "model_s": t0["latency_s"], "model_oh_s": t1["latency_s"],
                        "measured_s": m["measured_s"], "measured_min_s": m["min_s"], "measured_max_s": m["max_s"],
                        "ratio": t0["latency_s"] / m["measured_s"], "ratio_oh": t1["latency_s"] / m["measured_s"],
                        "overhead_s": overhead})
    return out


def ratio_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | layer | batch | MACs | lane util | model us | +overhead us | measured us (min-max) | "
             "ratio | ratio +oh |", "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layer']} | {r['batch']} | {r['macs']:,} | {r['lane_utilization']:.2f} | "
            f"{r['model_s'] * 1e6:.1f} | {r['model_oh_s'] * 1e6:.1f} | {r['measured_s'] * 1e6:.1f} "
            f"({r['measured_min_s'] * 1e6:.1f}-{r['measured_max_s'] * 1e6:.1f}) | {r['ratio']:.2f} | "
            f"{r['ratio_oh']:.2f} |")
    return "\n".join(lines)


