"""`imac simulate` and `imac calibrate`: thin CLI over :mod:`imac.hardware.network`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imac.hardware.simulate import FIDELITIES


def register(app: typer.Typer) -> None:
    """Add the hardware commands to ``app``."""

    def say(msg: str) -> None:
        typer.echo(f"[imac] {msg}", err=True)

    @app.command("simulate")
    def simulate_cmd(
        name: Annotated[str, typer.Argument(help="Registered model name (see `imac list-models`).")],
        fidelity: Annotated[str, typer.Option(help=f"One of {', '.join(FIDELITIES[:-1])}.")] = "circuit",
        subarray: Annotated[int | None, typer.Option(help="Square subarray size (rows = cols).")] = None,
        rows: Annotated[int | None, typer.Option(help="Subarray rows (overrides --subarray).")] = None,
        cols: Annotated[int | None, typer.Option(help="Subarray columns (overrides --subarray).")] = None,
        unpartitioned: Annotated[bool, typer.Option(help="One array per layer, no partitioning.")] = False,
        config: Annotated[str, typer.Option("--config", "-c", help="Preset name or YAML file.")] = "paper",
        checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint file.")] = None,
        calibrated: Annotated[bool | None, typer.Option(
            "--calibrated/--no-calibrated",
            help="Use the hardware-aware calibrated head (default: when it exists).")] = None,
        limit: Annotated[int | None, typer.Option(help="First N test images only.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        breakdown: Annotated[bool, typer.Option(help="Include the cost table in the JSON.")] = True,
    ) -> None:
        """Run a trained model's FC head on IMAC at a fidelity: accuracy, time, power, energy, area."""
        from imac.config import load_spec
        from imac.hardware.network import simulate_model

        spec = load_spec(config)
        r = rows if rows is not None else subarray
        c = cols if cols is not None else subarray
        ev = simulate_model(name, fidelity, spec, r, c, partitioned=not unpartitioned, checkpoint=checkpoint,
                            calibrated=calibrated, limit=limit, progress=say)
        res = ev.result
        if not breakdown:
            res.pop("cost_breakdown", None)
        if as_json:
            typer.echo(json.dumps(res, indent=1, default=float))
        else:
            for k, v in res.items():
                if k != "cost_breakdown":
                    typer.echo(f"{k:>24}: {v}")

    @app.command("calibrate")
    def calibrate_cmd(
        name: Annotated[str, typer.Argument(help="Registered model name.")],
        subarray: Annotated[int, typer.Option(help="Subarray rows the head is calibrated for.")] = 32,
        epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = 3,
        config: Annotated[str, typer.Option("--config", "-c", help="Preset name or YAML file.")] = "paper",
        checkpoint: Annotated[Path | None, typer.Option(help="Base checkpoint file.")] = None,
        limit: Annotated[int | None, typer.Option(help="First N training images only.")] = None,
        seed: int = 0,
        out: Annotated[Path | None, typer.Option(help="Where to write the calibrated checkpoint.")] = None,
    ) -> None:
        """Named calibration step: hardware-aware fine-tuning of the binary head for IMAC."""
        from imac.config import load_spec
        from imac.hardware.network import calibrate

        dest, info = calibrate(name, load_spec(config), subarray, epochs, checkpoint, limit, seed, out)
        say(f"calibrated head written to {dest}")
        typer.echo(json.dumps({"checkpoint": str(dest), **info}, indent=1, default=float))
