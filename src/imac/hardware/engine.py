"""The one engine: a mapped, compiled IMAC head at a fidelity, run on batches and priced.

Every command, study and benchmark builds its heads here instead of assembling map -> neuron
curve -> compile itself::

    head = build_head("lenet-mnist", spec, Fidelity.CIRCUIT)      # a registered model
    head = build_head(model, spec, "behavioral")                   # a model object
    head = build_head([BinaryLayer(w, b, vpu), ...], spec, "ideal")  # plain binary layers
    outs = head.run(x)             # per layer: z (amplifier outputs) and y (neuron outputs), V
    acc = head.accuracy(x, labels)
    cost = head.cost(outs)         # power, latency, energy, area: one row per component

The subarray size comes from the spec (``subarray.rows`` / ``subarray.cols``); the neuron is the
hardware's own characterization (:func:`imac.devices.neuron.neuron_curve`), except at the
``ideal`` fidelity, which is the network's math with the curve it was trained with.  A head built
from a registered model uses its hardware-aware calibration when one exists for this design
(:func:`imac.hardware.network.select_head`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imac.config import ImacSpec
from imac.errors import ConfigError
from imac.hardware.fidelity import Fidelity

# the fidelities a compiled head runs in Python (spice is the netlist export of a circuit head)
BATCH_FIDELITIES = (Fidelity.IDEAL, Fidelity.BEHAVIORAL, Fidelity.CIRCUIT)


@dataclass
class Head:
    """A compiled head: its network map, neuron, per-layer solves at one fidelity, and where it
    came from (the deployed and the software-trained model, the checkpoint)."""

    net: Any  # imac.hardware.simulate.CompiledNetwork
    spec: ImacSpec
    fidelity: Fidelity
    model: Any = None  # the model deployed (its calibrated head when one was used)
    base: Any = None  # the software-trained model (the reference for accuracy)
    checkpoint: Path | None = None
    build_time_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def netmap(self) -> Any:
        return self.net.netmap

    @property
    def calibrated(self) -> bool:
        """Whether the deployed head went through the named hardware-aware calibration."""
        return self.model is not None and self.base is not None and self.model is not self.base

    def run(self, x: np.ndarray, device: str | None = None) -> list[dict[str, np.ndarray]]:
        """Per layer, the amplifier outputs ``z`` and neuron outputs ``y`` (V) for inputs x in
        [-1, 1] (N, fan-in); ``device`` runs the batch phase with torch on that device."""
        from imac.hardware.simulate import run_batch

        return run_batch(self.net, x, device=device)

    def predict(self, x: np.ndarray, outs: list[dict[str, np.ndarray]] | None = None) -> np.ndarray:
        """Predicted classes: the lowest last-layer output (the neuron is inverting)."""
        outs = self.run(x) if outs is None else outs
        return np.argmin(outs[-1]["y"], axis=1)

    def accuracy(self, x: np.ndarray, labels: np.ndarray,
                 outs: list[dict[str, np.ndarray]] | None = None) -> float:
        return float(np.mean(self.predict(x, outs) == np.asarray(labels)))

    def cost(self, outs: list[dict[str, np.ndarray]] | None = None) -> Any:
        """Power, latency, energy and area (:class:`imac.hardware.cost.ImacCost`), with the
        static power at the outputs ``outs`` of a batch when given."""
        from imac.hardware.cost import imac_cost

        return imac_cost(self.net, outs)

    def at(self, fidelity: str | Fidelity, x_op: np.ndarray | None = None) -> Head:
        """The same mapped head compiled at another fidelity (no re-mapping, no reloading)."""
        fid = Fidelity.parse(fidelity)
        t0 = time.perf_counter()
        net = _compile(self.netmap, self.spec, fid, self.model, x_op)
        return Head(net, self.spec, fid, self.model, self.base, self.checkpoint, time.perf_counter() - t0)

    def inputs(self, images: np.ndarray, int8: bool = False) -> np.ndarray:
        """The first IMAC layer's inputs for raw images: the deployed model's CPU trunk."""
        from imac.hardware.network import imac_inputs

        if self.model is None:
            raise ConfigError("this head was built from plain binary layers: it has no CPU trunk")
        return imac_inputs(self.model, images, int8)

    def software_accuracy(self, images: np.ndarray, labels: np.ndarray, int8: bool = False) -> float:
        """Accuracy of the software-trained binary head (the reference) on the same images and
        the same subarray mapping, at the ideal fidelity."""
        from imac.hardware.network import binary_layers, imac_inputs

        if self.base is None:
            raise ConfigError("this head was built from plain binary layers: there is no software model")
        ref = _build(binary_layers(self.base), self.spec, Fidelity.IDEAL, curve=_trained_curve(self.base),
                     partitioned=self.netmap.partitioned)
        return ref.accuracy(imac_inputs(self.base, images, int8), labels)


def on_subarrays(spec: ImacSpec, rows: int | None = None, cols: int | None = None) -> ImacSpec:
    """``spec`` with its subarrays resized to ``rows`` x ``cols`` (None: as they are): the engine
    maps onto the spec's size, so a caller with another size states it here, validated."""
    from imac.config import with_overrides

    rows = spec.subarray.rows if rows is None else rows
    cols = spec.subarray.cols if cols is None else cols
    if (rows, cols) == (spec.subarray.rows, spec.subarray.cols):
        return spec
    return with_overrides(spec, {"subarray.rows": rows, "subarray.cols": cols}, source=f"{rows}x{cols} subarrays")


def _trained_curve(model: Any) -> Any:
    """The neuron curve the model was trained with (what the ideal fidelity computes with)."""
    return model.head.neurons[0].curve


def _compile(netmap: Any, spec: ImacSpec, fidelity: Fidelity, model: Any, x_op: np.ndarray | None,
             curve: Any = None, progress: Callable[[str], None] | None = None, **compile_kw: Any) -> Any:
    from imac.hardware.network import hardware_curve, operating_point_inputs
    from imac.hardware.simulate import compile_network

    if fidelity == Fidelity.SPICE:
        fidelity = Fidelity.CIRCUIT  # the netlist carries the gains derived at circuit fidelity
    if curve is None:
        curve = _trained_curve(model) if fidelity == Fidelity.IDEAL and model is not None else hardware_curve(spec)
    if fidelity == Fidelity.CIRCUIT and x_op is None and model is not None:
        x_op = operating_point_inputs(model)
    say = progress or (lambda msg: None)
    return compile_network(netmap, curve, fidelity.value, x_op=x_op if fidelity == Fidelity.CIRCUIT else None,
                           progress=lambda i: say(f"layer {i} compiled"), **compile_kw)


def _build(layers: Sequence[Any], spec: ImacSpec, fidelity: Fidelity, *, model: Any = None, base: Any = None,
           checkpoint: Path | None = None, partitioned: bool = True, x_op: np.ndarray | None = None,
           curve: Any = None, progress: Callable[[str], None] | None = None, **compile_kw: Any) -> Head:
    from imac.hardware.mapping import map_network

    t0 = time.perf_counter()
    netmap = map_network(list(layers), spec, spec.subarray.rows, spec.subarray.cols, partitioned)
    net = _compile(netmap, spec, fidelity, model, x_op, curve, progress, **compile_kw)
    return Head(net, spec, fidelity, model, base, checkpoint, time.perf_counter() - t0)


def build_head(source: str | Any | Sequence[Any], spec: ImacSpec | None = None,
               fidelity: str | Fidelity = Fidelity.CIRCUIT, *, partitioned: bool = True,
               checkpoint: str | Path | None = None, calibrated: bool | None = None,
               x_op: np.ndarray | None = None, curve: Any = None,
               progress: Callable[[str], None] | None = None, **compile_kw: Any) -> Head:
    """Map and compile an IMAC head at ``fidelity`` on the spec's subarrays.

    ``source``: a registered model name (its checkpoint, and its calibrated head for this design
    when one exists: ``calibrated`` True / False / None = when it exists), a model object, or
    plain binary layers (:class:`imac.hardware.mapping.BinaryLayer`: sign weights, bias, volts
    per unit sum).  ``x_op``: operating-point inputs for the circuit fidelity (default: the
    model's first training images).  ``curve``: another neuron curve than the hardware's (e.g.
    a study's); ``compile_kw`` go to :func:`imac.hardware.simulate.compile_network`.
    """
    from imac.hardware.network import binary_layers, select_head

    spec = spec or ImacSpec()
    fid = Fidelity.parse(fidelity)
    if isinstance(source, str):
        model, path, base = select_head(source, spec, spec.subarray.rows, checkpoint, calibrated, progress)
        return _build(binary_layers(model), spec, fid, model=model, base=base, checkpoint=path,
                      partitioned=partitioned, x_op=x_op, curve=curve, progress=progress, **compile_kw)
    if hasattr(source, "head"):
        return _build(binary_layers(source), spec, fid, model=source, base=source, partitioned=partitioned,
                      x_op=x_op, curve=curve, progress=progress, **compile_kw)
    layers = list(source)
    if not layers:
        raise ConfigError("no binary layers to map onto IMAC")
    return _build(layers, spec, fid, partitioned=partitioned, x_op=x_op, curve=curve, progress=progress,
                  **compile_kw)
