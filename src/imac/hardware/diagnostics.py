"""Warnings for degenerate designs: results that run to the end yet mean little.

A design with almost equal synapse levels (TMR near 0), wires of megaohms or every device stuck
still simulates: the mapping drives every amplifier gain to ``amplifier.max_gain`` trying to
reach the trained scale, and the accuracy lands near chance.  Such a run should not pass as a
result, so these checks name what is wrong; commands print them on stderr and add them to their
JSON under ``warnings``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imac.config import ImacSpec
from imac.devices.synapse import synapse_levels

GAIN_AT_LIMIT_FRACTION = 0.5  # warn when more than this share of the gains sits at max_gain
SHORTFALL_LIMIT = 0.5  # warn when a layer's effective scale misses the trained one by > 50 %
CHANCE_MARGIN = 1.5  # "near chance": accuracy below 1.5 / number of classes
MIN_LEVEL_RATIO = 1.05  # synapse levels closer than 5 % cannot hold a weight


def spec_warnings(spec: ImacSpec) -> list[str]:
    """Warnings that the spec alone shows (before anything is simulated)."""
    out = []
    lv = synapse_levels(spec.synapse, spec.mtj)
    r_low, r_high = lv.r_low, lv.r_high
    if r_high / r_low < MIN_LEVEL_RATIO:
        out.append(f"the synapse levels are almost equal (R_high/R_low = {r_high / r_low:.4g}): a weight is "
                   "hardly readable; check mtj.tmr or synapse.r_low_ohm/r_high_ohm")
    v = spec.variation
    if v.stuck_p_rate + v.stuck_ap_rate > 0.5:
        out.append(f"{100 * (v.stuck_p_rate + v.stuck_ap_rate):.0f} % of the devices are stuck "
                   "(variation.stuck_p_rate + stuck_ap_rate)")
    return out


def result_warnings(spec: ImacSpec, gains: list[np.ndarray], accuracy: float | None = None,
                    n_classes: int | None = None,
                    gain_shortfall: float | list[float] | None = None) -> list[str]:
    """Warnings from a compiled head (its amplifier gains, the shortfall of its layers' scale)
    and its accuracy, on top of :func:`spec_warnings`."""
    out = spec_warnings(spec)
    g_max = spec.amplifier.max_gain
    all_gains = np.concatenate([np.ravel(g) for g in gains]) if gains else np.zeros(0)
    if all_gains.size:
        at_limit = float(np.mean(all_gains >= g_max * (1 - 1e-9)))
        if at_limit > GAIN_AT_LIMIT_FRACTION:
            out.append(f"{100 * at_limit:.0f} % of the amplifier gains are at amplifier.max_gain ({g_max:g}): the "
                       "arrays cannot reach the trained scale (synapse levels, wire resistance or faults)")
    worst = max(np.ravel(gain_shortfall).tolist(), default=0.0) if gain_shortfall is not None else 0.0
    if worst > SHORTFALL_LIMIT:
        out.append(f"a layer's effective scale misses the trained one by {100 * worst:.0f} %")
    if accuracy is not None and n_classes:
        if accuracy < CHANCE_MARGIN / n_classes:
            out.append(f"accuracy {100 * accuracy:.1f} % is near chance ({100 / n_classes:.0f} % for "
                       f"{n_classes} classes): this design does not compute the network")
    return out


def netmap_gains(netmap: Any) -> list[np.ndarray]:
    """The amplifier gains of every tile of a mapped (and compiled) network."""
    return [np.asarray(t.gain, dtype=float) for lm in netmap.layers for t in lm.tiles]
