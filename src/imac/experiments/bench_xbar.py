"""Benchmark of the crossbar solver against ngspice and the ideal matrix product.

All three are measured in the same process on the same netlist and batch, so the ratios, not
the absolute times, are the result (absolute times on a shared machine are noise).
"""

from __future__ import annotations

import time
import timeit
from typing import Any

import numpy as np

from imac.circuit.netlist import Subarray
from imac.circuit.solve import solve_subarray
from imac.circuit.spice import spice_subarray_outputs
from imac.circuit.wires import cell_parasitics
from imac.config import ImacSpec
from imac.devices.synapse import synapse_conductances
from imac.errors import ConfigError


def random_subarray(rows: int, cols: int, spec: ImacSpec, seed: int) -> tuple[Subarray, np.ndarray]:
    """A subarray of random binary weights (last row = bias line) at the spec's design point."""
    if rows < 2 or cols < 1:
        raise ConfigError(f"subarray needs rows >= 2 (one is the bias line) and cols >= 1, got {rows}x{cols}")
    rng = np.random.default_rng(seed)
    w = rng.choice([-1.0, 1.0], size=(rows, cols))
    gp, gm = synapse_conductances(w, spec, rng)
    par = cell_parasitics(spec.wires)
    sub = Subarray(
        gp, gm,
        r_vertical=par.r_vertical, r_horizontal=par.r_horizontal,
        r_driver=spec.subarray.driver_resistance_ohm,
        amp_gain=spec.amplifier.gain, amp_r_in=spec.amplifier.r_in_ohm,
        has_bias=True,
    )
    return sub, w


def _best_time(fn: Any, min_total_s: float = 0.2) -> float:
    """Best per-call time of ``fn`` over repeated loops (robust to scheduler noise)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * max(1.0, min_total_s / 0.2)))
    return min(timer.repeat(repeat=5, number=number)) / number


def bench_xbar(
    rows: int = 64,
    cols: int = 64,
    batch: int = 100,
    spice_batch: int = 2,
    spec: ImacSpec | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ngspice, the solver and the ideal product on one netlist and one batch.

    Returns ``speedup_vs_ngspice`` (ngspice s/vector x batch / our whole-batch time including
    assembly and factorization), ``max_abs_error_v`` (over the vectors both solved) and
    ``ratio_to_ideal_matmul`` (our batch time after factorization / the ideal no-parasitics
    matrix product on the same batch), plus the raw timings.
    """
    if batch < 1 or spice_batch < 0 or spice_batch > batch:
        raise ConfigError(f"need batch >= 1 and 0 <= spice_batch <= batch, got {batch}, {spice_batch}")
    spec = spec or ImacSpec()
    v_dd = spec.subarray.v_dd
    sub, w = random_subarray(rows, cols, spec, seed)
    rng = np.random.default_rng(seed + 1)
    inputs = rng.choice([-v_dd, v_dd], size=(batch, rows - 1))

    t0 = time.perf_counter()
    solved = solve_subarray(sub)
    t_factor = time.perf_counter() - t0
    t1 = time.perf_counter()
    ours = solved.outputs(inputs, v_dd)
    t_batch_once = time.perf_counter() - t1
    t_total = t_factor + t_batch_once

    # steady-state batch cost vs the ideal product on the same batch
    A, b = solved.A, solved.offset(v_dd)
    w_in = np.ascontiguousarray(w[:-1].T)  # (cols, n_inputs) ideal weights
    t_ours_batch = _best_time(lambda: inputs @ A.T + b)
    t_ideal = _best_time(lambda: inputs @ w_in.T)

    result: dict[str, Any] = {
        "rows": rows,
        "cols": cols,
        "batch": batch,
        "spice_batch": spice_batch,
        "seed": seed,
        "n_unknowns": solved.nodes.n_unknowns,
        "solver_factor_s": t_factor,
        "solver_total_s": t_total,
        "solver_batch_s": t_ours_batch,
        "ideal_matmul_s": t_ideal,
        "ratio_to_ideal_matmul": t_ours_batch / t_ideal,
        "kirchhoff_residual_a": solved.kirchhoff_residual(inputs[: min(batch, 4)], v_dd),
    }
    if spice_batch:
        t2 = time.perf_counter()
        ref = spice_subarray_outputs(
            sub, inputs[:spice_batch], v_dd, opamp_gain=spec.amplifier.spice_open_loop_gain
        )
        t_spice = (time.perf_counter() - t2) / spice_batch
        result.update(
            ngspice_s_per_vector=t_spice,
            speedup_vs_ngspice=t_spice * batch / t_total,
            max_abs_error_v=float(np.max(np.abs(ref - ours[:spice_batch]))),
        )
    else:
        result.update(ngspice_s_per_vector=None, speedup_vs_ngspice=None, max_abs_error_v=None)
    return result
