"""ngspice in a subprocess: netlist export, a checked runner, and an ASCII rawfile parser.

Each run writes its netlist into a fresh temp directory, calls ``ngspice -b`` with a timeout,
checks the exit status and the log for errors, and parses the ASCII rawfile that the control
block writes.  A failed run keeps its directory and the error names the log file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imac.circuit.netlist import FIXED, Subarray, number_nodes, resistors
from imac.errors import ModelCardNotFoundError, ShapeError, SpiceError, SpiceNotFoundError

INSTALL_HINT = (
    "ngspice is not installed or not on PATH; install it with `apt-get install -y ngspice` "
    "(Debian/Ubuntu), `brew install ngspice` (macOS), or set IMAC_NGSPICE to its path"
)
_ERROR_PATTERNS = re.compile(
    r"^(error|fatal)|singular matrix|no convergence|timestep too small|"
    r"gmin stepping failed|source stepping failed|could not find|unknown (model|subckt)",
    re.IGNORECASE | re.MULTILINE,
)


def ngspice_executable() -> str:
    """Path of the ngspice binary (``IMAC_NGSPICE`` or PATH), or a clear error."""
    exe = os.environ.get("IMAC_NGSPICE") or shutil.which("ngspice")
    if not exe or not Path(exe).exists():
        raise SpiceNotFoundError(INSTALL_HINT)
    return exe


def ngspice_available() -> bool:
    try:
        ngspice_executable()
    except SpiceNotFoundError:
        return False
    return True


def find_model_card(explicit: Path | str | None = None, name: str = "ptm22hp.pm") -> Path:
    """Locate a transistor model card: explicit path, ``IMAC_DATA_DIR/spice``, then
    ``../shared/data/spice`` beside the repository (or the working directory)."""
    tried: list[Path] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        raise ModelCardNotFoundError(f"model card not found: {p}")
    candidates = []
    if env := os.environ.get("IMAC_DATA_DIR"):
        candidates.append(Path(env) / "spice" / name)
    repo_root = Path(__file__).resolve().parents[3]
    candidates += [
        repo_root.parent / "shared" / "data" / "spice" / name,
        Path.cwd().parent / "shared" / "data" / "spice" / name,
    ]
    for c in candidates:
        tried.append(c)
        if c.is_file():
            return c
    raise ModelCardNotFoundError(
        "no transistor model card found; looked in: "
        + ", ".join(str(t) for t in tried)
        + ". Give one with --model-card PATH (neuron.model_card in YAML) or set IMAC_DATA_DIR "
        "to a folder holding spice/" + name
    )


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


def run_ngspice(
    netlist: str,
    timeout_s: float = 600.0,
    keep: bool = False,
    workdir: Path | None = None,
) -> SpiceResult:
    """Run ``netlist`` (whose control block writes ``out.raw`` in ASCII and ends with ``quit``,
    which makes batch ngspice exit 0) in batch mode.

    The netlist is written into ``workdir`` (or a fresh temp directory).  On failure the
    directory is kept and :class:`SpiceError` names the log file.
    """
    exe = ngspice_executable()
    wd = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="imac-spice-"))
    wd.mkdir(parents=True, exist_ok=True)
    cir, log, raw = wd / "circuit.cir", wd / "ngspice.log", wd / "out.raw"
    cir.write_text(netlist)
    try:
        proc = subprocess.run(
            [exe, "-b", "-o", str(log), str(cir)],
            cwd=wd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SpiceError(f"ngspice did not finish within {timeout_s:g} s", str(log)) from None
    log_text = log.read_text(errors="replace") if log.exists() else proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SpiceError(f"ngspice exited with status {proc.returncode}", str(log))
    m = _ERROR_PATTERNS.search(log_text)
    if m:
        line = log_text[max(0, log_text.rfind("\n", 0, m.start()) + 1):].split("\n", 1)[0]
        raise SpiceError(f"ngspice reported an error: {line.strip()}", str(log))
    if not raw.exists():
        raise SpiceError("ngspice wrote no results (analysis failed or did not converge)", str(log))
    plots = parse_ascii_raw(raw.read_text(errors="replace"))
    result = SpiceResult(plots[-1], log_text, wd if keep else None)
    if not keep and workdir is None:
        shutil.rmtree(wd, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------
# subarray export
# --------------------------------------------------------------------------------------------


def _node_name(idx: int) -> str:
    return f"in_{FIXED - idx}" if idx < 0 else f"n{idx}"


def subarray_netlist(
    sub: Subarray,
    inputs: Sequence[float] | np.ndarray,
    v_bias: float = 0.8,
    opamp_gain: float = 1e9,
    title: str = "imac subarray",
    control: bool = True,
) -> str:
    """ngspice netlist of a subarray at one input vector (V), amplifiers drawn explicitly.

    Outputs are nodes ``out_j``; with ``control`` the netlist runs ``op`` and writes them to
    ``out.raw`` in ASCII.
    """
    u = np.asarray(inputs, dtype=float).ravel()
    if u.size != sub.n_inputs:
        raise ShapeError(f"expected {sub.n_inputs} input voltages, got {u.size}")
    if sub.has_bias:
        u = np.append(u, v_bias)
    nodes = number_nodes(sub)
    el = resistors(sub, nodes)
    out = [f"* {title}: {sub.rows}x{sub.cols}, generated by imac", ".options noacct"]
    out += [f"V{k} in_{k} 0 DC {v:.17g}" for k, v in enumerate(u)]
    out += [
        f"R{k} {_node_name(a)} {_node_name(b)} {1.0 / g:.17g}"
        for k, (a, b, g) in enumerate(zip(el.a.tolist(), el.b.tolist(), el.g.tolist(), strict=True))
    ]
    for j in range(sub.cols):
        r_in, r_fb = sub.amp_r_in, sub.amp_gain[j] * sub.amp_r_in
        pe, qe = _node_name(int(nodes.p_end[j])), _node_name(int(nodes.q_end[j]))
        if sub.amp_topology == "instrumentation":
            out.append(f"E{j} out_{j} 0 {pe} {qe} {sub.amp_gain[j]:.17g}")
            continue
        out += [
            f"Ra{j} {qe} am_{j} {r_in:.17g}",
            f"Rf{j} am_{j} out_{j} {r_fb:.17g}",
            f"Rb{j} {pe} ap_{j} {r_in:.17g}",
            f"Rg{j} ap_{j} 0 {r_fb:.17g}",
            f"E{j} out_{j} 0 ap_{j} am_{j} {opamp_gain:.17g}",
        ]
    if control:
        out += [".control", "set filetype=ascii", "op"]
        names = " ".join(f"v(out_{j})" for j in range(sub.cols))
        out += [f"write out.raw {names}", "quit", ".endc"]
    out.append(".end")
    return "\n".join(out) + "\n"


def spice_subarray_outputs(
    sub: Subarray,
    inputs: np.ndarray,
    v_bias: float = 0.8,
    opamp_gain: float = 1e9,
    timeout_s: float = 600.0,
    n_jobs: int = 1,
) -> np.ndarray:
    """Amplifier outputs (batch, cols), V, from one ngspice operating point per input vector."""
    u = np.atleast_2d(np.asarray(inputs, dtype=float))

    def one(vec: np.ndarray) -> np.ndarray:
        res = run_ngspice(subarray_netlist(sub, vec, v_bias, opamp_gain), timeout_s=timeout_s)
        return np.array([res[f"v(out_{j})"][0] for j in range(sub.cols)])

    if n_jobs == 1 or len(u) == 1:
        return np.stack([one(vec) for vec in u])
    from joblib import Parallel, delayed

    return np.stack(Parallel(n_jobs=n_jobs)(delayed(one)(vec) for vec in u))
