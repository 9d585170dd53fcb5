"""The ``imac`` application: its sub-command groups, the global options and the entry point.

Errors the user can cause are :class:`imac.errors.ImacError`; they are printed as one clear
message on stderr with exit code 2, never a traceback.  The commands live one group per module
beside this one; the library packages hold no command-line code.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from imac.errors import ImacError

app = typer.Typer(
    help="imac: simulate in-memory analog computing with SOT-MRAM, checked against ngspice.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


def _torch_cache_in_ours() -> None:
    """torch's optimizers import torch._dynamo, which makes its compile cache folder at import
    time (``$TMPDIR/torchinductor_$USER`` by default): a command would leave a folder outside its
    output.  Unless the user chose one, that cache goes inside imac's own cache folder."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        from imac.io import cache_dir

        target = cache_dir() / "torch"
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:  # an unusable cache folder (caches are best effort): torch keeps its own
            return
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(target)


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user's mistake is one line on stderr and exit code 2; an interrupt exits
    128 + the signal number after cleaning up; anything else is an internal error (exit 70),
    reported in one line too unless IMAC_DEBUG is set (then with its traceback)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _raise_terminated)
    _received.clear()
    try:
        _torch_cache_in_ours()
        code = app(args=argv, prog_name="imac", standalone_mode=False)
    except typer.Abort:
        _exit_interrupted(_received[0] if _received else signal.SIGINT)
    except typer.TyperException as err:  # usage errors (typer's own click): one line, where to look
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `imac` or a group alone
            text = ctx.get_help()
            if text.strip():  # with rich installed, typer has printed the help itself (to stdout)
                typer.echo(text)
            typer.echo(f"error: missing command (see `{ctx.command_path} --help`)", err=True)
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
        if type(err).__name__ == "OutOfMemoryError" and type(err).__module__.startswith("torch"):
            # a GPU's memory (torch's error is a RuntimeError, not a MemoryError); torch not imported here
            typer.echo(f"error: out of device memory ({_one_line(str(err))[:160]}); try a smaller --batch-size "
                       "or --limit, or --device cpu", err=True)
            sys.exit(2)
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


# the command groups register themselves on ``app`` (their heavy imports stay inside the commands)
from imac.cli import runs, nn, hardware, system, design, bench, sweep  # noqa: E402, F401, I001  (the order of --help)
