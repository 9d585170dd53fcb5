"""The one ideal data converter: what an ADC reads and a DAC drives, at its resolution."""

from __future__ import annotations

import numpy as np


def quantize(v: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """``v`` as an ideal ``bits``-bit converter over [lo, hi] (V) sees it: 2^bits levels spread
    evenly over the range, values outside clipped to its ends."""
    levels = 2**bits - 1
    step = (hi - lo) / levels
    k = np.clip(np.round((np.asarray(v, dtype=float) - lo) / step), 0, levels)
    return lo + k * step
