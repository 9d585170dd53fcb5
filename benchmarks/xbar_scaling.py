"""Scaling of the crossbar solver from 16x16 to 1024x1024 (2048x2048 on request), both amplifiers.

Every row is measured in this one process, on one random binary subarray at the paper's design
point (R_P/R_AP synapses, 9.56/11.95 ohm wire segments, gain-30 amplifiers, bias line last) and
one batch of random +-V_DD inputs, for the difference and the instrumentation amplifier:

* the exact transfer matrix by nested dissection (``solve_subarray``, the default path): time
  of the first solve (factor + transfer + first batch product), and peak memory of the numpy
  buffers (tracemalloc) in a second, untimed solve;
* the sparse LU path it replaces (SuperLU + adjoint solves), up to --sparse-max: time, and
  its largest output difference on the batch;
* the error against a reference: ngspice up to --spice-max (one operating point per vector,
  the slowest part of the run), else the Krylov solve of the full nodal system
  (``imac.circuit.iterative``, an independent method) up to --reference-max;
* the steady-state batch product against the parasitic-free product (same batch).

Writes Markdown tables to stdout and, with --out, to a file.

    python benchmarks/xbar_scaling.py --out docs/benchmarks-table.md
    python benchmarks/xbar_scaling.py --sizes 2048 --reference-max 0      # time and memory only
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import timeit
import tracemalloc
from pathlib import Path
from typing import Any

TOPOLOGIES = ("difference", "instrumentation")


def _best_time(fn: Any, min_total_s: float = 0.2) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * max(1.0, min_total_s / 0.2)))
    return min(timer.repeat(repeat=5, number=number)) / number


def bench_size(n: int, topology: str, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from imac.circuit.iterative import krylov_outputs
    from imac.circuit.netlist import Subarray
    from imac.circuit.solve import solve_subarray
    from imac.circuit.spice import spice_subarray_outputs
    from imac.config import ImacSpec
    from imac.experiments.bench_xbar import random_subarray

    spec = ImacSpec()
    v_dd = spec.subarray.v_dd
    base, w = random_subarray(n, n, spec, seed=0)
    sub = Subarray(base.g_plus, base.g_minus, base.r_vertical, base.r_horizontal, base.r_driver,
                   base.amp_gain, base.amp_r_in, base.has_bias, topology)
    rng = np.random.default_rng(1)
    inputs = rng.choice([-v_dd, v_dd], size=(args.batch, n - 1))

    t0 = time.perf_counter()
    solved = solve_subarray(sub)
    ours = solved.outputs(inputs, v_dd)
    t_nested = time.perf_counter() - t0  # first solve of this shape: schedules built, not cached
    peak = None
    if args.memory:  # a second solve under tracemalloc (it slows Python code, so not timed)
        del solved
        tracemalloc.start()
        solved = solve_subarray(sub)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    row: dict[str, Any] = {
        "size": n, "topology": topology, "method": solved.method, "cells": n * n,
        "unknowns": 3 * n * n + 2 * n, "nested_s": t_nested, "peak_mb": peak,
        "load": os.getloadavg()[0],
    }
    if n <= args.sparse_max:
        t1 = time.perf_counter()
        sparse = solve_subarray(sub, method="sparse")
        row["sparse_s"] = time.perf_counter() - t1
        row["sparse_diff_v"] = float(np.max(np.abs(sparse.outputs(inputs, v_dd) - ours)))
        del sparse
    if n <= args.spice_max:
        k = 2 if n <= 64 else 1
        t2 = time.perf_counter()
        ref = spice_subarray_outputs(sub, inputs[:k], v_dd, opamp_gain=spec.amplifier.spice_open_loop_gain)
        t_ref = (time.perf_counter() - t2) / k
        row.update(reference="ngspice", ref_s_per_vector=t_ref, ref_vectors=k,
                   error_v=float(np.max(np.abs(ref - ours[:k]))), speedup=t_ref * args.batch / t_nested)
    elif n <= args.reference_max:
        k = args.reference_batch
        t2 = time.perf_counter()
        kr = krylov_outputs(sub, inputs[:k], v_dd)
        t_ref = (time.perf_counter() - t2) / k
        row.update(reference=f"Krylov ({max(kr.iterations)} it.)", ref_s_per_vector=t_ref, ref_vectors=k,
                   error_v=float(np.max(np.abs(kr.outputs - ours[:k]))), speedup=t_ref * args.batch / t_nested)
    # high-water mark of the whole process so far (BLAS work space included): the figure for
    # the largest size of a run
    row["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    A, b = solved.A, solved.offset(v_dd)
    w_in = np.ascontiguousarray(w[:-1].T)
    row["batch_ratio"] = _best_time(lambda: inputs @ A.T + b) / _best_time(lambda: inputs @ w_in.T)
    return row


def _fmt(r: dict[str, Any], key: str, spec: str, missing: str = "-") -> str:
    return missing if r.get(key) is None else format(r[key], spec)


def tables(rows: list[dict[str, Any]], batch: int) -> str:
    lines = [
        f"| size | amplifier | unknowns | nested: factor + transfer (s) | peak memory (MB) | process RSS (MB) "
        f"| sparse LU (s) "
        f"| LU / nested | reference | ref. s/vector | speed-up vs ref. (batch {batch}) | max abs error (V) "
        f"| LU - nested (V) | batch / ideal matmul | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "-" if r.get("sparse_s") is None else f"{r['sparse_s'] / r['nested_s']:.1f}x"
        lines.append(
            f"| {r['size']}x{r['size']} | {r['topology']} | {r['unknowns']} | {r['nested_s']:.3f} | "
            f"{_fmt(r, 'peak_mb', '.1f')} | {_fmt(r, 'rss_mb', '.0f')} | {_fmt(r, 'sparse_s', '.3f')} | {ratio} | "
            f"{r.get('reference', '-')} | "
            f"{_fmt(r, 'ref_s_per_vector', '.2f')} | {_fmt(r, 'speedup', '.0f')}"
            f"{'' if r.get('speedup') is None else 'x'} | {_fmt(r, 'error_v', '.1e')} | "
            f"{_fmt(r, 'sparse_diff_v', '.1e')} | {r['batch_ratio']:.2f} | {r['load']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="16,32,64,128,256,512,1024",
                    help="array sides (rows = cols, bias line included); 2048 works, ~2 GB")
    ap.add_argument("--topologies", default=",".join(TOPOLOGIES))
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--spice-max", type=int, default=128, help="largest size run in ngspice")
    ap.add_argument("--sparse-max", type=int, default=256, help="largest size solved by the sparse LU too")
    ap.add_argument("--reference-max", type=int, default=1024, help="largest size checked by the Krylov solve")
    ap.add_argument("--reference-batch", type=int, default=1, help="vectors per Krylov check")
    ap.add_argument("--no-memory", dest="memory", action="store_false",
                    help="skip the second, tracemalloc-instrumented solve of each size")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="set OPENBLAS/OMP threads (before numpy loads); default: the environment's")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)
    from tqdm import tqdm

    from imac.io import atomic_write_text

    sizes = [int(s) for s in args.sizes.split(",")]
    topologies = [t for t in args.topologies.split(",") if t]
    rows = []
    for n in tqdm(sizes, desc="sizes", file=sys.stderr):
        for topology in topologies:
            rows.append(bench_size(n, topology, args))
            print(rows[-1], file=sys.stderr, flush=True)
    table = tables(rows, args.batch)
    print(table)
    if args.out:
        atomic_write_text(args.out, table)


if __name__ == "__main__":
    main()
