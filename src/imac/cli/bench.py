"""`imac bench xbar`: the circuit solver against ngspice and the ideal product, same run."""

from __future__ import annotations

from typing import Annotated

import typer

from imac.cli.app import app
from imac.cli.options import ColsOpt, ConfigOpt, JsonOpt, RowsOpt, design, report, seed_option

bench_app = typer.Typer(help="Benchmarks that print ratios against same-run references.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("xbar")
def bench_xbar_cmd(
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="Input vectors for the solver.")] = 100,
    spice_batch: Annotated[int, typer.Option(min=0, help="Of those, how many ngspice solves.")] = 2,
    seed: Annotated[int, seed_option("Seed of the random input vectors and weights.")] = 0,
    config: ConfigOpt = "paper",
    as_json: JsonOpt = False,
) -> None:
    """Solver vs ngspice vs the ideal matrix product on one subarray (the spec's size, or
    --rows/--cols) and one batch."""
    from imac.experiments.bench_xbar import bench_xbar

    spec = design(config, rows, cols)
    report(bench_xbar(spec.subarray.rows, spec.subarray.cols, batch, spice_batch, spec=spec, seed=seed), as_json)
