"""The one cost table: a row per component action, for IMAC, the interface, the CPU and the
baselines alike (the Accelergy shape), and totals that are sums of rows.

Every breakdown, report table, plot and JSON total of a system is computed from a
:class:`CostTable`.  A row is read as an object (``row.energy_j``) or as a record
(``row["energy_j"]``, what the JSON holds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class CostRow:
    """One component's action in one inference (SI units).

    ``energy_per_action_j`` is set where energy is priced per action (energy = count x it);
    ``power_w`` where a component draws power for the whole inference (energy = power x the
    inference latency).  ``part`` (imac, interface, cpu, ...) and ``group`` (what a stacked
    breakdown shows) place the row in a system; ``basis`` says where its numbers come from.
    """

    component: str
    action: str
    count: float = 1.0
    energy_j: float = 0.0
    latency_s: float = 0.0
    area_m2: float = 0.0
    power_w: float = 0.0
    energy_per_action_j: float | None = None
    part: str = ""
    group: str = ""
    basis: str = ""

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELDS else default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = frozenset(f.name for f in fields(CostRow))


@dataclass
class CostTable:
    """Rows in the order they happen; every total is a sum over them."""

    rows: list[CostRow] = field(default_factory=list)

    @property
    def energy_j(self) -> float:
        return float(sum(r.energy_j for r in self.rows))

    @property
    def latency_s(self) -> float:
        return float(sum(r.latency_s for r in self.rows))

    @property
    def area_m2(self) -> float:
        return float(sum(r.area_m2 for r in self.rows))

    @property
    def power_w(self) -> float:
        return float(sum(r.power_w for r in self.rows))

    def by(self, key: str) -> dict[str, dict[str, float]]:
        """Energy, latency and area summed per value of a row field (``part``, ``group``...)."""
        out: dict[str, dict[str, float]] = {}
        for r in self.rows:
            d = out.setdefault(str(r[key]), {"energy_j": 0.0, "latency_s": 0.0, "area_m2": 0.0})
            d["energy_j"] += r.energy_j
            d["latency_s"] += r.latency_s
            d["area_m2"] += r.area_m2
        return out

    def table(self) -> list[dict[str, Any]]:
        """The rows as records (what JSON and CSV outputs hold)."""
        return [r.to_dict() for r in self.rows]
