"""Behavioural model of the SOT-MRAM sigmoid neuron, fitted to its ngspice transfer curve.

The circuit is inverting, so the curve falls from ~V_DD to ~0 as the amplifier output rises.  A
single logistic misses the inverter's asymmetric knees by ~20 mV; a sum of K logistics (K = 2
by default) reaches a few mV, smooth and cheap in numpy and differentiable in torch:

    v_out(z) = offset + sum_k amp_k / (1 + exp(slope_k * (z - centre_k)))

z is the neuron input (the difference-amplifier output) in volts; v_out is in volts.
Output resistance and supply current curves are kept as tables sampled from ngspice and
interpolated linearly (they enter only the circuit-level loading and the power estimate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imac.errors import DataError

if TYPE_CHECKING:
    import torch

DEFAULT_FIT_PATH = Path(__file__).parent / "neuron_fit_default.json"


@dataclass(frozen=True)
class NeuronCurve:
    """Fitted neuron transfer curve plus tabulated Thevenin and supply-current data.

    Attributes are SI: volts for ``offset``/``amps``/``centres``, 1/V for ``slopes``, ohm for
    ``r_out_ohm``, ampere for ``i_supply_a``.
    """

    offset: float
    amps: tuple[float, ...]
    slopes: tuple[float, ...]
    centres: tuple[float, ...]
    v_dd: float
    fit_max_error_v: float = float("nan")
    table_z_v: tuple[float, ...] = field(default=())
    r_out_ohm: tuple[float, ...] = field(default=())
    i_supply_a: tuple[float, ...] = field(default=())
    delay_s: float = float("nan")
    iv_z_v: tuple[float, ...] = field(default=())
    iv_v_out_v: tuple[float, ...] = field(default=())
    iv_i_out_a: tuple[tuple[float, ...], ...] = field(default=())
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.amps)
        if n == 0 or len(self.slopes) != n or len(self.centres) != n:
            raise DataError("neuron curve needs equal, non-empty amps/slopes/centres")
        vals = [self.offset, *self.amps, *self.slopes, *self.centres, self.v_dd]
        if not np.all(np.isfinite(vals)):
            raise DataError("neuron curve parameters must be finite")

    # -- evaluation -------------------------------------------------------------------------
    def __call__(self, z: np.ndarray | float) -> np.ndarray:
        """Open-circuit output voltage (V) for input voltage(s) ``z`` (V)."""
        z = np.asarray(z, dtype=float)
        out = np.full(z.shape, self.offset)
        for a, s, c in zip(self.amps, self.slopes, self.centres, strict=True):
            # 1/(1+e^x) written through tanh: no overflow for large |x|
            out = out + a * 0.5 * (1.0 - np.tanh(0.5 * s * (z - c)))
        return out

    def derivative(self, z: np.ndarray | float) -> np.ndarray:
        """dv_out/dz, V/V."""
        z = np.asarray(z, dtype=float)
        out = np.zeros(z.shape)
        for a, s, c in zip(self.amps, self.slopes, self.centres, strict=True):
            t = np.tanh(0.5 * s * (z - c))
            out = out - a * s * 0.25 * (1.0 - t * t)
        return out

    def torch_forward(self, z: torch.Tensor) -> torch.Tensor:
        """Same curve as :meth:`__call__` on a torch tensor (differentiable)."""
        import torch

        out = torch.full_like(z, self.offset)
        for a, s, c in zip(self.amps, self.slopes, self.centres, strict=True):
            out = out + a * 0.5 * (1.0 - torch.tanh(0.5 * s * (z - c)))
        return out

    @property
    def v_out_high(self) -> float:
        """Output for a very negative input, V."""
        return self.offset + sum(a for a, s in zip(self.amps, self.slopes, strict=True) if s > 0)

    @property
    def v_out_low(self) -> float:
        """Output for a very positive input, V."""
        return self.offset + sum(a for a, s in zip(self.amps, self.slopes, strict=True) if s < 0)

    def output_resistance(self, z: np.ndarray | float) -> np.ndarray:
        """Thevenin output resistance (ohm) at input ``z`` (V), interpolated from the table."""
        if not self.table_z_v:
            raise DataError("this neuron curve carries no output-resistance table")
        return np.asarray(np.interp(z, self.table_z_v, self.r_out_ohm))

    def supply_current(self, z: np.ndarray | float) -> np.ndarray:
        """Static current drawn from V_DD (A, positive) at input ``z`` (V)."""
        if not self.table_z_v:
            raise DataError("this neuron curve carries no supply-current table")
        return np.asarray(np.interp(z, self.table_z_v, self.i_supply_a))

    def has_iv(self) -> bool:
        return bool(self.iv_i_out_a)

    def output_current(self, z: np.ndarray, v_out: np.ndarray | float) -> np.ndarray:
        """Current (A) the neuron delivers at input z (V) with its output held at v_out (V),
        bilinear in the ngspice I-V table."""
        if not self.has_iv():
            raise DataError("this neuron curve carries no output I-V table; re-run `imac neuron characterize`")
        zg, vg, table = self._iv_arrays()
        z, v = np.broadcast_arrays(np.asarray(z, dtype=float), np.asarray(v_out, dtype=float))
        # uniform grids: index arithmetic instead of a search; linear extrapolation past the
        # grid edges (the neuron's current keeps its slope a little beyond the swept range)
        fz = (z - zg[0]) / (zg[1] - zg[0])
        fv = (v - vg[0]) / (vg[1] - vg[0])
        iz = np.clip(np.floor(fz).astype(int), 0, zg.size - 2)
        iv = np.clip(np.floor(fv).astype(int), 0, vg.size - 2)
        tz, tv = fz - iz, fv - iv
        return ((1 - tz) * (1 - tv) * table[iz, iv] + tz * (1 - tv) * table[iz + 1, iv]
                + (1 - tz) * tv * table[iz, iv + 1] + tz * tv * table[iz + 1, iv + 1])

    def _iv_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cached = self.__dict__.get("_iv_cache")
        if cached is None:
            cached = (np.asarray(self.iv_z_v), np.asarray(self.iv_v_out_v), np.asarray(self.iv_i_out_a))
            object.__setattr__(self, "_iv_cache", cached)
        return cached

    def linearized_source(self, z_op: float, v_op: float, dv: float = 0.01) -> tuple[float, float]:
        """Thevenin resistance (ohm) of the output around (z_op, v_op): -dV/dI."""
        i_hi = float(self.output_current(np.array(z_op), v_op + dv))
        i_lo = float(self.output_current(np.array(z_op), v_op - dv))
        return 2 * dv / max(i_lo - i_hi, 1e-15), v_op

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "amps": list(self.amps),
            "slopes": list(self.slopes),
            "centres": list(self.centres),
            "v_dd": self.v_dd,
            "fit_max_error_v": self.fit_max_error_v,
            "table_z_v": list(self.table_z_v),
            "r_out_ohm": list(self.r_out_ohm),
            "i_supply_a": list(self.i_supply_a),
            "delay_s": self.delay_s,
            "iv_z_v": list(self.iv_z_v),
            "iv_v_out_v": list(self.iv_v_out_v),
            "iv_i_out_a": [list(r) for r in self.iv_i_out_a],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NeuronCurve:
        try:
            return cls(
                offset=float(d["offset"]),
                amps=tuple(float(v) for v in d["amps"]),
                slopes=tuple(float(v) for v in d["slopes"]),
                centres=tuple(float(v) for v in d["centres"]),
                v_dd=float(d["v_dd"]),
                fit_max_error_v=float(d.get("fit_max_error_v", float("nan"))),
                table_z_v=tuple(float(v) for v in d.get("table_z_v", ())),
                r_out_ohm=tuple(float(v) for v in d.get("r_out_ohm", ())),
                i_supply_a=tuple(float(v) for v in d.get("i_supply_a", ())),
                delay_s=float(d.get("delay_s", float("nan"))),
                iv_z_v=tuple(float(v) for v in d.get("iv_z_v", ())),
                iv_v_out_v=tuple(float(v) for v in d.get("iv_v_out_v", ())),
                iv_i_out_a=tuple(tuple(float(v) for v in row) for row in d.get("iv_i_out_a", ())),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"malformed neuron curve data: {err}") from None

    def save(self, path: Path) -> None:
        from imac.io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> NeuronCurve:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"neuron curve file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"corrupt neuron curve file {path}: {err}") from None
        return cls.from_dict(data)


def default_neuron_curve() -> NeuronCurve:
    """The curve fitted to the default neuron (paper preset, PTM 22 nm HP), shipped with the
    package and regenerated by ``imac neuron characterize --update-default``."""
    return NeuronCurve.load(DEFAULT_FIT_PATH)


def reverse_sigmoid(z: np.ndarray) -> np.ndarray:
    """The ideal activation the authors train with: 1 / (1 + e^z)."""
    return 0.5 * (1.0 - np.tanh(0.5 * np.asarray(z, dtype=float)))
