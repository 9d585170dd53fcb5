"""A sweep's study file: its schema (pydantic, unknown keys refused) and its expansion into points.

A study names a base spec (a preset or a spec file), overrides of it, one or more models, the
metrics to compute, and the axes::

    name: subarray-x-gain
    base: paper                       # preset name or spec file (relative to the study file)
    overrides: {variation.kind: uniform}
    models: [lenet-mnist]
    metrics: {fidelity: circuit, images: 2000, head: software, cpu_imac: {precision: fp32}}
    combine: cross                    # cross (every combination) or zip (axes side by side)
    axes:
      - {path: subarray.rows, values: [16, 32, 64]}                       # list
      - {path: amplifier.max_gain, range: {start: 20, stop: 100, step: 20}}  # inclusive range
      - {path: mtj.ra_ohm_m2, logrange: {start: 5.0e-12, stop: 2.0e-11, num: 4}}
      - {random: {n: 8, seed: 0, bounds: {mtj.tmr: [1.0, 3.0]}}}          # joint uniform sample
      - {lhs: {n: 8, seed: 0, bounds: {mtj.tmr: [1.0, 3.0], mtj.ra_ohm_m2: [5.0e-12, 2.0e-11]},
               log: [mtj.ra_ohm_m2]}}                                      # Latin hypercube
    monte_carlo: {seeds: 50, entropy: 2024, path: variation.seed}
    objectives: {accuracy: max, energy_j: min, area_m2: min}               # for the report

A design is one combination of axis values; each design runs once per Monte Carlo seed (or once
without ``monte_carlo``).  The seeds come from :class:`numpy.random.SeedSequence`: seed ``r`` of
every design is ``SeedSequence(entropy, spawn_key=(r,))`` (common random numbers: designs are
compared on the same draws), or with ``common_seeds: false`` a sequence keyed by the design too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imac.config import ImacSpec, load_spec, read_yaml, with_overrides
from imac.errors import ConfigError

METRIC_COLUMNS = ("accuracy", "power_w", "latency_s", "energy_j", "area_m2", "energy_saving",
                  "cpu_only_energy_j", "cpu_imac_energy_j")
MAX_POINTS = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeAxis(_Strict):
    """``start, start+step, ...`` up to and including ``stop`` (integers stay integers)."""

    start: float
    stop: float
    step: float = Field(gt=0)


class LogRangeAxis(_Strict):
    """``num`` values from ``start`` to ``stop`` (both included), evenly spaced in log."""

    start: float = Field(gt=0)
    stop: float = Field(gt=0)
    num: int = Field(ge=1, le=100_000)


class SampleAxis(_Strict):
    """``n`` joint samples of the fields in ``bounds`` (dotted path -> [low, high]); ``log``
    lists the fields sampled evenly in log; ``integer`` the fields rounded to integers."""

    n: int = Field(ge=1, le=100_000)
    seed: int = Field(0, ge=0)
    bounds: dict[str, tuple[float, float]]
    log: list[str] = []
    integer: list[str] = []

    @model_validator(mode="after")
    def _check(self) -> SampleAxis:
        if not self.bounds:
            raise ValueError("bounds: give at least one field: [low, high]")
        for p, (lo, hi) in self.bounds.items():
            if not hi > lo:
                raise ValueError(f"bounds.{p}: high ({hi}) must exceed low ({lo})")
            if p in self.log and lo <= 0:
                raise ValueError(f"bounds.{p}: a log-sampled field needs low > 0")
        for p in [*self.log, *self.integer]:
            if p not in self.bounds:
                raise ValueError(f"{p!r} is listed in log/integer but has no bounds")
        return self


class Axis(_Strict):
    """One axis: a field (``path``) with ``values``, a ``range`` or a ``logrange``; or a joint
    ``random`` / ``lhs`` sample of several fields."""

    path: str | None = None
    values: list[Any] | None = None
    set: list[dict[str, Any]] | None = Field(None, description="joint assignments: a list of {path: value, ...}")
    range: RangeAxis | None = None
    logrange: LogRangeAxis | None = None
    random: SampleAxis | None = None
    lhs: SampleAxis | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Axis:
        kinds = [k for k in ("values", "set", "range", "logrange", "random", "lhs") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of values, set, range, logrange, random, lhs "
                             f"(got {', '.join(kinds) or 'none'})")
        if kinds[0] in ("values", "range", "logrange") and not self.path:
            raise ValueError(f"{kinds[0]} needs a path (the dotted spec field it sets)")
        if kinds[0] in ("random", "lhs", "set") and self.path:
            raise ValueError(f"{kinds[0]} names its fields itself, not in path")
        if self.set is not None and (not self.set or any(set(d) != set(self.set[0]) or not d for d in self.set)):
            raise ValueError("set: give a list of mappings, each with the same non-empty fields")
        if self.values is not None and not self.values:
            raise ValueError("values: give at least one value")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("values", "set", "range", "logrange", "random", "lhs") if getattr(self, k) is not None)

    @property
    def paths(self) -> list[str]:
        sample = self.random or self.lhs
        if self.set is not None:
            return list(self.set[0])
        return list(sample.bounds) if sample is not None else [str(self.path)]

    def expand(self) -> list[dict[str, Any]]:
        """The axis's points: one mapping path -> value each."""
        if self.values is not None:
            return [{str(self.path): v} for v in self.values]
        if self.set is not None:
            return [dict(d) for d in self.set]
        if self.range is not None:
            r = self.range
            n = math.floor((r.stop - r.start) / r.step + 1e-9) + 1
            if n < 1:
                raise ConfigError(f"range of {self.path}: stop ({r.stop:g}) is below start ({r.start:g})")
            if n > MAX_POINTS:
                raise ConfigError(f"range of {self.path}: {n} values is too many")
            ints = all(float(v).is_integer() for v in (r.start, r.step))
            vals = [r.start + i * r.step for i in range(n)]
            return [{str(self.path): round(v) if ints else float(v)} for v in vals]
        if self.logrange is not None:
            lr = self.logrange
            return [{str(self.path): float(v)} for v in np.geomspace(lr.start, lr.stop, lr.num)]
        sample = self.random or self.lhs
        assert sample is not None
        d = len(sample.bounds)
        if self.lhs is not None:
            from scipy.stats import qmc

            unit = qmc.LatinHypercube(d=d, seed=sample.seed).random(sample.n)
        else:
            unit = np.random.default_rng(sample.seed).random((sample.n, d))
        out = []
        for row in unit:
            point: dict[str, Any] = {}
            for u, (p, (lo, hi)) in zip(row, sample.bounds.items(), strict=True):
                if p in sample.log:
                    v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
                else:
                    v = lo + u * (hi - lo)
                point[p] = round(v) if p in sample.integer else float(v)
            out.append(point)
        return out


class CpuImacMetric(_Strict):
    """CPU-IMAC energy saving: the whole binary head on IMAC (sign drivers, ADC read-out) against
    the network on the spec's CPU core alone."""

    precision: Literal["fp32", "int8"] = "fp32"
    energy_model: Literal["bottom-up", "top-down"] = "bottom-up"


class Metrics(_Strict):
    """What each point computes: accuracy at ``fidelity`` on the first ``images`` test images
    (None = the whole test set), the IMAC cost of the head, optionally the CPU-IMAC saving."""

    fidelity: Literal["ideal", "behavioral", "circuit"] = "circuit"
    images: int | None = Field(1000, ge=1)
    head: Literal["software", "calibrated"] = Field(
        "software", description="software: the software-trained binary head (any design); calibrated: the "
        "hardware-aware calibrated head, which exists only for the design it was made for")
    cpu_imac: CpuImacMetric | None = None


class MonteCarlo(_Strict):
    seeds: int = Field(ge=1, le=100_000)
    entropy: int = Field(0, ge=0)
    path: str = "variation.seed"
    common_seeds: bool = True


class Search(_Strict):
    """A multi-objective search over the axes instead of a grid (Optuna; optional): ``trials``
    points asked ``batch`` at a time and run through the sweep's executor; the study's
    ``objectives`` are its objectives.  ``values`` / ``set`` axes are categorical, ``range`` /
    ``logrange`` / ``random`` / ``lhs`` axes continuous within their bounds."""

    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    trials: int = Field(ge=1, le=100_000)
    batch: int = Field(4, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    population: int = Field(8, ge=2, le=10_000, description="NSGA-II population size")


class Study(_Strict):
    """A study file (see the module doc)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: str = "paper"
    overrides: dict[str, Any] = {}
    models: list[str] = Field(min_length=1)
    metrics: Metrics = Metrics()
    axes: list[Axis] = []
    combine: Literal["cross", "zip"] = "cross"
    monte_carlo: MonteCarlo | None = None
    objectives: dict[str, Literal["min", "max"]] = {"accuracy": "max", "energy_j": "min", "area_m2": "min"}
    report: dict[str, str] = Field({}, description="x / y: the axis paths of the heat map and band plots")
    search: Search | None = None

    @model_validator(mode="after")
    def _check(self) -> Study:
        for m in self.objectives:
            if m not in METRIC_COLUMNS:
                raise ValueError(f"objectives: unknown metric {m!r}; known: {', '.join(METRIC_COLUMNS)}")
        paths = [p for a in self.axes for p in a.paths]
        dup = sorted({p for p in paths if paths.count(p) > 1})
        if dup:
            raise ValueError(f"axes: {', '.join(dup)} set by more than one axis")
        if self.monte_carlo is not None and self.monte_carlo.path in paths:
            raise ValueError(f"monte_carlo.path {self.monte_carlo.path} is also an axis")
        for k, v in self.report.items():
            if k not in ("x", "y"):
                raise ValueError(f"report: unknown key {k!r} (x, y)")
            if v not in paths:
                raise ValueError(f"report.{k}: {v!r} is not an axis of this study ({', '.join(paths) or 'none'})")
        if self.search is not None:
            if self.monte_carlo is not None or len(self.models) != 1 or not self.axes or not self.objectives:
                raise ValueError("search: needs axes, objectives and one model, and no monte_carlo")
        cpu = [m for m in self.objectives if m in ("energy_saving", "cpu_only_energy_j", "cpu_imac_energy_j")]
        if cpu and self.metrics.cpu_imac is None:
            raise ValueError(f"objectives: {', '.join(cpu)} needs metrics.cpu_imac")
        return self


@dataclass
class Point:
    """One unit of work: a design (axis values) of a model at one Monte Carlo seed."""

    index: int
    design: int
    model: str
    mc: int
    seed: int | None
    values: dict[str, Any]  # axis path -> value
    spec: ImacSpec
    key: str = ""
    design_key: str = ""


@dataclass
class Plan:
    study: Study
    source: str
    base: ImacSpec
    points: list[Point]
    axis_paths: list[str]
    study_hash: str
    notes: list[str] = field(default_factory=list)


def _field_error(err: ValidationError, source: str) -> ConfigError:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return ConfigError(f"{source}: " + "; ".join(parts))


def load_study(path: str | Path) -> tuple[Study, Path]:
    """Read and validate a study file; a bad key or value is refused with its dotted path."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file not found: {path}")
    data = read_yaml(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study file is a mapping (name, base, models, metrics, axes, ...)")
    try:
        return Study.model_validate(data), p
    except ValidationError as err:
        raise _field_error(err, str(path)) from None


def _leaf_paths(tree: Any, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.add(prefix + k)
            out |= _leaf_paths(v, prefix + k + ".")
    return out


def _check_path(path: str, known: set[str], where: str) -> None:
    if path not in known:
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        near = sorted(k.rsplit(".", 1)[-1] for k in known if k.rsplit(".", 1)[0] == parent and k != parent
                      and ("." in k) == bool(parent))
        hint = f"; fields of {parent or 'the spec'}: {', '.join(near)}" if near else ""
        raise ConfigError(f"{where}: unknown spec field {path!r}{hint}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def point_key(spec: ImacSpec, model: str, metrics: Metrics) -> str:
    """What names a point's result: the resolved spec (its seed included), the model and the
    metrics computed."""
    return _digest({"spec": spec.model_dump(mode="json"), "model": model, "metrics": metrics.model_dump(mode="json")})


def mc_seed(mc: MonteCarlo, r: int, design_values: dict[str, Any]) -> int:
    """Seed ``r`` of a design (a 32-bit integer from :class:`numpy.random.SeedSequence`)."""
    if mc.common_seeds:
        ss = np.random.SeedSequence(mc.entropy, spawn_key=(r,))
    else:
        d = int(_digest(design_values)[:8], 16)
        ss = np.random.SeedSequence(mc.entropy, spawn_key=(d, r))
    return int(ss.generate_state(1, np.uint32)[0])


def _with_seed(spec: ImacSpec, path: str, seed: int) -> ImacSpec:
    """``spec`` with a Monte Carlo seed set: a validated copy of the one section when the seed is
    ``variation.seed`` (nothing derives from it), else through :func:`with_overrides`."""
    if path == "variation.seed":
        from imac.config import VariationSpec

        variation = VariationSpec.model_validate({**spec.variation.model_dump(), "seed": seed})
        return spec.model_copy(update={"variation": variation})
    return with_overrides(spec, {path: seed}, source="monte_carlo")


def plan_study(study: Study, source: str | Path = "<study>") -> Plan:
    """Every point of the study, each spec resolved and validated before any work: a bad axis
    value is refused naming its path and value; an unknown model name is refused too."""
    from imac.nn.models import get_spec

    src = Path(source)
    base_ref = study.base
    candidate = src.parent / base_ref
    if not Path(base_ref).exists() and candidate.is_file():
        base_ref = str(candidate)
    base = load_spec(base_ref)
    known = _leaf_paths(base.model_dump(mode="json"))
    for p in study.overrides:
        _check_path(p, known, f"{source}: overrides")
    for i, ax in enumerate(study.axes):
        for p in ax.paths:
            _check_path(p, known, f"{source}: axes.{i}")
    if study.monte_carlo is not None:
        _check_path(study.monte_carlo.path, known, f"{source}: monte_carlo.path")
    for name in study.models:
        try:
            get_spec(name)
        except ConfigError as err:
            raise ConfigError(f"{source}: models: {err}") from None
    try:
        base = with_overrides(base, dict(study.overrides), source=f"{source}: overrides") if study.overrides else base
    except ConfigError as err:
        raise ConfigError(str(err)) from None
    expanded = [ax.expand() for ax in study.axes]
    if study.search is not None:  # the search space: each axis value validated on its own
        combos = [part for parts in expanded for part in parts]
    elif study.combine == "zip" and expanded:
        lengths = {len(e) for e in expanded}
        if len(lengths) > 1:
            raise ConfigError(f"{source}: combine: zip needs axes of one length (got "
                              f"{', '.join(str(len(e)) for e in expanded)})")
        combos = [dict(kv for part in parts for kv in part.items()) for parts in zip(*expanded, strict=True)]
    else:
        combos = [dict(kv for part in parts for kv in part.items()) for parts in itertools.product(*expanded)]
    n_seeds = study.monte_carlo.seeds if study.monte_carlo else 1
    total = len(combos) * n_seeds * len(study.models)
    if total > MAX_POINTS:
        raise ConfigError(f"{source}: {total} points is more than {MAX_POINTS}; split the study")
    points: list[Point] = []
    seen: dict[str, int] = {}
    notes: list[str] = []
    axis_paths = [p for ax in study.axes for p in ax.paths]
    for d, values in enumerate(combos):
        try:
            design_spec = with_overrides(base, values, source="axis") if values else base
        except ConfigError as err:
            shown = ", ".join(f"{k} = {v!r}" for k, v in values.items())
            raise ConfigError(f"{source}: design {d} ({shown}) is refused: {str(err).removeprefix('axis: ')}") from None
        for r in range(n_seeds):
            seed = None
            spec = design_spec
            if study.monte_carlo is not None:
                seed = mc_seed(study.monte_carlo, r, values)
                try:
                    spec = _with_seed(design_spec, study.monte_carlo.path, seed)
                except ConfigError as err:
                    raise ConfigError(f"{source}: monte_carlo.path {study.monte_carlo.path} = {seed}: {err}") from None
            for model in study.models:
                key = point_key(spec, model, study.metrics)
                if key in seen:
                    if study.search is None:
                            notes.append(f"design {d} seed {r} of {model} equals point {seen[key]}: computed once")
                    continue
                pt = Point(len(points), d, model, r, seed, dict(values), spec, key,
                           _digest({"design": design_spec.model_dump(mode="json"), "model": model}))
                seen[key] = pt.index
                points.append(pt)
    study_hash = _digest({"study": study.model_dump(mode="json"), "base": base.model_dump(mode="json")})
    return Plan(study, str(source), base, points, axis_paths, study_hash, notes)
