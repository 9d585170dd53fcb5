"""Binary (+-1) weights trained elsewhere: a NumPy ``.npz`` file or a folder of CSV matrices.

npz keys: ``W<i>`` / ``b<i>``, or ``weight_<i>`` / ``bias_<i>`` (also ``w<i>``, ``weight<i>``,
``weights_<i>``, ``B<i>``, ``bias<i>``, ``biases_<i>``), i = 0, 1, ... or 1, 2, ... in layer order,
every bias optional.  CSV folder: one weight matrix per layer in a file whose name holds the layer
number (``W1.csv``, ``weight_1.csv``, ``layer1.csv``, ``fc1_weights.csv`` ...), biases optional in
files whose names start with ``b`` or ``bias`` (``b1.csv``, ``B1.csv``, ``bias_1.csv``), comma-,
semicolon- or whitespace-separated, no header.  A matrix may be stored (out x in) or (in x out):
the layout is the one under which the layers' shapes chain (and the biases fit); (out x in) when
both do.  Values must be exactly -1 or +1.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from imac.errors import ConfigError, DataError, ShapeError
from imac.hardware.mapping import BinaryLayer, WeightShape

Layout = Literal["auto", "out_in", "in_out"]

_W_KEY = re.compile(r"^(?:W|w|weight_?|weights_?)(\d+)$")
_B_KEY = re.compile(r"^(?:b|B|bias_?|biases_?)(\d+)$")
_NUM = re.compile(r"(\d+)")


@dataclass
class BinaryWeights(WeightShape):
    """One binary FC layer: weight (out, in) and bias (out,) in {-1, +1}."""

    weight: np.ndarray
    bias: np.ndarray | None
    name: str

    def to_layer(self, volts_per_unit_sum: float) -> object:
        """As an :class:`imac.hardware.mapping.BinaryLayer`."""
        return BinaryLayer(self.weight, self.bias, volts_per_unit_sum=volts_per_unit_sum)


def _check_values(arr: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(arr, dtype=float)
    if a.size == 0:
        raise DataError(f"{where}: empty matrix")
    nan = ~np.isfinite(a)
    if nan.any():
        pos = tuple(int(i) for i in np.argwhere(nan)[0])
        raise DataError(f"{where}: {a[pos]} at {_pos(pos)}: binary weights must be -1 or +1")
    bad = (a != 1.0) & (a != -1.0)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{where}: value {a[pos]:g} at {_pos(pos)}: binary weights must be -1 or +1")
    return a


def _pos(pos: tuple[int, ...]) -> str:
    if len(pos) == 2:
        return f"row {pos[0] + 1}, column {pos[1] + 1}"
    return f"position {pos[0] + 1}"


def _resolve_layout(mats: list[np.ndarray], biases: list[np.ndarray | None], names: list[str],
                    layout: Layout, where: str) -> list[np.ndarray]:
    """The matrices as (out, in), by the layout under which the shapes chain and the biases fit."""
    def fits(oriented: list[np.ndarray]) -> bool:
        for i, w in enumerate(oriented):
            if biases[i] is not None and biases[i].size != w.shape[0]:  # type: ignore[union-attr]
                return False
            if i + 1 < len(oriented) and w.shape[0] != oriented[i + 1].shape[1]:
                return False
        return True

    as_is, transposed = list(mats), [m.T for m in mats]
    if layout == "out_in":
        candidates = [("out x in", as_is)]
    elif layout == "in_out":
        candidates = [("in x out", transposed)]
    elif layout == "auto":
        candidates = [("out x in", as_is), ("in x out", transposed)]
    else:
        raise ConfigError(f"layout must be 'auto', 'out_in' or 'in_out', got {layout!r}")
    for _, oriented in candidates:
        if fits(oriented):
            return oriented
    # say where it breaks, under the first layout tried
    shapes = ", ".join(f"{n} {m.shape[0]}x{m.shape[1]}" for n, m in zip(names, mats, strict=True))
    for i in range(len(mats) - 1):
        if not any(a.shape[k] == b.shape[j] for a, b in [(mats[i], mats[i + 1])] for k in (0, 1) for j in (0, 1)):
            raise ShapeError(f"{where}: {names[i]} ({mats[i].shape[0]}x{mats[i].shape[1]}) and {names[i + 1]} "
                             f"({mats[i + 1].shape[0]}x{mats[i + 1].shape[1]}) share no dimension: the layers do "
                             f"not chain (shapes: {shapes})")
    for i, b in enumerate(biases):
        if b is not None and b.size not in mats[i].shape:
            raise ShapeError(f"{where}: the bias of {names[i]} has {b.size} values but its weights are "
                             f"{mats[i].shape[0]}x{mats[i].shape[1]}")
    raise ShapeError(f"{where}: the layers' shapes do not chain as (out x in) nor as (in x out) "
                     f"({'layout ' + layout if layout != 'auto' else 'shapes'}: {shapes})")


def _bias_vector(arr: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(arr, dtype=float)
    if a.ndim > 2 or (a.ndim == 2 and min(a.shape) != 1):
        raise ShapeError(f"{where}: a bias must be one row or one column, got shape {a.shape}")
    return _check_values(a.reshape(-1), where)


def _read_npz(path: Path, layout: Layout) -> list[BinaryWeights]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:
        raise DataError(f"{path}: not a NumPy .npz file: {type(err).__name__}: {err}") from None
    weights: dict[int, tuple[str, np.ndarray]] = {}
    biases: dict[int, tuple[str, np.ndarray]] = {}
    for key, arr in data.items():
        mw, mb = _W_KEY.match(key), _B_KEY.match(key)
        if mw:
            weights[int(mw.group(1))] = (key, arr)
        elif mb:
            biases[int(mb.group(1))] = (key, arr)
        else:
            raise DataError(f"{path}: unknown key {key!r}; expected W0, b0, W1, b1, ... (or weight_0, bias_0, ...)")
    if not weights:
        raise DataError(f"{path}: no weight matrices (keys W0, W1, ... or weight_0, weight_1, ...)")
    idx = sorted(weights)
    if idx != list(range(idx[0], idx[0] + len(idx))) or idx[0] not in (0, 1):
        raise DataError(f"{path}: weight keys must be numbered 0, 1, 2, ... (or from 1) without gaps, got "
                        f"{[weights[i][0] for i in idx]}")
    extra = sorted(set(biases) - set(weights))
    if extra:
        raise DataError(f"{path}: bias {biases[extra[0]][0]} has no weight matrix with the same number")
    names, mats, bvecs = [], [], []
    for i in idx:
        key, w = weights[i]
        where = f"{path} [{key}]"
        if w.ndim != 2:
            raise ShapeError(f"{where}: a weight matrix must be 2-D, got shape {w.shape}")
        mats.append(_check_values(w, where))
        names.append(key)
        bvecs.append(_bias_vector(biases[i][1], f"{path} [{biases[i][0]}]") if i in biases else None)
    oriented = _resolve_layout(mats, bvecs, names, layout, str(path))
    return [BinaryWeights(w, b, n) for w, b, n in zip(oriented, bvecs, names, strict=True)]


def _read_matrix(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read: {err}") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        cells = [c for c in re.split(r"[,;\s]+", line) if c != ""]
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise DataError(f"{path}: line {line_no}: {bad!r} is not a number") from None
    if not rows:
        raise DataError(f"{path}: empty file")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise DataError(f"{path}: rows of different lengths ({sorted(widths)})")
    return np.array(rows, dtype=float)


def _is_float(c: str) -> bool:
    try:
        float(c)
    except ValueError:
        return False
    return True


def _number(name: str) -> int | None:
    nums = _NUM.findall(name)
    return int(nums[-1]) if nums else None


def _read_csv_folder(folder: Path, layout: Layout) -> list[BinaryWeights]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".txt"))
    if not files:
        raise DataError(f"{folder}: no .csv files (one weight matrix per layer: W1.csv, W2.csv, ...)")
    wfiles: dict[int, Path] = {}
    bfiles: dict[int, Path] = {}
    for p in files:
        n = _number(p.stem)
        if n is None:
            raise DataError(f"{p}: the file name holds no layer number (name layers W1.csv, W2.csv, ...)")
        is_bias = re.match(r"^(b|bias)", p.stem, flags=re.IGNORECASE) is not None
        target = bfiles if is_bias else wfiles
        if n in target:
            raise DataError(f"{p}: layer {n} has two {'bias' if is_bias else 'weight'} files "
                            f"({target[n].name} and {p.name})")
        target[n] = p
    if not wfiles:
        raise DataError(f"{folder}: no weight files (only biases: {', '.join(p.name for p in bfiles.values())})")
    order = sorted(wfiles)
    extra = sorted(set(bfiles) - set(wfiles))
    if extra:
        raise DataError(f"{bfiles[extra[0]]}: no weight file with layer number {extra[0]}")
    names, mats, bvecs = [], [], []
    for n in order:
        p = wfiles[n]
        mats.append(_check_values(_read_matrix(p), str(p)))
        names.append(p.name)
        bvecs.append(_bias_vector(_read_matrix(bfiles[n]), str(bfiles[n])) if n in bfiles else None)
    oriented = _resolve_layout(mats, bvecs, names, layout, str(folder))
    return [BinaryWeights(w, b, Path(n).stem) for w, b, n in zip(oriented, bvecs, names, strict=True)]


def read_binary_layers(path: str | Path, layout: Layout = "auto") -> list[BinaryWeights]:
    """Binary layers from an ``.npz`` file or a folder of CSV files (see the module doc)."""
    p = Path(path)
    if p.is_dir():
        return _read_csv_folder(p, layout)
    if not p.is_file():
        raise DataError(f"{p}: no such file or folder")
    if p.suffix.lower() == ".npz":
        return _read_npz(p, layout)
    if p.suffix.lower() == ".csv":
        raise DataError(f"{p}: give the folder holding the layers' CSV files, not one file")
    raise DataError(f"{p}: binary weights are an .npz file or a folder of .csv files")


def write_binary_layers(layers: list[BinaryWeights], path: str | Path, fmt: Literal["npz", "csv"] = "npz") -> Path:
    """Write ``layers`` as an ``.npz`` (W0, b0, W1, ...) or a folder of CSV files (W0.csv, b0.csv, ...),
    weights (out x in), values -1/1."""
    if not layers:
        raise ConfigError("no layers to write")
    for i, lay in enumerate(layers):
        _check_values(lay.weight, f"layer {i} ({lay.name}) weight")
        if lay.bias is not None:
            _check_values(lay.bias, f"layer {i} ({lay.name}) bias")
    for a, b in itertools.pairwise(layers):
        if a.fan_out != b.fan_in:
            raise ShapeError(f"layer {a.name} has {a.fan_out} outputs but {b.name} takes {b.fan_in} inputs")
    p = Path(path)
    if fmt == "npz":
        arrays: dict[str, np.ndarray] = {}
        for i, lay in enumerate(layers):
            arrays[f"W{i}"] = np.asarray(lay.weight, dtype=np.int8)
            if lay.bias is not None:
                arrays[f"b{i}"] = np.asarray(lay.bias, dtype=np.int8)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        return p
    if fmt == "csv":
        p.mkdir(parents=True, exist_ok=True)
        for i, lay in enumerate(layers):
            np.savetxt(p / f"W{i}.csv", np.asarray(lay.weight, dtype=int), fmt="%d", delimiter=",")
            if lay.bias is not None:
                np.savetxt(p / f"b{i}.csv", np.asarray(lay.bias, dtype=int).reshape(1, -1), fmt="%d", delimiter=",")
        return p
    raise ConfigError(f"fmt must be 'npz' or 'csv', got {fmt!r}")
