"""The SOT-MRAM sigmoid neuron at transistor level in ngspice, and the fit of its curves.

Circuit (SYSTEM.md section 4): the input z (a difference-amplifier output) is level-shifted by
+V_DD/2 and drives, through an MTJ in the parallel state (R_P), the gate node of a CMOS
inverter; an MTJ in the antiparallel state (R_AP) feeds the inverter output back to that node.
Supplies 0 and V_DD.  The circuit is inverting: a falling sigmoid from ~V_DD to ~0.

:func:`characterize` runs four ngspice analyses and fits :class:`NeuronCurve` to them:

1. DC transfer curve, open circuit, and the supply current (static power);
2. the same sweep with a test current of +-``I_TEST`` drawn from the output, whose difference
   gives the small-signal Thevenin output resistance versus input;
3. the output under resistive loads to ground (how far a real load pulls the curve);
4. a transient step through the transition with a capacitive load: the propagation delay.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from imac.config import NeuronSpec, check_spice_name
from imac.devices.neuron_curve import NeuronCurve
from imac.errors import DataError, SpiceError
from imac.ngspice import find_model_card, include_line, run_ngspice, spice_timeout_s
from imac.provenance import record_data

I_TEST_A = 1e-6  # small-signal test current for the output resistance, A
LOAD_RESISTANCES_OHM = (1e3, 1e4, 1e5)
IV_STEP_V = 0.02  # grid of the output I-V table, V (41 x 81 points: the surface is smooth)


def neuron_elements(spec: NeuronSpec) -> list[str]:
    """The neuron's elements between nodes ``in``, ``out`` and ``vdd`` (level shift, input and
    feedback MTJs, CMOS inverter): the one description of the circuit that the characterization
    netlists and the whole-network netlist both use.  Model names are checked identifiers."""
    nmos, pmos = check_spice_name(spec.nmos_model), check_spice_name(spec.pmos_model)
    return [
        f"vsh sh in DC {spec.shift_v!r}",
        f"rin sh g {spec.r_in_ohm!r}",
        f"rfb out g {spec.r_feedback_ohm!r}",
        f"mp out g vdd vdd {pmos} w={spec.pmos_w_m!r} l={spec.pmos_l_m!r}",
        f"mn out g 0 0 {nmos} w={spec.nmos_w_m!r} l={spec.nmos_l_m!r}",
    ]


def neuron_subckt(spec: NeuronSpec, name: str = "imac_neuron") -> list[str]:
    """The neuron as a subcircuit ``name in out vdd``."""
    return [f".subckt {name} in out vdd", *neuron_elements(spec), f".ends {name}"]


def _header(spec: NeuronSpec, card: Path, title: str) -> list[str]:
    return [f"* imac SOT-MRAM sigmoid neuron: {title}", include_line(card), f"vdd vdd 0 DC {spec.v_dd!r}",
            *neuron_elements(spec)]


def neuron_netlist(spec: NeuronSpec, card: Path, analysis: str, load: str = "") -> str:
    """Netlist of the neuron for one analysis: ``dc``, ``rout`` (nested sweep of a test
    current), ``load:<ohm>`` or ``tran``."""
    lines = _header(spec, card, analysis)
    lo, hi, step = spec.sweep_min_v, spec.sweep_max_v, spec.sweep_step_v
    ctrl = [".control", "set filetype=ascii"]
    if analysis == "dc":
        lines.append("vin in 0 DC 0")
        ctrl += [f"dc vin {lo!r} {hi!r} {step!r}", "write out.raw v(out) i(vdd)"]
    elif analysis == "rout":
        lines += ["vin in 0 DC 0", "itest out 0 DC 0"]
        ctrl += [f"dc vin {lo!r} {hi!r} {step!r} itest {-I_TEST_A!r} {I_TEST_A!r} {I_TEST_A!r}",
                 "write out.raw v(out)"]
    elif analysis == "iv":
        # output held by a voltage source: the current the neuron delivers at every (z, V_out)
        lines += ["vin in 0 DC 0", "vload out 0 DC 0"]
        ctrl += [f"dc vin {lo!r} {hi!r} {IV_STEP_V!r} vload 0 {spec.v_dd!r} {IV_STEP_V!r}",
                 "write out.raw i(vload)"]
    elif analysis.startswith("load:"):
        lines += ["vin in 0 DC 0", f"rload out 0 {float(analysis[5:])!r}"]
        ctrl += [f"dc vin {lo!r} {hi!r} {step!r}", "write out.raw v(out)"]
    elif analysis == "tran":
        z_lo, z_hi = -0.3, 0.3
        lines += [
            f"vin in 0 PWL(0 {z_lo} 20p {z_lo} 21p {z_hi} 300p {z_hi} 301p {z_lo} 600p {z_lo})",
            f"cload out 0 {spec.load_capacitance_f!r}",
        ]
        ctrl += ["tran 0.25p 600p", "write out.raw v(in) v(out)"]
    else:
        raise ValueError(f"unknown neuron analysis {analysis!r}")
    return "\n".join([*lines, *ctrl, "quit", ".endc", ".end"]) + "\n"


def _fit_logistics(z: np.ndarray, v: np.ndarray, terms: int) -> NeuronCurve:
    """Least-squares fit of a sum of ``terms`` falling logistics (soft-L1 start, then L2)."""
    v_hi, v_lo = float(v.max()), float(v.min())
    span = v_hi - v_lo
    centres = np.linspace(z.min(), z.max(), terms + 2)[1:-1] * 0.5
    p0 = [v_lo]
    for c in centres:
        p0 += [span / terms, 10.0, float(c)]

    def model(p: np.ndarray) -> np.ndarray:
        out = np.full_like(z, p[0])
        for k in range(terms):
            a, s, c = p[1 + 3 * k : 4 + 3 * k]
            out += a * 0.5 * (1.0 - np.tanh(0.5 * s * (z - c)))
        return out

    r = least_squares(lambda p: model(p) - v, p0, loss="soft_l1", f_scale=2e-3, max_nfev=20000)
    r = least_squares(lambda p: model(p) - v, r.x, max_nfev=20000)
    p = r.x
    return NeuronCurve(
        offset=float(p[0]),
        amps=tuple(float(p[1 + 3 * k]) for k in range(terms)),
        slopes=tuple(float(p[2 + 3 * k]) for k in range(terms)),
        centres=tuple(float(p[3 + 3 * k]) for k in range(terms)),
        v_dd=0.0,  # filled in by the caller
        fit_max_error_v=float(np.max(np.abs(model(p) - v))),
    )


def _crossing_time(t: np.ndarray, v: np.ndarray, level: float, after: float, rising: bool) -> float:
    idx = np.nonzero(t > after)[0]
    t, v = t[idx], v[idx]
    s = v - level
    hits = np.nonzero((s[:-1] < 0) & (s[1:] >= 0) if rising else (s[:-1] > 0) & (s[1:] <= 0))[0]
    if hits.size == 0:
        raise SpiceError(f"neuron output never crossed {level:.3f} V in the transient run")
    k = hits[0]
    return float(t[k] + (level - v[k]) * (t[k + 1] - t[k]) / (v[k + 1] - v[k]))


@dataclass
class NeuronCharacterization:
    """SPICE curves of the neuron and the behavioural fit to them (SI units)."""

    z_v: np.ndarray
    v_out: np.ndarray
    i_supply_a: np.ndarray
    r_out_ohm: np.ndarray
    v_loaded: dict[float, np.ndarray]
    delay_fall_s: float
    delay_rise_s: float
    curve: NeuronCurve
    spec: NeuronSpec
    model_card: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delay_s(self) -> float:
        """Worst of the rising and falling 50 % propagation delays, s."""
        return max(self.delay_fall_s, self.delay_rise_s)

    @property
    def slope_center(self) -> float:
        """dV_out/dz at z = 0 from the SPICE curve, V/V."""
        return float(np.interp(0.0, self.z_v, np.gradient(self.v_out, self.z_v)))

    def summary(self) -> dict[str, Any]:
        p = self.spec.v_dd * self.i_supply_a
        return {
            "fit_max_error_v": self.curve.fit_max_error_v,
            "fit_terms": len(self.curve.amps),
            "v_out_high": float(self.v_out.max()),
            "v_out_low": float(self.v_out.min()),
            "v_out_at_zero": float(np.interp(0.0, self.z_v, self.v_out)),
            "slope_center": self.slope_center,
            "delay_s": self.delay_s,
            "delay_fall_s": self.delay_fall_s,
            "delay_rise_s": self.delay_rise_s,
            "static_power_w_mean": float(p.mean()),
            "static_power_w_max": float(p.max()),
            "r_out_ohm_center": float(np.interp(0.0, self.z_v, self.r_out_ohm)),
            "r_out_ohm_max": float(self.r_out_ohm.max()),
            "v_out_center_loaded": {
                f"{r:g}": float(np.interp(0.0, self.z_v, v)) for r, v in self.v_loaded.items()
            },
            "sweep_v": [float(self.z_v[0]), float(self.z_v[-1])],
            "model_card": str(self.model_card),
        }


def characterize(
    spec: NeuronSpec | None = None,
    terms: int = 2,
    timeout_s: float | None = None,
) -> NeuronCharacterization:
    """Run the neuron in ngspice (DC, output resistance, loads, transient) and fit its curve."""
    spec = spec or NeuronSpec()
    card = find_model_card(spec.model_card)
    record_data("transistor model card", [card])
    timeout_s = spice_timeout_s(300.0) if timeout_s is None else timeout_s
    dc = run_ngspice(neuron_netlist(spec, card, "dc"), timeout_s=timeout_s)
    z, v = dc["v(v-sweep)"], dc["v(out)"]
    i_supply = -dc["i(vdd)"]  # ngspice reports the current into the source's + terminal
    rout = run_ngspice(neuron_netlist(spec, card, "rout"), timeout_s=timeout_s)
    n = z.size
    vr = rout["v(out)"]
    if vr.size != 3 * n:
        raise SpiceError(f"output-resistance sweep returned {vr.size} points, expected {3 * n}")
    vr = vr.reshape(3, n)  # outer loop: test current -I, 0, +I (current source from out to 0)
    # itest pushes current from node out to ground: +I draws current out of the neuron
    r_out = (vr[0] - vr[2]) / (2 * I_TEST_A)
    loaded = {}
    for r_l in LOAD_RESISTANCES_OHM:
        res = run_ngspice(neuron_netlist(spec, card, f"load:{r_l}"), timeout_s=timeout_s)
        loaded[r_l] = res["v(out)"]
    iv = run_ngspice(neuron_netlist(spec, card, "iv"), timeout_s=timeout_s)
    iv_z = np.arange(spec.sweep_min_v, spec.sweep_max_v + IV_STEP_V / 2, IV_STEP_V)
    iv_v = np.arange(0.0, spec.v_dd + IV_STEP_V / 2, IV_STEP_V)
    i_iv = iv["i(vload)"]
    if i_iv.size != iv_z.size * iv_v.size:
        raise SpiceError(f"I-V sweep returned {i_iv.size} points, expected {iv_z.size * iv_v.size}")
    # ngspice: current into the source's + node flows out of the neuron; outer loop is V_out
    i_out = i_iv.reshape(iv_v.size, iv_z.size).T  # (z, V_out), A delivered by the neuron
    tr = run_ngspice(neuron_netlist(spec, card, "tran"), timeout_s=timeout_s)
    t, vin, vout = tr["time"], tr["v(in)"], tr["v(out)"]
    mid = 0.5 * (float(v.max()) + float(v.min()))
    t_in_rise = _crossing_time(t, vin, 0.0, 0.0, rising=True)
    t_out_fall = _crossing_time(t, vout, mid, t_in_rise - 1e-12, rising=False)
    t_in_fall = _crossing_time(t, vin, 0.0, 250e-12, rising=False)
    t_out_rise = _crossing_time(t, vout, mid, t_in_fall - 1e-12, rising=True)
    fit = _fit_logistics(z, v, terms)
    curve = NeuronCurve(
        offset=fit.offset,
        amps=fit.amps,
        slopes=fit.slopes,
        centres=fit.centres,
        v_dd=spec.v_dd,
        fit_max_error_v=fit.fit_max_error_v,
        table_z_v=tuple(z[::5].tolist()),
        r_out_ohm=tuple(r_out[::5].tolist()),
        i_supply_a=tuple(i_supply[::5].tolist()),
        delay_s=max(t_out_fall - t_in_rise, t_out_rise - t_in_fall),
        iv_z_v=tuple(iv_z.tolist()),
        iv_v_out_v=tuple(iv_v.tolist()),
        iv_i_out_a=tuple(map(tuple, i_out.tolist())),
        meta={"source": "ngspice", "model_card": card.name, "spec": spec.model_dump(mode="json"),
              "key": neuron_key(spec, card, terms)},
    )
    return NeuronCharacterization(
        z_v=z,
        v_out=v,
        i_supply_a=i_supply,
        r_out_ohm=r_out,
        v_loaded=loaded,
        delay_fall_s=t_out_fall - t_in_rise,
        delay_rise_s=t_out_rise - t_in_fall,
        curve=curve,
        spec=spec,
        model_card=card,
    )


def neuron_key(spec: NeuronSpec, card: Path, terms: int = 2) -> str:
    """What a neuron characterization depends on, hashed: the resolved neuron spec (its MTJs,
    supply, transistors, sweeps), the model card's content and the analysis settings."""
    from imac.provenance import file_sha256

    what = {"spec": spec.model_dump(mode="json", exclude={"model_card"}), "card_sha256": file_sha256(card),
            "terms": terms, "iv_step_v": IV_STEP_V, "i_test_a": I_TEST_A, "loads_ohm": list(LOAD_RESISTANCES_OHM)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def neuron_curve(spec: NeuronSpec, terms: int = 2, progress: Any = None) -> NeuronCurve:
    """The fitted curve of this neuron: the shipped fit when it was made for exactly this neuron
    and model card, else a cached characterization (``<cache>/neuron/<key>.json``), else a fresh
    ngspice characterization (a few seconds), cached for the next time.  A curve made for
    another design is never used."""
    from imac.devices.neuron_curve import default_neuron_curve
    from imac.io import cache_dir

    card = find_model_card(spec.model_card)
    key = neuron_key(spec, card, terms)
    shipped = default_neuron_curve()
    if shipped.meta.get("key") == key:
        return shipped
    path = cache_dir() / "neuron" / f"{key}.json"
    if path.is_file():
        try:
            return NeuronCurve.load(path)
        except DataError:
            path.unlink(missing_ok=True)  # a corrupt cache entry is made again
    if progress is not None:
        progress(f"characterizing the neuron in ngspice (design {key}, not in the cache)")
    curve = characterize(spec, terms=terms).curve
    curve.save(path)
    return curve


def plot_characterization(ch: NeuronCharacterization, axes: Any = None) -> Any:
    """SPICE vs fit (top), fit error (middle), output resistance and supply current (bottom)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(3, 1, figsize=(6.4, 8.5), sharex=True)
    ax0, ax1, ax2 = axes
    fit = ch.curve(ch.z_v)
    ax0.plot(ch.z_v, ch.v_out, "k-", lw=2, label="ngspice (open circuit)")
    ax0.plot(ch.z_v, fit, "r--", lw=1.2, label=f"fit, {len(ch.curve.amps)} logistics")
    for r_l, v in ch.v_loaded.items():
        ax0.plot(ch.z_v, v, lw=0.8, alpha=0.7, label=f"ngspice, {r_l / 1e3:g} kohm load")
    ax0.set_ylabel("V_out (V)")
    ax0.legend(fontsize=8)
    ax0.set_title("SOT-MRAM sigmoid neuron")
    ax1.plot(ch.z_v, 1e3 * (fit - ch.v_out), "r-")
    ax1.set_ylabel("fit - SPICE (mV)")
    ax1.axhline(0, color="grey", lw=0.5)
    ax2.plot(ch.z_v, ch.r_out_ohm / 1e3, "b-", label="R_out (kohm)")
    ax2.plot(ch.z_v, ch.i_supply_a * 1e6, "g-", label="I_supply (uA)")
    ax2.set_xlabel("input z (V)")
    ax2.legend(fontsize=8)
    return axes


def write_plot(ch: NeuronCharacterization, path: Path) -> Path:
    """Save :func:`plot_characterization` as a PNG, atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imac.io import atomic_write_bytes

    axes = plot_characterization(ch)
    fig = axes[0].figure
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy: NaN/inf floats become None."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif isinstance(v, dict):
            out[k] = nan_to_none(v)
        else:
            out[k] = v
    return out
