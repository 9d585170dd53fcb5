"""Design-space sweeps and Monte Carlo: one study, many design points, on one machine or a Dask
cluster, with results that survive interruptions.

Each point is a pure function of (spec, model, seed) -> one result row (:func:`run_point`). The
same function runs through joblib processes (the default; ``jobs`` workers) or a Dask
``distributed`` client (a ``LocalCluster`` or an existing scheduler).  The heavy inputs of a
model (its checkpoint, the test-set features through its CPU trunk, the operating-point inputs)
are made once per process and kept in a module-level cache (joblib: once per worker process);
with Dask they are made once on the client and scattered to every worker.

The sweep directory (``--out``) holds::

    sweep.json         the study, its hash, the plan (one line per point: key, design, seed, values)
    study.yaml         the study file as given
    points/<key>.parquet  one row per finished point, written atomically as it finishes
    results.parquet    every row, rewritten atomically at the end (and by sweep-report)
    report.md, pareto.csv, mc_stats.csv, *.png   the analysis (:mod:`imac.experiments.sweep_report`)

A point's key is the hash of its resolved spec, model and metrics, so running the same study
into the same folder skips every finished point and resumes after an interruption (Ctrl-C, a
killed process, a lost worker); failed points are recorded with their error and retried by the
next run.  An existing folder that holds another study is refused.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imac.errors import ConfigError, OutputError, OutputExistsError
from imac.experiments.sweep_study import METRIC_COLUMNS, Plan, Point, Study, load_study, plan_study
from imac.io import MARKER, atomic_write_bytes, atomic_write_text, check_output_target

POINTS_DIR = "points"
STATE_FILE = "sweep.json"
RESULTS_FILE = "results.parquet"
TIMING_COLUMNS = ("build_s", "run_s", "point_s", "worker", "finished_unix_s")


# -- shared inputs (once per sweep) -------------------------------------------------------------
@dataclass
class SharedInputs:
    """What every point of one model needs and no point changes, made once by the process that
    runs the sweep and sent to the workers (joblib: with each task, the arrays memory-mapped;
    Dask: scattered once to every worker).  Plain numpy: a worker never loads a checkpoint or
    imports torch, except for the CPU-IMAC metric, which prices the model's own layers."""

    name: str
    head: str
    checkpoint: str
    layers: list[Any]  # imac.hardware.mapping.BinaryLayer of the deployed head
    curve: Any  # the neuron curve the head was trained with (the ideal fidelity's)
    x: np.ndarray  # first IMAC layer inputs of the test images (int8 when they are all +-1)
    labels: np.ndarray
    x_op: np.ndarray  # operating-point inputs (training images) of the circuit fidelity
    model: Any = None  # the torch model, only when the CPU-IMAC metric needs its workload


_CACHE: dict[tuple[Any, ...], SharedInputs] = {}
_CACHE_LOCK = threading.Lock()


def inputs_key(point_model: str, study: Study) -> tuple[Any, ...]:
    m = study.metrics
    return (point_model, m.head, m.images, m.cpu_imac is not None)


def shared_inputs(name: str, study: Study, spec: Any = None) -> SharedInputs:
    """The shared inputs of a model for a study, made once in this process (a module-level cache)."""
    key = inputs_key(name, study)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _make_inputs(name, study, spec)
        return _CACHE[key]


def _make_inputs(name: str, study: Study, spec: Any) -> SharedInputs:
    from imac.hardware.network import binary_layers, imac_inputs, load_model, operating_point_inputs, select_head
    from imac.nn.data import load_dataset

    m = study.metrics
    if m.head == "calibrated":
        if spec is None:
            raise ConfigError("the calibrated head needs the design it was calibrated for")
        model, path, _ = select_head(name, spec, spec.subarray.rows, calibrated=True)
    else:
        model, path, _ = load_model(name)
    test = load_dataset(model.dataset, "test").subset(m.images)
    x = imac_inputs(model, test.images)
    if np.all(np.abs(x) == 1):
        x = x.astype(np.int8)  # 8x smaller to send; exact
    return SharedInputs(name, m.head, str(path), binary_layers(model), model.head.neurons[0].curve, x,
                        np.asarray(test.labels), operating_point_inputs(model),
                        model if m.cpu_imac is not None else None)


# -- one point -----------------------------------------------------------------------------------
@dataclass
class Task:
    """What a worker needs for one point (small and picklable; the shared inputs travel apart)."""

    key: str
    model: str
    spec: Any  # ImacSpec
    study: Study


def evaluate_point(spec: Any, inputs: SharedInputs, study: Study) -> dict[str, Any]:
    """The bare engine call of one point: build the head at the study's fidelity, run the test
    features, price it (and the CPU-IMAC system when asked).  Metrics only, no bookkeeping."""
    from imac.hardware.engine import build_head

    m = study.metrics
    t0 = time.perf_counter()
    head = build_head(inputs.layers, spec, m.fidelity, x_op=inputs.x_op,
                      curve=inputs.curve if m.fidelity == "ideal" else None)
    t1 = time.perf_counter()
    x = np.asarray(inputs.x, dtype=float)
    outs = head.run(x)
    acc = head.accuracy(x, inputs.labels, outs)
    cost = head.cost(outs)
    row: dict[str, Any] = {"accuracy": acc, "power_w": float(cost.power_w), "latency_s": float(cost.latency_s),
                           "energy_j": float(cost.energy_j), "area_m2": float(cost.area_m2)}
    if m.cpu_imac is not None:
        from imac.hardware.mapping import partition_counts
        from imac.system.cpu_imac import cpu_imac_cost, cpu_only_cost

        model = inputs.model
        sizes = list(model.fc_layer_sizes())
        segments = partition_counts(sizes[0], sizes[1], spec.subarray.rows, spec.subarray.cols)[1]
        c = cpu_only_cost(model, spec.cpu, m.cpu_imac.precision, m.cpu_imac.energy_model)
        s = cpu_imac_cost(model, spec.cpu, m.cpu_imac.precision, cost, len(sizes) - 1, segments, "sign",
                          "adc", spec.interface, m.cpu_imac.energy_model)
        row |= {"cpu_only_energy_j": c.energy_j, "cpu_imac_energy_j": s.energy_j,
                "energy_saving": 1.0 - s.energy_j / c.energy_j}
    row["build_s"] = t1 - t0
    row["run_s"] = time.perf_counter() - t1
    return row


def run_point(task: Task, inputs: SharedInputs) -> dict[str, Any]:
    """One point -> one row (metrics, or the error that stopped it): the function every
    executor runs."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": task.key, "status": "ok", "error": None}
    try:
        row |= evaluate_point(task.spec, inputs, task.study)
    except Exception as err:  # recorded, the sweep goes on
        row |= {"status": "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=8)}
    row["point_s"] = time.perf_counter() - t0
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    row["finished_unix_s"] = time.time()
    return row


# -- executors -----------------------------------------------------------------------------------
def parse_dask(value: str | None) -> tuple[str, int | str] | None:
    """``local``, ``local:N`` or ``tcp://HOST:PORT`` (also tls://) -> (kind, workers | address)."""
    if value is None:
        return None
    v = value.strip()
    if v == "local" or v.startswith("local:"):
        n = v.partition(":")[2] or "2"
        if not n.isdigit() or not 1 <= int(n) <= 1024:
            raise ConfigError(f"--dask {value!r}: local:N needs N workers from 1 to 1024")
        return ("local", int(n))
    if v.startswith(("tcp://", "tls://")) and ":" in v.split("://", 1)[1]:
        return ("address", v)
    raise ConfigError(f"--dask {value!r}: give local, local:N or tcp://HOST:PORT of a running scheduler")


# fault injection for the tests: the worker running the point with this key dies at once (as from
# the out-of-memory killer or a crash in native code)
KILL_POINT_ENV = "IMAC_SWEEP_KILL_POINT"


def _point_in_worker(task: Task, inputs: SharedInputs) -> dict[str, Any]:
    if os.environ.get(KILL_POINT_ENV) == task.key:
        os._exit(137)
    return run_point(task, inputs)


def _worker_died(task: Task, err: BaseException) -> dict[str, Any]:
    return {"key": task.key, "status": "failed", "point_s": None, "worker": None, "finished_unix_s": time.time(),
            "error": f"the worker process died running this point ({type(err).__name__}: out of memory, or a "
                     "crash in native code)"}


def _joblib_results(tasks: list[Task], jobs: int, shared: dict[tuple[Any, ...], SharedInputs]
                    ) -> Iterator[dict[str, Any]]:
    """Rows of ``tasks`` as they finish.  A worker process that dies takes down joblib's whole
    pool, and which point killed it is unknown: the points not finished yet are then run one
    per pool, so the one that kills its worker is recorded as failed and the others go on."""
    if jobs == 1:
        for t in tasks:
            yield run_point(t, shared[inputs_key(t.model, t.study)])
        return
    from joblib import Parallel, delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    left = {t.key: t for t in tasks}
    try:
        with Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered", batch_size=1) as par:
            for row in par(delayed(_point_in_worker)(t, shared[inputs_key(t.model, t.study)]) for t in tasks):
                left.pop(row["key"], None)
                yield row
        return
    except TerminatedWorkerError:
        pass
    for t in list(left.values()):  # one point per pool: a death is that point's
        try:
            with Parallel(n_jobs=2, backend="loky", batch_size=1) as par:
                (row,) = par([delayed(_point_in_worker)(t, shared[inputs_key(t.model, t.study)])])
        except TerminatedWorkerError as err:
            row = _worker_died(t, err)
        yield row


@contextmanager
def executor(jobs: int, dask: tuple[str, int | str] | None, shared: dict[tuple[Any, ...], SharedInputs],
             say: Callable[[str], None]) -> Iterator[Callable[[list[Task]], Iterator[dict[str, Any]]]]:
    """A function that runs a batch of tasks and yields their rows as they finish: joblib
    processes, or a Dask client (started once for all batches, shared inputs scattered once)."""
    if dask is None:
        yield lambda tasks: _joblib_results(tasks, jobs, shared)
        return
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--dask needs Dask distributed: pip install 'dask[distributed]'") from None
    kind, arg = dask
    cluster = None
    if kind == "local":
        import logging

        cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        try:
            client = Client(str(arg), timeout=30)
        except OSError as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {arg}: {err}") from None
    futures: list[Any] = []

    def run(tasks: list[Task]) -> Iterator[dict[str, Any]]:
        batch = [client.submit(run_point, t, scattered[inputs_key(t.model, t.study)], key=f"point-{t.key}",
                               pure=False) for t in tasks]
        futures.extend(batch)
        for fut in as_completed(batch):
            try:
                yield fut.result()
            except Exception as err:  # a lost worker: recorded as a failed point
                key = str(fut.key).removeprefix("point-")
                yield {"key": key, "status": "failed", "error": f"{type(err).__name__}: {err}", "point_s": None,
                       "worker": None, "finished_unix_s": time.time()}

    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        say(f"dask: {n_workers} workers ({client.dashboard_link or 'no dashboard'})")
        scattered = {k: client.scatter(v, broadcast=True) for k, v in shared.items()}
        yield run
    finally:
        client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()


# -- the table -----------------------------------------------------------------------------------
def _point_columns(pt: Point, plan: Plan) -> dict[str, Any]:
    cols: dict[str, Any] = {"key": pt.key, "study": plan.study.name, "model": pt.model, "design": pt.design,
                            "design_key": pt.design_key, "mc": pt.mc, "seed": pt.seed}
    for p in plan.axis_paths:
        cols[p] = pt.values.get(p)
    return cols


def _axis_types(plan: Plan) -> dict[str, str]:
    out = {}
    for p in plan.axis_paths:
        vals = [pt.values.get(p) for pt in plan.points]
        num = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v is not None)
        out[p] = "float" if num else "string"
    return out


def _schema(plan: Plan) -> Any:
    import pyarrow as pa

    fields = [("key", pa.string()), ("study", pa.string()), ("model", pa.string()), ("design", pa.int64()),
              ("design_key", pa.string()), ("mc", pa.int64()), ("seed", pa.int64())]
    for p, t in _axis_types(plan).items():
        fields.append((p, pa.float64() if t == "float" else pa.string()))
    fields += [("status", pa.string()), ("error", pa.string()), ("traceback", pa.string())]
    fields += [(m, pa.float64()) for m in METRIC_COLUMNS]
    fields += [("build_s", pa.float64()), ("run_s", pa.float64()), ("point_s", pa.float64()),
               ("worker", pa.string()), ("finished_unix_s", pa.float64()), ("spec", pa.string()),
               ("versions", pa.string()), ("git_revision", pa.string())]
    return pa.schema(fields)


def _versions() -> str:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("imac", "numpy", "scipy", "torch", "pyarrow", "joblib", "dask", "distributed"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return json.dumps(out, sort_keys=True)


def _row_for(pt: Point, plan: Plan, result: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    types = _axis_types(plan)
    row = _point_columns(pt, plan)
    for p, t in types.items():
        v = row[p]
        row[p] = None if v is None else (float(v) if t == "float" else (v if isinstance(v, str) else json.dumps(v)))
    for k in ("status", "error", "traceback", *METRIC_COLUMNS, *TIMING_COLUMNS, "build_s", "run_s"):
        row[k] = result.get(k)
    row["spec"] = json.dumps(pt.spec.model_dump(mode="json"), sort_keys=True)
    row |= provenance
    return row


def write_point(folder: Path, row: dict[str, Any], schema: Any) -> None:
    """One finished point as its own Parquet file, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([row], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(folder / POINTS_DIR / f"{row['key']}.parquet", buf.getvalue())


def read_points(folder: Path) -> Any:
    """Every point file of a sweep folder as one table (None when there are none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(folder) / POINTS_DIR).glob("*.parquet"))
    if not files:
        return None
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (OSError, pa.ArrowInvalid):
            continue  # cannot happen with atomic writes; skipped rather than trusted
    return pa.concat_tables(tables, promote_options="default") if tables else None


def write_results(folder: Path) -> Any:
    """The consolidated ``results.parquet`` (sorted by design, model, seed), written atomically."""
    import pyarrow.parquet as pq

    table = read_points(folder)
    if table is None:
        return None
    table = table.sort_by([("design", "ascending"), ("model", "ascending"), ("mc", "ascending")])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(Path(folder) / RESULTS_FILE, buf.getvalue())
    return table


# -- the sweep directory -------------------------------------------------------------------------
def _prepare_folder(out: Path, plan: Plan, study_text: str, overwrite: bool, say: Callable[[str], None]) -> Path:
    """Create ``out`` for this study, or resume it (same study), or refuse (another study, a
    folder imac did not write); ``overwrite`` discards an imac folder's results."""
    target = check_output_target(out, overwrite=True) if Path(out).exists() else check_output_target(out)
    state = target / STATE_FILE
    if target.exists():
        old = None
        if state.is_file():
            try:
                old = json.loads(state.read_text())
            except (OSError, ValueError):
                old = None
        same = old is not None and old.get("study_hash") == plan.study_hash
        if same and not overwrite:
            say(f"resuming the sweep in {target}")
            return target
        if not overwrite:
            what = f"another study ({old.get('study')!r})" if old else "no sweep of this study"
            raise OutputExistsError(f"{out!s} holds {what}; choose another --out, or pass --overwrite to discard "
                                    "its results and start this study there")
        aside = target.parent / f".{target.name}.imac-old-{os.getpid()}"
        os.replace(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
        say(f"--overwrite: discarded the earlier results in {target}")
    (target / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / MARKER, json.dumps({"status": "sweep", "pid": os.getpid(),
                                                   "started_unix_s": time.time()}))
    atomic_write_text(target / "study.yaml", study_text)
    atomic_write_text(state, json.dumps({
        "study": plan.study.name, "study_hash": plan.study_hash, "source": plan.source,
        "study_resolved": plan.study.model_dump(mode="json"), "axes": plan.axis_paths,
        "points": [{"key": p.key, "design": p.design, "model": p.model, "mc": p.mc, "seed": p.seed,
                    "values": p.values} for p in plan.points]}, indent=1, default=str))
    return target


def done_keys(folder: Path) -> tuple[set[str], set[str]]:
    """(keys of finished points, keys of failed points) found in a sweep folder."""
    import pyarrow.parquet as pq

    ok: set[str] = set()
    failed: set[str] = set()
    for f in (Path(folder) / POINTS_DIR).glob("*.parquet"):
        try:
            status = pq.read_table(f, columns=["status"]).column("status")[0].as_py()
        except Exception:
            continue
        (ok if status == "ok" else failed).add(f.stem)
    return ok, failed


@dataclass
class SweepResult:
    folder: Path
    total: int
    computed: int
    skipped: int
    failed: int
    seconds: float


def run_sweep(study_path: str | Path, out: str | Path, jobs: int = 1, dask: str | None = None,
              overwrite: bool = False, progress: bool = True, say: Callable[[str], None] | None = None,
              report: bool = True, stop_after: int | None = None) -> SweepResult:
    """Run (or resume) a study into ``out``; see the module doc.  ``stop_after``: stop (as if
    interrupted) after that many points were written (tests)."""
    from imac.io import _TargetLock
    from imac.provenance import git_revision

    say = say or (lambda msg: None)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1")
    dask_target = parse_dask(dask)
    study, path = load_study(study_path)
    plan = plan_study(study, path)  # every point validated before any work
    for note in plan.notes:
        say(note)
    out_path = Path(out)
    check_output_target(out_path, overwrite=True) if out_path.exists() else check_output_target(out_path)
    target = Path(os.path.abspath(out_path))
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = _TargetLock(target)
    lock.acquire()
    try:
        folder = _prepare_folder(out_path, plan, path.read_text(), overwrite, say)
        return _run(plan, folder, jobs, dask_target, progress, say, report, stop_after, git_revision())
    finally:
        lock.release()


def _run_search(plan: Plan, folder: Path, jobs: int, dask: tuple[str, int | str] | None, progress: bool,
                say: Callable[[str], None], revision: str | None) -> tuple[int, int, int, int]:
    """The study's Optuna search through the same executor and table (:mod:`.sweep_search`)."""
    from imac.experiments.sweep_search import run_search

    assert plan.study.search is not None
    schema = _schema(plan)
    provenance = {"versions": _versions(), "git_revision": revision}
    model = plan.study.models[0]
    shared = {inputs_key(model, plan.study): shared_inputs(model, plan.study, plan.base)}
    table = read_points(folder)
    done = {r["key"]: r for r in (table.to_pylist() if table is not None else []) if r["status"] == "ok"}
    bar = None
    if progress:
        from imac.progress import progress_bar

        bar = progress_bar(total=plan.study.search.trials, desc=plan.study.name, unit="trial")
    counts = {"failed": 0}

    def write(pt: Point, res: dict[str, Any]) -> None:
        write_point(folder, _row_for(pt, plan, res, provenance), schema)

    def tick(res: dict[str, Any]) -> None:
        counts["failed"] += res.get("status") != "ok"
        if bar is not None:
            bar.set_postfix(failed=counts["failed"], refresh=False)
            bar.update(1)

    try:
        with executor(jobs, dask, shared, say) as results_of:
            computed, reused, failed = run_search(plan, folder, results_of, write, done, say, tick)
    finally:
        if bar is not None:
            bar.close()
    return plan.study.search.trials, computed, reused, failed


def _run(plan: Plan, folder: Path, jobs: int, dask: tuple[str, int | str] | None, progress: bool,
         say: Callable[[str], None], report: bool, stop_after: int | None, revision: str | None) -> SweepResult:
    t0 = time.perf_counter()
    if plan.study.search is not None:
        total, computed, reused, failed = _run_search(plan, folder, jobs, dask, progress, say, revision)
        write_results(folder)
        if report:
            from imac.experiments.sweep_report import write_report

            write_report(folder)
        return SweepResult(folder, total, computed, reused, failed, time.perf_counter() - t0)
    ok, _ = done_keys(folder)
    todo = [p for p in plan.points if p.key not in ok]
    skipped = len(plan.points) - len(todo)
    if skipped:
        say(f"{skipped} of {len(plan.points)} points already done: skipped")
    schema = _schema(plan)
    provenance = {"versions": _versions(), "git_revision": revision}
    by_key = {p.key: p for p in plan.points}
    tasks = [Task(p.key, p.model, p.spec, plan.study) for p in todo]
    computed = failed = 0
    bar = None
    if progress:
        from imac.progress import progress_bar

        bar = progress_bar(total=len(plan.points), initial=skipped, desc=plan.study.name, unit="pt")
    try:
        if tasks:
            if plan.study.metrics.head == "calibrated":
                check_calibrated_design(plan)
            shared: dict[tuple[Any, ...], SharedInputs] = {}
            for t in tasks:  # made once here, sent to the workers
                k = inputs_key(t.model, plan.study)
                if k not in shared:
                    say(f"{t.model}: test-set features ({plan.study.metrics.images or 'all'} images)")
                    shared[k] = shared_inputs(t.model, plan.study, t.spec)
            with ExitStack() as stack:
                results = stack.enter_context(executor(jobs, dask, shared, say))(tasks)
                stack.callback(getattr(results, "close", lambda: None))  # stop pending tasks first
                try:
                    for res in results:
                        pt = by_key[res["key"]]
                        write_point(folder, _row_for(pt, plan, res, provenance), schema)
                        computed += 1
                        if res.get("status") != "ok":
                            failed += 1
                            say(f"point {pt.index} ({pt.model}, {pt.values}, seed {pt.seed}) failed: "
                                f"{res.get('error')}")
                        if bar is not None:
                            bar.set_postfix(done=skipped + computed - failed, failed=failed,
                                            remaining=len(tasks) - computed, refresh=False)
                            bar.update(1)
                        if stop_after is not None and computed >= stop_after:
                            raise KeyboardInterrupt(f"stopped after {computed} points")
                except KeyboardInterrupt:
                    say(f"interrupted: the {computed} points finished in this run are kept in {folder / POINTS_DIR}; "
                        "run the same command again to resume")
                    raise
    finally:
        if bar is not None:
            bar.close()
    write_results(folder)
    if report:
        from imac.experiments.sweep_report import write_report

        write_report(folder)
    atomic_write_text(folder / MARKER, json.dumps({"status": "complete" if not failed else "complete-with-failures",
                                                   "pid": os.getpid(), "finished_unix_s": time.time()}))
    return SweepResult(folder, len(plan.points), computed, skipped, failed, time.perf_counter() - t0)


def check_calibrated_design(plan: Plan) -> None:
    """A calibrated head exists for one design: refuse a study whose points change that design
    (the MTJ, wires, V_DD, rows, ...), before any work.  Variation and faults are test conditions
    of the design and may change."""
    from imac.hardware.network import head_design

    seen: dict[str, dict[str, str]] = {}
    for p in plan.points:
        design = head_design(p.spec, p.spec.subarray.rows)
        seen.setdefault(json.dumps(design, sort_keys=True), design)
        if len(seen) > 1:
            a, b = list(seen.values())[:2]
            changed = [k for k in a if a[k] != b.get(k)]
            raise ConfigError(f"metrics.head: calibrated: a calibrated head is made for one design, and this study's "
                              f"points change {', '.join(changed)}; use head: software (or keep those fixed)")


def check_sweep_folder(folder: str | Path) -> Path:
    p = Path(folder)
    if not (p / STATE_FILE).is_file():
        raise OutputError(f"{folder!s} is not a sweep folder (no {STATE_FILE}); run `imac sweep STUDY.yaml --out "
                          f"{folder!s}` first")
    return p


__all__ = [
    "SharedInputs",
    "SweepResult",
    "Task",
    "check_sweep_folder",
    "done_keys",
    "evaluate_point",
    "load_study",
    "parse_dask",
    "plan_study",
    "read_points",
    "run_point",
    "run_sweep",
    "shared_inputs",
    "write_results",
]
