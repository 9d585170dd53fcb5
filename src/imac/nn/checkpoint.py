"""Checkpoints: one ``torch.save`` of a plain dict, written atomically, with a metrics JSON beside.

Payload keys: ``format``, ``model`` (the network's name), ``network`` (its full network spec, so a
checkpoint describes itself; checkpoints written before network specs hold ``config``, the former
builder's keyword arguments, instead), ``trunk_program`` (an imported network's traced trunk, a
``torch.export`` program as bytes), ``state_dict``,
``optimizer`` (only while a run is unfinished), ``epoch`` (epochs done), ``epochs`` (planned),
``metrics``, ``seed``, ``data_sha256`` ({split: sha256}), ``git_revision``, ``torch_version``,
``imac_version``, ``created`` (UTC ISO time), ``int8_calibration`` (activation scales of the int8
trunk, when the model has one).

Look-up of a model's checkpoint: the explicit path, then ``<cache>/checkpoints/<name>.pt``, then
the checkpoint shipped inside the package (``imac/checkpoints/<name>.pt``: package data, so an
installed wheel runs the shipped models from any folder).  Loading refuses (with :class:`DataError`) a file that
is not a checkpoint, is truncated, or belongs to another model; nothing is written on failure.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import imac
from imac.errors import ConfigError, DataError
from imac.io import atomic_write_bytes, atomic_write_text
from imac.nn.data import cache_dir
from imac.provenance import git_revision

if TYPE_CHECKING:
    from imac.nn.models import ImacNet
    from imac.nn.netspec import NetworkSpec

FORMAT = 1
NAME_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # network names that may name a cache file


def provenance() -> dict[str, Any]:
    return {
        "git_revision": git_revision(),
        "torch_version": str(torch.__version__),
        "imac_version": imac.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def default_checkpoint_path(name: str) -> Path:
    """Where network ``name``'s checkpoint is looked for in the user cache."""
    return cache_dir() / "checkpoints" / f"{name}.pt"


def cache_checkpoint_target(name: str, what: str = "the checkpoint") -> Path:
    """:func:`default_checkpoint_path` as a place to write: refused while the cache is off
    (``IMAC_CACHE_DIR=off``), where it would be deleted when the command ends."""
    from imac.io import cache_disabled

    if cache_disabled():
        raise ConfigError(f"IMAC_CACHE_DIR is off, so {what} of {name} would have no place to stay: give --out "
                          "PATH, or set IMAC_CACHE_DIR to a folder")
    return default_checkpoint_path(name)


def shipped_dir() -> Path:
    """The checkpoints (and their calibrated heads) that ship inside the package."""
    return Path(imac.__file__).resolve().parent / "checkpoints"


def committed_checkpoint_path(name: str) -> Path | None:
    """The shipped checkpoint of ``name`` (whether or not it exists)."""
    return shipped_dir() / f"{name}.pt"


def is_shipped(path: Path) -> bool:
    """Whether ``path`` lies in the package's shipped checkpoints (read-only for imac)."""
    return Path(path).resolve().is_relative_to(shipped_dir())


def metrics_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def find_checkpoint(name: str, explicit: str | Path | None = None) -> Path:
    """Where ``name``'s checkpoint is; DataError listing every place tried when none is."""
    from imac.nn.models import explicit_checkpoint, resolve_name

    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise DataError(f"checkpoint {p} not found")
        return p
    name = resolve_name(name)
    named = explicit_checkpoint(name)
    if named is not None:
        return named
    if not NAME_SAFE.match(name):
        raise DataError(f"no checkpoint for model {name!r}")
    tried = []
    for cand in (default_checkpoint_path(name), committed_checkpoint_path(name)):
        if cand is None:
            continue
        if cand.is_file():
            return cand
        tried.append(str(cand))
    raise DataError(f"no checkpoint for model {name!r}; tried: {', '.join(tried)} "
                    f"(train one with `imac train {name}`)")


def check_checkpoint_target(path: Path, overwrite: bool = False, resuming: bool = False) -> Path:
    """``path`` if a checkpoint (and its metrics JSON) may be written there, else an error.

    An existing file is replaced only with ``overwrite`` (or when resuming it) and only if it is
    an imac checkpoint itself: a user's file that happens to sit at ``--out`` is never replaced,
    nor a JSON file beside it that is not the metrics of a checkpoint there.
    """
    from imac.errors import OutputExistsError

    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give a checkpoint file name such as {path / 'model.pt'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputExistsError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    if path.exists():
        if not (overwrite or resuming):
            raise OutputExistsError(f"{path} exists; resume it, choose another --out or pass --overwrite")
        try:
            load_checkpoint(path)
        except DataError:
            raise OutputExistsError(f"{path} exists and is not an imac checkpoint; refusing to replace it") from None
    elif metrics_path(path).exists():
        raise OutputExistsError(f"{metrics_path(path)} exists and would be replaced by the checkpoint's metrics; "
                                "choose another --out")
    return path


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write the checkpoint and ``<path>.json`` with its metrics and provenance."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    write_summary(path, payload)


def write_summary(path: Path, payload: dict[str, Any]) -> None:
    """``<path>.json``: the checkpoint's metrics and provenance (and, for a hardware-aware
    calibration, its ``calibration`` record), readable without torch."""
    summary = {k: payload.get(k) for k in ("model", "config", "epoch", "epochs", "seed",
                                           "metrics", "data_sha256", "git_revision",
                                           "torch_version", "imac_version", "created")}
    if payload.get("calibration") is not None:
        summary["calibration"] = payload["calibration"]
    summary["checkpoint"] = Path(path).name
    atomic_write_text(metrics_path(path), json.dumps(summary, indent=1, default=str) + "\n")


def load_checkpoint(path: str | Path, expected_model: str | None = None) -> dict[str, Any]:
    """Read and sanity-check a checkpoint; DataError on anything but a matching checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} not found")
    try:
        # weights_only: the payload is plain containers and tensors; no code is unpickled
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"cannot read checkpoint {path}: corrupt or truncated "
                        f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload or "model" not in payload:
        raise DataError(f"{path} is not an imac checkpoint (no model/state_dict entries)")
    if payload.get("format") != FORMAT:
        raise DataError(f"{path}: checkpoint format {payload.get('format')!r}, "
                        f"this version reads {FORMAT}")
    if expected_model is not None:
        from imac.nn.models import resolve_name

        expected_model = resolve_name(expected_model)
    if expected_model is not None and payload["model"] != expected_model:
        raise DataError(f"{path} is a checkpoint of model {payload['model']!r}, "
                        f"not {expected_model!r}")
    return payload


def network_spec_of(payload: dict[str, Any], path: str | Path = "<checkpoint>") -> NetworkSpec:
    """The network spec a checkpoint was written for: its own (``network``), or, for one written
    before network specs, the shipped spec with its former builder arguments applied."""
    from imac.nn.models import legacy_spec
    from imac.nn.netspec import network_from_dict

    if payload.get("network") is not None:
        spec = network_from_dict(payload["network"], f"network spec in {path}")
        if spec.name != payload["model"]:
            raise DataError(f"{path}: holds network {spec.name!r} under the name {payload['model']!r}")
        return spec
    return legacy_spec(payload["model"], payload.get("config") or {})


def model_from_checkpoint(payload: dict[str, Any], path: str | Path = "<checkpoint>"
                          ) -> ImacNet:
    """Build the checkpoint's network and load its weights."""
    from imac.nn.models import ImacNet, check_against_named_spec

    spec = network_spec_of(payload, path)
    check_against_named_spec(spec, path)
    trunk = None
    program = None
    if spec.imported:
        from imac.nn.importers import deserialize_trunk

        blob = payload.get("trunk_program")
        if not isinstance(blob, (bytes, bytearray)):
            raise DataError(f"{path}: an imported network without its trunk program")
        try:
            program = deserialize_trunk(bytes(blob))
        except Exception as err:
            raise DataError(f"{path}: cannot read the trunk program ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
        from imac.nn.convert import trunk_from_program

        shape = payload.get("trunk_input_shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DataError(f"{path}: an imported network without a valid trunk input shape")
        trunk = trunk_from_program(program, shape)
    model = ImacNet(spec, trunk)
    model.trunk_program = program
    state = {k: v for k, v in payload["state_dict"].items() if k not in ("mean", "std")}  # legacy buffers
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: weights do not fit model {spec.name!r}: "
                        f"{str(err).splitlines()[0][:300]}") from None
    model.eval()
    return model
