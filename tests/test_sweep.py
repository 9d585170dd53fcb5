"""Sweeps (issue 12): study files, the plan, joblib and Dask giving the same table, resume after a
kill, failed points recorded, careless command lines refused, the report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from imac.errors import ConfigError, ImacError
from imac.experiments.sweep import POINTS_DIR, TIMING_COLUMNS, read_points, run_sweep
from imac.experiments.sweep_study import Study, load_study, plan_study

SMALL = {
    "name": "small",
    "base": "paper",
    "overrides": {"variation.kind": "uniform"},
    "models": ["mlp-mnist"],
    "metrics": {"fidelity": "behavioral", "images": 100},
    "axes": [{"path": "variation.amount", "values": [0.0, 0.1]}, {"path": "subarray.rows", "values": [32, 64]}],
    "monte_carlo": {"seeds": 2, "entropy": 1},
}


def _write(folder: Path, data: dict, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _table(folder: Path) -> list[dict]:
    """The sweep's rows without the columns that legitimately differ between runs."""
    rows = read_points(folder).to_pylist()
    drop = {*TIMING_COLUMNS, "traceback"}
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in rows), key=lambda r: r["key"])


# -- the study file and the plan (no work) -------------------------------------------------------
def test_axis_kinds_and_seeds(tmp_path: Path) -> None:
    study = Study.model_validate({
        "name": "kinds", "models": ["mlp-mnist"],
        "axes": [{"path": "subarray.rows", "range": {"start": 16, "stop": 64, "step": 16}},
                 {"path": "mtj.ra_ohm_m2", "logrange": {"start": 5e-12, "stop": 2e-11, "num": 3}},
                 {"lhs": {"n": 4, "seed": 3, "bounds": {"mtj.tmr": [1.0, 3.0], "v_dd": [0.7, 0.9]}}}],
        "monte_carlo": {"seeds": 3, "entropy": 7}})
    plan = plan_study(study)
    assert len(plan.points) == 4 * 3 * 4 * 3
    rand = Study.model_validate({"name": "r", "models": ["mlp-mnist"], "axes": [
        {"random": {"n": 5, "bounds": {"subarray.rows": [16, 64]}, "integer": ["subarray.rows"]}}]})
    assert all(isinstance(p.values["subarray.rows"], int) for p in plan_study(rand).points)
    assert sorted({p.values["subarray.rows"] for p in plan.points}) == [16, 32, 48, 64]
    ra = sorted({p.values["mtj.ra_ohm_m2"] for p in plan.points})
    assert ra[0] == pytest.approx(5e-12) and ra[-1] == pytest.approx(2e-11) and ra[1] == pytest.approx(1e-11)
    tmr = sorted({p.values["mtj.tmr"] for p in plan.points})
    assert len(tmr) == 4 and 1.0 < tmr[0] < 1.5 and 2.5 < tmr[-1] < 3.0  # one per stratum
    # common random numbers: seed r is the same in every design; the spec carries it
    seeds = {(p.design, p.mc): p.seed for p in plan.points}
    assert all(seeds[(d, r)] == seeds[(0, r)] for d, r in seeds)
    assert len({seeds[(0, r)] for r in range(3)}) == 3
    assert all(p.spec.variation.seed == p.seed for p in plan.points)
    assert len({p.key for p in plan.points}) == len(plan.points)
    assert plan_study(study).study_hash == plan.study_hash  # deterministic
    zipped = plan_study(Study.model_validate({
        "name": "z", "models": ["mlp-mnist"], "combine": "zip",
        "axes": [{"path": "subarray.rows", "values": [16, 32]}, {"path": "amplifier.max_gain", "values": [50, 60]}]}))
    assert [p.values for p in zipped.points] == [{"subarray.rows": 16, "amplifier.max_gain": 50},
                                                 {"subarray.rows": 32, "amplifier.max_gain": 60}]


@pytest.mark.parametrize(("change", "message"), [
    ({"axess": []}, "axess"),
    ({"metrics": {"fidelity": "behavioral", "imagez": 3}}, "metrics.imagez"),
    ({"axes": [{"path": "mtj.tmrr", "values": [1.0]}]}, "unknown spec field 'mtj.tmrr'"),
    ({"axes": [{"path": "mtj.tmr", "values": [1.0, -1.0]}]}, "mtj.tmr = -1.0"),
    ({"axes": [{"path": "mtj.tmr", "range": {"start": 1, "stop": 2, "step": 0}}]}, "axes.0.range.step"),
    ({"axes": [{"path": "mtj.tmr"}]}, "exactly one of"),
    ({"models": ["no-such-net"]}, "no-such-net"),
    ({"monte_carlo": {"seeds": 2, "path": "variation.sed"}}, "variation.sed"),
    ({"objectives": {"energy_saving": "max"}}, "needs metrics.cpu_imac"),
    ({"report": {"x": "mtj.tmr"}}, "report.x"),
    ({"combine": "zip", "axes": [{"path": "mtj.tmr", "values": [1, 2]}, {"path": "v_dd", "values": [0.8]}]},
     "one length"),
])
def test_bad_study_refused_before_work(tmp_path: Path, change: dict, message: str) -> None:
    study = _write(tmp_path / "in", {**SMALL, **change})
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        run_sweep(study, out, progress=False)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["in"]


# -- running ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, mnist_available: bool) -> tuple[Path, list[dict]]:
    """The small study through joblib with 2 processes."""
    root = tmp_path_factory.mktemp("ref")
    study = _write(root, SMALL)
    res = run_sweep(study, root / "out", jobs=2, progress=False)
    assert (res.total, res.computed, res.failed) == (8, 8, 0)
    assert sorted(os.listdir(root)) == ["out", "study.yaml"]  # nothing outside --out
    return root / "out", _table(root / "out")


def test_joblib_table_and_report(reference: tuple[Path, list[dict]]) -> None:
    out, rows = reference
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    by = {(r["variation.amount"], r["subarray.rows"], r["mc"]): r for r in rows}
    assert by[(0.0, 32.0, 0)]["accuracy"] == by[(0.0, 32.0, 1)]["accuracy"]  # no variation: seeds agree
    assert by[(0.0, 32.0, 0)]["area_m2"] > by[(0.0, 64.0, 0)]["area_m2"]  # more, smaller arrays
    assert all(r["energy_j"] > 0 and r["git_revision"] is not None and '"numpy"' in r["versions"] for r in rows)
    for f in ("results.parquet", "report.md", "mc_stats.csv", "pareto.csv", "pareto.png", "accuracy_bands.png",
              "heatmap_accuracy.png", "sweep.json", "study.yaml"):
        assert (out / f).is_file(), f
    text = (out / "report.md").read_text()
    assert "8 planned, 8 finished, 0 failed" in text and "Pareto front" in text


def test_dask_local_cluster_same_table(reference: tuple[Path, list[dict]], tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    study = _write(tmp_path, SMALL)
    res = run_sweep(study, tmp_path / "out", dask="local:2", progress=False, report=False)
    assert (res.computed, res.failed) == (8, 0)
    assert _table(tmp_path / "out") == reference[1]


def test_interrupted_sweep_resumes(reference: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """A sweep interrupted half way (Ctrl-C: SIGINT to the command) exits 130 with one line and
    keeps its finished points, nothing half-written; the rerun computes only what was missing
    and ends with the same table.  (A SIGKILL leaves the same state: each point file appears
    by an atomic rename, and the lock beside --out dies with its process.)"""
    study = _write(tmp_path, SMALL)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "imac.cli", "sweep", str(study), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / POINTS_DIR).glob("*.parquet"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = {f.name: f.stat().st_mtime_ns for f in (out / POINTS_DIR).glob("*.parquet")}
    assert 3 <= len(done) < 8, "the sweep finished before it could be interrupted"
    assert not [f for f in (out / POINTS_DIR).iterdir() if f.suffix != ".parquet"]  # nothing half-written
    res = run_sweep(study, out, progress=False)
    assert (res.skipped, res.computed) == (len(done), 8 - len(done))
    assert all((out / POINTS_DIR / n).stat().st_mtime_ns == t for n, t in done.items())  # not recomputed
    assert _table(out) == reference[1]
    assert sorted(os.listdir(tmp_path)) == ["out", "study.yaml"]  # nothing outside --out, no lock left
    again = run_sweep(study, out, progress=False, report=False)  # everything done: nothing computed
    assert (again.skipped, again.computed) == (8, 0)


def test_a_dying_worker_costs_only_its_point(reference: tuple[Path, list[dict]], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed outright (the out-of-memory killer, a crash in native code) takes down
    joblib's whole pool: the sweep finishes the other points, records that one as failed, and
    the rerun computes it."""
    from joblib.externals.loky import get_reusable_executor

    from imac.experiments.sweep import KILL_POINT_ENV

    study = _write(tmp_path, SMALL)
    victim = plan_study(*load_study(study)).points[2].key
    get_reusable_executor().shutdown(wait=True)  # workers started from here on see the variable
    monkeypatch.setenv(KILL_POINT_ENV, victim)
    res = run_sweep(study, tmp_path / "out", jobs=2, progress=False)
    assert (res.total, res.computed, res.failed) == (8, 8, 1)
    rows = {r["key"]: r for r in _table(tmp_path / "out")}
    assert rows[victim]["status"] == "failed" and "worker process died" in rows[victim]["error"]
    assert [r for r in reference[1] if r["key"] != victim] == [r for k, r in sorted(rows.items()) if k != victim]
    get_reusable_executor().shutdown(wait=True)
    monkeypatch.delenv(KILL_POINT_ENV)
    again = run_sweep(study, tmp_path / "out", jobs=2, progress=False)
    assert (again.skipped, again.computed, again.failed) == (7, 1, 0)
    assert _table(tmp_path / "out") == reference[1]


def test_failing_point_recorded(tmp_path: Path, mnist_available: bool) -> None:
    study = _write(tmp_path, {**SMALL, "axes": [{"path": "neuron.model_card", "values": [None, "/no/such/card.pm"]}]})
    res = run_sweep(study, tmp_path / "out", progress=False)
    assert (res.total, res.computed, res.failed) == (4, 4, 2)
    rows = read_points(tmp_path / "out").to_pylist()
    bad = [r for r in rows if r["status"] != "ok"]
    assert len(bad) == 2 and all("model card not found" in r["error"] and r["accuracy"] is None for r in bad)
    assert all(r["accuracy"] > 0.5 for r in rows if r["status"] == "ok")
    assert "## Failed points" in (tmp_path / "out" / "report.md").read_text()


def test_careless_command_lines(reference: tuple[Path, list[dict]], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from imac.cli.app import main

    monkeypatch.chdir(tmp_path)
    study = _write(tmp_path, SMALL)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")

    def code(*argv: str) -> int:
        try:
            main(list(argv))
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert code("sweep", str(study), "--out", ".") == 2  # the working directory
    assert code("sweep", str(study), "--out", "mine") == 2  # a folder imac did not write
    assert code("sweep", str(study), "--out", "x", "--dask", "udp://nowhere") == 2
    assert code("sweep", "nope.yaml", "--out", "x") == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["mine", "study.yaml"]
    # the reference sweep folder: the same study resumes (nothing to do), another is refused
    import shutil

    shutil.copytree(reference[0], tmp_path / "done")
    assert code("sweep", str(study), "--out", "done", "--no-progress") == 0
    other = _write(tmp_path, {**SMALL, "name": "other"}, "other.yaml")
    with pytest.raises(ImacError, match="holds another study"):
        run_sweep(other, tmp_path / "done", progress=False)
    assert len(list((tmp_path / "done" / POINTS_DIR).glob("*.parquet"))) == 8
    assert code("sweep-report", "done") == 0
    assert code("sweep-report", "mine") == 2


def test_pareto_mask() -> None:
    import numpy as np

    from imac.experiments.sweep_report import pareto_mask

    v = np.array([[0.9, 1.0], [0.8, 0.5], [0.85, 2.0], [0.9, 0.9], [np.nan, 0.1]])
    assert pareto_mask(v, ["max", "min"]).tolist() == [False, True, False, True, False]


def test_load_study_reports_path(tmp_path: Path) -> None:
    p = _write(tmp_path, {**SMALL, "monte_carlo": {"seeds": 0}})
    with pytest.raises(ConfigError, match=r"monte_carlo\.seeds"):
        load_study(p)


def test_search_through_the_same_table(tmp_path: Path, mnist_available: bool) -> None:
    """The optional Optuna search: trials run through the sweep's executor into the same table,
    and a rerun reuses every finished point the seeded sampler proposes again."""
    pytest.importorskip("optuna")
    data = {"name": "search", "models": ["mlp-mnist"], "metrics": {"fidelity": "behavioral", "images": 100},
            "axes": [{"path": "subarray.rows", "values": [16, 32, 64]},
                     {"path": "amplifier.max_gain", "logrange": {"start": 10, "stop": 1000, "num": 2}}],
            "objectives": {"accuracy": "max", "energy_j": "min"},
            "search": {"sampler": "nsga2", "trials": 8, "batch": 4, "population": 4}}
    study = _write(tmp_path, data)
    res = run_sweep(study, tmp_path / "out", progress=False)
    assert res.total == 8 and res.failed == 0 and res.computed + res.skipped == 8 and res.computed >= 2
    rows = read_points(tmp_path / "out").to_pylist()
    assert len(rows) == res.computed and all(10 <= r["amplifier.max_gain"] <= 1000 for r in rows)
    again = run_sweep(study, tmp_path / "out", progress=False, report=False)
    assert (again.computed, again.skipped) == (0, 8)
    with pytest.raises(ConfigError, match="search"):
        run_sweep(_write(tmp_path / "b", {**data, "monte_carlo": {"seeds": 2}}), tmp_path / "out2", progress=False)
