"""Bring your own network: import it and split it into a CPU trunk and an IMAC FC head.

Routes (docs/import.md): :func:`import_pytorch` (an ``nn.Module``, or its .py file + a state_dict),
:func:`import_torchscript` (``torch.jit.save``), :func:`import_exported` (``torch.export.save``),
:func:`import_onnx` (optional extra ``imac[onnx]``), :func:`import_network` (by file suffix).  Each
gives a :class:`SplitNetwork`: the CPU trunk as a ``torch.export.ExportedProgram``, the trailing
chain of fully-connected layers as :class:`FloatFC`, and the float network's forward.

Binary weights trained elsewhere (``.npz`` or a folder of CSV files): :func:`read_binary_layers`,
:func:`write_binary_layers`, :class:`BinaryWeights`.  The trunk's CPU work: :func:`trunk_workload`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imac.errors import ConfigError, DataError
from imac.nn.importers.binary import BinaryWeights, read_binary_layers, write_binary_layers
from imac.nn.importers.onnx_route import import_onnx
from imac.nn.importers.pytorch import (
    deserialize_trunk,
    import_exported,
    import_pytorch,
    import_torchscript,
    serialize_trunk,
)
from imac.nn.importers.split import FloatFC, SplitNetwork, split_program

if TYPE_CHECKING:
    from imac.system.cpu.workload import LayerWork

__all__ = [
    "BinaryWeights",
    "FloatFC",
    "SplitNetwork",
    "deserialize_trunk",
    "import_exported",
    "import_network",
    "import_onnx",
    "import_pytorch",
    "import_torchscript",
    "read_binary_layers",
    "serialize_trunk",
    "split_program",
    "trunk_workload",
    "write_binary_layers",
]

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript", ".zip")


def import_network(path: str | Path, *, input_shape: tuple[int, ...] | None = None,
                   state_dict: str | Path | None = None, class_name: str | None = None) -> SplitNetwork:
    """Import a network file by its suffix: ``.py`` (+ ``state_dict``, needs ``input_shape``),
    ``.pt2`` (torch.export), ``.onnx``, ``.pt``/``.pth``/``.ts``/``.jit`` (TorchScript, needs
    ``input_shape``)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir() or suffix in (".npz", ".csv"):
        raise ConfigError(f"{p}: binary weights, not a network: read them with read_binary_layers")
    if suffix == ".py":
        if input_shape is None:
            raise ConfigError(f"{p}: a model file needs input_shape (one sample's shape, e.g. (1, 28, 28))")
        return import_pytorch(p, state_dict=state_dict, input_shape=input_shape, class_name=class_name)
    if state_dict is not None or class_name is not None:
        raise ConfigError(f"{p}: state_dict and class_name go with a model's .py file, not a {suffix} file")
    if suffix == ".pt2":
        return import_exported(p)
    if suffix == ".onnx":
        return import_onnx(p)
    if suffix in TORCHSCRIPT_SUFFIXES:
        if _is_exported(p):
            return import_exported(p)
        if input_shape is None:
            raise ConfigError(f"{p}: a TorchScript file needs input_shape (one sample's shape, e.g. (1, 28, 28))")
        try:
            return import_torchscript(p, input_shape=input_shape)
        except DataError:
            if _is_state_dict(p):
                raise DataError(f"{p}: a state_dict, not a whole network: give the model's .py file with "
                                f"state_dict={p}") from None
            raise
    raise ConfigError(f"{p}: unknown network file type {suffix or '(no suffix)'}; one of .py (+ state_dict), "
                      f".pt2, .onnx, {', '.join(TORCHSCRIPT_SUFFIXES)} (TorchScript)")


def _is_exported(p: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            return any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _is_state_dict(p: Path) -> bool:
    import torch

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(obj, dict)


def trunk_workload(split_or_ep: Any, batch: int, name: str = "trunk") -> list[LayerWork]:
    """The CPU trunk's per-layer work (``LayerWork`` rows, the conventions of
    :mod:`imac.system.cpu.workload`) for a batch; [] for a network without a trunk."""
    from imac.system.cpu.graph_workload import graph_workload

    ep = split_or_ep.trunk if isinstance(split_or_ep, SplitNetwork) else split_or_ep
    if ep is None:
        return []
    if not hasattr(ep, "graph_signature"):
        raise ConfigError(f"trunk_workload takes a SplitNetwork or an ExportedProgram, got {type(ep).__name__}")
    return graph_workload(ep, batch, name)
