"""PyTorch routes: an ``nn.Module`` (object, or a .py file + state_dict), TorchScript, torch.export."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imac.errors import ConfigError, DataError
from imac.nn.importers.split import (
    SplitNetwork,
    _first_line,
    check_input_shape,
    example_input,
    export_module,
    split_program,
)

if TYPE_CHECKING:
    from torch import nn
    from torch.export import ExportedProgram


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such {what} file")
    return p


def load_module_file(path: str | Path, class_name: str | None = None) -> nn.Module:
    """Construct (with no arguments) the ``nn.Module`` subclass defined in the Python file ``path``."""
    from torch import nn

    p = _existing(path, "model (.py)")
    mod_name = "imac_user_model_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
    try:
        source = p.read_text(encoding="utf-8")
        code = compile(source, str(p), "exec")
    except SyntaxError as err:
        raise ConfigError(f"{p}: not a Python model file: syntax error at line {err.lineno}: {err.msg}") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{p}: not a Python model file: {_first_line(err)}") from None
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None:
        raise ConfigError(f"{p}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look classes up here
    try:
        exec(code, module.__dict__)
    except Exception as err:
        sys.modules.pop(mod_name, None)
        raise ConfigError(f"{p}: running the model file failed: {_first_line(err)}") from None
    classes = {name: obj for name, obj in vars(module).items()
               if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == mod_name}
    if class_name is not None:
        if class_name not in classes:
            raise ConfigError(f"{p}: defines no nn.Module subclass named {class_name!r} "
                              f"(found: {', '.join(classes) or 'none'})")
        cls = classes[class_name]
    elif len(classes) == 1:
        cls = next(iter(classes.values()))
    elif not classes:
        raise ConfigError(f"{p}: defines no nn.Module subclass: not a model file")
    else:
        raise ConfigError(f"{p}: defines several nn.Module subclasses ({', '.join(classes)}): say which with "
                          "class_name")
    try:
        model = cls()
    except Exception as err:
        raise ConfigError(f"{p}: {cls.__name__}() failed (the model class must construct with no "
                          f"arguments): {_first_line(err)}") from None
    return model


def load_state_dict(model: nn.Module, path: str | Path) -> None:
    """Load a ``torch.save(model.state_dict())`` file into ``model`` (weights_only), one-line errors."""
    import torch

    p = _existing(path, "state_dict")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{p}: not a state_dict saved with torch.save: {_first_line(err)}") from None
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]  # a training checkpoint {"state_dict": ..., "epoch": ...}
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"{p}: not a state_dict (a mapping of parameter names to tensors), got "
                        f"{type(sd).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}")
        raise DataError(f"{p}: the state_dict does not fit {type(model).__name__} ({'; '.join(parts)})")
    model.load_state_dict(sd, strict=True)


def import_pytorch(model: nn.Module | str | Path, *, state_dict: str | Path | None = None,
                   input_shape: tuple[int, ...], class_name: str | None = None) -> SplitNetwork:
    """Import an ``nn.Module`` (or the .py file defining it, + a state_dict file) and split it."""
    from torch import nn

    shape = check_input_shape(input_shape)
    if isinstance(model, nn.Module):
        what = type(model).__name__
        module = model
    elif isinstance(model, str | Path):
        what = str(model)
        module = load_module_file(model, class_name)
    else:
        raise ConfigError(f"model must be an nn.Module or a .py file, got {type(model).__name__}")
    if state_dict is not None:
        load_state_dict(module, state_dict)
    was_training = module.training
    try:
        ep = export_module(module, shape, what)
    finally:
        module.train(was_training)
    return split_program(ep, "pytorch", what)


def torchscript_to_program(ts: Any, input_shape: tuple[int, ...], what: str) -> ExportedProgram:
    """A TorchScript module as an ExportedProgram (torch's TorchScript converter, a private API in
    torch 2.x: kept behind this one function)."""
    try:
        from torch._export.converter import TS2EPConverter
    except ImportError as err:
        raise ConfigError(f"{what}: this torch has no TorchScript -> torch.export converter ({err}); save the "
                          "model with torch.export.save, or give its .py file and state_dict") from None
    try:
        return TS2EPConverter(ts, (example_input(input_shape, 2),)).convert()
    except Exception as err:
        raise ConfigError(f"{what}: converting the TorchScript module to torch.export failed: {_first_line(err)}; "
                          "save the model with torch.export.save, or give its .py file and state_dict") from None


def import_torchscript(path: str | Path, *, input_shape: tuple[int, ...]) -> SplitNetwork:
    """Import a ``torch.jit.save`` file (scripted or traced) and split it."""
    import torch

    shape = check_input_shape(input_shape)
    p = _existing(path, "TorchScript")
    try:
        ts = torch.jit.load(str(p), map_location="cpu")
    except Exception as err:
        raise DataError(f"{p}: not a TorchScript file (torch.jit.save): {_first_line(err)}") from None
    ts.eval()
    program = torchscript_to_program(ts, shape, str(p))
    ep = export_module(unguarded_module(program), shape, str(p))  # again: a dynamic batch, the usual ops
    return split_program(ep, "torchscript", str(p))


def import_exported(path: str | Path) -> SplitNetwork:
    """Import a ``torch.export.save`` file (.pt2); the input shape is the program's own."""
    import torch

    from imac.nn.importers.graph import shape_of, user_input

    p = _existing(path, "torch.export (.pt2)")
    try:
        ep = torch.export.load(str(p))
    except Exception as err:
        raise DataError(f"{p}: not a torch.export file (torch.export.save): {_first_line(err)}") from None
    shape = shape_of(user_input(ep))
    if shape is None or any(not isinstance(d, int) for d in shape[1:]):
        raise ConfigError(f"{p}: the program's input shape {shape} is not fixed apart from the batch")
    input_shape = tuple(int(d) for d in shape[1:])
    module = unguarded_module(ep)
    try:
        again = export_module(module, input_shape, str(p))
    except ConfigError:
        again = ep  # keep the program as saved (e.g. a fixed batch size)
    return split_program(again, "torch.export", str(p))


def unguarded_module(ep: ExportedProgram) -> Any:
    """``ep.module()`` without the guard that pins the input shapes it was exported with (the batch
    size): re-exporting it then gives a dynamic batch where the graph allows one."""
    gm = ep.module()
    guards = [n for n in gm.graph.nodes if n.op == "call_module" and str(n.target) == "_guards_fn"]
    for node in guards:
        gm.graph.erase_node(node)
    if guards:
        gm.recompile()
    return gm


def serialize_trunk(ep: ExportedProgram) -> bytes:
    """An ExportedProgram as bytes (``torch.export.save`` into memory)."""
    import torch

    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def deserialize_trunk(data: bytes) -> ExportedProgram:
    """The inverse of :func:`serialize_trunk`."""
    import torch

    try:
        return torch.export.load(io.BytesIO(data))
    except (zipfile.BadZipFile, RuntimeError, KeyError, ValueError) as err:
        raise DataError(f"not a serialized trunk program: {_first_line(err)}") from None
