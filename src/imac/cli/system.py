"""`imac cpu-imac`: CPU-only vs CPU-IMAC for a CNN (:mod:`imac.system.cpu_imac`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from imac.cli.app import app
from imac.cli.options import (
    CalibratedOpt,
    CheckpointOpt,
    ColsOpt,
    ConfigOpt,
    CoreOpt,
    JsonOpt,
    LimitOpt,
    RowsOpt,
    design,
    say,
    with_data,
)


def summary_lines(r: dict[str, Any]) -> list[str]:
    """A short human-readable account of one cpu-imac result."""
    def acc(v: float | None) -> str:
        return "n/a (not trained)" if v is None else f"{100 * v:.2f} %"

    lines = [
        f"{r['model']} on {r['core']} ({r['precision']}), IMAC FC head at {r['fidelity']} fidelity",
        f"  CPU-only : {r['energy_cpu_only_j'] * 1e6:10.3f} uJ  {r['latency_cpu_only_s'] * 1e6:9.2f} us  "
        f"accuracy {acc(r['accuracy_cpu_only'])}",
        f"  CPU-IMAC : {r['energy_cpu_imac_j'] * 1e6:10.3f} uJ  {r['latency_cpu_imac_s'] * 1e6:9.2f} us  "
        f"accuracy {acc(r['accuracy_cpu_imac'])}",
        f"  energy saving {100 * r['energy_saving']:.2f} %, latency saving {100 * r['latency_saving']:.2f} % "
        f"(FC layers were {100 * r['fc_share_of_cpu_only_energy']:.1f} % of the CPU-only energy; "
        f"IMAC itself {r['imac_energy_j'] * 1e9:.2f} nJ)",
    ]
    if "placement" in r:
        p = r["placement"]
        lines.append(f"  placement ({p['objective']}, within {p['accuracy_budget_points']} points): {p['chosen']}")
    return lines


@app.command("cpu-imac")
def cpu_imac_cmd(
    name: Annotated[str, typer.Argument(help="Registered CNN (see `imac list-models`).")],
    core: CoreOpt = None,
    precision: Annotated[str, typer.Option(help="CPU precision: fp32 or int8.")] = "fp32",
    fidelity: Annotated[str, typer.Option(help="IMAC fidelity: ideal, behavioral or circuit.")] = "circuit",
    rows: RowsOpt = None,
    cols: ColsOpt = None,
    driver: Annotated[str, typer.Option(help="IMAC input drivers: sign or dac.")] = "sign",
    readout: Annotated[str, typer.Option(help="IMAC output readout: adc or comparator.")] = "adc",
    objective: Annotated[str, typer.Option(help="Placement objective: energy or edp.")] = "energy",
    accuracy_budget: Annotated[float, typer.Option(
        min=0, help="Largest accuracy loss vs CPU-only a placement may have, points.")] = 1.5,
    placements: Annotated[bool, typer.Option(help="Simulate every placement (else all FC on IMAC).")] = True,
    cpu_energy: Annotated[str, typer.Option(
        help="CPU energy model: bottom-up (per operation) or top-down (core power x latency).")] = "bottom-up",
    config: ConfigOpt = "paper",
    checkpoint: CheckpointOpt = None,
    calibrated: CalibratedOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """CPU-only vs CPU-IMAC for a CNN: accuracy, energy, latency, breakdown and placement.

    Models without a trained checkpoint (the full-width VGGs) get the energy study only."""
    from imac.hardware.diagnostics import result_warnings
    from imac.nn.data import n_classes
    from imac.nn.models import get_spec
    from imac.system.cpu_imac import energy_study, evaluate

    spec = design(config, rows, cols, core)
    if not get_spec(name).trainable_here:
        say(f"{name} is not trained here: energy study with random binary weights, no accuracy")
        res = energy_study(name, spec.cpu, precision, spec, None, fidelity, driver, readout, spec.interface,
                           energy_model=cpu_energy, progress=say)
        res.pop("_imac_cost")
    else:
        res = evaluate(name, spec.cpu, precision, spec, None, fidelity, driver, readout, spec.interface,
                       limit=limit, checkpoint=checkpoint, calibrated=calibrated, objective=objective,
                       accuracy_budget_points=accuracy_budget, placements=placements,
                       energy_model=cpu_energy, progress=say)
    res["warnings"] = result_warnings(spec, [], res.get("accuracy_cpu_imac"),
                                      n_classes(get_spec(name).dataset))
    for w in res["warnings"]:
        say(f"warning: {w}")
    if as_json:
        typer.echo(json.dumps(with_data(res), indent=1, default=float))
    else:
        typer.echo("\n".join(summary_lines(res)))


@app.command("cpu-model")
def cpu_model_cmd(
    models: Annotated[list[str] | None, typer.Argument(help="Registered models (default: lenet-mnist "
                                                        "vgg11-cifar10).")] = None,
    core: Annotated[list[str] | None, typer.Option(help="Core preset(s) or YAML file(s) (default: "
                                                   "cortex-a53 and cortex-a76; repeat the option).")] = None,
    fc: Annotated[str, typer.Option(help="FC layers on the CPU: float, binary or none.")] = "float",
    check: Annotated[bool, typer.Option(help="Measure PyTorch per-layer times on this machine and print "
                                        "model/measured ratios (the host core).")] = False,
    runs: Annotated[int, typer.Option(min=1, help="With --check: repeat the measurement.")] = 1,
    batches: Annotated[str, typer.Option(help="With --check: batch sizes, comma-separated.")] = "1,32",
    as_json: JsonOpt = False,
) -> None:
    """The analytical CPU model: per-layer latency and energy tables, or its check against PyTorch."""
    import os

    from imac.errors import ConfigError
    from imac.system.cpu import PRECISIONS, check_against_pytorch, estimate, ratio_table

    names = models or ["lenet-mnist", "vgg11-cifar10"]
    if fc not in ("float", "binary", "none"):
        raise ConfigError(f"--fc {fc!r}: choose float, binary or none")
    if check:
        try:
            sizes = [int(b) for b in batches.split(",")]
        except ValueError:
            raise ConfigError(f"--batches {batches!r}: expected comma-separated integers") from None
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"--batches {batches!r}: batch sizes must be positive")
        all_rows: list[dict[str, Any]] = []
        for run in range(runs):
            for name in names:
                rows = check_against_pytorch(name, sizes)
                for r in rows:
                    r["run"] = run
                all_rows += rows
                if not as_json and rows:
                    typer.echo(f"\nrun {run + 1}, load average {os.getloadavg()[0]:.2f}, "
                               f"dispatch overhead {rows[0]['overhead_s'] * 1e6:.1f} us")
                    typer.echo(ratio_table(rows))
        if as_json:
            typer.echo(json.dumps(all_rows, indent=1))
        return
    out = []
    for c in core or ["cortex-a53", "cortex-a76"]:
        for name in names:
            for prec in PRECISIONS:
                cost = estimate(c, name, prec, fc=fc)
                out.append(cost.to_dict())
                if not as_json:
                    typer.echo(cost.table() + "\n")
    if as_json:
        typer.echo(json.dumps(out, indent=1))
