"""The circuit demo: characterize the neuron in ngspice, solve one subarray three ways.

Writes into a run directory (complete or absent, never half-written): the neuron plot, a plot
of subarray outputs with and without parasitics, ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import io
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from imac.circuit.netlist import Subarray
from imac.circuit.solve import solve_subarray
from imac.circuit.spice import spice_subarray_outputs
from imac.config import ImacSpec, dump_spec
from imac.devices.neuron import characterize, nan_to_none, write_plot
from imac.experiments.bench_xbar import random_subarray
from imac.io import atomic_write_bytes, atomic_write_text, run_directory
from imac.provenance import data_used, git_revision


def provenance(spec: ImacSpec, seed: int) -> dict[str, Any]:
    import imac

    return {
        "imac_version": imac.__version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "seed": seed,
        "created_unix": time.time(),
        "config": spec.model_dump(mode="json"),
        "data": data_used(),
    }


def plot_subarray_outputs(ideal: np.ndarray, wired: np.ndarray, spice: np.ndarray, ax: Any = None) -> Any:
    """Outputs with parasitics (solver and ngspice) against the parasitic-free outputs."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(ideal.ravel(), wired.ravel(), ".", ms=3, alpha=0.5, label="solver, with wire parasitics")
    ax.plot(ideal[: len(spice)].ravel(), spice.ravel(), "kx", ms=5, label="ngspice, same netlist")
    lim = float(np.max(np.abs(ideal))) * 1.05
    ax.plot([-lim, lim], [-lim, lim], "grey", lw=0.8, label="no parasitics (y = x)")
    ax.set_xlabel("amplifier output without parasitics (V)")
    ax.set_ylabel("amplifier output with parasitics (V)")
    ax.legend(fontsize=8)
    return ax


def run_demo(out: Path, spec: ImacSpec | None = None, rows: int | None = None, cols: int | None = None,
             batch: int = 200, seed: int = 0, overwrite: bool = False, progress: Any = None) -> dict[str, Any]:
    """Run the demo into ``out`` on a ``rows`` x ``cols`` subarray (default: the spec's); return
    the summary dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = spec or ImacSpec()
    rows = spec.subarray.rows if rows is None else rows
    cols = spec.subarray.cols if cols is None else cols
    say = progress or (lambda msg: None)
    with run_directory(out, overwrite=overwrite, note=say) as tmp:
        say("characterizing the neuron in ngspice")
        ch = characterize(spec.neuron)
        write_plot(ch, tmp / "neuron_spice_vs_fit.png")
        ch.curve.save(tmp / "neuron_fit.json")

        say(f"solving a {rows}x{cols} subarray")
        sub, _ = random_subarray(rows, cols, spec, seed)
        ideal_sub = Subarray(sub.g_plus, sub.g_minus, amp_gain=sub.amp_gain,
                             amp_r_in=sub.amp_r_in, has_bias=True)
        v_dd = spec.subarray.v_dd
        rng = np.random.default_rng(seed + 1)
        u = rng.choice([-v_dd, v_dd], size=(batch, rows - 1))
        t0 = time.perf_counter()
        solved = solve_subarray(sub)
        wired = solved.outputs(u, v_dd)
        t_solver = time.perf_counter() - t0
        ideal = solve_subarray(ideal_sub).outputs(u, v_dd)
        say("checking one input vector against ngspice")
        t1 = time.perf_counter()
        ref = spice_subarray_outputs(sub, u[:1], v_dd, spec.amplifier.spice_open_loop_gain)
        t_spice = time.perf_counter() - t1
        neuron_ideal = ch.curve(ideal)
        neuron_wired = ch.curve(wired)

        ax = plot_subarray_outputs(ideal, wired, ref)
        ax.set_title(f"{rows}x{cols} subarray, gain {spec.amplifier.gain:g}, {batch} random inputs")
        buf = io.BytesIO()
        ax.figure.tight_layout()
        ax.figure.savefig(buf, format="png", dpi=120)
        plt.close(ax.figure)
        atomic_write_bytes(tmp / "subarray_outputs.png", buf.getvalue())

        summary = {
            "neuron": nan_to_none(ch.summary()),
            "subarray": {
                "rows": rows,
                "cols": cols,
                "batch": batch,
                "max_abs_error_vs_ngspice_v": float(np.max(np.abs(ref - wired[:1]))),
                "mean_abs_parasitic_shift_v": float(np.mean(np.abs(wired - ideal))),
                "mean_abs_neuron_output_shift_v": float(np.mean(np.abs(neuron_wired - neuron_ideal))),
                "sign_agreement_with_ideal": float(np.mean(np.sign(wired) == np.sign(ideal))),
                "solver_s_whole_batch": t_solver,
                "ngspice_s_one_vector": t_spice,
                "speedup_vs_ngspice": t_spice * batch / t_solver,
            },
            "provenance": provenance(spec, seed),
        }
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=1))
        atomic_write_text(tmp / "config.yaml", dump_spec(spec))
        atomic_write_text(tmp / "summary.md", summary_markdown(summary))
    return summary


def summary_markdown(s: dict[str, Any]) -> str:
    n, a = s["neuron"], s["subarray"]
    return "\n".join([
        "# imac circuit demo",
        "",
        "## SOT-MRAM sigmoid neuron (ngspice, PTM 22 nm HP)",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| V_out high / at 0 / low | {n['v_out_high']:.4f} / {n['v_out_at_zero']:.4f} / {n['v_out_low']:.4f} V |",
        f"| slope at centre | {n['slope_center']:.3f} V/V |",
        f"| fit max error ({n['fit_terms']} logistics) | {1e3 * n['fit_max_error_v']:.2f} mV |",
        f"| output resistance at centre | {n['r_out_ohm_center']:.0f} ohm |",
        f"| static power mean / max | {1e6 * n['static_power_w_mean']:.2f} / {1e6 * n['static_power_w_max']:.2f} uW |",
        f"| propagation delay | {1e12 * n['delay_s']:.2f} ps |",
        "",
        f"## {a['rows']}x{a['cols']} subarray with wire parasitics",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| max error vs ngspice | {a['max_abs_error_vs_ngspice_v']:.2e} V |",
        f"| mean parasitic shift of amplifier outputs | {a['mean_abs_parasitic_shift_v']:.3f} V |",
        f"| mean shift of neuron outputs | {1e3 * a['mean_abs_neuron_output_shift_v']:.1f} mV |",
        f"| sign agreement with parasitic-free outputs | {100 * a['sign_agreement_with_ideal']:.1f} % |",
        f"| speed-up vs ngspice, whole batch of {a['batch']} | {a['speedup_vs_ngspice']:.0f}x |",
        "",
        "Plots: `neuron_spice_vs_fit.png`, `subarray_outputs.png`.",
        "",
    ])
