"""Fuzz tier, command line: random argument vectors for every command of ``imac``.

Vectors come from a grammar built from the typer app itself (``typer.main.get_command``): each
command with its known options given random values (out of range, negative, NaN, huge, empty,
unicode, paths that are files, folders, missing, '.', '..', '~', below a file, symbolic links),
unknown options, missing or extra arguments, valid and invalid model names, and ``-c`` pointing
at fuzzed YAML files.  ``imac.cli.main(argv)`` runs in-process, in a fresh working folder that
holds some files of "the user", with its own HOME, cache and temp folders.

Property: exit code 0 or 2 (never 70, the internal error, and never an uncaught exception); on
exit 2 the last line of stderr is one ``error: ...`` line; no traceback; nothing created,
changed or removed outside the output path of the command (``--out``/``--spice`` or its
default), and nothing at all when the command fails; the shipped checkpoints unchanged.

Each example must finish fast: ngspice is never run (``IMAC_NGSPICE`` points to something that
is not ngspice), data-hungry commands get a small ``--limit`` most of the time, and an example
still running after ``IMAC_FUZZ_BUDGET_S`` seconds is interrupted (a BaseException raised by a
timer); such an example only checks that nothing was left behind.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from _fuzz_strategies import budget_s, config_file_bytes, fuzz_settings, known_failures_skipped, one_line_problem
from hypothesis import event, given, note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import imac.cli
import imac.nn.checkpoint
from imac.io import MARKER

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "src" / "imac" / "checkpoints"  # the checkpoints shipped in the package
ROOT_TOKEN = "{root}"  # replaced by the example's root folder (keeps printed examples stable)


# -- the commands, discovered from the app -------------------------------------------------------


def discover_commands() -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, (*path, name))
        else:
            out.append((path, cmd))

    walk(typer.main.get_command(imac.cli.app), ())
    return out


COMMANDS = discover_commands()
COMMAND_IDS = [" ".join(p) for p, _ in COMMANDS]
GROUPS = sorted({p[:-1] for p, _ in COMMANDS if len(p) > 1})


def _models() -> list[str]:
    from imac.nn.models import list_models

    return [m.name for m in list_models()]


def _fidelities() -> list[str]:
    try:
        from imac.hardware.simulate import FIDELITIES

        return list(FIDELITIES)
    except Exception:  # pragma: no cover - the list moved
        return ["ideal", "behavioral", "circuit", "spice"]


MODELS = _models()
PRESETS = sorted(p.stem for p in (REPO / "src" / "imac" / "configs").glob("*.yaml")) or ["paper"]
CHOICES = {
    "fidelity": _fidelities(),
    "core": ["cortex-a53", "cortex-a76", "host"],
    "precision": ["fp32", "int8"],
    "driver": ["sign", "dac"],
    "readout": ["adc", "comparator"],
    "objective": ["energy", "edp"],
    "cpu_energy": ["bottom-up", "top-down"],
}
OUTPUT_PARAMS = {"out", "spice"}  # paths a command writes (a run directory, a checkpoint, an export)
LIMIT_PARAMS = {"limit", "limit_train", "limit_test", "images"}  # keep data-hungry runs short

# -- values --------------------------------------------------------------------------------------

JUNK = ["", " ", "-", "--", "-1", "nan", "NaN", "inf", "-inf", "1e999", "0", "1.5", "abc", "\u00e9", "\u0663",
        "\U0001f600", "a\nb", "\x1b[31m", "%s%n", "$(touch pwned)", "`touch pwned`", "x" * 300, "--json", "-c"]
INT_EDGES = ["0", "1", "2", "3", "-1", "-2", "32", "4096", "4097", "2147483648", "99999999999999999999",
             "1" + "0" * 40, "1.5", "1e3", "0x10", "nan", "inf", "", " 3", "3 ", "\u0663", "+4", "-0", "1_0"]
FLOAT_EDGES = ["0", "-0", "1", "-1", "0.001", "1e-300", "5e-324", "1e308", "1e999", "nan", "NaN", "inf", "-inf",
               "abc", "", "1,5", "0x1p3", "1e6", "1000000.1"]
PATHS = [
    ".", "..", "../..", "~", "~/x", "/", "/dev/null", "", " ", "-", "new", "new/deeper/run", "notes.txt",
    "notes.txt/below", "data", "data/a.txt", "data/new", "oldrun", "oldrun/x", "link", "link/new", "broken",
    "broken/new", "cfg.yaml", "../sibling.txt", "../newsibling", "~/newhome", "runs", "runs/r1", "a\nb",
    "\u00fc\u00f1\u00ee", "x" * 300, "x" * 255, "-x", "--out", "{root}/top/work/abs", "{root}/top", "{root}",
    ".imac-run.json", ".hidden", "data/../new2",
]


def int_values(param: Any) -> st.SearchStrategy[str]:
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    edges = list(INT_EDGES)
    for b in (lo, hi):
        if b is not None:
            edges += [str(int(b) - 1), str(int(b)), str(int(b) + 1)]
    return st.one_of(st.sampled_from(edges), st.integers(-5, 40).map(str), st.sampled_from(JUNK))


def values_for(param: Any) -> st.SearchStrategy[str]:
    name = param.name
    kind = param.bare_type() if callable(getattr(param, "bare_type", None)) else "str"
    if name == "name":
        return st.one_of(st.sampled_from(MODELS), st.sampled_from(MODELS),
                         st.sampled_from(["nope", "LENET-MNIST", "lenet-mnist ", "lenet", "../models/lenet-mnist",
                                          "models/lenet-mnist.pt", "lenet\nmnist"]),
                         st.sampled_from(JUNK))
    if name == "config":
        return st.one_of(st.sampled_from(PRESETS), st.just("cfg.yaml"), st.just("cfg.yaml"), st.just("cfg.yaml"),
                         st.sampled_from(["nope", "paper.yaml", "data", "notes.txt", "/dev/null", "/dev/zero",
                                          "/proc/self/environ", "~", "..", "broken", "link", "oldrun/.imac-run.json"]),
                         st.sampled_from(JUNK))
    if name in CHOICES:
        extra = ["cfg.yaml", "notes.txt", "data"] if name == "core" else []
        return st.one_of(st.sampled_from(CHOICES[name]), st.sampled_from(CHOICES[name]),
                         st.sampled_from(extra + [c.upper() for c in CHOICES[name]]), st.sampled_from(JUNK))
    if name in LIMIT_PARAMS:
        return st.one_of(st.integers(1, 4).map(str), st.integers(1, 4).map(str), int_values(param))
    if kind == "int":
        return int_values(param)
    if kind == "float":
        return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(-10, 1e4).map(repr), st.sampled_from(JUNK))
    if kind == "Path":
        return st.one_of(st.sampled_from(PATHS), st.sampled_from(PATHS), st.sampled_from(JUNK))
    return st.one_of(st.sampled_from(JUNK), st.text(max_size=20))


def sane_values_for(param: Any) -> st.SearchStrategy[str]:
    """Values a careful user might give: in range and of the right type (still often odd:
    bounds, tiny subarrays, models that do not fit), so that runs reach the library's own checks."""
    name = param.name
    kind = param.bare_type() if callable(getattr(param, "bare_type", None)) else "str"
    if name == "name":
        return st.sampled_from(MODELS)
    if name == "config":
        return st.sampled_from([*PRESETS, "cfg.yaml"])
    if name in CHOICES:
        return st.sampled_from(CHOICES[name])
    if name in LIMIT_PARAMS:
        return st.integers(1, 4).map(str)
    if name == "checkpoint":
        return st.sampled_from([f"{ROOT_TOKEN}/../repo/checkpoints/{m}.pt" for m in MODELS[:3]]
                               + [f"{ROOT_TOKEN}/../repo/checkpoints/calibrated/{m}.imac-difference-32.pt"
                                  for m in MODELS[:3]])
    if name in OUTPUT_PARAMS:
        return st.sampled_from(["new", "new/deeper/run", "oldrun", "runs/r1", "~/newhome", "../newsibling",
                                "data/new", "link/new", "new.pt"])
    if kind == "int":
        lo = int(param.min) if getattr(param, "min", None) is not None else 0
        hi = int(param.max) if getattr(param, "max", None) is not None else lo + 70
        return st.integers(lo, min(hi, lo + 70)).map(str)
    if kind == "float":
        lo = float(param.min) if getattr(param, "min", None) is not None else 0.0
        return st.floats(lo, lo + 10).map(repr)
    if kind == "Path":
        return st.sampled_from(["data", "notes.txt", "new", "cfg.yaml"])
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)


@st.composite
def argument_vectors(draw: st.DrawFn, index: int) -> list[str]:
    """An argument vector for command ``COMMANDS[index]`` from the grammar."""
    path, cmd = COMMANDS[index]
    sane = draw(st.integers(0, 2))  # 0: every value wild; 1: one wild value; 2: all careful
    wild_one = draw(st.integers(0, max(0, len(cmd.params) - 1)))
    argv: list[str] = []
    if draw(st.integers(0, 7)) == 0:  # the global option, before the command
        argv += ["--spice-timeout", draw(st.sampled_from(FLOAT_EDGES))]
    argv += list(path)
    words: list[list[str]] = []
    given: set[str] = set()
    for i, p in enumerate(cmd.params):
        values = values_for(p) if sane == 0 or (sane == 1 and i == wild_one) else sane_values_for(p)
        if p.param_type_name == "argument":
            if sane or draw(st.integers(0, 9)) > 0:  # sometimes the argument is missing
                words.append([draw(values)])
            continue
        if draw(st.integers(0, 2)) > 0:
            continue
        given.add(p.name)
        if p.is_flag:
            words.append([draw(st.sampled_from(p.opts + p.secondary_opts))])
            continue
        opt = draw(st.sampled_from(p.opts))
        value = draw(values)
        form = draw(st.integers(0, 9)) if not sane else 9
        if form == 0 and opt.startswith("--"):
            words.append([f"{opt}={value}"])
        elif form == 1:
            words.append([opt])  # the value is missing (or the next word is taken as it)
        else:
            words.append([opt, value])
    names = {p.name for p in cmd.params}
    for limit in sorted(LIMIT_PARAMS & names - given):  # a short run unless the draw says otherwise
        if draw(st.integers(0, 9)) > 0:
            words.append([f"--{limit.replace('_', '-')}", str(draw(st.integers(1, 3)))])
    if "epochs" in names and "epochs" not in given and draw(st.integers(0, 9)) > 0:
        words.append(["--epochs", "1"])
    if "circuit_epochs" in names and "circuit_epochs" not in given and draw(st.integers(0, 9)) > 0:
        words.append(["--circuit-epochs", "0"])
    for _ in range(draw(st.integers(0, 2)) if not sane and draw(st.integers(0, 3)) == 0 else 0):  # noise
        words.append(draw(st.sampled_from([["--bogus"], ["--bogus=1"], ["-z"], ["extra"], ["--"], ["--help"], ["-c"],
                                           ["--json"], ["--limit", "2"], ["-h"], [draw(st.sampled_from(JUNK))]])))
    order = draw(st.permutations(range(len(words)))) if draw(st.booleans()) else range(len(words))
    for i in order:
        argv += words[i]
    return argv


vocabulary = sorted({w for _, c in COMMANDS for p in c.params for w in (*p.opts, *p.secondary_opts)}
                    | {w for p, _ in COMMANDS for w in p} | set(MODELS) | set(INT_EDGES) | set(PATHS))

_words = st.lists(st.one_of(st.sampled_from(vocabulary), st.sampled_from(JUNK)), max_size=8)
random_vectors = st.one_of(
    _words,
    st.tuples(st.sampled_from([list(p) for p, _ in COMMANDS]), _words).map(lambda t: t[0] + t[1]),
    st.tuples(st.sampled_from([list(p) for p, _ in COMMANDS]), st.sampled_from(MODELS), _words)
    .map(lambda t: [*t[0], t[1], *t[2]]),
)

environments = st.fixed_dictionaries({
    "IMAC_NGSPICE": st.sampled_from(["{root}/no-ngspice", "{root}/no-ngspice", "{root}/top/work/data",
                                     "/bin/false", "/bin/true", ""]),
    "IMAC_DATA_DIR": st.sampled_from([None, None, None, "{root}/empty", "{root}/top/work/notes.txt",
                                      "{root}/missing", ""]),
    "IMAC_SPICE_TIMEOUT": st.sampled_from([None, None, None, None, "abc", "-1", "nan", "0.5", "1e99"]),
})

# -- running one vector --------------------------------------------------------------------------


class _OverBudget(BaseException):
    """Raised by the timer in an example that started real work longer than the budget."""


@dataclass
class Result:
    argv: list[str]
    code: int | None = None
    stdout: str = ""
    stderr: str = ""
    over_budget: bool = False
    uncaught: BaseException | None = None
    changes: list[str] = field(default_factory=list)
    models_changed: list[str] = field(default_factory=list)
    repo_changed: list[str] = field(default_factory=list)


def _snapshot(top: Path, skip: set[Path] = frozenset()) -> dict[str, tuple[Any, ...]]:  # type: ignore[assignment]
    """Every file, folder and link below ``top``: kind, and for files size and mtime."""
    snap: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip]
        for n in dirnames + filenames:
            p = d / n
            try:
                st_ = os.lstat(p)
            except FileNotFoundError:
                continue
            rel = str(p.relative_to(top))
            if stat.S_ISLNK(st_.st_mode):
                snap[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                snap[rel] = ("dir",)
            else:
                snap[rel] = ("file", st_.st_size, st_.st_mtime_ns, stat.S_IMODE(st_.st_mode))
    return snap


def _diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = [f"created {k}" for k in sorted(after.keys() - before.keys())]
    out += [f"removed {k}" for k in sorted(before.keys() - after.keys())]
    out += [f"changed {k}" for k in sorted(before.keys() & after.keys()) if before[k] != after[k]]
    return out


def _make_user_files(root: Path, config: bytes) -> Path:
    work = root / "top" / "work"
    (work / "data").mkdir(parents=True)
    (work / "notes.txt").write_text("the user's notes\n")
    (work / "data" / "a.txt").write_text("the user's data\n")
    (work / "oldrun").mkdir()
    (work / "oldrun" / MARKER).write_text('{"status": "complete"}')
    (work / "oldrun" / "report.md").write_text("an earlier run\n")
    (work / "link").symlink_to("data")
    (work / "broken").symlink_to("nowhere")
    (work / "cfg.yaml").write_bytes(config)
    (root / "top" / "sibling.txt").write_text("beside the working folder\n")
    for d in ("home", "cache", "empty", "sys-tmp"):
        (root / d).mkdir()
    return work


@contextlib.contextmanager
def _process_state(env: dict[str, str | None], work: Path, tmp: Path) -> Iterator[None]:
    """Environment, working folder, temp folder and signal handlers, restored afterwards."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_tmp = tempfile.tempdir
    saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGALRM)}
    torch = sys.modules.get("torch")
    saved_threads = torch.get_num_threads() if torch is not None else None
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.chdir(work)
        tempfile.tempdir = str(tmp)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in saved_handlers.items():
            signal.signal(s, h)
        os.chdir(saved_cwd)
        tempfile.tempdir = saved_tmp
        os.environ.clear()
        os.environ.update(saved_env)
        torch = sys.modules.get("torch")
        if torch is not None and saved_threads is not None and torch.get_num_threads() != saved_threads:
            torch.set_num_threads(saved_threads)  # `train --threads N` sets it for the whole process


def _on_alarm(signum: int, frame: object) -> None:
    raise _OverBudget()


def run_cli(argv: list[str], env: dict[str, str | None], config: bytes, fake_root: Path, base: Path) -> Result:
    root = Path(tempfile.mkdtemp(prefix="ex-", dir=base))
    try:
        return _run_in(root, argv, env, config, fake_root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for p in root.parent.glob(f".{root.name}*"):  # a stray lock or partial folder beside the root
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()


def _run_in(root: Path, argv: list[str], env: dict[str, str | None], config: bytes, fake_root: Path) -> Result:
    work = _make_user_files(root, config)
    argv = [a.replace(ROOT_TOKEN, str(root)) for a in argv]
    full_env: dict[str, str | None] = {k: (v.replace(ROOT_TOKEN, str(root)) if v is not None else None)
                                       for k, v in env.items()}
    full_env |= {"HOME": str(root / "home"), "IMAC_CACHE_DIR": str(root / "cache"), "IMAC_OFFLINE": "1",
                 "MPLCONFIGDIR": str(root / "cache" / "mpl"), "IMAC_DEBUG": None, "IMAC_JOBS": "1"}
    skip = {root / "cache"}
    before = _snapshot(root, skip)
    models_before = _snapshot(fake_root / "checkpoints")
    repo_before = _repo_state()
    res = Result(argv)
    out, err = io.StringIO(), io.StringIO()
    with _process_state(full_env, work, root / "sys-tmp"):
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, budget_s())
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                imac.cli.main(argv)
            res.code = 0
        except SystemExit as e:
            res.code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except _OverBudget:
            res.over_budget = True
        except BaseException as e:
            res.uncaught = e
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        allowed = _allowed_outputs(argv, work) if res.code == 0 else []
    res.stdout, res.stderr = out.getvalue(), err.getvalue()
    after = _snapshot(root, skip)
    res.changes = [c for c in _diff(before, after) if not _inside(root / c.split(" ", 1)[1], allowed)]
    res.models_changed = _diff(models_before, _snapshot(fake_root / "checkpoints"))
    res.repo_changed = _diff(repo_before, _repo_state())
    if res.models_changed:  # put the copy back, so that every example starts from the same models
        shutil.rmtree(fake_root / "checkpoints")
        shutil.copytree(SHIPPED, fake_root / "checkpoints", symlinks=True)
    return res


PROTECTED = [SHIPPED, REPO / "src" / "imac" / "devices" / "neuron_fit_default.json", REPO / "runs",
             REPO / "out"]


def _repo_state() -> dict[str, Any]:
    """What a fuzzed command could write in the repository itself: the shipped
    checkpoints, the shipped neuron fit, runs/ and out/.  Compared per example only, since other
    people edit the working tree while the tier runs."""
    state: dict[str, Any] = {}
    for p in PROTECTED:
        if p.is_dir():
            state |= {f"{p.name}/{k}": v for k, v in _snapshot(p).items()}
        elif p.exists():
            state[p.name] = (p.stat().st_size, p.stat().st_mtime_ns)
    return state


def _inside(path: Path, allowed: list[Path]) -> bool:
    return any(path == a or a in path.parents or path in a.parents for a in allowed)


def _allowed_outputs(argv: list[str], work: Path) -> list[Path]:
    """Absolute paths a successful command may create or replace: its output option's value (or
    default), with a checkpoint's JSON beside it (computed in the example's cwd and HOME)."""
    cmd = _command_of(argv)
    if cmd is None:
        return []
    out: list[Path] = []
    for p in cmd.params:
        if p.name not in OUTPUT_PARAMS:
            continue
        value = _option_value(argv, p.opts)
        if value is None and p.default is not None:
            value = str(p.default)
        if value:
            target = Path(os.path.abspath(os.path.expanduser(value)))
            real = Path(os.path.realpath(target.parent)) / target.name  # through a symbolic link
            out += [target, target.with_suffix(".json"), real, real.with_suffix(".json")]
    return out


def _command_of(argv: list[str]) -> Any:
    if argv[:1] == ["--spice-timeout"]:
        argv = argv[2:]
    words = [a for a in argv if not a.startswith("-")]
    for path, cmd in COMMANDS:
        if tuple(words[: len(path)]) == path:
            return cmd
    return None


def _option_value(argv: list[str], opts: list[str]) -> str | None:
    value = None
    for i, a in enumerate(argv):
        for o in opts:
            if a == o and i + 1 < len(argv):
                value = argv[i + 1]
            elif a.startswith(o + "="):
                value = a[len(o) + 1 :]
    return value


def check(res: Result) -> None:
    """The property of one run (assertion messages name what broke)."""
    with contextlib.suppress(InvalidArgument):  # outside a hypothesis test (the plain tests)
        note(f"argv={res.argv!r} code={res.code} over_budget={res.over_budget}\nstderr tail: {res.stderr[-1500:]!r}")
        event("over budget" if res.over_budget else f"exit {res.code}")
    if res.uncaught is not None:
        raise AssertionError(f"uncaught {type(res.uncaught).__name__} from main({res.argv!r}): {res.uncaught}")
    assert not res.models_changed, f"shipped checkpoints changed: {res.models_changed}"
    assert not res.repo_changed, f"the repository changed: {res.repo_changed}"
    assert not res.changes, f"files outside the output changed (exit {res.code}): {res.changes[:10]}"
    if res.over_budget:
        return
    assert "Traceback" not in res.stderr, f"traceback on stderr: {res.stderr[-2000:]}"
    assert res.code in (0, 2), f"exit code {res.code}; stderr: {res.stderr[-600:]!r}"
    if res.code == 2:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert lines, f"exit 2 without a message (argv={res.argv!r}, stdout starts {res.stdout[:80]!r})"
        if lines[0].startswith("Usage: imac") and "Commands" in res.stderr:
            return  # `imac` or a group alone: its help, exit 2
        last = lines[-1]
        assert last.startswith("error:"), f"last stderr line is not 'error: ...': {last[:300]!r}"
        problem = one_line_problem(last)
        assert problem is None, f"{problem}: {last[:300]!r}"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(a folder for the examples, a fake repository root with a copy of the shipped checkpoints).

    Checkpoints are looked up (and a calibration without --out is written) in the fake root's
    checkpoints/, so that no fuzzed command can touch the repository's committed checkpoints."""
    base = tmp_path_factory.mktemp("fuzz-cli")
    fake_root = base / "repo"
    shutil.copytree(SHIPPED, fake_root / "checkpoints", symlinks=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(imac.nn.checkpoint, "shipped_dir", lambda: fake_root / "checkpoints")
        with contextlib.suppress(ImportError, AttributeError):
            import imac.devices.neuron_curve as nc

            mp.setattr(nc, "DEFAULT_FIT_PATH", base / "neuron_fit_default.json")
        yield base, fake_root


_ids = itertools.count()


def _run_and_check(fuzz_base: tuple[Path, Path], argv: list[str], env: dict[str, Any], config: bytes) -> Result:
    base, fake_root = fuzz_base
    res = run_cli(argv, env, config, fake_root, base)
    with known_failures_skipped(KNOWN_SIGNATURES):
        check(res)
    return res


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=COMMAND_IDS)
@fuzz_settings(5)
@given(data=st.data(), env=environments, config=config_file_bytes)
def test_cli_command_grammar(fuzz_base: tuple[Path, Path], index: int, data: st.DataObject,
                             env: dict[str, Any], config: bytes) -> None:
    argv = data.draw(argument_vectors(index), label="argv")
    _run_and_check(fuzz_base, argv, env, config)


@fuzz_settings(15)
@given(argv=random_vectors, env=environments, config=config_file_bytes)
def test_cli_random_words(fuzz_base: tuple[Path, Path], argv: list[str], env: dict[str, Any],
                          config: bytes) -> None:
    _run_and_check(fuzz_base, argv, env, config)


# -- failures found by this tier, fixed in 2f7c535: kept as regression cases ----------------------

# Failures already reported and not yet fixed: signature (a regular expression over "ExceptionType:
# message" of the violation) -> what it is.  An example that hits one is discarded, so that the
# fuzzer keeps looking for new failures; its reproducer goes below with xfail(strict=True).
KNOWN_SIGNATURES: dict[str, str] = {}

_NO_SPICE = {"IMAC_NGSPICE": "{root}/no-ngspice"}


def _case(what: str, argv: list[str], env: dict[str, Any] | None = None, config: bytes = b"") -> Any:
    return pytest.param(argv, env or _NO_SPICE, config, id=what)


REGRESSION_ARGV: list[Any] = [
    # `imac` or a group alone printed its help on stdout and an empty line on stderr (exit 2)
    *[_case(f"{' '.join(g) or 'imac'} alone: help on stderr", g) for g in ([], ["neuron"], ["bench"], ["config"])],
    # 'v_dd: <401 digits>': internal error (exit 70), OverflowError in the spec tree's derivations
    _case("config show, v_dd of 401 digits", ["config", "show", "-c", "cfg.yaml"], None,
          ("v_dd: 1" + "0" * 400).encode()),
    # train --threads -1: internal error (exit 70), RuntimeError from torch.set_num_threads
    _case("train --threads -1", ["train", "mlp-mnist", "--threads", "-1", "--limit-train", "1", "--limit-test", "1",
                                 "--epochs", "1", "--out", "new.pt"]),
    # bench xbar --seed -1: internal error (exit 70), ValueError from numpy's default_rng (seeds are 0..2^31-1 now)
    _case("bench xbar --seed -1", ["bench", "xbar", "--spice-batch", "0", "--seed", "-1", "--config", "paper",
                                   "--json"]),
    # spice-check --rows 2: internal error (exit 70), IndexError in the loaded-neuron solve (a partition holding
    # the bias line alone; tests/test_hardware.py keeps the circuit case, ngspice agreed to 3.7 mV on LeNet)
    # train: torch._dynamo (imported by the optimizer) made $TMPDIR/torchinductor_$USER; the CLI now points it
    # into imac's cache (tests/test_reliability.py keeps the subprocess case: in-process, torch is imported once)
]


@pytest.mark.parametrize(("argv", "env", "config"), REGRESSION_ARGV)
def test_regression_cli(fuzz_base: tuple[Path, Path], argv: list[str], env: dict[str, Any],
                           config: bytes) -> None:
    check(run_cli(argv, env, config, fuzz_base[1], fuzz_base[0]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
