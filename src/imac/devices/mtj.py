"""SOT-MRAM magnetic tunnel junction: resistance of the parallel and antiparallel states, over
arrays of junctions and biases (the formulas are :meth:`imac.config.MTJSpec.tmr_at` and
:meth:`~imac.config.MTJSpec.r_ap_at`, which the spec tree uses for its derived levels)."""

from __future__ import annotations

import numpy as np

from imac.config import MTJSpec


def tmr_at_bias(spec: MTJSpec, v_bias: np.ndarray | float = 0.0) -> np.ndarray:
    """TMR at junction bias ``v_bias`` (V): TMR0 / (1 + (V/V_h)^2), or TMR0 when bias
    dependence is off (``tmr_half_bias_v`` is None)."""
    v = np.asarray(v_bias, dtype=float)
    return np.broadcast_to(np.asarray(spec.tmr_at(v), dtype=float), v.shape).copy()


def resistance(spec: MTJSpec, antiparallel: np.ndarray | bool, v_bias: np.ndarray | float = 0.0) -> np.ndarray:
    """Resistance (ohm) of junctions in the given states at bias ``v_bias`` (V)."""
    ap = np.asarray(antiparallel, dtype=bool)
    r_ap = (1.0 + tmr_at_bias(spec, v_bias)) * spec.r_p_ohm
    return np.where(ap, r_ap, spec.r_p_ohm)
