"""`imac config show` and `imac neuron characterize`: the design spec and its neuron."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imac.cli.app import app
from imac.cli.options import ConfigOpt, JsonOpt, OverwriteOpt, design, report, say

config_app = typer.Typer(help="The design spec: presets and files, resolved.", no_args_is_help=True)
neuron_app = typer.Typer(help="The SOT-MRAM sigmoid neuron.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(neuron_app, name="neuron")


@config_app.command("show")
def config_show(
    config: ConfigOpt = "paper",
    given: Annotated[bool, typer.Option(help="Only the values given (derived ones left out): a spec "
                                        "file to start from.")] = False,
) -> None:
    """Print the whole resolved spec tree as YAML, each derived value marked `# derived: <from what>`."""
    from imac.circuit.wires import cell_parasitics
    from imac.config import dump_spec, show_spec

    spec = design(config)
    if given:
        typer.echo(dump_spec(spec), nl=False)
        return
    par = cell_parasitics(spec.wires)
    why = "size-effect resistivity x cell pitch / wire cross-section (imac.circuit.wires)"
    typer.echo(show_spec(spec, {"wires.r_vertical_ohm": (par.r_vertical, why),
                                "wires.r_horizontal_ohm": (par.r_horizontal, why)}), nl=False)


@neuron_app.command("characterize")
def neuron_characterize(
    config: ConfigOpt = "paper",
    model_card: Annotated[Path | None, typer.Option(help="SPICE model card (.pm/.lib).")] = None,
    terms: Annotated[int, typer.Option(min=1, max=6, help="Logistic terms in the fit.")] = 2,
    out: Annotated[Path, typer.Option(help="Run directory for the plot and fitted curve.")] = Path("runs/neuron"),
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    update_default: Annotated[bool, typer.Option(help="Also replace the curve shipped with the package.")] = False,
) -> None:
    """Run the neuron in ngspice, fit its curve, report and plot SPICE vs fit."""
    from imac.config import with_overrides
    from imac.devices.neuron import characterize, nan_to_none, write_plot
    from imac.devices.neuron_curve import DEFAULT_FIT_PATH
    from imac.io import run_directory

    spec = design(config)
    if model_card is not None:
        spec = with_overrides(spec, {"neuron.model_card": str(model_card)}, source="--model-card")
    with run_directory(out, overwrite=overwrite, note=say) as tmp:
        ch = characterize(spec.neuron, terms=terms)
        write_plot(ch, tmp / "neuron_spice_vs_fit.png")
        ch.curve.save(tmp / "neuron_fit.json")
    if update_default:
        ch.curve.save(DEFAULT_FIT_PATH)
    summary = nan_to_none(ch.summary()) | {"plot": str(out / "neuron_spice_vs_fit.png"),
                                           "fit_file": str(out / "neuron_fit.json")}
    report(summary, as_json)
