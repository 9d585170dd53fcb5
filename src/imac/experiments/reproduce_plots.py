"""Plots of `imac reproduce` (matplotlib figures from the results dict; PNG bytes for atomic writes)."""

from __future__ import annotations

import io
from typing import Any

GROUPS = ("cpu conv trunk", "cpu fc", "interface", "imac arrays", "imac drivers", "imac amplifiers", "imac neurons")
COLORS = ("#4c72b0", "#8fb3de", "#937860", "#c44e52", "#f2a09f", "#dd8452", "#55a868")
LABELS = {"lenet-mnist": "LeNet-5\nMNIST", "vgg11-cifar10": "VGG-11 x0.5\n(trained)",
          "vgg11-full-cifar10": "VGG-11\nfull*", "vgg13-full-cifar10": "VGG-13\nfull*",
          "vgg16-full-cifar10": "VGG-16\nfull*"}
PUBLISHED_SAVING = {"lenet-mnist": 6.5, "vgg11-cifar10": 10.0, "vgg11-full-cifar10": 10.0,
                    "vgg13-full-cifar10": 10.0, "vgg16-full-cifar10": 10.0}


def png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _models(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n, "systems") for n in r["systems"]] + [(n, "energy_studies") for n in r["energy_studies"]]


def _main(r: dict[str, Any], key: str, name: str, precision: str = "fp32", core: str = "cortex-a76",
          em: str = "bottom-up") -> dict[str, Any]:
    return r[key][name][precision][core][em]


def energy_breakdown(r: dict[str, Any]) -> Any:
    """Stacked energy per inference, CPU-only vs CPU-IMAC, per CNN (% of its CPU-only energy)."""
    import matplotlib.pyplot as plt

    models = _models(r)
    fig, ax = plt.subplots(figsize=(1.9 * len(models) + 2, 4.8))
    xs, ticks = [], []
    seen: set[str] = set()
    for i, (name, key) in enumerate(models):
        s = _main(r, key, name)
        total = s["energy_cpu_only_j"]
        for j, (which, label) in enumerate((("by_group_cpu_only", "CPU"), ("by_group_cpu_imac", "CPU+IMAC"))):
            x = 3 * i + j
            bottom = 0.0
            for g, c in zip(GROUPS, COLORS, strict=True):
                v = 100 * s[which].get(g, 0.0) / total
                ax.bar(x, v, bottom=bottom, color=c, width=0.8, label=None if g in seen else g)
                seen.add(g)
                bottom += v
            xs.append(x)
            ticks.append(label)
        ax.text(3 * i + 0.5, 103, f"{LABELS.get(name, name)}\nsaving {100 * s['energy_saving']:.1f} %",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, ticks, fontsize=8)
    ax.set_ylim(0, 135)
    ax.set_ylabel("energy per inference (% of CPU-only)")
    ax.set_title("Energy breakdown, Cortex-A76 fp32, bottom-up CPU energy (*: random weights, energy only)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(fontsize=7, loc="lower center", ncol=len(GROUPS), bbox_to_anchor=(0.5, 0.0))
    return fig


def accuracy_vs_subarray(r: dict[str, Any]) -> Any:
    """LeNet head accuracy vs subarray size, partitioned and not."""
    import matplotlib.pyplot as plt

    rows = r["subarray_sweep"]["rows"]
    part = [s for s in rows if s["partitioned"]]
    whole = [s for s in rows if not s["partitioned"]]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    fid = r["subarray_sweep"]["fidelity"]
    ax.plot([s["size"] for s in part], [100 * s["accuracy"] for s in part], "o-", label=f"partitioned ({fid})")
    for s in part:
        ax.annotate(f"{s['n_subarrays']} tiles", (s["size"], 100 * s["accuracy"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    if whole:
        ax.axhline(100 * whole[0]["accuracy"], color="C3", ls="--",
                   label=f"one array per layer, no partitioning ({100 * whole[0]['accuracy']:.1f} %)")
    ax.axhline(100 * part[0]["accuracy_software"], color="grey", ls=":", label="software binary head")
    ax.set_xscale("log", base=2)
    ax.set_xticks([s["size"] for s in part], [f"{s['size']}x{s['size']}" for s in part])
    ax.set_xlabel("subarray size")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"lenet-mnist FC head 400-120-84-10, software-trained, {part[0]['n_images']} test images",
                 fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.margins(y=0.15)
    fig.tight_layout()
    return fig


def savings_vs_core(r: dict[str, Any]) -> Any:
    """Energy saving per CNN for each core and precision, under both CPU energy models."""
    import matplotlib.pyplot as plt

    models = _models(r)
    combos = [(c, p) for c in ("cortex-a53", "cortex-a76") for p in ("fp32", "int8")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    width = 0.8 / len(combos)
    for ax, em in zip(axes, ("bottom-up", "top-down"), strict=True):
        for j, (core, precision) in enumerate(combos):
            vals = [100 * _main(r, key, name, precision, core, em)["energy_saving"] for name, key in models]
            ax.bar([i + (j - 1.5) * width for i in range(len(models))], vals, width=width,
                   label=f"{core} {precision}")
        for i, (name, _) in enumerate(models):
            ax.plot([i - 0.45, i + 0.45], [PUBLISHED_SAVING[name]] * 2, "k--", lw=1,
                    label="published" if i == 0 else None)
        ax.set_xticks(range(len(models)), [LABELS.get(n, n) for n, _ in models], fontsize=8)
        ax.set_title(f"CPU energy {em}", fontsize=9)
        ax.axhline(0, color="black", lw=0.5)
    axes[0].set_ylabel("energy saving of CPU-IMAC (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
