"""The simulation fidelities: how much of the hardware a simulation models."""

from __future__ import annotations

from enum import Enum

from imac.errors import ConfigError


class Fidelity(str, Enum):
    """How much of the hardware a simulation models (see README, "Simulation fidelities")."""

    IDEAL = "ideal"  # the binary network's math with the fitted neuron curve
    BEHAVIORAL = "behavioral"  # device conductances, variation, faults, loaded amplifiers; no wires
    CIRCUIT = "circuit"  # + wire resistance, shared drivers, loaded neuron outputs (Newton solve)
    SPICE = "spice"  # the whole network in one ngspice netlist (a handful of images)

    @classmethod
    def parse(cls, value: str | Fidelity) -> Fidelity:
        """The fidelity named ``value``, or a ConfigError listing the known ones."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown fidelity {value!r}; choose one of "
                              f"{', '.join(f.value for f in cls)}") from None

    def __str__(self) -> str:
        return self.value
