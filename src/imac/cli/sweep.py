"""`imac sweep` (design-space sweeps and Monte Carlo, joblib or Dask) and `imac sweep-report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imac.cli.app import app
from imac.cli.options import JsonOpt, OverwriteOpt, report, say


@app.command("sweep")
def sweep(
    study: Annotated[Path, typer.Argument(help="Study file (YAML; see studies/ and docs/sweeps.md).")],
    out: Annotated[Path, typer.Option(help="Sweep folder: created, or resumed when it holds the same study.")],
    jobs: Annotated[int, typer.Option(min=1, max=1024, help="joblib worker processes (default 1).")] = 1,
    dask: Annotated[str | None, typer.Option(help="Run on Dask instead of joblib: local[:N] starts a LocalCluster "
                                             "of N workers, tcp://HOST:PORT uses a running scheduler.")] = None,
    overwrite: OverwriteOpt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (done / failed / remaining).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run a study: every point of its axes x models x Monte Carlo seeds, validated first, each
    row appended to DIR/points/ as it finishes; a rerun into DIR skips finished points."""
    from imac.experiments.sweep import run_sweep

    res = run_sweep(study, out, jobs=jobs, dask=dask, overwrite=overwrite, progress=progress, say=say)
    summary = {"folder": str(res.folder), "points": res.total, "computed": res.computed, "skipped": res.skipped,
               "failed": res.failed, "seconds": round(res.seconds, 2), "report": str(res.folder / "report.md")}
    report(summary, as_json)
    if res.failed:
        say(f"{res.failed} points failed (see {res.folder}/report.md); rerun the same command to retry them")


@app.command("sweep-report")
def sweep_report(
    folder: Annotated[Path, typer.Argument(help="A sweep folder (written by `imac sweep`).")],
    as_json: JsonOpt = False,
) -> None:
    """The analysis of a sweep folder (also written at the end of a sweep): results.parquet,
    Pareto front, Monte Carlo statistics per design, plots; works on a partial sweep too."""
    from imac.experiments.sweep import check_sweep_folder, write_results
    from imac.experiments.sweep_report import write_report

    check_sweep_folder(folder)
    write_results(folder)
    res = write_report(folder)
    report({"folder": str(folder), **res, "report": str(folder / "report.md")}, as_json)
