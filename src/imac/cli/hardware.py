"""`imac simulate`, `calibrate`, `export`, `spice-check` and `compare`: a trained head on IMAC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imac.cli.app import app
from imac.cli.options import (
    CALIBRATE_EPOCHS,
    CIRCUIT_EPOCHS,
    CalibratedOpt,
    CheckpointOpt,
    ColsOpt,
    ConfigOpt,
    JsonOpt,
    LimitOpt,
    OverwriteOpt,
    RowsOpt,
    design,
    report,
    say,
    seed_option,
    with_data,
)

FidelityOpt = Annotated[str, typer.Option(help="ideal, behavioral or circuit.")]


@app.command("simulate")
def simulate_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name (see `imac list-models`).")],
    fidelity: FidelityOpt = "circuit",
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    unpartitioned: Annotated[bool, typer.Option(help="One array per layer, no partitioning.")] = False,
    config: ConfigOpt = "paper",
    checkpoint: CheckpointOpt = None,
    calibrated: CalibratedOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    breakdown: Annotated[bool, typer.Option(help="Include the cost table in the JSON.")] = True,
    device: Annotated[str, typer.Option(help="Batch phase on cpu (numpy) or a torch device (cuda, cuda:1).")]
    = "cpu",
) -> None:
    """Run a trained model's FC head on IMAC at a fidelity: accuracy, time, power, energy, area."""
    from imac.hardware.diagnostics import netmap_gains, result_warnings
    from imac.hardware.network import simulate_model

    spec = design(config, rows, cols)
    ev = simulate_model(name, fidelity, spec, partitioned=not unpartitioned, checkpoint=checkpoint,
                        calibrated=calibrated, limit=limit, progress=say, device=device)
    n_classes = int(ev.netmap.layers[-1].layer.fan_out)
    warnings = result_warnings(spec, netmap_gains(ev.netmap), ev.result["accuracy"], n_classes,
                               ev.result.get("gain_shortfall"))
    for w in warnings:
        say(f"warning: {w}")
    res = with_data(ev.result | {"warnings": warnings})
    if not breakdown:
        res.pop("cost_breakdown", None)
    report(res, as_json, skip=("cost_breakdown",))


@app.command("calibrate")
def calibrate_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    rows: RowsOpt = None,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = CALIBRATE_EPOCHS,
    circuit_epochs: Annotated[int, typer.Option(
        min=0, help="Circuit-in-the-loop epochs after the behavioural ones (0: none).")] = CIRCUIT_EPOCHS,
    config: ConfigOpt = "paper",
    checkpoint: Annotated[Path | None, typer.Option(help="Base checkpoint file.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N training images only.")] = None,
    seed: Annotated[int, seed_option("Seed of the fine-tuning.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Where to write the calibrated checkpoint.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Named calibration step: hardware-aware fine-tuning of the binary head for IMAC, for the
    design of the spec (its subarray rows, or --rows)."""
    from imac.hardware.network import calibrate
    from imac.nn.checkpoint import check_checkpoint_target

    if out is not None:  # refused now, not after minutes of fine-tuning
        check_checkpoint_target(out, overwrite)
    spec = design(config, rows)
    dest, info = calibrate(name, spec, spec.subarray.rows, epochs, checkpoint, limit, seed, out,
                           circuit_epochs=circuit_epochs)
    say(f"calibrated head written to {dest}")
    typer.echo(json.dumps({"checkpoint": str(dest), **info}, indent=1, default=float))


@app.command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    spice: Annotated[Path, typer.Option("--spice", help="Folder to write (must not exist).")],
    image: Annotated[int, typer.Option(min=0, help="Test image whose inputs the netlist carries.")] = 0,
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    config: ConfigOpt = "paper",
    checkpoint: CheckpointOpt = None,
    calibrated: CalibratedOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write the whole network as one ngspice netlist plus its conductance maps."""
    from imac.errors import DataError
    from imac.hardware.engine import Fidelity, build_head
    from imac.hardware.spice_net import export_network
    from imac.io import check_output_target
    from imac.nn.data import load_dataset

    check_output_target(spice, overwrite)  # a bad target fails now, not after the export
    head = build_head(name, design(config, rows, cols), Fidelity.CIRCUIT, checkpoint=checkpoint,
                      calibrated=calibrated, progress=say)
    test = load_dataset(head.model.dataset, "test")
    if image >= len(test):
        raise DataError(f"--image {image}: the {head.model.dataset} test set has images 0 to {len(test) - 1}")
    x = head.inputs(test.images[image : image + 1])
    for p in export_network(head.net, x[0], spice, overwrite=overwrite, note=say):
        typer.echo(str(p))


@app.command("spice-check")
def spice_check_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    images: Annotated[int, typer.Option(min=1, help="First N test images.")] = 20,
    jobs: Annotated[int, typer.Option(min=1, help="Parallel ngspice processes.")] = 2,
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    config: ConfigOpt = "paper",
    checkpoint: CheckpointOpt = None,
    calibrated: CalibratedOpt = None,
) -> None:
    """Whole-network ngspice (transistor-level neurons) vs the circuit fidelity, image by image."""
    from imac.hardware.engine import Fidelity, build_head
    from imac.hardware.spice_net import spice_check
    from imac.nn.data import load_dataset

    head = build_head(name, design(config, rows, cols), Fidelity.CIRCUIT, checkpoint=checkpoint,
                      calibrated=calibrated, progress=say)
    test = load_dataset(head.model.dataset, "test").subset(images)
    x = head.inputs(test.images)
    say(f"running {len(test)} whole-network ngspice operating points on {jobs} processes")
    typer.echo(json.dumps(with_data(spice_check(head.net, x, n_jobs=jobs)), indent=1, default=float))


@app.command("compare")
def compare_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    fidelity: Annotated[str, typer.Option(help="IMAC fidelity: behavioral or circuit.")] = "circuit",
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    config: ConfigOpt = "paper",
    checkpoint: CheckpointOpt = None,
    calibrated: CalibratedOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Latency, power, energy per inference and accuracy: IMAC, mixed-signal, CPU, GPU."""
    from imac.system.baselines import compare_model

    res = compare_model(name, design(config, rows, cols), fidelity, checkpoint, calibrated, limit, say)
    if as_json:
        typer.echo(json.dumps(with_data(res), indent=1, default=float))
        return
    typer.echo(f"{'design':<22}{'latency (s)':>14}{'power (W)':>12}{'energy (J)':>13}{'accuracy':>10}")
    for d in res["designs"]:
        acc = "-" if d["accuracy"] is None else f"{100 * d['accuracy']:.2f}%"
        typer.echo(f"{d['design']:<22}{d['latency_s']:>14.3e}{d['power_w']:>12.3e}"
                   f"{d['energy_per_inference_j']:>13.3e}{acc:>10}")
    for k, v in res["imac_vs"].items():
        typer.echo(f"IMAC vs {k}: {v['imac_speedup']:.1f}x faster, {v['imac_energy_advantage']:.1f}x less energy")
