"""A user's network onto IMAC: import it, replace its FC head by a binary IMAC head, fine-tune.

Three ways in (:mod:`imac.nn.importers`): a PyTorch model (a ``.py`` file + ``state_dict``, a
TorchScript file or a ``torch.export`` program), an ONNX file, or plain binary weights (``.npz``
or a folder of CSV matrices).  The network is split into its CPU trunk (everything before the
trailing chain of fully-connected layers) and that chain; the chain becomes a binary IMAC head of
the same sizes with the SOT-MRAM neuron on every layer, its shadow weights started from the float
weights (same signs), and is fine-tuned on the user's training data with BinaryConnect through the
fitted neuron curve (the trunk frozen by default, or fine-tuned with it).  The user's own float
head stays beside it, frozen, as the CPU-only baseline: its accuracy is the float network's.

The result is a checkpoint that carries its network spec and the traced trunk, so every command
takes the network by name afterwards: ``simulate``, ``calibrate`` (the named hardware-aware
calibration), ``cpu-imac``, ``compare``, ``export --spice``, ``spice-check``, the sweeps.
``imac import --calibrate`` runs that calibration right after the import (:mod:`imac.cli.nn`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imac.errors import ConfigError
from imac.nn.models import ImacNet, ImportedTrunk, ModelSpec, _register_session, data_info
from imac.nn.netspec import ACTIVATIONS, network_from_dict
from imac.nn.train import TrainResult, train
from imac.provenance import file_sha256

FLOAT_HEAD_TOLERANCE = 1e-4  # largest |logit| difference for the rebuilt float head to stand for the user's
DEFAULT_EPOCHS = 20


@dataclass
class ImportRecord:
    """Where an imported network came from (stored in its checkpoint as ``imported``)."""

    source: str  # the file
    kind: str  # pytorch, torchscript, torch.export, onnx, binary
    sha256: str
    sizes: list[int]
    trunk_ops: list[str]
    notes: list[str]
    float_head_exact: bool
    float_accuracy: float | None = None  # the user's whole float network on the test set, as imported
    n_test: int | None = None


@dataclass
class ImportResult(TrainResult):
    """What :func:`~imac.nn.train.train` returns (checkpoint, metrics, epochs, seconds in s), plus
    the import's record, so a caller need not read the checkpoint back for it."""

    imported: ImportRecord

    @property
    def float_accuracy_as_imported(self) -> float | None:
        """The user's float network on the test set before any fine-tuning (None: binary weights)."""
        return self.imported.float_accuracy


def _with_record(res: TrainResult, record: ImportRecord) -> ImportResult:
    return ImportResult(**{f.name: getattr(res, f.name) for f in fields(TrainResult)}, imported=record)


def _sha256(path: Path) -> str:
    """A file's digest, or a folder's: over its files' names and digests."""
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(path)}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def _is_binary_weights(path: Path) -> bool:
    return path.suffix == ".npz" or path.is_dir()


def _network_input_shape(dataset: str) -> tuple[int, ...]:
    info = data_info(dataset)
    h, w = info.shape[:2]
    return (info.channels, h, w)


def _spec_data(name: str, dataset: str, sizes: list[int], imported_trunk: bool, float_acts: list[str] | None,
               epochs: int, lr: float, batch_size: int, finetune_trunk: bool, binarize_at: float | None,
               description: str) -> dict[str, Any]:
    freeze = ["float_head"] + ([] if finetune_trunk else ["trunk"])
    head: dict[str, Any] = {"hidden": sizes[1:-1], "threshold": "batchnorm" if imported_trunk else "sign"}
    if float_acts is not None:
        head["float_head"] = {"activation": float_acts}
    data: dict[str, Any] = {
        "name": name, "description": description, "dataset": dataset,
        "trunk": "imported" if imported_trunk else [],
        "head": head,
        "train": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "freeze": freeze},
    }
    if binarize_at is not None:
        data["input"] = {"binarize_at": binarize_at}
    return data


@torch.no_grad()
def _start_head_from(model: ImacNet, weights: list[np.ndarray], biases: list[np.ndarray | None]) -> None:
    """Shadow weights with the float weights' signs and BinaryConnect's small starting magnitude.
    The IMAC neuron falls with its input (its output is ~ 1 - sigmoid), so a hidden layer's output
    is the float activation's mirror image: the layers after the first start from -W to undo it."""
    for i, (lin, w, b) in enumerate(zip(model.head.binary_linears(), weights, biases, strict=True)):
        if i > 0:
            w = -w
        bound = 1.0 / np.sqrt(lin.in_features)
        scale = bound / (2.0 * float(np.std(w)) + 1e-12)
        lin.weight.copy_(torch.as_tensor(np.clip(w * scale, -1, 1), dtype=torch.float32))
        if lin.bias is not None:
            if b is None:
                lin.bias.uniform_(-bound, bound)
            else:
                bs = bound / (2.0 * float(np.std(b)) + 1e-12) if np.std(b) > 0 else bound
                lin.bias.copy_(torch.as_tensor(np.clip(b * bs, -1, 1), dtype=torch.float32))


@torch.no_grad()
def _load_float_head(model: ImacNet, split: Any) -> None:
    linears = [m for m in model.float_head if isinstance(m, nn.Linear)]  # type: ignore[union-attr]
    for lin, fc in zip(linears, split.head, strict=True):
        lin.weight.copy_(torch.as_tensor(fc.weight, dtype=torch.float32))
        if fc.bias is not None:
            lin.bias.copy_(torch.as_tensor(fc.bias, dtype=torch.float32))
        else:
            lin.bias.zero_()


def import_network(source: str | Path, *, name: str, data: str | Path, input_shape: tuple[int, ...] | None = None,
                   state_dict: str | Path | None = None, class_name: str | None = None,
                   epochs: int | None = None, lr: float = 5e-3, batch_size: int = 64,
                   finetune_trunk: bool = False, binarize_at: float | None = None, seed: int = 0,
                   out: str | Path | None = None, overwrite: bool = False, limit_train: int | None = None,
                   limit_test: int | None = None, threads: int | None = 1, progress: bool = True,
                   device: str | None = None) -> ImportResult:
    """Import the network in ``source``, convert its FC head to a binary IMAC head, fine-tune it on
    ``data`` (a data spec YAML, or 'mnist'/'cifar10') and write the checkpoint (default
    ``<cache>/checkpoints/NAME.pt``).  Binary weights (``.npz`` / CSV folder) are taken as they
    are (no fine-tuning unless ``epochs`` > 0), on the flattened pixels (``binarize_at``: +1 where a
    stored value >= it; else the standardised pixels' signs).  The result carries the import's
    record (``imported.float_accuracy``: the float network as imported, on the same test images).
    ``device``: where the fine-tuning runs (default CPU; see :mod:`imac.nn.train`).
    """
    from imac.nn.train import training_device

    training_device(device)  # an absent CUDA device is refused before anything is read
    src = Path(source).expanduser()
    if not src.exists():
        raise ConfigError(f"{source}: no such model file or folder")
    dataset = str(Path(data).expanduser().resolve()) if str(data) not in ("mnist", "cifar10") else str(data)
    net_shape = _network_input_shape(dataset)
    n_classes = data_info(dataset).n_classes
    if _is_binary_weights(src):
        return _import_binary(src, name, dataset, net_shape, n_classes, epochs or 0, lr, batch_size, binarize_at,
                              seed, out, overwrite, limit_train, limit_test, threads, progress, device)
    if binarize_at is not None:
        raise ConfigError("--binarize-at applies to binary weights without a trunk only")
    from imac.nn.importers import import_network as import_split
    from imac.nn.importers import serialize_trunk

    split = import_split(src, input_shape=input_shape or net_shape, state_dict=state_dict, class_name=class_name)
    if split.sizes[-1] != n_classes:
        raise ConfigError(f"{src}: the network has {split.sizes[-1]} outputs but {data} has {n_classes} classes")
    if np.prod(split.input_shape) != np.prod(net_shape):
        raise ConfigError(f"{src}: the network takes inputs of shape {tuple(split.input_shape)}, the data "
                          f"{data} gives {net_shape}")
    acts = [fc.activation for fc in split.head[:-1]]
    known = [a for a in acts if a is not None and a in ACTIVATIONS]
    float_acts = known if len(known) == len(acts) else None
    desc = f"imported from {src.name} ({split.source}): head {'-'.join(map(str, split.sizes))} on IMAC"
    spec = network_from_dict(_spec_data(name, dataset, split.sizes, split.trunk is not None, float_acts,
                                        epochs if epochs is not None else DEFAULT_EPOCHS, lr, batch_size,
                                        finetune_trunk, None, desc), f"import of {src}")
    model = ImacNet(spec, trunk_from_program(split.trunk, split.input_shape) if split.trunk is not None else None)
    model.trunk_program = split.trunk
    exact = False
    if model.float_head is not None:
        _load_float_head(model, split)
        exact = _float_head_matches(model, split, dataset)
        if not exact:
            model.float_head = None
    _start_head_from(model, [fc.weight for fc in split.head], [fc.bias for fc in split.head])
    float_acc, n_test = _float_accuracy(model, split, dataset, limit_test)
    record = ImportRecord(str(src.resolve()), split.source, _sha256(src), split.sizes, list(split.trunk_ops),
                          list(split.notes), exact, float_acc, n_test)
    extra: dict[str, Any] = {"imported": record.__dict__}
    if split.trunk is not None:
        extra["trunk_program"] = serialize_trunk(split.trunk)
        extra["trunk_input_shape"] = list(split.input_shape)
    _register_session(ModelSpec(spec, str(src)))
    return _with_record(train(name, seed=seed, out=out, overwrite=overwrite, limit_train=limit_train,
                              limit_test=limit_test, threads=threads, progress=progress, model=model, extra=extra,
                              device=device),
                        record)


@torch.no_grad()
def _float_accuracy(model: ImacNet, split: Any, dataset: str, limit: int | None) -> tuple[float, int]:
    """Test accuracy of the user's float network as imported (before any fine-tuning)."""
    from imac.nn.data import load_dataset

    test = load_dataset(dataset, "test").subset(limit)
    correct = 0
    for i in range(0, len(test), 500):
        x = model.prepare(test.images[i:i + 500])
        logits = split.float_forward(x.reshape(x.shape[0], *split.input_shape))
        correct += int((logits.argmax(1).numpy() == test.labels[i:i + 500]).sum())
    return correct / len(test), len(test)


def _float_head_matches(model: ImacNet, split: Any, dataset: str) -> bool:
    """Whether the rebuilt float head gives the user's logits (same activations and slopes)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn((16, *_network_input_shape(dataset)), generator=g)
    with torch.no_grad():
        f = model.features(x)
        ours = model.float_head(f)  # type: ignore[misc]
        theirs = split.head_forward(f)
    return float((ours - theirs).abs().max()) <= FLOAT_HEAD_TOLERANCE


def trunk_from_program(program: Any, input_shape: tuple[int, ...] | list[int]) -> ImportedTrunk:
    """The trunk module of an imported network from its exported program (as imported, and as
    read back from a checkpoint: the same modules, so the same state_dict keys)."""
    from imac.nn.importers.split import _callable

    return ImportedTrunk(_callable(program), input_shape)


def _import_binary(src: Path, name: str, dataset: str, net_shape: tuple[int, ...], n_classes: int, epochs: int,
                   lr: float, batch_size: int, binarize_at: float | None, seed: int, out: Any, overwrite: bool,
                   limit_train: Any, limit_test: Any, threads: Any, progress: bool,
                   device: str | None = None) -> ImportResult:
    from imac.nn.importers import read_binary_layers

    layers = read_binary_layers(src)
    sizes = [layers[0].weight.shape[1], *(lay.weight.shape[0] for lay in layers)]
    if sizes[0] != int(np.prod(net_shape)):
        raise ConfigError(f"{src}: the first layer takes {sizes[0]} inputs, the data {dataset} has "
                          f"{int(np.prod(net_shape))} pixels per image")
    if sizes[-1] != n_classes:
        raise ConfigError(f"{src}: the last layer has {sizes[-1]} outputs but the data has {n_classes} classes")
    desc = f"binary weights from {src.name}: head {'-'.join(map(str, sizes))} on IMAC (no trunk)"
    spec = network_from_dict(_spec_data(name, dataset, sizes, False, None, max(epochs, 1), lr, batch_size, False,
                                        binarize_at, desc), f"import of {src}")
    model = ImacNet(spec)
    with torch.no_grad():
        for lin, lay in zip(model.head.binary_linears(), layers, strict=True):
            lin.weight.copy_(torch.as_tensor(lay.weight, dtype=torch.float32))
            if lin.bias is not None:
                if lay.bias is None:
                    raise ConfigError(f"{src}: layer {lay.name} has no bias; IMAC layers carry a +-1 bias")
                lin.bias.copy_(torch.as_tensor(lay.bias, dtype=torch.float32))
    record = ImportRecord(str(src.resolve()), "binary", _sha256(src), sizes, [], [], False)
    _register_session(ModelSpec(spec, str(src)))
    if epochs <= 0:
        return _with_record(_save_as_is(model, spec, record, out, overwrite, dataset, limit_test), record)
    return _with_record(train(name, seed=seed, out=out, overwrite=overwrite, limit_train=limit_train,
                              limit_test=limit_test, threads=threads, progress=progress, model=model,
                              extra={"imported": record.__dict__}, device=device), record)


def _save_as_is(model: ImacNet, spec: Any, record: ImportRecord, out: Any, overwrite: bool, dataset: str,
                limit_test: int | None) -> TrainResult:
    """The binary weights as given, evaluated on the test set, written as a checkpoint."""
    from imac.nn.checkpoint import (
        FORMAT,
        cache_checkpoint_target,
        check_checkpoint_target,
        provenance,
        save_checkpoint,
    )
    from imac.nn.data import load_dataset
    from imac.nn.train import accuracies

    path = Path(out) if out is not None else cache_checkpoint_target(spec.name)
    check_checkpoint_target(path, overwrite)
    test = load_dataset(dataset, "test").subset(limit_test)
    metrics = {**accuracies(model, test), "n_test": len(test), "history": [], "train_seconds": 0.0}
    save_checkpoint(path, {"format": FORMAT, "model": spec.name, "network": spec.model_dump(mode="json"),
                           "seed": 0, "epochs": 0, "epoch": 0, "metrics": metrics, "state_dict": model.state_dict(),
                           "optimizer": None, "int8_calibration": None, "best": None,
                           "imported": record.__dict__, "data_sha256": {"test": test.sha256}, **provenance()})
    return TrainResult(path, metrics, 0, 0.0)
