"""ONNX route (optional extra ``imac[onnx]``): onnx2torch converts the file to a torch.fx
GraphModule, which then goes the PyTorch way (torch.export, split)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from imac.errors import ConfigError, DataError
from imac.nn.importers.split import SplitNetwork, _first_line, export_module, split_program

EXTRA_HINT = "pip install imac[onnx]"


def _modules() -> tuple[Any, Any]:
    """(onnx, onnx2torch), or a ConfigError saying how to install them.

    onnx2torch imports torchvision at import time, for its NMS and RoIAlign converters only.
    PyPI's torchvision is built against the CUDA torch and cannot load beside a CPU-only torch
    (and installing a matching one may replace the CPU torch), so when torchvision itself cannot
    be imported, onnx2torch is imported with an empty stand-in for it: every other operator
    converts as usual, and a network that uses NMS or RoIAlign is refused (:func:`_convert`)."""
    try:
        import onnx
    except ImportError as err:
        raise ConfigError(f"importing ONNX networks needs the optional extra: {EXTRA_HINT} "
                          f"({_first_line(err)})") from None
    if "onnx2torch" not in sys.modules and importlib.util.find_spec("onnx2torch") is not None:
        try:
            import torchvision  # noqa: F401
        except Exception:  # missing, or a CUDA build beside a CPU torch
            _import_onnx2torch_without_torchvision()
    try:
        import onnx2torch
    except Exception as err:
        raise ConfigError(f"importing ONNX networks needs the optional extra: {EXTRA_HINT} "
                          f"({_first_line(err)})") from None
    return onnx, onnx2torch


def _import_onnx2torch_without_torchvision() -> None:
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "torchvision" or k.startswith("torchvision.")}
    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    ops.__spec__ = importlib.machinery.ModuleSpec("torchvision.ops", None)
    ops.roi_align = ops.nms = ops.box_convert = None  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops})
    try:
        import onnx2torch  # noqa: F401
    except Exception:
        pass  # reported by the caller's own import
    finally:
        for k in ("torchvision", "torchvision.ops"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)


def onnx_input_shape(model: Any, what: str) -> tuple[int, ...]:
    """One sample's shape from the ONNX graph's (only) input, the batch dimension left out."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ConfigError(f"{what}: the ONNX graph has {len(inputs)} inputs; imac imports networks with one input")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) < 2 or any(d is None or d < 1 for d in shape[1:]):
        raise ConfigError(f"{what}: the ONNX input {inputs[0].name} has shape {shape}: all but the batch "
                          "dimension must be fixed")
    return tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]


def import_onnx(path: str | Path) -> SplitNetwork:
    """Import an ONNX file (one input, one output) and split it."""
    onnx, onnx2torch = _modules()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such ONNX file")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as err:
        raise DataError(f"{p}: not a valid ONNX file: {_first_line(err)}") from None
    input_shape = onnx_input_shape(model, str(p))
    gm = _convert(onnx, onnx2torch, model, str(p))
    _constant_reshapes(gm)
    ep = export_module(gm, input_shape, str(p))
    return split_program(ep, "onnx", str(p))


DETECTION_OPS = {"NonMaxSuppression", "RoiAlign"}  # the ops onnx2torch converts with torchvision
# the newest default-domain opset onnx2torch 1.5 converts every common op of (torch.onnx.export writes 18+)
ONNX2TORCH_OPSET = 17


def _drop_needless_allowzero(onnx: Any, model: Any) -> None:
    """Reshape's ``allowzero=1`` (what torch.onnx's exporter writes) only differs from the default
    when the target shape holds a 0; onnx2torch refuses it, so drop it where the shape is a constant
    without zeros."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = consts.get(node.input[1])
        for i, a in enumerate(node.attribute):
            if a.name == "allowzero" and a.i == 1 and shape is not None and not (shape == 0).any():
                del node.attribute[i]
                break


def _convert(onnx: Any, onnx2torch: Any, model: Any, what: str) -> Any:
    """onnx2torch.convert, after making torch.onnx's newer files readable by it (an opset it knows,
    no needless ``allowzero``)."""
    detection = sorted({n.op_type for n in model.graph.node} & DETECTION_OPS)
    if detection:
        raise ConfigError(f"{what}: the network uses {', '.join(detection)} (detection operators): imac imports "
                          "classifiers whose last layers are fully connected")
    _drop_needless_allowzero(onnx, model)
    try:
        return onnx2torch.convert(model)
    except NotImplementedError as err:
        first = err
    except Exception as err:
        raise ConfigError(f"{what}: converting the ONNX graph to PyTorch failed: {_first_line(err)}") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > ONNX2TORCH_OPSET:
        try:
            from onnx import version_converter

            older = version_converter.convert_version(model, ONNX2TORCH_OPSET)
            _drop_needless_allowzero(onnx, older)
            return onnx2torch.convert(older)
        except Exception:
            pass
    raise ConfigError(f"{what}: onnx2torch cannot convert this network: {_first_line(first)}") from None


def _constant_reshapes(gm: Any) -> None:
    """onnx2torch's Reshape reads its target shape from a tensor at run time, which torch.export
    cannot trace (a data-dependent branch); where that shape is a constant without zeros (a
    flatten, typically), call ``torch.reshape`` with the shape written out instead."""
    import torch

    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(gm.get_submodule(node.target)).__name__ != "OnnxReshape":
            continue
        if len(node.args) != 2 or getattr(node.args[1], "op", None) != "get_attr":
            continue
        shape = gm
        for part in str(node.args[1].target).split("."):
            shape = getattr(shape, part)
        if not isinstance(shape, torch.Tensor) or shape.dim() != 1 or bool((shape == 0).any()):
            continue
        with gm.graph.inserting_after(node):
            new = gm.graph.call_function(torch.reshape, (node.args[0], tuple(int(v) for v in shape.tolist())))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.recompile()
