"""Sweep throughput and overhead (issue 12): points per minute with 1 and 2 workers, and the
sweep's overhead per point against the bare engine call on the same points.

    python benchmarks/sweep.py                        # LeNet head, circuit fidelity, 1000 images, 12 points
    python benchmarks/sweep.py --fidelity behavioral --images 2000 --points 24 --dask

The bare reference is :func:`imac.experiments.sweep.evaluate_point` (build the head, run the
test features, price it) on the same specs, in this process, with the same shared inputs; the
sweep adds planning (every spec validated), hashing, one Parquet file per point, the final table
and, with workers, sending each task.  The shared inputs (features) are made once before either
is timed.  Worker start-up (process spawn, imports) is part of the 2-worker time, as it is of a
real sweep.  Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lenet-mnist")
    ap.add_argument("--fidelity", default="circuit", choices=["ideal", "behavioral", "circuit"])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--points", type=int, default=12, help="Monte Carlo seeds of one varied design")
    ap.add_argument("--dask", action="store_true", help="also time --dask local:2")
    args = ap.parse_args(argv)

    from imac.experiments.sweep import evaluate_point, read_points, run_sweep, shared_inputs
    from imac.experiments.sweep_study import load_study, plan_study

    study_data = {"name": "bench", "base": "paper", "overrides": {"variation.kind": "uniform", "variation.amount": 0.1},
                  "models": [args.model], "metrics": {"fidelity": args.fidelity, "images": args.images},
                  "monte_carlo": {"seeds": args.points, "entropy": 1}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="imac-bench-sweep-") as tmp:
        study_path = Path(tmp) / "study.yaml"
        study_path.write_text(yaml.safe_dump(study_data))
        study, _ = load_study(study_path)
        plan = plan_study(study, study_path)
        inputs = shared_inputs(args.model, study, plan.points[0].spec)
        evaluate_point(plan.points[0].spec, inputs, study)  # warm: imports, the neuron curve
        t0 = time.perf_counter()
        for p in plan.points:
            evaluate_point(p.spec, inputs, study)
        bare = time.perf_counter() - t0
        rows.append(("bare engine call (this process)", bare, None))
        runs = [("sweep, joblib, 1 worker (this process)", {"jobs": 1}),
                ("sweep, joblib, 2 worker processes", {"jobs": 2})]
        if args.dask:
            runs.append(("sweep, Dask LocalCluster, 2 workers", {"dask": "local:2"}))
        for label, kw in runs:
            out = Path(tmp) / f"out-{len(rows)}"
            t0 = time.perf_counter()
            res = run_sweep(study_path, out, progress=False, report=False, **kw)  # type: ignore[arg-type]
            dt = time.perf_counter() - t0
            assert res.computed == len(plan.points) and res.failed == 0, res
            rows.append((label, dt, (dt - bare) / bare if kw.get("jobs") == 1 else None))
            if kw.get("jobs") == 1:  # the sweep's own time: wall minus the time inside the point function
                inside = sum(r["point_s"] for r in read_points(out).to_pylist())
                book = (dt - inside) / len(plan.points)
                rows.append(("  of which the sweep's own bookkeeping", dt - inside,
                             book / (inside / len(plan.points))))
    n = len(plan.points)
    print(f"# sweep benchmark: {args.model}, {args.fidelity} fidelity, {args.images} test images, {n} points "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    print("| run | seconds | points / min | s / point | overhead vs bare (bookkeeping: vs the point's own time) |")
    print("|---|---|---|---|---|")
    for label, dt, over in rows:
        rate = "" if label.startswith(" ") else f"{60 * n / dt:.1f}"
        print(f"| {label} | {dt:.1f} | {rate} | {dt / n:.2f} | "
              f"{'' if over is None else f'{100 * over:+.1f} %'} |")
    print("\nOn a loaded machine the bare and sweep times differ by noise of +-20 %; the bookkeeping row is the\n"
          "sweep's own time measured in the same run (wall time minus the time inside run_point).")
    print(json.dumps({"model": args.model, "fidelity": args.fidelity, "images": args.images, "points": n,
                      "runs": [{"run": label, "seconds": dt, "points_per_min": 60 * n / dt, "overhead": over}
                               for label, dt, over in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
