"""Analysis of a sweep folder: the Pareto front over the study's objectives, Monte Carlo
statistics per design, tables and plots (``imac sweep-report DIR``; also written at the end of
a sweep).  ``compute_*`` return data; ``plot_*(..., ax=None)`` return the axes (Agg backend).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from imac.io import atomic_write_text

PERCENTILE = 5.0


def load_table(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of a sweep folder (from its point files: always current) and its state."""
    from imac.experiments.sweep import STATE_FILE, check_sweep_folder, read_points

    folder = check_sweep_folder(folder)
    state = json.loads((folder / STATE_FILE).read_text())
    table = read_points(folder)
    rows = table.to_pylist() if table is not None else []
    rows.sort(key=lambda r: (r["design"], r["model"], r["mc"]))
    return rows, state


def compute_mc_stats(rows: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
    """Per design and model: how many seeds finished, accuracy mean, std, 5th percentile, min,
    and the mean of every cost metric."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault((r["design"], r["model"]), []).append(r)
    out = []
    for (design, model), rs in sorted(groups.items()):
        acc = np.array([r["accuracy"] for r in rs], dtype=float)
        s: dict[str, Any] = {"design": design, "model": model, **{p: rs[0][p] for p in axes}, "seeds": len(rs),
                             "accuracy_mean": float(acc.mean()),
                             "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                             f"accuracy_p{PERCENTILE:g}": float(np.percentile(acc, PERCENTILE)),
                             "accuracy_min": float(acc.min())}
        for m in ("energy_j", "latency_s", "power_w", "area_m2", "energy_saving"):
            vals = [r[m] for r in rs if r.get(m) is not None]
            s[m] = float(np.mean(vals)) if vals else None
        out.append(s)
    return out


def pareto_mask(values: np.ndarray, goals: list[str]) -> np.ndarray:
    """Which rows of ``values`` (n, k) no other row dominates (every objective as good, one better);
    ``goals``: "min" or "max" per column."""
    v = np.where(np.array(goals) == "max", -values, values)
    n = len(v)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not np.all(np.isfinite(v[i])):
            keep[i] = False
            continue
        dominated = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        keep[i] = not bool(np.any(dominated))
    return keep


def compute_pareto(stats: list[dict[str, Any]], objectives: dict[str, str]) -> list[dict[str, Any]]:
    """The designs on the Pareto front (accuracy as its Monte Carlo mean), each row marked."""
    if not stats:
        return []
    cols = [("accuracy_mean" if m == "accuracy" else m) for m in objectives]
    vals = np.array([[np.nan if s.get(c) is None else s[c] for c in cols] for s in stats], dtype=float)
    mask = pareto_mask(vals, list(objectives.values()))
    return [s | {"pareto": bool(k)} for s, k in zip(stats, mask, strict=True)]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(marked: list[dict[str, Any]], x: str, y: str, goals: tuple[str, str] = ("min", "max"),
                ax: Any = None) -> Any:
    """Scatter of every design on (x, y): the designs on the front over all the study's
    objectives in red, and the front of these two objectives alone as a staircase."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 4.5))[1]
    xs = np.array([np.nan if s.get(x) is None else s[x] for s in marked], dtype=float)
    ys = np.array([np.nan if s.get(y) is None else s[y] for s in marked], dtype=float)
    front = np.array([s["pareto"] for s in marked])
    ax.scatter(xs[~front], ys[~front], s=18, c="0.6", label="dominated designs")
    ax.scatter(xs[front], ys[front], s=36, c="C3", label="Pareto front (all objectives)", zorder=3)
    two = pareto_mask(np.column_stack([xs, ys]), list(goals))
    order = np.argsort(xs[two])
    ax.step(xs[two][order], ys[two][order], where="post", c="C0", lw=1.2, label=f"front of {x} and {y} alone")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_bands(stats: list[dict[str, Any]], x: str, group: str | None = None, ax: Any = None) -> Any:
    """Accuracy against axis ``x``: mean, +-1 std band and 5th percentile, one line per ``group``
    value (and per model)."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 4.5))[1]
    keys = sorted({(s["model"], s.get(group) if group else None) for s in stats}, key=str)
    for i, (model, g) in enumerate(keys):
        ss = sorted([s for s in stats if s["model"] == model and (group is None or s.get(group) == g)],
                    key=lambda s: s[x])
        xs = np.array([s[x] for s in ss], dtype=float)
        mean = np.array([s["accuracy_mean"] for s in ss]) * 100
        std = np.array([s["accuracy_std"] for s in ss]) * 100
        p5 = np.array([s[f"accuracy_p{PERCENTILE:g}"] for s in ss]) * 100
        label = model + (f", {group} = {g:g}" if group and isinstance(g, (int, float)) else f", {g}" if group else "")
        ax.plot(xs, mean, "o-", c=f"C{i}", label=f"{label}: mean")
        ax.fill_between(xs, mean - std, mean + std, color=f"C{i}", alpha=0.2)
        ax.plot(xs, p5, "--", c=f"C{i}", lw=1, label=f"{label}: {PERCENTILE:g}th percentile")
    ax.set_xlabel(x)
    ax.set_ylabel("accuracy, % (band: mean +- 1 std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_heatmap(stats: list[dict[str, Any]], x: str, y: str, value: str = "accuracy_mean", ax: Any = None) -> Any:
    """A 2-D grid of designs (axes ``x`` and ``y``) coloured by ``value``."""
    plt = _plt()
    ax = ax or plt.subplots(figsize=(6, 4.5))[1]
    xs = sorted({s[x] for s in stats})
    ys = sorted({s[y] for s in stats})
    grid = np.full((len(ys), len(xs)), np.nan)
    for s in stats:
        if s.get(value) is not None:
            grid[ys.index(s[y]), xs.index(s[x])] = s[value]
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(grid[i, j]):
                light = grid[i, j] > np.nanmin(grid) + 0.6 * (np.nanmax(grid) - np.nanmin(grid))
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=8, color="k" if light else "w")
    plt.colorbar(im, ax=ax, label=value)
    return ax


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else str(r[c]).replace(",", ";") for c in cols))
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _md_table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def _save(ax: Any, path: Path) -> None:
    import io

    from imac.io import atomic_write_bytes

    fig = ax.figure
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(folder: str | Path) -> dict[str, Any]:
    """report.md, mc_stats.csv, pareto.csv and the plots of a sweep folder (each file atomic)."""
    folder = Path(folder)
    rows, state = load_table(folder)
    study = state["study_resolved"]
    axes: list[str] = state["axes"]
    objectives: dict[str, str] = study.get("objectives") or {}
    total = (study.get("search") or {}).get("trials") or len(state["points"])
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    stats = compute_mc_stats(rows, axes)
    marked = compute_pareto(stats, objectives) if objectives else [s | {"pareto": False} for s in stats]
    atomic_write_text(folder / "mc_stats.csv", _csv(marked))
    front = [s for s in marked if s["pareto"]]
    atomic_write_text(folder / "pareto.csv", _csv(front))
    plots = []
    num_axes = [p for p in axes if all(isinstance(s.get(p), (int, float)) for s in stats)] if stats else []
    obj = [("accuracy_mean" if m == "accuracy" else m) for m in objectives]
    if len(obj) >= 2 and stats:
        x, y = obj[1], obj[0]
        goals = list(objectives.values())
        _save(plot_pareto(marked, x, y, (goals[1], goals[0])), folder / "pareto.png")
        plots.append(("Pareto front", "pareto.png"))
    rep = study.get("report") or {}
    bx = rep.get("x") or (num_axes[0] if num_axes else None)
    by = rep.get("y") or next((p for p in num_axes if p != bx), None)
    if bx and stats and bx in num_axes:
        models = sorted({s["model"] for s in stats})
        fig_axes = _plt().subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)[1][0]
        for model, ax in zip(models, fig_axes, strict=True):  # one panel per model: their scales differ
            plot_bands([s for s in stats if s["model"] == model], bx, by if by in axes else None, ax=ax)
            ax.set_title(model)
        _save(fig_axes[0], folder / "accuracy_bands.png")
        plots.append(("Accuracy vs " + bx, "accuracy_bands.png"))
    if bx and by and stats and len({s[bx] for s in stats}) > 1 and len({s[by] for s in stats}) > 1 \
            and bx in num_axes and by in num_axes and len({s["model"] for s in stats}) == 1:
        _save(plot_heatmap(stats, bx, by), folder / "heatmap_accuracy.png")
        plots.append(("Accuracy over " + bx + " x " + by, "heatmap_accuracy.png"))
    lines = [f"# Sweep {study['name']}", "", study.get("description", "") or "", "",
             f"* points: {total} planned, {len(ok)} finished, {len(failed)} failed, "
             f"{total - len(ok) - len(failed)} not run",
             f"* models: {', '.join(study['models'])}; metrics: {json.dumps(study['metrics'])}",
             f"* axes: {', '.join(axes) or 'none'} ({study['combine']})",
             f"* Monte Carlo: {json.dumps(study.get('monte_carlo'))}", ""]
    if ok:
        times = [r["point_s"] for r in ok if r.get("point_s") is not None]
        lines += [f"* seconds per point: median {np.median(times):.3g}, total {np.sum(times):.4g} (worker time)", ""]
    cols = ["model", *axes, "seeds", "accuracy_mean", "accuracy_std", f"accuracy_p{PERCENTILE:g}",
            "energy_j", "latency_s", "area_m2"]
    if any(s.get("energy_saving") is not None for s in stats):
        cols.append("energy_saving")
    lines += ["## Per design (Monte Carlo statistics)", "", *_md_table(marked, [*cols, "pareto"]), ""]
    if objectives:
        lines += [f"## Pareto front ({', '.join(f'{m}: {g}' for m, g in objectives.items())})", "",
                  *_md_table(front, cols), ""]
    for title, f in plots:
        lines += [f"![{title}]({f})", ""]
    if failed:
        lines += ["## Failed points", "", *_md_table(failed, ["design", "model", "mc", *axes, "error"]), ""]
    atomic_write_text(folder / "report.md", "\n".join(lines))
    return {"rows": len(rows), "ok": len(ok), "failed": len(failed), "designs": len(stats), "pareto": len(front),
            "plots": [f for _, f in plots]}
