"""Command line: a thin layer over the library (no physics here).

Errors the user can cause are :class:`imac.errors.ImacError`; they are printed as one clear
message on stderr with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from imac.errors import ImacError

app = typer.Typer(
    help="imac: simulate in-memory analog computing with SOT-MRAM, checked against ngspice.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
neuron_app = typer.Typer(help="The SOT-MRAM sigmoid neuron.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print ratios against same-run references.",
                        no_args_is_help=True)
config_app = typer.Typer(help="Configurations and presets.", no_args_is_help=True)
app.add_typer(neuron_app, name="neuron")
app.add_typer(bench_app, name="bench")
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Preset name or YAML file.")]


@app.callback()
def _global_options(
    spice_timeout: Annotated[float | None, typer.Option(
        "--spice-timeout", min=0.001, max=1e6,
        help="Time limit of each ngspice run, s (default 300 s per neuron analysis, 600 s per subarray, "
        "1800 s per whole network; also IMAC_SPICE_TIMEOUT).")] = None,
) -> None:
    """imac: simulate in-memory analog computing with SOT-MRAM, checked against ngspice."""
    if spice_timeout is not None:
        from imac.ngspice import TIMEOUT_ENV

        os.environ[TIMEOUT_ENV] = repr(spice_timeout)  # worker processes inherit it


def _say(msg: str) -> None:
    typer.echo(f"[imac] {msg}", err=True)


def _report(obj: dict[str, Any], as_json: bool) -> None:
    """One JSON object (--json) or an aligned key: value listing."""
    if as_json:
        typer.echo(json.dumps(obj, indent=1, default=float))
        return
    for k, v in obj.items():
        typer.echo(f"{k:>24}: {v}")


def _load(config: str) -> Any:
    from imac.config import load_spec

    return load_spec(config)


@config_app.command("show")
def config_show(
    config: ConfigOpt = "paper",
    given: Annotated[bool, typer.Option(help="Only the values given (derived ones left out): a spec "
                                        "file to start from.")] = False,
) -> None:
    """Print the whole resolved spec tree as YAML, each derived value marked `# derived: <from what>`."""
    from imac.circuit.wires import cell_parasitics
    from imac.config import dump_spec, show_spec

    spec = _load(config)
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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory written by imac.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    update_default: Annotated[bool, typer.Option(help="Also replace the curve shipped with the package.")] = False,
) -> None:
    """Run the neuron in ngspice, fit its curve, report and plot SPICE vs fit."""
    from imac.devices.neuron import characterize, nan_to_none, write_plot
    from imac.devices.neuron_curve import DEFAULT_FIT_PATH
    from imac.io import run_directory

    spec = _load(config)
    nspec = spec.neuron
    if model_card is not None:
        from imac.config import NeuronSpec, parse_spec

        nspec = parse_spec(nspec.model_dump() | {"model_card": model_card}, NeuronSpec, source="--model-card")
    with run_directory(out, overwrite=overwrite, note=_say) as tmp:
        ch = characterize(nspec, terms=terms)
        write_plot(ch, tmp / "neuron_spice_vs_fit.png")
        ch.curve.save(tmp / "neuron_fit.json")
    if update_default:
        ch.curve.save(DEFAULT_FIT_PATH)
    summary = nan_to_none(ch.summary()) | {"plot": str(out / "neuron_spice_vs_fit.png"),
                                           "fit_file": str(out / "neuron_fit.json")}
    _report(summary, as_json)


@bench_app.command("xbar")
def bench_xbar_cmd(
    rows: Annotated[int, typer.Option(min=2, help="Subarray rows (the bias line included).")] = 64,
    cols: Annotated[int, typer.Option(min=1, help="Subarray columns (outputs).")] = 64,
    batch: Annotated[int, typer.Option(min=1, help="Input vectors for the solver.")] = 100,
    spice_batch: Annotated[int, typer.Option(min=0, help="Of those, how many ngspice solves.")] = 2,
    seed: int = 0,
    config: ConfigOpt = "paper",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Solver vs ngspice vs the ideal matrix product on one netlist and one batch."""
    from imac.experiments.bench_xbar import bench_xbar

    _report(bench_xbar(rows, cols, batch, spice_batch, spec=_load(config), seed=seed), as_json)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Run directory (must not exist).")] = Path("runs/demo"),
    config: ConfigOpt = "paper",
    size: Annotated[int, typer.Option(min=2, help="Subarray size.")] = 32,
    seed: int = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
) -> None:
    """The circuit demo: neuron in ngspice + fit, one subarray by solver and ngspice."""
    from imac.experiments.demo import run_demo

    summary = run_demo(out, _load(config), size=size, seed=seed, overwrite=overwrite, progress=_say)
    typer.echo((out / "summary.md").read_text())
    _say(f"results in {out}/ ({summary['subarray']['speedup_vs_ngspice']:.0f}x faster than ngspice)")


@app.command("reproduce")
def reproduce(
    out: Annotated[Path, typer.Option(help="Run directory (must not exist).")] = Path("runs/reproduce"),
    config: ConfigOpt = "paper",
    quick: Annotated[bool, typer.Option(help="Small subsets and sweeps (CI, < 3 min).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run directory.")] = False,
) -> None:
    """The main job: every published result the project can compute, as a run directory with
    report.md (published | ours), results.json, CSV tables and plots."""
    from imac.experiments.reproduce import run_reproduce, summary_line

    res = run_reproduce(out, _load(config), quick=quick, overwrite=overwrite, progress=_say)
    typer.echo(summary_line(res))
    typer.echo(f"report: {out}/report.md")


def _register_commands() -> None:
    # typer needs the commands at start-up; their heavy imports (torch) stay inside them
    from imac.hardware.commands import register as register_hardware
    from imac.hardware.commands import register_compare, register_spice
    from imac.nn.commands import register as register_nn
    from imac.system.commands import register as register_system

    register_nn(app)
    register_hardware(app)
    register_spice(app)
    register_compare(app)
    register_system(app)


_register_commands()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (``timeout``, a batch scheduler, a closed terminal): raised
    like Ctrl-C, so that every ``finally`` and cleanup runs and child processes are killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the signal that interrupted this run (typer turns the exception into exit 130)


def _raise_terminated(signum: int, frame: object) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    _received.append(signum)
    raise Terminated(signum)


def _exit_interrupted(signum: int) -> None:
    typer.echo(f"interrupted ({signal.Signals(signum).name}); nothing half-written was kept", err=True)
    sys.exit(128 + signum)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user's mistake is one line on stderr and exit code 2; an interrupt exits
    128 + the signal number after cleaning up; anything else is an internal error (exit 70),
    reported in one line too unless IMAC_DEBUG is set (then with its traceback)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _raise_terminated)
    _received.clear()
    try:
        code = app(args=argv, prog_name="imac", standalone_mode=False)
    except typer.Abort:
        _exit_interrupted(_received[0] if _received else signal.SIGINT)
    except typer.TyperException as err:  # usage errors (typer's own click): one line, where to look
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `imac` or a group alone
            typer.echo(ctx.get_help(), err=True)
            sys.exit(2)
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {_one_line(message)}{hint}", err=True)
        sys.exit(2)
    except ImacError as err:
        typer.echo(f"error: {_one_line(str(err))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as err:
        _exit_interrupted(err.signum if isinstance(err, Terminated) else signal.SIGINT)
    except OSError as err:  # a disk that fills up, a folder that vanished, a permission denied
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        typer.echo(f"error: {err.strerror or err}{where}", err=True)
        sys.exit(2)
    except MemoryError:
        typer.echo("error: out of memory; try a smaller --limit or batch", err=True)
        sys.exit(2)
    except Exception as err:  # a bug: say so in one line, the traceback on request
        if os.environ.get("IMAC_DEBUG"):
            raise
        typer.echo(f"internal error: {type(err).__name__}: {_one_line(str(err))[:300]} "
                   "(please report it; IMAC_DEBUG=1 shows the traceback)", err=True)
        sys.exit(70)
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    if _received:
        _exit_interrupted(_received[0])
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
