"""`imac reproduce`: every result of SYSTEM.md section 7 the project can compute, in one run directory.

What it runs (``--quick`` shrinks image counts and sweeps, and says so in the report):

1. the neuron in ngspice and its fit (plot);
2. ``lenet-mnist`` and the trained VGG (``vgg11-cifar10``): CPU-only vs CPU-IMAC accuracy, energy
   and latency for fp32 and int8 trunks on the Cortex-A53 and Cortex-A76 presets, with both CPU
   energy models (bottom-up per operation, top-down core power x time), the placement search;
3. energy studies of the full-width VGG-11/13/16 with the classic 4096-4096 head (random weights,
   every tile priced; no accuracy);
4. the IMAC MLP (``mlp-mnist``) against mixed-signal and digital designs;
5. LeNet head accuracy vs subarray size, with and without partitioning, and the subarray count;
6. (full mode) the CPU model's per-layer latency against PyTorch on this machine.

The run directory is complete or absent (:func:`imac.io.run_directory`): ``report.md`` (each table
as *published | ours*), ``results.json``, CSV tables, ``config.yaml`` and the plots.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imac.config import ImacSpec, dump_spec
from imac.experiments.reproduce_targets import (
    CORES,
    ENERGY_MODELS,
    FULL_WIDTH,
    MAIN_CORE,
    MAIN_ENERGY,
    MAIN_PRECISION,
    PRECISIONS,
    PUBLISHED,
    TRAINED_CNNS,
)
from imac.io import atomic_write_bytes, atomic_write_text, run_directory


@dataclass(frozen=True)
class Plan:
    """How much of each study to run."""

    quick: bool
    lenet_images: int | None
    vgg_images: int | None
    mlp_images: int | None
    sweep_images: int | None
    sweep_sizes: tuple[int, ...]
    placements: bool
    vgg_fidelity: str
    sweep_fidelity: str
    study_fidelity: str
    cpu_check: bool

    @staticmethod
    def make(quick: bool) -> Plan:
        if quick:  # CI: the circuit fidelity where it is cheap (LeNet, MLP), behavioral elsewhere; LeNet on
            # its whole test set, where its accuracy target is defined (MNIST's first 5000 images are
            # the harder half: a 500-image subset is biased, not just noisy)
            return Plan(True, None, 200, 500, 300, (16, 32, 64, 128), False, "behavioral", "behavioral",
                        "behavioral", False)
        return Plan(False, None, None, None, 2000, (16, 32, 64, 128), True, "circuit", "circuit", "circuit", True)


def run_reproduce(out: Path, spec: ImacSpec | None = None, quick: bool = False, overwrite: bool = False,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every study into the run directory ``out``; return the results dict."""
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from imac.experiments.demo import provenance

    spec = spec or ImacSpec()
    plan = Plan.make(quick)
    t_start = time.perf_counter()
    report = progress or (lambda m: None)

    last_said = [time.perf_counter()]

    def say(msg: str) -> None:
        last_said[0] = time.perf_counter()
        report(f"[{last_said[0] - t_start:5.0f} s] {msg}")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is the fastest and leaves a core free
    try:
        with run_directory(out, overwrite=overwrite, note=say) as tmp:
            res: dict[str, Any] = {"mode": "quick" if quick else "full", "plan": plan.__dict__}
            timings: dict[str, float] = {}
            peak_mb: dict[str, float] = {}

            def step(name: str, fn: Callable[[], Any]) -> Any:
                say(f"== {name}")
                t0 = time.perf_counter()
                with _heartbeat(name, say, last_said):
                    value = fn()
                timings[name] = time.perf_counter() - t0
                peak_mb[name] = _peak_rss_mb()
                return value

            res["neuron"] = step("neuron in ngspice", lambda: _neuron(spec, tmp))
            res["systems"] = step("CPU-only vs CPU-IMAC, trained CNNs",
                                  lambda: _trained_systems(spec, plan, say))
            res["energy_studies"] = step("energy studies, full-width VGGs",
                                         lambda: _energy_studies(spec, plan, say))
            res["mlp_comparison"] = step("IMAC MLP vs mixed-signal and digital",
                                         lambda: _mlp_comparison(spec, plan, say))
            res["subarray_sweep"] = step("accuracy vs subarray size", lambda: _subarray_sweep(spec, plan, say))
            res["partitioning"] = _partitioning(spec)
            if plan.cpu_check:
                res["cpu_check"] = step("CPU model vs PyTorch on this machine", lambda: _cpu_check(say))
            res["published_vs_ours"] = published_vs_ours(res)
            res["timings_s"] = timings
            res["peak_rss_mb"] = peak_mb  # the process's peak so far, read at the end of each stage
            res["total_s"] = time.perf_counter() - t_start
            res["provenance"] = provenance(spec, 0)
            say("writing the report, tables and plots")
            _write_outputs(tmp, res, spec)
    finally:
        torch.set_num_threads(threads)
    say(f"done in {time.perf_counter() - t_start:.0f} s: {out}/report.md")
    return res


HEARTBEAT_S = 10.0  # a progress line at least this often during a stage


@contextlib.contextmanager
def _heartbeat(stage: str, say: Callable[[str], None], last_said: list[float]) -> Iterator[None]:
    """Say that ``stage`` is still running whenever nothing was said for HEARTBEAT_S."""
    stop = threading.Event()
    t0 = time.perf_counter()

    def beat() -> None:
        while not stop.wait(1.0):
            if time.perf_counter() - last_said[0] >= HEARTBEAT_S:
                say(f"... {stage}: {time.perf_counter() - t0:.0f} s in this stage")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


# -- the studies -------------------------------------------------------------------------------
def _neuron(spec: ImacSpec, tmp: Path) -> dict[str, Any]:
    from imac.devices.neuron import characterize, nan_to_none, write_plot

    ch = characterize(spec.neuron)
    write_plot(ch, tmp / "neuron_spice_vs_fit.png")
    return nan_to_none(ch.summary())


def _compact(r: dict[str, Any], keep_breakdown: bool) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if k != "breakdown"}
    out["by_group_cpu_only"] = r["breakdown"]["cpu_only"]["by_group"]
    out["by_group_cpu_imac"] = r["breakdown"]["cpu_imac"]["by_group"]
    if keep_breakdown:
        out["breakdown"] = r["breakdown"]
    return out


def _trained_systems(spec: ImacSpec, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    from imac.system.cpu_imac import run_system, system_result

    out: dict[str, Any] = {}
    for name in TRAINED_CNNS:
        limit = plan.lenet_images if name == "lenet-mnist" else plan.vgg_images
        cache: dict[Any, Any] = {}
        out[name] = {}
        for precision in PRECISIONS:
            fidelity = "circuit" if name == "lenet-mnist" else plan.vgg_fidelity
            run = run_system(name, precision, spec, fidelity=fidelity, limit=limit, placements=plan.placements,
                             progress=say, cache=cache)
            for core in CORES:
                for em in ENERGY_MODELS:
                    main = (core, precision, em) == (MAIN_CORE, MAIN_PRECISION, MAIN_ENERGY)
                    r = system_result(run, core, energy_model=em)
                    out[name].setdefault(precision, {}).setdefault(core, {})[em] = _compact(r, main)
    return out


def _energy_studies(spec: ImacSpec, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    from imac.nn.models import build_model
    from imac.system.cpu_imac import energy_study

    out: dict[str, Any] = {}
    heads: dict[tuple[Any, ...], Any] = {}  # the three full-width VGGs share one head: price it once
    for name in FULL_WIDTH:
        model = build_model(name)
        key = tuple((i["fan_in"], i["fan_out"], i["volts_per_unit_sum"]) for i in model.head.layer_info())
        out[name] = {}
        for precision in PRECISIONS:
            for core in CORES:
                for em in ENERGY_MODELS:
                    main = (core, precision, em) == (MAIN_CORE, MAIN_PRECISION, MAIN_ENERGY)
                    r = energy_study(name, core, precision, spec, fidelity=plan.study_fidelity, energy_model=em,
                                     imac=heads.get(key), model=model, progress=say)
                    heads[key] = r.pop("_imac_cost")
                    out[name].setdefault(precision, {}).setdefault(core, {})[em] = _compact(r, main)
    return out


def _mlp_comparison(spec: ImacSpec, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    from imac.system.baselines import compare_model

    r = compare_model("mlp-mnist", spec, "circuit", limit=plan.mlp_images, progress=say)
    designs = {d["design"]: d for d in r["designs"]}
    imac = next(d for k, d in designs.items() if k.startswith("imac"))
    mixed = designs["mixed-signal"]
    r["analog_vs_mixed"] = {"power_ratio": mixed["power_w"] / imac["power_w"],
                            "latency_ratio": mixed["latency_s"] / imac["latency_s"],
                            "energy_ratio": mixed["energy_per_inference_j"] / imac["energy_per_inference_j"]}
    return r


def _subarray_sweep(spec: ImacSpec, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """LeNet's software-trained head (no calibration, so every size is treated alike) on square
    subarrays of each size, and on one array per layer."""
    from imac.hardware.network import simulate_model

    rows: list[dict[str, Any]] = []
    for size, partitioned in [(s, True) for s in plan.sweep_sizes] + [(0, False)]:
        label = f"{size}x{size}" if partitioned else "one array per layer"
        say(f"lenet-mnist head on {label}")
        r = simulate_model("lenet-mnist", plan.sweep_fidelity, spec, size or None, size or None,
                           partitioned=partitioned, calibrated=False, limit=plan.sweep_images).result
        rows.append({"subarray": label, "size": size or None, "partitioned": partitioned,
                     "accuracy": r["accuracy"], "accuracy_software": r["accuracy_software"],
                     "n_subarrays": r["n_subarrays"], "hpar": r["hpar"], "vpar": r["vpar"],
                     "energy_per_inference_j": r["energy_per_inference_j"], "latency_s": r["latency_s"],
                     "gain_shortfall": r["gain_shortfall"], "n_images": r["n_images"]})
    return {"model": "lenet-mnist", "head": "software-trained (no calibration)", "fidelity": plan.sweep_fidelity,
            "rows": rows}


def _partitioning(spec: ImacSpec) -> dict[str, Any]:
    """The LeNet head's tiles on the preset's subarrays (the published count is for 32x32)."""
    from imac.hardware.mapping import partition_counts
    from imac.nn.models import build_model

    sizes = build_model("lenet-mnist").fc_layer_sizes()
    rows, cols = spec.subarray.rows, spec.subarray.cols
    counts = [partition_counts(a, b, rows, cols) for a, b in itertools.pairwise(sizes)]
    hpar, vpar = [c[0] for c in counts], [c[1] for c in counts]
    return {"sizes": sizes, "subarray": [rows, cols], "hpar": hpar, "vpar": vpar,
            "n_subarrays": int(sum(h * v for h, v in counts))}


def _cpu_check(say: Callable[[str], None]) -> list[dict[str, Any]]:
    from imac.system.cpu import check_against_pytorch

    rows: list[dict[str, Any]] = []
    for name in TRAINED_CNNS:
        say(f"timing {name}'s conv layers in PyTorch")
        rows += check_against_pytorch(name, batches=(1, 32), core="host", repeats=7)
    return rows


# -- published | ours --------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _main(r: dict[str, Any], name: str, key: str = "systems") -> dict[str, Any]:
    return r[key][name][MAIN_PRECISION][MAIN_CORE][MAIN_ENERGY]


def _saving_range(r: dict[str, Any], key: str, name: str) -> str:
    vals = [r[key][name][p][c][e]["energy_saving"] for p in PRECISIONS for c in CORES for e in ENERGY_MODELS]
    return f"{100 * min(vals):.1f}-{100 * max(vals):.1f} %"


def published_vs_ours(r: dict[str, Any]) -> list[dict[str, str]]:
    """One row per SYSTEM.md section 7 target: what was published, what this run gives."""
    lenet = _main(r, "lenet-mnist")
    vgg = _main(r, "vgg11-cifar10")
    mlp = r["mlp_comparison"]
    ratios = mlp["imac_vs"]
    avm = mlp["analog_vs_mixed"]
    part = r["partitioning"]
    sweep32 = next((s for s in r["subarray_sweep"]["rows"] if s["size"] == 32), None)
    full = [f"{n.split('-')[0].upper()} {100 * _main(r, n, 'energy_studies')['energy_saving']:.1f} %"
            for n in FULL_WIDTH]
    rows = [
        ("saving_lenet", f"{100 * lenet['energy_saving']:.1f} % ({MAIN_CORE}, {MAIN_PRECISION}; "
                         f"{_saving_range(r, 'systems', 'lenet-mnist')} over cores, precisions, CPU energy models)"),
        ("saving_vgg", f"trained VGG-11 x0.5: {100 * vgg['energy_saving']:.1f} % "
                       f"({_saving_range(r, 'systems', 'vgg11-cifar10')}); full width, 4096-4096 head: "
                       + ", ".join(full)),
        ("mlp_vs_mixed", f"{ratios['mixed-signal']['imac_speedup']:.1f}x faster, "
                         f"{ratios['mixed-signal']['imac_energy_advantage']:.1f}x less energy"),
        ("mlp_vs_gpu", f"{ratios['digital-gpu']['imac_speedup']:,.0f}x faster, "
                       f"{ratios['digital-gpu']['imac_energy_advantage']:,.0f}x less energy"),
        ("analog_vs_mixed", f"{avm['power_ratio']:.2f}x / {avm['latency_ratio']:.1f}x / {avm['energy_ratio']:.1f}x "
                            "lower (mlp-mnist)"),
        ("lenet_float", _pct(lenet["accuracy_cpu_only"]) + f" ({lenet['n_images']} test images)"),
        ("imac_partitioned", f"LeNet head on 32x32, circuit: {_pct(lenet['accuracy_cpu_imac'])} "
                             f"({'calibrated' if lenet['calibration'] else 'software-trained'} head)"
                             + (f"; software-trained head {_pct(sweep32['accuracy'])} vs software binary "
                                f"{_pct(sweep32['accuracy_software'])} ({sweep32['n_images']} images)"
                                if sweep32 else "")),
        ("subarrays", f"{part['n_subarrays']} (hpar {','.join(map(str, part['hpar']))}; "
                      f"vpar {','.join(map(str, part['vpar']))})"),
    ]
    return [{"target": PUBLISHED[k][0], "published": PUBLISHED[k][1], "source": PUBLISHED[k][2], "ours": v}
            for k, v in rows]


# -- outputs -----------------------------------------------------------------------------------
def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in row.items()})
    return buf.getvalue()


def savings_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, label in (("systems", "trained"), ("energy_studies", "energy study (random weights)")):
        for name, by_p in r[key].items():
            for p, by_c in by_p.items():
                for c, by_e in by_c.items():
                    for e, s in by_e.items():
                        rows.append({"model": name, "kind": label, "core": c, "precision": p, "cpu_energy_model": e,
                                     "energy_cpu_only_j": s["energy_cpu_only_j"],
                                     "energy_cpu_imac_j": s["energy_cpu_imac_j"],
                                     "energy_saving": s["energy_saving"],
                                     "latency_cpu_only_s": s["latency_cpu_only_s"],
                                     "latency_cpu_imac_s": s["latency_cpu_imac_s"],
                                     "fc_share_of_cpu_only_energy": s["fc_share_of_cpu_only_energy"],
                                     "imac_energy_j": s["imac_energy_j"],
                                     "accuracy_cpu_only": s["accuracy_cpu_only"],
                                     "accuracy_cpu_imac": s["accuracy_cpu_imac"]})
    return rows


def _write_outputs(tmp: Path, r: dict[str, Any], spec: ImacSpec) -> None:
    atomic_write_text(tmp / "results.json", json.dumps(r, indent=1, default=float))
    atomic_write_text(tmp / "config.yaml", dump_spec(spec))
    atomic_write_text(tmp / "published_vs_ours.csv", _csv(r["published_vs_ours"]))
    atomic_write_text(tmp / "savings.csv", _csv(savings_rows(r)))
    atomic_write_text(tmp / "subarray_sweep.csv", _csv(r["subarray_sweep"]["rows"]))
    atomic_write_text(tmp / "mlp_comparison.csv", _csv(
        [{k: v for k, v in d.items() if k != "breakdown"} for d in r["mlp_comparison"]["designs"]]))
    if "cpu_check" in r:
        atomic_write_text(tmp / "cpu_model_vs_pytorch.csv", _csv(r["cpu_check"]))
    from imac.experiments import reproduce_plots as plots

    for fname, fig in (("energy_breakdown.png", plots.energy_breakdown(r)),
                       ("accuracy_vs_subarray.png", plots.accuracy_vs_subarray(r)),
                       ("savings_vs_core.png", plots.savings_vs_core(r))):
        atomic_write_bytes(tmp / fname, plots.png(fig))
    from imac.experiments.reproduce_report import report_markdown

    atomic_write_text(tmp / "report.md", report_markdown(r))


def summary_line(r: dict[str, Any]) -> str:
    lenet, vgg = _main(r, "lenet-mnist"), _main(r, "vgg11-cifar10")
    return (f"energy saving LeNet {100 * lenet['energy_saving']:.1f} % (published 6.5 %), VGG-11 x0.5 "
            f"{100 * vgg['energy_saving']:.1f} % (published 10 %); accuracy CPU-IMAC "
            f"{_pct(lenet['accuracy_cpu_imac'])} / {_pct(vgg['accuracy_cpu_imac'])}")

