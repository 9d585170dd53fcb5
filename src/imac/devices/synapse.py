"""Differential-pair synapse encoding of ternary weights, with variation and stuck-at faults.

A weight w at (input i, output j) is two devices: one from input line i onto the I+ summing
line of output j, one onto the I- line.  +1 = (low R on I+, high R on I-), -1 = the reverse,
0 = both low R (SYSTEM.md section 3).  Biases use the same pair on the bias line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imac.config import ImacSpec, SynapseSpec, VariationSpec
from imac.config import MTJSpec as _MTJSpec
from imac.errors import ShapeError


@dataclass(frozen=True)
class SynapseLevels:
    """Low and high synapse resistance, ohm."""

    r_low: float
    r_high: float


def synapse_levels(synapse: SynapseSpec, mtj: _MTJSpec) -> SynapseLevels:
    """Resistance levels: explicit ones from the synapse spec, else R_P / R_AP of the MTJ."""
    if synapse.r_low_ohm is not None and synapse.r_high_ohm is not None:
        return SynapseLevels(synapse.r_low_ohm, synapse.r_high_ohm)
    return SynapseLevels(mtj.r_p_ohm, mtj.r_ap_ohm)


def check_weights(weights: np.ndarray, name: str = "weights", allow_zero: bool = True) -> np.ndarray:
    """Return ``weights`` as a float 2-D array after checking it holds only -1/+1 (and 0)."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"{name} must be a non-empty 2-D array, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ShapeError(f"{name} contains NaN or infinite values")
    allowed = (-1.0, 0.0, 1.0) if allow_zero else (-1.0, 1.0)
    bad = ~np.isin(w, allowed)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ShapeError(
            f"{name} must be {'ternary (-1, 0, +1)' if allow_zero else 'binary (-1, +1)'}; "
            f"found {w[i, j]!r} at index ({i}, {j})"
        )
    return w


def encode_resistances(weights: np.ndarray, levels: SynapseLevels) -> tuple[np.ndarray, np.ndarray]:
    """Resistances (ohm) of the I+ and I- devices for a ternary weight matrix."""
    w = check_weights(weights)
    r_plus = np.where(w < 0, levels.r_high, levels.r_low)
    r_minus = np.where(w > 0, levels.r_high, levels.r_low)
    return r_plus, r_minus


def apply_variation(
    resistances: np.ndarray,
    variation: VariationSpec,
    levels: SynapseLevels,
    rng: np.random.Generator,
) -> np.ndarray:
    """Perturb device resistances (ohm) with the spec's variation, then apply stuck-at faults.

    Stuck-at-P devices read ``levels.r_low``, stuck-at-AP devices ``levels.r_high`` (both also
    perturbed): a fault fixes the magnetic state, not the resistance.
    """
    r = np.asarray(resistances, dtype=float).copy()
    if variation.stuck_p_rate or variation.stuck_ap_rate:
        u = rng.random(r.shape)
        r[u < variation.stuck_p_rate] = levels.r_low
        ap = (u >= variation.stuck_p_rate) & (u < variation.stuck_p_rate + variation.stuck_ap_rate)
        r[ap] = levels.r_high
    if variation.kind == "uniform":
        r *= 1.0 + rng.uniform(-variation.amount, variation.amount, r.shape)
    elif variation.kind == "gaussian":
        # clip at -0.99 sigma-independent so no resistance goes to zero or negative
        r *= np.maximum(1.0 + rng.normal(0.0, variation.amount, r.shape), 0.01)
    return r


def synapse_conductances(
    weights: np.ndarray, spec: ImacSpec, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Conductances (S) of the I+ and I- devices, with the spec's variation and faults."""
    levels = synapse_levels(spec.synapse, spec.mtj)
    r_plus, r_minus = encode_resistances(weights, levels)
    if spec.variation.kind != "none" or spec.variation.stuck_p_rate or spec.variation.stuck_ap_rate:
        rng = rng if rng is not None else np.random.default_rng(spec.variation.seed)
        r_plus = apply_variation(r_plus, spec.variation, levels, rng)
        r_minus = apply_variation(r_minus, spec.variation, levels, rng)
    return 1.0 / r_plus, 1.0 / r_minus
