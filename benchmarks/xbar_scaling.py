"""Scaling of the crossbar solver from 16x16 to 256x256 against ngspice and the ideal product.

Runs `imac.experiments.bench_xbar.bench_xbar` per size in this one process.  ngspice is run
where it finishes in reasonable time (default up to 128x128, one vector); beyond that the
speed-up column is left empty rather than extrapolated.  Writes a Markdown table to stdout and,
with --out, to a file.

    python benchmarks/xbar_scaling.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from imac.experiments.bench_xbar import bench_xbar
from imac.io import atomic_write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--sizes", default="16,32,64,128,256")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--spice-max", type=int, default=128, help="largest size run in ngspice")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for n in tqdm([int(s) for s in args.sizes.split(",")], desc="sizes", file=sys.stderr):
        spice_batch = 0 if n > args.spice_max else (2 if n <= 64 else 1)
        rows.append(bench_xbar(n, n, args.batch, spice_batch, seed=0))
    lines = [
        f"| size | unknowns | factor + transfer (s) | ngspice s/vector | speedup vs ngspice "
        f"(batch {args.batch}) | max abs error (V) | batch time / ideal matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sp = r["ngspice_s_per_vector"]
        if sp is None:
            spice_cols = "- | - | -"
        else:
            spice_cols = (
                f"{sp:.2f} | {r['speedup_vs_ngspice']:.0f}x | {r['max_abs_error_v']:.1e}"
            )
        lines.append(
            f"| {r['rows']}x{r['cols']} | {r['n_unknowns']} | {r['solver_total_s']:.3f} | "
            f"{spice_cols} | {r['ratio_to_ideal_matmul']:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        atomic_write_text(args.out, table)


if __name__ == "__main__":
    main()
