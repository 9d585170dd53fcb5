"""`imac reproduce` (the main job) and `imac demo`: run directories that are complete or absent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imac.cli.app import app
from imac.cli.options import ColsOpt, ConfigOpt, OverwriteOpt, RowsOpt, design, say, seed_option


@app.command("reproduce")
def reproduce(
    out: Annotated[Path, typer.Option(help="Run directory (must not exist).")] = Path("runs/reproduce"),
    config: ConfigOpt = "paper",
    quick: Annotated[bool, typer.Option(help="Small subsets and sweeps (CI, < 3 min).")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """The main job: every published result the project can compute, as a run directory with
    report.md (published | ours), results.json, CSV tables and plots."""
    from imac.experiments.reproduce import run_reproduce, summary_line

    res = run_reproduce(out, design(config), quick=quick, overwrite=overwrite, progress=say)
    typer.echo(summary_line(res))
    typer.echo(f"report: {out}/report.md")


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Run directory (must not exist).")] = Path("runs/demo"),
    config: ConfigOpt = "paper",
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    seed: Annotated[int, seed_option("Seed of the demo's random weights and inputs.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """The circuit demo: neuron in ngspice + fit, one subarray by solver and ngspice."""
    from imac.experiments.demo import run_demo

    spec = design(config, rows, cols)
    summary = run_demo(out, spec, rows=spec.subarray.rows, cols=spec.subarray.cols, seed=seed,
                       overwrite=overwrite, progress=say)
    typer.echo((out / "summary.md").read_text())
    say(f"results in {out}/ ({summary['subarray']['speedup_vs_ngspice']:.0f}x faster than ngspice)")
