"""`imac simulate` and `imac calibrate`: thin CLI over :mod:`imac.hardware.network`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from imac.hardware.simulate import FIDELITIES


def say(msg: str) -> None:
    """Progress and notes go to stderr, so --json output stays clean."""
    typer.echo(f"[imac] {msg}", err=True)


def register(app: typer.Typer) -> None:
    """Add the hardware commands to ``app``."""

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
        from imac.hardware.diagnostics import netmap_gains, result_warnings
        from imac.hardware.network import simulate_model
        from imac.provenance import data_used

        spec = load_spec(config)
        r = rows if rows is not None else subarray
        c = cols if cols is not None else subarray
        ev = simulate_model(name, fidelity, spec, r, c, partitioned=not unpartitioned, checkpoint=checkpoint,
                            calibrated=calibrated, limit=limit, progress=say)
        n_classes = int(ev.netmap.layers[-1].layer.fan_out)
        warnings = result_warnings(spec, netmap_gains(ev.netmap), ev.result["accuracy"], n_classes,
                                   ev.result.get("gain_shortfall"))
        for w in warnings:
            say(f"warning: {w}")
        res = ev.result | {"warnings": warnings, "data": data_used()}
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
        circuit_epochs: Annotated[int, typer.Option(
            min=0, help="Circuit-in-the-loop epochs after the behavioural ones (0: none).")] = 1,
        config: Annotated[str, typer.Option("--config", "-c", help="Preset name or YAML file.")] = "paper",
        checkpoint: Annotated[Path | None, typer.Option(help="Base checkpoint file.")] = None,
        limit: Annotated[int | None, typer.Option(help="First N training images only.")] = None,
        seed: int = 0,
        out: Annotated[Path | None, typer.Option(help="Where to write the calibrated checkpoint.")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint at --out.")] = False,
    ) -> None:
        """Named calibration step: hardware-aware fine-tuning of the binary head for IMAC."""
        from imac.config import load_spec
        from imac.hardware.network import calibrate
        from imac.nn.checkpoint import check_checkpoint_target

        if out is not None:  # refused now, not after minutes of fine-tuning
            check_checkpoint_target(out, overwrite)

        dest, info = calibrate(name, load_spec(config), subarray, epochs, checkpoint, limit, seed, out,
                               circuit_epochs=circuit_epochs)
        say(f"calibrated head written to {dest}")
        typer.echo(json.dumps({"checkpoint": str(dest), **info}, indent=1, default=float))


def _compiled_circuit(name: str, config: str, subarray: int | None, checkpoint: Path | None,
                      calibrated: bool | None, say: object) -> tuple[Any, Any, Any]:
    """(compiled circuit-fidelity network, deployed model, software-trained base model)."""
    from imac.config import load_spec
    from imac.hardware.network import compile_head, select_head

    spec = load_spec(config)
    rows = subarray or spec.subarray.rows
    model, _, base = select_head(name, spec, rows, checkpoint, calibrated, say)
    return compile_head(model, spec, rows, subarray or spec.subarray.cols), model, base


def register_spice(app: typer.Typer) -> None:
    """`imac export` and `imac spice-check`."""

    @app.command("export")
    def export_cmd(
        name: Annotated[str, typer.Argument(help="Registered model name.")],
        spice: Annotated[Path, typer.Option("--spice", help="Folder to write (must not exist).")],
        image: Annotated[int, typer.Option(min=0, help="Test image whose inputs the netlist carries.")] = 0,
        subarray: Annotated[int | None, typer.Option(help="Square subarray size.")] = None,
        config: Annotated[str, typer.Option("--config", "-c")] = "paper",
        checkpoint: Annotated[Path | None, typer.Option()] = None,
        calibrated: Annotated[bool | None, typer.Option("--calibrated/--no-calibrated")] = None,
        overwrite: bool = False,
    ) -> None:
        """Write the whole network as one ngspice netlist plus its conductance maps."""
        from imac.errors import DataError
        from imac.hardware.network import imac_inputs
        from imac.hardware.spice_net import export_network
        from imac.io import check_output_target
        from imac.nn.data import load_dataset

        check_output_target(spice, overwrite)  # a bad target fails now, not after the export
        net, model, _ = _compiled_circuit(name, config, subarray, checkpoint, calibrated, say)
        test = load_dataset(model.dataset, "test")
        if image >= len(test):
            raise DataError(f"--image {image}: the {model.dataset} test set has images 0 to {len(test) - 1}")
        x = imac_inputs(model, test.images[image : image + 1])
        for p in export_network(net, x[0], spice, overwrite=overwrite, note=say):
            typer.echo(str(p))

    @app.command("spice-check")
    def spice_check_cmd(
        name: Annotated[str, typer.Argument(help="Registered model name.")],
        images: Annotated[int, typer.Option(min=1, help="First N test images.")] = 20,
        jobs: Annotated[int, typer.Option(min=1, help="Parallel ngspice processes.")] = 2,
        subarray: Annotated[int | None, typer.Option(help="Square subarray size.")] = None,
        config: Annotated[str, typer.Option("--config", "-c")] = "paper",
        checkpoint: Annotated[Path | None, typer.Option()] = None,
        calibrated: Annotated[bool | None, typer.Option("--calibrated/--no-calibrated")] = None,
    ) -> None:
        """Whole-network ngspice (transistor-level neurons) vs the circuit fidelity, image by image."""
        from imac.hardware.network import imac_inputs
        from imac.hardware.spice_net import spice_check
        from imac.nn.data import load_dataset
        from imac.provenance import data_used

        net, model, _ = _compiled_circuit(name, config, subarray, checkpoint, calibrated, say)
        test = load_dataset(model.dataset, "test").subset(images)
        x = imac_inputs(model, test.images)
        say(f"running {images} whole-network ngspice operating points on {jobs} processes")
        typer.echo(json.dumps(spice_check(net, x, n_jobs=jobs) | {"data": data_used()}, indent=1, default=float))


def register_compare(app: typer.Typer) -> None:
    """`imac compare`: IMAC next to mixed-signal and digital designs of the same network."""

    @app.command("compare")
    def compare_cmd(
        name: Annotated[str, typer.Argument(help="Registered model name.")],
        fidelity: Annotated[str, typer.Option(help="IMAC fidelity: behavioral or circuit.")] = "circuit",
        subarray: Annotated[int | None, typer.Option(help="Square subarray size.")] = None,
        config: Annotated[str, typer.Option("--config", "-c")] = "paper",
        checkpoint: Annotated[Path | None, typer.Option()] = None,
        calibrated: Annotated[bool | None, typer.Option("--calibrated/--no-calibrated")] = None,
        limit: Annotated[int | None, typer.Option(help="First N test images only.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Latency, power, energy per inference and accuracy: IMAC, mixed-signal, CPU, GPU."""
        from imac.config import load_spec
        from imac.system.baselines import compare_model

        res = compare_model(name, load_spec(config), fidelity, subarray, checkpoint, calibrated, limit, say)
        if as_json:
            from imac.provenance import data_used

            typer.echo(json.dumps(res | {"data": data_used()}, indent=1, default=float))
            return
        typer.echo(f"{'design':<22}{'latency (s)':>14}{'power (W)':>12}{'energy (J)':>13}{'accuracy':>10}")
        for d in res["designs"]:
            acc = "-" if d["accuracy"] is None else f"{100 * d['accuracy']:.2f}%"
            typer.echo(f"{d['design']:<22}{d['latency_s']:>14.3e}{d['power_w']:>12.3e}"
                       f"{d['energy_per_inference_j']:>13.3e}{acc:>10}")
        for k, v in res["imac_vs"].items():
            typer.echo(f"IMAC vs {k}: {v['imac_speedup']:.1f}x faster, {v['imac_energy_advantage']:.1f}x less energy")
