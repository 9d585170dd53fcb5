"""Bridge from trained models (:mod:`imac.nn`) to the hardware: binary layers, the first IMAC
layer's inputs on a test set, the named hardware-aware calibration, and one call that runs a
model at a fidelity and reports accuracy, timing and cost."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imac.config import ImacSpec
from imac.errors import ConfigError, DataError
from imac.hardware.mapping import BinaryLayer, NetworkMap
from imac.provenance import file_sha256

FEATURE_BATCH = 2000


def binary_layers(model: Any) -> list[BinaryLayer]:
    """The model's IMAC head as :class:`BinaryLayer` objects (sign weights, trained scales)."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "export_binary"):
        raise ConfigError(f"model {type(model).__name__} has no binary FC (IMAC) layers")
    out = []
    for (w, b), info in zip(head.export_binary(), head.layer_info(), strict=True):
        out.append(BinaryLayer(w.numpy().astype(float), None if b is None else b.numpy().astype(float),
                               float(info["volts_per_unit_sum"])))
    if not out:
        raise ConfigError(f"model {type(model).__name__} has no binary FC (IMAC) layers")
    return out


def imac_inputs(model: Any, images: np.ndarray, int8: bool = False) -> np.ndarray:
    """First IMAC layer inputs in {-1, +1} for uint8 images (CPU trunk, optionally int8)."""
    import torch

    trunk = None
    if int8:
        trunk = getattr(model, "_calibrated_int8", None)
        if trunk is None:
            raise ConfigError(f"model {type(model).__name__} has no calibrated int8 trunk (its checkpoint "
                              "holds no int8_calibration, or the model has no conv trunk)")
    out = []
    with torch.no_grad():
        for i in range(0, len(images), FEATURE_BATCH):
            x = model.prepare(images[i : i + FEATURE_BATCH])
            out.append(model.imac_input(x, trunk).numpy())
    return np.concatenate(out).astype(float)


def load_model(name: str, checkpoint: str | Path | None = None) -> tuple[Any, Path, dict[str, Any]]:
    """(model, checkpoint path, payload) of a named model; clear errors otherwise."""
    from imac.nn.checkpoint import find_checkpoint, load_checkpoint, model_from_checkpoint
    from imac.nn.models import get_spec

    get_spec(name)  # unknown names list the known ones
    path = find_checkpoint(name, checkpoint)
    payload = load_checkpoint(path, name)
    model = model_from_checkpoint(payload, path)
    cal = payload.get("int8_calibration")
    if cal is not None:  # the int8 trunk as trained (its activation scales are in the checkpoint)
        from imac.nn.train import calibrated_int8_trunk

        # a plain attribute, not a registered submodule: it must stay out of the state_dict
        object.__setattr__(model, "_calibrated_int8", calibrated_int8_trunk(model, None, cal))
    return model, path, payload


# how results name a head that went through `imac calibrate` (None for the software-trained one)
CALIBRATION_LABEL = "hardware-aware fine-tuning"


def calibrated_path(path: Path, rows: int, topology: str) -> Path:
    """Where the hardware-aware calibration of checkpoint ``path`` for a subarray is kept: a
    ``calibrated/`` folder beside it, so it is never mistaken for a trained checkpoint.  For a
    checkpoint shipped inside the package, a calibration written by the user goes to
    ``<cache>/checkpoints/calibrated/`` (the package is never written to) and is preferred there."""
    from imac.nn.checkpoint import default_checkpoint_path, is_shipped

    beside = path.parent / "calibrated" / f"{path.stem}.imac-{topology}-{rows}.pt"
    if is_shipped(path):
        user = default_checkpoint_path(path.stem).parent / "calibrated" / beside.name
        return user if user.is_file() or not beside.is_file() else beside
    return beside


def calibration_target(path: Path, rows: int, topology: str) -> Path:
    """Where ``imac calibrate`` writes by default: beside the base, or the user cache for a
    checkpoint shipped in the package."""
    from imac.nn.checkpoint import cache_checkpoint_target, is_shipped

    name = f"{path.stem}.imac-{topology}-{rows}.pt"
    if is_shipped(path):
        return cache_checkpoint_target(path.stem, "the calibrated head").parent / "calibrated" / name
    return path.parent / "calibrated" / name


# what shapes a calibrated head: the device and circuit physics it was fine-tuned through, and
# the subarray rows.  Device variation is a test condition of the nominal design (a Monte Carlo
# keeps the head), and the costs, interface and CPU do not enter the fine-tuning.
HEAD_DESIGN_PARTS = ("v_dd", "mtj", "synapse", "wires", "amplifier.topology", "amplifier.r_in_ohm",
                     "amplifier.max_gain", "subarray.driver_resistance_ohm")


def head_design(spec: ImacSpec, rows: int) -> dict[str, str]:
    """Hashes of each design part that shapes a calibrated head (the neuron by its
    characterization key: spec and model card), and the rows it was calibrated for."""
    from imac.config import spec_hash
    from imac.devices.neuron import neuron_key
    from imac.ngspice import find_model_card

    out = {part: spec_hash(spec, part) for part in HEAD_DESIGN_PARTS}
    out["neuron"] = neuron_key(spec.neuron, find_model_card(spec.neuron.model_card))
    out["subarray rows"] = str(rows)
    return out


def select_head(name: str, spec: ImacSpec, rows: int, checkpoint: str | Path | None = None,
                calibrated: bool | None = None, say: Any = None) -> tuple[Any, Path, Any]:
    """(model to deploy, its checkpoint path, the software-trained base model).

    ``calibrated``: the hardware-aware calibration for ``rows``-row subarrays (True; an error
    if absent), the base (False), or the calibration when one exists (None).  A calibration is
    used only for the design it was made for (:func:`head_design`) and from the same base
    checkpoint; otherwise the command stops, naming what changed and how to refresh it.
    """
    say = say or (lambda msg: None)
    base, base_path, _ = load_model(name, checkpoint)
    cal_path = calibrated_path(base_path, rows, spec.amplifier.topology)
    if not (calibrated or (calibrated is None and cal_path.is_file())):
        return base, base_path, base
    refresh = (f"run `imac calibrate {name} --rows {rows}` with the same --config, or pass --no-calibrated "
               "for the software-trained head")
    if not cal_path.is_file():
        raise DataError(f"no hardware-aware calibration at {cal_path}; {refresh}")
    model, _, cal_payload = load_model(name, cal_path)
    record = cal_payload.get("calibration", {})
    if record.get("base_sha256") != file_sha256(base_path):
        raise DataError(f"{cal_path.name} was calibrated from another version of {base_path.name}; {refresh}")
    made_for, now = record.get("design") or {}, head_design(spec, rows)
    changed = [part for part in now if made_for.get(part) != now[part]]
    if changed:
        raise DataError(f"{cal_path.name} was calibrated for another design ({', '.join(changed)} differ from this "
                        f"spec); {refresh}")
    return model, cal_path, base


@dataclass
class Evaluation:
    netmap: NetworkMap
    result: dict[str, Any]


def calibrate(name: str, spec: ImacSpec, rows: int, epochs: int = 3, checkpoint: str | Path | None = None,
              limit: int | None = None, seed: int = 0, out: Path | None = None,
              circuit_epochs: int = 1) -> tuple[Path, dict[str, Any]]:
    """Named calibration step for ``rows``-row subarrays, on TRAINING images only, in two stages:
    (1) hardware-aware fine-tuning of the binary head through the behavioural circuit model
    (``epochs``, see :mod:`imac.hardware.aware`); (2) ``circuit_epochs`` of circuit-in-the-loop
    fine-tuning (:func:`~imac.hardware.aware.finetune_circuit_in_loop`): forward values from the
    compiled ``circuit`` fidelity (wires, loaded neuron outputs), recompiled every 100 steps,
    gradients through the behavioural model.  Writes a new checkpoint beside the original
    (for a checkpoint shipped in the package: in the user cache, see :func:`calibration_target`)
    (``calibrated/<name>.imac-<topology>-<rows>.pt``) and returns its path and metrics."""
    from imac.hardware.aware import finetune_circuit_in_loop, finetune_hardware_aware
    from imac.nn.checkpoint import check_checkpoint_target, save_checkpoint
    from imac.nn.data import load_dataset

    model, path, payload = load_model(name, checkpoint)
    dest = out or calibration_target(path, rows, spec.amplifier.topology)
    if out is None:  # checked now, not after the fine-tuning: a recalibration replaces an earlier
        check_checkpoint_target(dest, overwrite=True)  # calibration there, never a user's own file
    train = load_dataset(model.dataset, "train").subset(limit)
    x = imac_inputs(model, train.images)
    x_op = x[:OPERATING_POINT_IMAGES]  # = operating_point_inputs(model): the trunk is not tuned
    t0 = time.perf_counter()
    history = finetune_hardware_aware(model, x, train.labels, spec, rows, epochs=epochs, seed=seed)
    t1 = time.perf_counter()
    from imac.hardware.engine import Fidelity, build_head, on_subarrays

    curve = hardware_curve(spec)
    design = on_subarrays(spec, rows)

    def build_circuit() -> Any:  # the head as it is now (its weights change between builds)
        head = build_head(model, design, Fidelity.CIRCUIT, x_op=x_op, curve=curve)
        return lambda xb: [o["z"] for o in head.run(xb)]

    history_circuit = (finetune_circuit_in_loop(model, x, train.labels, spec, rows, build_circuit,
                                                epochs=circuit_epochs, seed=seed + 1)
                       if circuit_epochs > 0 else [])
    new = copy.copy(payload)
    # the int8 trunk attached by load_model is rebuilt from the checkpoint on load: not saved
    new["state_dict"] = {k: v for k, v in model.state_dict().items() if not k.startswith("_calibrated_int8.")}
    new["calibration"] = {
        "kind": "hardware-aware fine-tuning of the binary FC weights on training images: through the "
                "behavioural circuit model, then circuit-in-the-loop (compiled circuit fidelity forward, "
                "behavioural gradient; imac.hardware.aware)",
        "base_checkpoint": path.name,
        "base_sha256": file_sha256(path),
        "subarray_rows": rows,
        "amplifier_topology": spec.amplifier.topology,
        "design": head_design(spec, rows),
        "epochs": epochs,
        "circuit_epochs": circuit_epochs,
        "train_images": len(train),
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "seconds_circuit": time.perf_counter() - t1,
        "history": history,
        "history_circuit": history_circuit,
    }
    save_checkpoint(dest, new)
    return dest, new["calibration"]


def simulate_model(
    name: str,
    fidelity: str,
    spec: ImacSpec,
    rows: int | None = None,
    cols: int | None = None,
    partitioned: bool = True,
    checkpoint: str | Path | None = None,
    calibrated: bool | None = None,
    limit: int | None = None,
    progress: Any = None,
    int8: bool = False,
    device: str | None = None,
) -> Evaluation:
    """Run ``name`` on IMAC at ``fidelity`` over its test set; accuracy, timing and cost.

    ``calibrated``: use the hardware-aware calibrated head for this subarray (True), the
    software-trained head (False), or the calibrated one when it exists (None).
    ``accuracy_software`` is always the software-trained head's binary-FC accuracy on the same
    images, the reference the hardware is judged against.  ``int8``: the IMAC inputs come from
    the int8-quantized CPU trunk (the mixed-precision system) instead of the float one.
    ``device``: where the batch phase runs (None or "cpu": numpy; "cuda": torch tensors on the
    GPU, :mod:`imac.hardware.device`); the build always runs on the CPU.
    """
    from imac.hardware.device import resolve_device
    from imac.hardware.engine import Fidelity, build_head, on_subarrays
    from imac.nn.data import load_dataset

    if Fidelity.parse(fidelity) == Fidelity.SPICE:
        raise ConfigError("the spice fidelity runs a handful of images: use `imac spice-check`")
    dev = None if device in (None, "cpu") else resolve_device(device)
    say = progress or (lambda msg: None)
    spec = on_subarrays(spec, rows, cols)
    rows, cols = spec.subarray.rows, spec.subarray.cols
    say(f"mapping onto {f'{rows}x{cols} subarrays' if partitioned else 'one array per layer'}")
    head = build_head(name, spec, fidelity, partitioned=partitioned, checkpoint=checkpoint, calibrated=calibrated,
                      progress=say)
    net, netmap, build = head.net, head.netmap, head.build_time_s
    say(f"loading the {head.base.dataset} test set")
    test = load_dataset(head.base.dataset, "test").subset(limit)
    say("computing the CPU features")
    x = head.inputs(test.images, int8)
    acc_sw = head.software_accuracy(test.images, test.labels, int8)
    if dev is not None:
        head.run(x[:64], device=dev)  # warm-up: device context and kernels
    t1 = time.perf_counter()
    outs = head.run(x, device=dev)
    sim = time.perf_counter() - t1
    acc = head.accuracy(x, test.labels, outs)
    # the ideal fidelity of the same head on the same batch: the reference for ratio_to_ideal
    ideal = head.at(Fidelity.IDEAL)
    t_ideal = best_of(lambda: ideal.run(x))
    t_sim = best_of(lambda: head.run(x, device=dev))
    cost = head.cost(outs)
    result = {
        "model": name,
        "fidelity": fidelity,
        "checkpoint": head.checkpoint.name if head.checkpoint else None,
        "calibration": CALIBRATION_LABEL if head.calibrated else None,
        "n_images": len(test),
        "cpu_trunk": "int8" if int8 else "fp32",
        "accuracy": acc,
        "accuracy_software": acc_sw,
        "accuracy_drop_points": 100 * (acc_sw - acc),
        **netmap.summary(),
        "amplifier_topology": spec.amplifier.topology,
        "power_w": cost.power_w,
        "latency_s": cost.latency_s,
        "energy_per_inference_j": cost.energy_j,
        "area_m2": cost.area_m2,
        "build_time_s": build,
        "sim_time_s": sim,
        "device": dev or "cpu",
        "images_per_s": len(test) / t_sim,
        "ratio_to_ideal": t_sim / t_ideal,
        "gain_shortfall": net.info.get("gain_shortfall"),
        "gain_range": net.info.get("gain_range"),
        "neuron_r_out_ohm": net.info.get("neuron_r_out_ohm"),
        "cost_breakdown": cost.table(),
    }
    return Evaluation(netmap, result)


OPERATING_POINT_IMAGES = 256


def operating_point_inputs(model: Any, n: int = OPERATING_POINT_IMAGES) -> np.ndarray:
    """First-layer inputs of the first ``n`` TRAINING images: where the circuit fidelity
    linearizes each neuron under its load (never the test images it is scored on)."""
    from imac.nn.data import load_dataset

    return imac_inputs(model, load_dataset(model.dataset, "train").images[:n])


def hardware_curve(spec: ImacSpec) -> Any:
    """The neuron the hardware has: its characterization keyed by everything it depends on
    (:func:`imac.devices.neuron.neuron_curve`: shipped, cached or run now in ngspice)."""
    from imac.devices.neuron import neuron_curve

    return neuron_curve(spec.neuron)


def best_of(fn: Any, repeat: int = 3) -> float:
    """The shortest of ``repeat`` wall-clock timings of ``fn()``, s (the benchmarks' timer)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
