"""ngspice in a subprocess: a checked runner, the model card, and an ASCII rawfile parser.

Shared by every part that simulates with ngspice (the neuron in :mod:`imac.devices.neuron`, a
subarray in :mod:`imac.circuit.spice`, the whole network in :mod:`imac.hardware.spice_net`).

Each run writes its netlist into a fresh temp directory, calls ``ngspice -b`` with a timeout,
checks the exit status and the log for errors, and parses the ASCII rawfile that the control
block writes.  The temp directory is removed on every way out (the error of a failed run quotes
the lines of the log that matter, since the log goes with it); a caller that passes its own
``workdir`` keeps the files there, and then the error names the log.  ngspice runs in its own
process group, is killed with it when the run is interrupted, and (on Linux) dies with its
parent even when that parent is killed with SIGKILL.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imac.config import check_netlist_path
from imac.errors import ConfigError, ModelCardNotFoundError, SpiceError, SpiceNotFoundError
from imac.io import SESSION_CACHE_PREFIX

INSTALL_HINT = (
    "ngspice is not installed or not on PATH; install it with `apt-get install -y ngspice` "
    "(Debian/Ubuntu), `brew install ngspice` (macOS), or set IMAC_NGSPICE to its path"
)
_ERROR_PATTERNS = re.compile(
    r"^(error|fatal)|singular matrix|no convergence|timestep too small|"
    r"gmin stepping failed|source stepping failed|could not find|unknown (model|subckt)",
    re.IGNORECASE | re.MULTILINE,
)


TIMEOUT_ENV = "IMAC_SPICE_TIMEOUT"  # seconds; set by `imac --spice-timeout`, read by every ngspice run
# temp folders of runs: <prefix><pid>-XXXX in the temp dir (and the throw-away cache of a process run
# with IMAC_CACHE_DIR=off)
TEMP_PREFIXES = ("imac-spice-", "imac-net-", SESSION_CACHE_PREFIX)


def spice_timeout_s(default: float) -> float:
    """Time limit of one ngspice run, s: ``IMAC_SPICE_TIMEOUT`` when set, else ``default``."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < 1e7):
        raise ConfigError(f"{TIMEOUT_ENV}={text[:40]!r}: expected a positive number of seconds")
    return value


def ngspice_executable() -> str:
    """Path of the ngspice binary (``IMAC_NGSPICE`` or PATH), or a clear error."""
    env = os.environ.get("IMAC_NGSPICE")
    if env:
        if not Path(env).is_file() or not os.access(env, os.X_OK):
            raise SpiceNotFoundError(f"IMAC_NGSPICE={env!r} is not an executable file (point it to the ngspice "
                                     f"binary or unset it); {INSTALL_HINT}")
        return env
    exe = shutil.which("ngspice")
    if not exe:
        raise SpiceNotFoundError(INSTALL_HINT)
    return exe


def ngspice_available() -> bool:
    try:
        ngspice_executable()
    except SpiceNotFoundError:
        return False
    return True


def find_model_card(explicit: Path | str | None = None, name: str = "ptm22hp.pm") -> Path:
    """Locate a transistor model card: the explicit path, else ``IMAC_DATA_DIR/spice`` when that
    variable is set (then the only place: results must use the card the user pointed to), else
    ``../shared/data/spice`` beside the repository or the working directory."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        raise ModelCardNotFoundError(f"model card not found: {p}")
    if env := os.environ.get("IMAC_DATA_DIR"):
        card = Path(env).expanduser() / "spice" / name
        if card.is_file():
            return card
        raise ModelCardNotFoundError(f"no transistor model card at {card} (IMAC_DATA_DIR is set, so only there); "
                                     "put the card there, give --model-card PATH, or unset IMAC_DATA_DIR")
    repo_root = Path(__file__).resolve().parents[2]
    candidates = [
        repo_root.parent / "shared" / "data" / "spice" / name,
        Path.cwd().parent / "shared" / "data" / "spice" / name,
    ]
    for c in candidates:
        if c.is_file():
            return c
    raise ModelCardNotFoundError(
        "no transistor model card found; looked in: "
        + ", ".join(str(t) for t in candidates)
        + ". Give one with --model-card PATH (neuron.model_card in YAML) or set IMAC_DATA_DIR "
        "to a folder holding spice/" + name
    )


def include_line(card: Path | str) -> str:
    """``.include "CARD"`` for a model card whose path cannot add netlist lines."""
    return f'.include "{check_netlist_path(str(card))}"'


@dataclass
class SpiceResult:
    """Vectors of one analysis, by lower-case name (``v(out_0)``, ``i(vdd)``, ``time``...)."""

    vectors: dict[str, np.ndarray]
    log: str
    workdir: Path | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.vectors[name.lower()]
        except KeyError:
            raise SpiceError(f"ngspice produced no vector {name!r}") from None


def parse_ascii_raw(text: str) -> list[dict[str, np.ndarray]]:
    """Parse an ASCII rawfile (possibly several plots) into name -> values dicts."""
    plots: list[dict[str, np.ndarray]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Title:"):
            i += 1
            continue
        n_vars = n_points = 0
        names: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith("Values:"):
            line = lines[i]
            if line.startswith("No. Variables:"):
                n_vars = int(line.split(":")[1])
            elif line.startswith("No. Points:"):
                n_points = int(line.split(":")[1])
            elif line.startswith("Variables:"):
                for k in range(n_vars):
                    parts = lines[i + 1 + k].split()
                    names.append(parts[1].lower())
                i += n_vars
            elif line.startswith("Flags:") and "complex" in line:
                raise SpiceError("complex rawfiles are not supported")
            i += 1
        i += 1
        values = np.empty((n_points, n_vars))
        tokens: list[str] = []
        while len(tokens) < n_points * (n_vars + 1) and i < len(lines):
            if lines[i].startswith("Title:"):
                break
            tokens.extend(lines[i].split())
            i += 1
        if len(tokens) < n_points * (n_vars + 1):
            raise SpiceError("truncated ngspice rawfile")
        arr = np.array(tokens[: n_points * (n_vars + 1)], dtype=float).reshape(n_points, n_vars + 1)
        values[:] = arr[:, 1:]
        plots.append({name: values[:, k] for k, name in enumerate(names)})
    if not plots:
        raise SpiceError("ngspice wrote no plot to the rawfile")
    return plots


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGKILL the child when its parent dies (prctl
    PR_SET_PDEATHSIG), so no ngspice outlives a killed imac; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


_PREEXEC = _die_with_parent()
_swept_leftovers = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs() -> None:
    """Remove the temp folders of imac processes that no longer exist (killed runs)."""
    tmp_root = Path(tempfile.gettempdir())
    for prefix in TEMP_PREFIXES:
        for p in tmp_root.glob(f"{prefix}*"):
            m = re.fullmatch(re.escape(prefix) + r"(\d+)-.+", p.name)
            if m and p.is_dir() and not p.is_symlink() and int(m.group(1)) != os.getpid() \
                    and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)


def spice_temp_dir(prefix: str = "imac-spice-") -> Path:
    """A fresh temp folder for one ngspice run, named after this process (so that a later run
    can tell a leftover of a killed process from a live one)."""
    global _swept_leftovers
    if not _swept_leftovers:
        _swept_leftovers = True
        try:
            remove_stale_temp_dirs()
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def _log_excerpt(log_text: str, match: re.Match[str] | None = None) -> str:
    """The log line that matters (the error) or the last non-empty lines, for a message."""
    if match is not None:
        line = log_text[max(0, log_text.rfind("\n", 0, match.start()) + 1):].split("\n", 1)[0]
        return line.strip()[:200]
    tail = [ln.strip() for ln in log_text.splitlines() if ln.strip()][-2:]
    return " | ".join(tail)[:300]


def _run(args: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run ngspice in its own process group; kill the group on timeout or on any interrupt."""
    with subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_PREEXEC) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def run_ngspice(
    netlist: str,
    timeout_s: float | None = None,
    keep: bool = False,
    workdir: Path | None = None,
    temp_prefix: str = "imac-spice-",
    every_rawfile: bool = False,
) -> SpiceResult:
    """Run ``netlist`` (whose control block writes ``out.raw`` in ASCII and ends with ``quit``,
    which makes batch ngspice exit 0) in batch mode, within ``timeout_s`` seconds (default:
    :func:`spice_timeout_s` of 600 s).

    The netlist is written into ``workdir`` (kept, and named by errors) or into a fresh temp
    directory that is removed however the run ends (``keep`` keeps it after a success).
    ``every_rawfile`` merges the vectors of ``out*.raw`` (a netlist that writes its probes in
    several files, since ngspice caps a control line's length) into the result.
    """
    exe = ngspice_executable()
    limit = spice_timeout_s(600.0) if timeout_s is None else timeout_s
    own = workdir is None
    wd = spice_temp_dir(temp_prefix) if own else Path(workdir)  # type: ignore[arg-type]
    ok = False
    try:
        wd.mkdir(parents=True, exist_ok=True)
        cir, log, raw = wd / "circuit.cir", wd / "ngspice.log", wd / "out.raw"
        cir.write_text(netlist)
        where = None if own else str(log)
        try:
            proc = _run([exe, "-b", "-o", str(log), str(cir)], wd, limit)
        except subprocess.TimeoutExpired:
            raise SpiceError(f"ngspice did not finish within {limit:g} s (raise the limit with "
                             "`imac --spice-timeout SECONDS` or IMAC_SPICE_TIMEOUT)",
                             where if log.exists() else None) from None
        except OSError as err:
            raise SpiceError(f"could not start ngspice ({exe}): {err.strerror or err}") from None
        log_text = log.read_text(errors="replace") if log.exists() else proc.stdout + proc.stderr
        where = where if log.exists() else None
        if proc.returncode != 0:
            excerpt = _log_excerpt(log_text)
            raise SpiceError(f"ngspice exited with status {proc.returncode}" + (f": {excerpt}" if excerpt else ""),
                             where)
        m = _ERROR_PATTERNS.search(log_text)
        if m:
            raise SpiceError(f"ngspice reported an error: {_log_excerpt(log_text, m)}", where)
        if not raw.exists():
            raise SpiceError("ngspice wrote no results (analysis failed or did not converge): "
                             f"{_log_excerpt(log_text)}", where)
        vectors = dict(parse_ascii_raw(raw.read_text(errors="replace"))[-1])
        if every_rawfile:
            for extra in sorted(wd.glob("out*.raw")):
                if extra.name != "out.raw":
                    vectors.update(parse_ascii_raw(extra.read_text(errors="replace"))[-1])
        ok = True
        return SpiceResult(vectors, log_text, wd if (keep or not own) else None)
    finally:
        if own and not (ok and keep):
            shutil.rmtree(wd, ignore_errors=True)
