"""Multi-objective search over a study's axes (issue 12, point 5; optional: needs ``optuna``).

For spaces too large to grid: Optuna's NSGA-II (or TPE, or random) sampler asks ``batch`` points
at a time; each is a design (spec) like a grid point, run by the sweep's own executor (joblib or
Dask, :func:`imac.experiments.sweep.run_point`) and written to the same table, one Parquet file
per point keyed by its spec hash.  The sampler is told each point's objectives (the study's
``objectives``); a failed point is told as failed.  Rerunning the study into the same folder
reuses every finished point the seeded sampler proposes again (no recomputation), so an
interrupted search resumes; a changed sampler history (e.g. a point that failed before and now
succeeds) may lead it elsewhere, reusing what matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imac.config import with_overrides
from imac.errors import ConfigError
from imac.experiments.sweep_study import Axis, Plan, Point, Study, point_key


def _sampler(study: Study) -> Any:
    import optuna

    s = study.search
    assert s is not None
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population, seed=s.seed)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed)
    return optuna.samplers.RandomSampler(seed=s.seed)


def suggest(trial: Any, axis: Axis) -> dict[str, Any]:
    """The values a trial proposes for one axis (path -> value)."""
    if axis.values is not None:
        choices = list(axis.values)
        i = trial.suggest_categorical(f"{axis.path}#index", list(range(len(choices))))
        return {str(axis.path): choices[i]}
    if axis.set is not None:
        i = trial.suggest_categorical("set:" + ",".join(axis.paths), list(range(len(axis.set))))
        return dict(axis.set[i])
    if axis.range is not None:
        r = axis.range
        if all(float(v).is_integer() for v in (r.start, r.step, r.stop)):
            return {str(axis.path): trial.suggest_int(str(axis.path), int(r.start), int(r.stop), step=int(r.step))}
        return {str(axis.path): trial.suggest_float(str(axis.path), r.start, r.stop)}
    if axis.logrange is not None:
        lr = axis.logrange
        return {str(axis.path): trial.suggest_float(str(axis.path), lr.start, lr.stop, log=True)}
    sample = axis.random or axis.lhs
    assert sample is not None
    out: dict[str, Any] = {}
    for p, (lo, hi) in sample.bounds.items():
        if p in sample.integer:
            out[p] = trial.suggest_int(p, round(lo), round(hi), log=p in sample.log)
        else:
            out[p] = trial.suggest_float(p, lo, hi, log=p in sample.log)
    return out


def run_search(plan: Plan, folder: Path, results_of: Callable[[list[Any]], Any], write: Callable[[Point, dict], None],
               done_rows: dict[str, dict[str, Any]], say: Callable[[str], None],
               tick: Callable[[dict[str, Any]], None]) -> tuple[int, int, int]:
    """Run the study's search; ``results_of(tasks)`` runs tasks on the sweep's executor and
    yields rows; ``write(point, row)`` records one.  Returns (computed, reused, failed)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("search: needs Optuna (pip install optuna)") from None
    from imac.experiments.sweep import Task

    study = plan.study
    s = study.search
    assert s is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = list(study.objectives.items())
    opt = optuna.create_study(directions=["maximize" if g == "max" else "minimize" for _, g in objectives],
                              sampler=_sampler(study))
    model = study.models[0]
    computed = reused = failed = 0
    n = 0
    while n < s.trials:
        trials = [opt.ask() for _ in range(min(s.batch, s.trials - n))]
        n += len(trials)
        pending: dict[str, tuple[Any, Point]] = {}
        for trial in trials:
            values: dict[str, Any] = {}
            for ax in study.axes:
                values |= suggest(trial, ax)
            try:
                spec = with_overrides(plan.base, values, source="search")
            except ConfigError as err:
                opt.tell(trial, state=optuna.trial.TrialState.FAIL)
                say(f"search trial {trial.number} ({values}) refused: {err}")
                failed += 1
                continue
            key = point_key(spec, model, study.metrics)
            pt = Point(trial.number, trial.number, model, 0, None, values, spec, key, key)
            row = done_rows.get(key)
            if row is not None:
                opt.tell(trial, [row[m] for m, _ in objectives])
                reused += 1
                tick(row)
            elif key in pending:  # the same design twice in a batch
                opt.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                pending[key] = (trial, pt)
        tasks = [Task(pt.key, pt.model, pt.spec, study) for _, pt in pending.values()]
        for res in results_of(tasks) if tasks else ():
            trial, pt = pending[res["key"]]
            write(pt, res)
            computed += 1
            vals = [res.get(m) for m, _ in objectives]
            if res.get("status") == "ok" and all(v is not None for v in vals):
                opt.tell(trial, vals)
                done_rows[pt.key] = res
            else:
                opt.tell(trial, state=optuna.trial.TrialState.FAIL)
                failed += 1
            tick(res)
    say(f"search: {n} trials ({computed} computed, {reused} reused, {failed} failed) at {time.strftime('%H:%M:%S')}")
    return computed, reused, failed
