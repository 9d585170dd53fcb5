"""Options shared by the commands, declared once, and the few helpers every command uses.

Subarray size, CPU core and every other design parameter come from the spec (``--config``); the
options ``--rows``, ``--cols`` and ``--core`` mean the same in every command: overrides of the
spec's ``subarray.rows``, ``subarray.cols`` and ``cpu``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Preset name or YAML file (the design spec).")]
TrainDeviceOpt = Annotated[str | None, typer.Option(
    help="torch device of the training epochs: cpu (default), cuda, cuda:1; checkpoints and final metrics "
    "are on the CPU either way.")]
MAX_SEED = 2**31 - 1  # numpy refuses negative seeds; training derives per-epoch seeds from it


def seed_option(help_text: str) -> Any:
    """A ``--seed`` option: 0 to 2^31 - 1."""
    return typer.Option(min=0, max=MAX_SEED, help=help_text)


# The named calibration's defaults (`imac calibrate`, `imac import --calibrate`): behavioural epochs,
# then circuit-in-the-loop epochs (imac.hardware.network.calibrate).
CALIBRATE_EPOCHS = 3
CIRCUIT_EPOCHS = 1
RowsOpt = Annotated[int | None, typer.Option(min=2, help="Subarray rows, bias line included (overrides "
                                             "subarray.rows of the spec).")]
ColsOpt = Annotated[int | None, typer.Option(min=1, help="Subarray columns (overrides subarray.cols of the spec).")]
CoreOpt = Annotated[str | None, typer.Option(help="CPU core: cortex-a53, cortex-a76, host or a YAML file "
                                             "(overrides cpu of the spec).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
CheckpointOpt = Annotated[Path | None, typer.Option(help="Checkpoint file (default: the model's own).")]
CalibratedOpt = Annotated[bool | None, typer.Option(
    "--calibrated/--no-calibrated", help="Use the hardware-aware calibrated head (default: when one exists "
    "for this design).")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="First N test images only.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing output that imac wrote.")]


def say(msg: str) -> None:
    """Progress and notes go to stderr, so --json output stays clean."""
    typer.echo(f"[imac] {msg}", err=True)


def report(obj: dict[str, Any], as_json: bool, skip: tuple[str, ...] = ()) -> None:
    """One JSON object (--json) or an aligned key: value listing."""
    if as_json:
        typer.echo(json.dumps(obj, indent=1, default=float))
        return
    for k, v in obj.items():
        if k not in skip:
            typer.echo(f"{k:>24}: {v}")


def design(config: str, rows: int | None = None, cols: int | None = None, core: str | None = None) -> Any:
    """The spec of ``--config`` with the command line's overrides applied (checked like the file)."""
    from imac.config import load_spec, with_overrides

    spec = load_spec(config)
    overrides: dict[str, Any] = {}
    if rows is not None:
        overrides["subarray.rows"] = rows
    if cols is not None:
        overrides["subarray.cols"] = cols
    if core is not None:
        overrides["cpu"] = core
    return with_overrides(spec, overrides, source=f"{config} + command-line options") if overrides else spec


def with_data(res: dict[str, Any]) -> dict[str, Any]:
    """A result with the data files it was computed from (path, size, sha256)."""
    from imac.provenance import data_used

    return res | {"data": data_used()}
