"""The user's own data sets, declared in a small YAML data spec (see ``docs/data.md``).

A data spec names where the images and labels are (NumPy ``.npy`` / ``.npz`` arrays, IDX files
as MNIST ships them, or an image folder with one sub-folder per class), the shape of one sample
as stored (``[H, W]`` or ``[H, W, C]``), the class names, the train/test split (two sources, or
one source and a stratified hold-out) and how raw values become network inputs
(``((x * scale) - mean) / std``, per channel).  Every file is checked when it is read: shapes
against ``input_shape``, labels against the classes, every class present in each split, finite
values, as many labels as images; every refusal is one line that names the spec and the file.

An image folder is decoded to 8-bit grey (C=1) or RGB (C=3) whatever the files' modes (alpha is
composited onto black, 16-bit grey scaled to 8 bits); ``resize`` (``none`` / ``stretch`` / ``fit``
/ ``crop``) says how an image of another size is brought to ``input_shape`` (default: refused).

Relative paths are relative to the folder of the YAML file (of the current directory for a
spec built in Python).  Reading a data spec writes nothing except the decoded arrays of an image
folder, cached under ``<cache>/datasets`` keyed by the digests of the files and the decoding
settings, ``resize`` included (decoding thousands of images takes a while; the cache makes a
second load fast).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import PrivateAttr, field_validator, model_validator

from imac.config.base import Spec, parse_spec, read_yaml
from imac.errors import ConfigError, DataError, ShapeError
from imac.io import atomic_write_bytes, cache_dir
from imac.nn.data import SPLITS, Dataset, read_idx
from imac.provenance import file_sha256

FORMATS = ("idx", "folder", "npy", "npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
BUILTIN_NAMES = ("mnist", "cifar10")  # the built-in loaders own these names
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # goes into cache file names and provenance keys
MAX_SIDE = 4096  # largest image side / channel count accepted in input_shape
USER_CACHE_FORMAT = 1  # bump when the cached array layout changes
IMAGES_KEYS = ("images", "x")  # tried in order when an npz source gives no images_key
LABELS_KEYS = ("labels", "y")
# How an image folder's images of another size reach input_shape (docs/data.md, "Image folders").
RESIZE_MODES = ("none", "stretch", "fit", "crop")
ResizeMode = Literal["none", "stretch", "fit", "crop"]
# Bilinear: Pillow widens the kernel by the reduction factor when shrinking (every source pixel
# counts, no aliasing) and interpolates linearly when enlarging; unlike bicubic/Lanczos it never
# overshoots (no ringing halos clipped at 0/255); torchvision's Resize uses it by default.
RESAMPLE = "bilinear"
# Bump when an image decodes to other pixel values (mode conversion, alpha, filter): in the cache key.
DECODE_VERSION = 2
# Modes brought to 8-bit L / RGB; anything else (32-bit int "I", float "F", ...) is refused
# because its value range is unknown.  16-bit grey is scaled (Pillow's own convert clips at 255).
GREY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", *GREY16_MODES)


def _no_bool(value: Any) -> Any:
    items = value if isinstance(value, list) else [value]
    if any(isinstance(v, (bool, np.bool_)) for v in items):
        raise ValueError(f"expected numbers, got a boolean in {value!r}")
    return value


class SplitSource(Spec):
    """Where one split (or, with a hold-out, the whole data set) is stored.

    ``npy``: ``images`` and ``labels`` (.npy files); ``npz``: ``file`` with ``images_key`` /
    ``labels_key`` (default: ``images`` or ``x``, ``labels`` or ``y``); ``idx``: ``images`` and
    ``labels`` (IDX files, gzip or not); ``folder``: ``root`` with one sub-folder per class
    (``skip_bad: true`` skips, counts and reports image files that cannot be decoded).
    """

    images: str | None = None
    labels: str | None = None
    file: str | None = None
    images_key: str | None = None
    labels_key: str | None = None
    root: str | None = None
    skip_bad: bool = False

    @field_validator("images", "labels", "file", "root")
    @classmethod
    def _path_text(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\x00" in value):
            raise ValueError("a path must be a non-empty string without NUL characters")
        return value

    def check_format(self, fmt: str, where: str) -> None:
        """Refuse keys that ``fmt`` does not use and keys it needs that are missing."""
        needs = {"npy": ("images", "labels"), "idx": ("images", "labels"), "npz": ("file",),
                 "folder": ("root",)}[fmt]
        allowed = set(needs) | {"npz": {"images_key", "labels_key"}, "folder": {"skip_bad"}}.get(fmt, set())
        given = {k for k in type(self).model_fields if getattr(self, k) not in (None, False)}
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{where}: format {fmt!r} needs {', '.join(missing)}")
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{where}: {', '.join(extra)} not used by format {fmt!r} "
                             f"(it takes {', '.join(sorted(allowed))})")


class HoldOut(Spec):
    """A stratified train/test split of a single source: ``test_fraction`` of every class
    (at least one sample, and at least one left for training) goes to the test split."""

    test_fraction: float
    seed: int = 0

    @field_validator("test_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError("test_fraction must lie strictly between 0 and 1")
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        if value < 0:
            raise ValueError("seed must be >= 0")
        return value


class DataSpec(Spec):
    """One user data set (one YAML file); see the module docstring and ``docs/data.md``."""

    name: str
    format: Literal["idx", "folder", "npy", "npz"]
    train: SplitSource | None = None
    test: SplitSource | None = None
    split: HoldOut | None = None
    input_shape: list[int]
    classes: list[str] | None = None
    scale: float = 1.0 / 255.0
    mean: list[float] | float | None = None
    std: list[float] | float | None = None
    resize: ResizeMode = "none"

    _base_dir: Path | None = PrivateAttr(default=None)  # folder relative paths start from
    _spec_path: Path | None = PrivateAttr(default=None)  # the YAML file, when read from one

    @field_validator("input_shape", "mean", "std", mode="before")
    @classmethod
    def _no_bool_inside(cls, value: Any) -> Any:
        return _no_bool(value)

    @field_validator("resize", mode="before")
    @classmethod
    def _resize_text(cls, value: Any) -> Any:
        # YAML reads `resize: no` / `off` as False: say so instead of "expected a number"
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"YAML reads `{'yes/on/true' if value else 'no/off/false'}` as a boolean; "
                             f"write one of {', '.join(RESIZE_MODES)} (none keeps today's sizes)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError("name must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        if value.lower() in BUILTIN_NAMES:
            raise ValueError(f"{value!r} is a built-in data set; give your data set another name")
        return value

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: list[int]) -> list[int]:
        if len(value) not in (2, 3):
            raise ValueError("input_shape is one sample's shape as stored: [H, W] or [H, W, C]")
        if any(not 1 <= v <= MAX_SIDE for v in value):
            raise ValueError(f"every input_shape entry must lie in 1..{MAX_SIDE}")
        return value

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError("a classifier needs at least 2 classes")
        if any(not c.strip() for c in value):
            raise ValueError("class names must not be empty")
        dup = sorted({c for c in value if value.count(c) > 1})
        if dup:
            raise ValueError(f"duplicate class names: {', '.join(dup)}")
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("scale must be > 0")
        return value

    @field_validator("std")
    @classmethod
    def _std(cls, value: list[float] | float | None) -> list[float] | float | None:
        if value is not None and any(v <= 0 for v in (value if isinstance(value, list) else [value])):
            raise ValueError("std must be > 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        if self.train is None and self.test is None:
            raise ValueError("give train and test sources, or one of them with split.test_fraction")
        if self.train is not None and self.test is not None and self.split is not None:
            raise ValueError("split (a hold-out) is only for a single source: train and test are both given")
        if (self.train is None or self.test is None) and self.split is None:
            given = "train" if self.train is not None else "test"
            missing = "test" if given == "train" else "train"
            raise ValueError(f"only {given} is given: add a {missing} source or split: {{test_fraction: ...}}")
        for where, src in (("train", self.train), ("test", self.test)):
            if src is not None:
                src.check_format(self.format, where)
        c = self.channels
        for what in ("mean", "std"):
            v = getattr(self, what)
            if isinstance(v, list) and len(v) not in (1, c):
                raise ValueError(f"{what} has {len(v)} values; input_shape {self.input_shape} has {c} channel(s)")
        if self.format == "folder":
            if c not in (1, 3):
                raise ValueError(f"an image folder is read as grey (C=1) or RGB (C=3), input_shape gives C={c}")
            for cname in self.classes or []:
                if cname in (".", "..") or "/" in cname or "\\" in cname:
                    raise ValueError(f"class {cname!r} cannot be a sub-folder name")
        elif self.resize != "none":
            # (no ';' here: load_data_spec's clean-up of '<root>' messages splits at it)
            raise ValueError(f"resize: only an image folder (format: folder) is resized, format {self.format!r} "
                             "arrays are used as stored: remove resize")
        return self

    # -- derived -------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.input_shape[2] if len(self.input_shape) == 3 else 1

    @property
    def source(self) -> str:
        """How errors name this spec: its YAML file, or its name when built in Python."""
        return str(self._spec_path) if self._spec_path is not None else f"data spec {self.name!r}"

    @property
    def base_dir(self) -> Path:
        return self._base_dir if self._base_dir is not None else Path.cwd()

    def resolve(self, path: str) -> Path:
        """``path`` as the spec means it: relative to the YAML file's folder, ``~`` expanded."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def normalize(self, images: np.ndarray | Any) -> Any:
        """``prepare_images(self, images)``: (N, C, H, W) float32 network inputs."""
        return prepare_images(self, images)

    def n_classes(self) -> int:
        """The number of classes: ``len(classes)``, the class sub-folders, or max label + 1."""
        return len(_class_names(self))


# -- reading the spec ----------------------------------------------------------------------
def load_data_spec(path: str | os.PathLike[str]) -> DataSpec:
    """The data spec in the YAML file ``path`` (strict YAML; errors name the file and key)."""
    path = Path(path).expanduser()
    data = read_yaml(path)
    try:
        spec = parse_spec(data, DataSpec, str(path))
    except ConfigError as err:  # a check across keys names its keys itself: drop '<root>' and the whole input
        raise ConfigError(re.sub(r"<root>: ([^;]*?) \(got [^;]*\)(?=;|$)", r"\1", str(err))) from None
    spec._base_dir = path.resolve().parent
    spec._spec_path = path.resolve()
    return spec


def as_data_spec(spec_or_path: DataSpec | str | os.PathLike[str]) -> DataSpec:
    if isinstance(spec_or_path, DataSpec):
        return spec_or_path
    if isinstance(spec_or_path, (str, os.PathLike)):
        return load_data_spec(spec_or_path)
    raise ConfigError(f"expected a DataSpec or the path of a data-spec YAML, got {type(spec_or_path).__name__}")


def is_data_spec(value: Any) -> bool:
    """True for a DataSpec or a str/path naming a ``.yaml`` / ``.yml`` file."""
    if isinstance(value, DataSpec):
        return True
    return isinstance(value, (str, os.PathLike)) and str(value).lower().endswith((".yaml", ".yml"))


# -- low-level readers ---------------------------------------------------------------------
def _existing(spec: DataSpec, where: str, path: str) -> Path:
    p = spec.resolve(path)
    if not p.exists():
        raise DataError(f"{spec.source}: {where}: file not found: {p}")
    if not p.is_file():
        raise DataError(f"{spec.source}: {where}: {p} is not a file")
    return p


def _load_npy(spec: DataSpec, where: str, path: str) -> tuple[np.ndarray, Path]:
    p = _existing(spec, where, path)
    with open(p, "rb") as fh:
        magic = fh.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise DataError(f"{spec.source}: {where}: {p} is an .npz archive; use format npz")
    if magic != b"\x93NUMPY":
        raise DataError(f"{spec.source}: {where}: {p} is not a readable .npy file (no NumPy header)")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{spec.source}: {where}: {p} holds Python objects, not a numeric array") from None
        raise DataError(f"{spec.source}: {where}: {p} is not a readable .npy file: {err}") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{spec.source}: {where}: {p} is not a readable .npy file: {err}") from None
    return arr, p


def _load_npz(spec: DataSpec, where: str, src: SplitSource, labels_only: bool = False
              ) -> tuple[np.ndarray | None, np.ndarray, Path]:
    assert src.file is not None
    p = _existing(spec, f"{where}.file", src.file)

    def pick(z: Any, given: str | None, defaults: tuple[str, ...], key: str) -> np.ndarray:
        names = list(z.files)
        want = (given,) if given is not None else defaults
        hit = next((k for k in want if k in names), None)
        if hit is None:
            raise DataError(f"{spec.source}: {where}: {p} has no array {' or '.join(map(repr, want))} "
                            f"(it holds {', '.join(names) or 'nothing'}); set {where}.{key}")
        return z[hit]

    with open(p, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{spec.source}: {where}: {p} is a single array, not an .npz archive; use format npy")
    if magic[:4] != b"PK\x03\x04":
        raise DataError(f"{spec.source}: {where}: {p} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(p, allow_pickle=False) as z:
            labels = pick(z, src.labels_key, LABELS_KEYS, "labels_key")
            images = None if labels_only else pick(z, src.images_key, IMAGES_KEYS, "images_key")
    except DataError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{spec.source}: {where}: {p} holds Python objects, not numeric arrays") from None
        raise DataError(f"{spec.source}: {where}: {p} is not a readable .npz file: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{spec.source}: {where}: {p} is not a readable .npz file: {err}") from None
    return images, labels, p


def _read_idx(spec: DataSpec, where: str, path: str) -> tuple[np.ndarray, Path]:
    p = _existing(spec, where, path)
    try:
        return read_idx(p), p
    except DataError as err:
        raise DataError(f"{spec.source}: {where}: {err}") from None


def _class_folders(spec: DataSpec, where: str, root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"{spec.source}: {where}.root: "
                        f"{'folder not found' if not root.exists() else 'not a folder'}: {root}")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _class_names(spec: DataSpec) -> list[str]:
    """Class names in label order (reads the label files when the spec gives none)."""
    if spec.classes is not None:
        return list(spec.classes)
    sources = [(w, s) for w, s in (("train", spec.train), ("test", spec.test)) if s is not None]
    if spec.format == "folder":
        w, s = sources[0]
        assert s.root is not None
        names = _class_folders(spec, w, spec.resolve(s.root))
        if len(names) < 2:
            raise DataError(f"{spec.source}: {w}.root {spec.resolve(s.root)} has {len(names)} class "
                            "sub-folder(s); a classifier needs at least 2")
        return names
    top = -1
    for w, s in sources:
        labels, p = _raw_labels(spec, w, s)
        labels = _check_labels(spec, w, p, labels)
        if labels.size:
            top = max(top, int(labels.max()))
    if top < 1:
        raise DataError(f"{spec.source}: the labels hold {top + 1} class(es); a classifier needs at least 2")
    return [str(i) for i in range(top + 1)]


def _raw_labels(spec: DataSpec, where: str, src: SplitSource) -> tuple[np.ndarray, Path]:
    if spec.format == "npy":
        assert src.labels is not None
        return _load_npy(spec, f"{where}.labels", src.labels)
    if spec.format == "npz":
        _, labels, p = _load_npz(spec, where, src, labels_only=True)
        return labels, p
    assert src.labels is not None
    return _read_idx(spec, f"{where}.labels", src.labels)


def _check_labels(spec: DataSpec, where: str, path: Path, labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{spec.source}: {where}: labels in {path} have shape {labels.shape}; expected one "
                        "integer class index per sample, shape (N,)")
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DataError(f"{spec.source}: {where}: labels in {path} are not whole numbers")
        return labels.astype(np.int64)
    raise DataError(f"{spec.source}: {where}: labels in {path} have dtype {labels.dtype}; expected integers")


def _check_images(spec: DataSpec, where: str, path: Path, images: np.ndarray) -> np.ndarray:
    if images.dtype.kind not in "uifb":
        raise DataError(f"{spec.source}: {where}: images in {path} have dtype {images.dtype}; expected numbers")
    if tuple(images.shape[1:]) != tuple(spec.input_shape) or images.ndim < 1:
        raise DataError(f"{spec.source}: {where}: images in {path} have shape {tuple(images.shape)} "
                        f"(one sample {tuple(images.shape[1:])}), input_shape says {tuple(spec.input_shape)}")
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
        bad = ~np.isfinite(images)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            raise DataError(f"{spec.source}: {where}: images in {path} hold {int(bad.sum())} NaN or infinite "
                            f"value(s) (first in sample {first})")
    return images


# -- image folders -------------------------------------------------------------------------
def _folder_files(spec: DataSpec, where: str, root: Path, classes: list[str]) -> list[tuple[int, Path]]:
    """(label, file) of every image file below ``root``, classes interleaved (sample k of each
    class in turn), so that the first N samples (``limit``) are balanced."""
    folders = _class_folders(spec, where, root)
    extra = sorted(set(folders) - set(classes))
    if extra:
        raise DataError(f"{spec.source}: {where}.root {root}: sub-folder(s) {', '.join(extra)} are not among "
                        f"the classes ({', '.join(classes)})")
    per_class = []
    for c, name in enumerate(classes):
        d = root / name
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES) \
            if d.is_dir() else []
        per_class.append([(c, f) for f in files])
    out = []
    for k in range(max((len(f) for f in per_class), default=0)):
        out += [files[k] for files in per_class if k < len(files)]
    return out


class _ModeError(Exception):
    """An image that decodes but whose mode has no sensible 8-bit grey/RGB form (never skipped)."""


def _to_mode(im: Any, mode: str) -> Any:
    """``im`` (any Pillow mode) as 8-bit ``mode`` ("L" or "RGB")."""
    from PIL import Image

    if im.mode in GREY16_MODES:  # full 16-bit range -> 0..255 (Image.convert would clip at 255)
        wide = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.round(wide * (255.0 / 65535.0)).astype(np.uint8))
    elif im.mode not in CONVERTIBLE_MODES:
        raise _ModeError(f"has mode {im.mode!r}, which has no sensible 8-bit grey or RGB form (unknown value "
                         "range); save it as 8-bit grey, RGB or RGBA")
    if im.mode in ("LA", "PA", "RGBA", "RGBa") or "transparency" in im.info:
        # composite onto black: transparent pixels' hidden colours are arbitrary, black is what
        # `fit` pads with; alpha a keeps the fraction a of a pixel's colour
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return im.convert(mode)


def _to_size(im: Any, size: tuple[int, int], resize: str) -> Any:
    """``im`` brought to ``size`` (H, W) as ``resize`` says (Pillow's bilinear filter); an image
    that already has the size is returned as it is, whatever ``resize``."""
    from PIL import Image, ImageOps

    h, w = size
    if im.size == (w, h) or resize == "none":
        return im
    bilinear = Image.Resampling[RESAMPLE.upper()]
    if resize == "stretch":
        return im.resize((w, h), bilinear)
    if resize == "crop":  # cover the target, cut the overflow equally from both sides (one resampling)
        return ImageOps.fit(im, (w, h), bilinear, centering=(0.5, 0.5))
    # fit: the whole image inside, the rest padded with 0; at least one pixel wide (a 1000x1 line
    # stays a line instead of vanishing), the odd padding pixel at the right / bottom
    scale = min(w / im.width, h / im.height)
    nw, nh = min(w, max(1, round(im.width * scale))), min(h, max(1, round(im.height * scale)))
    out = Image.new(im.mode, (w, h), 0)
    out.paste(im.resize((nw, nh), bilinear), ((w - nw) // 2, (h - nh) // 2))
    return out


def _decode(path: Path, mode: str, size: tuple[int, int], resize: str) -> np.ndarray:
    """The image in ``path`` as a uint8 array in ``mode`` ("L" or "RGB"), brought to ``size``
    (H, W) as ``resize`` says (with ``none`` it keeps its own size)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # a broken file fails here, before any conversion (skip_bad may skip it)
        return np.asarray(_to_size(_to_mode(im, mode), size, resize), dtype=np.uint8)


def _cache_file(spec: DataSpec, key: str) -> Path:
    return cache_dir() / "datasets" / f"user-{spec.name}-{key[:24]}-v{USER_CACHE_FORMAT}.npz"


def _read_folder(spec: DataSpec, where: str, src: SplitSource, classes: list[str], cache: bool
                 ) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    assert src.root is not None
    root = spec.resolve(src.root)
    items = _folder_files(spec, where, root, classes)
    files = [f for _, f in items]
    # resize and the decoding rules are in the key: changing either never serves stale arrays
    key_data = {"v": USER_CACHE_FORMAT, "shape": spec.input_shape, "classes": classes, "skip_bad": src.skip_bad,
                "resize": spec.resize, "resample": RESAMPLE, "decode": DECODE_VERSION,
                "files": [[str(f.relative_to(root)), c, file_sha256(f)] for c, f in items]}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()
    cpath = _cache_file(spec, key)
    cached = _read_cache(cpath) if cache else None
    if cached is not None:
        images, labels, skipped = cached
    else:
        mode = "RGB" if spec.channels == 3 else "L"
        want = (spec.input_shape[0], spec.input_shape[1])
        arrays, labs, skipped = [], [], []
        for c, f in items:
            try:
                arr = _decode(f, mode, want, spec.resize)
            except _ModeError as err:  # decodes fine, so skip_bad does not apply
                raise DataError(f"{spec.source}: {where}: image {f} {err}") from None
            except Exception as err:  # Pillow raises many kinds for a bad file
                if src.skip_bad:
                    skipped.append(str(f.relative_to(root)))
                    continue
                raise DataError(f"{spec.source}: {where}: cannot decode image {f}: "
                                f"{' '.join(str(err).split())[:200]} (set {where}.skip_bad: true to skip such files)"
                                ) from None
            if arr.shape[:2] != want:  # only with resize: none
                raise DataError(f"{spec.source}: {where}: image {f} is {arr.shape[0]}x{arr.shape[1]} (HxW), "
                                f"input_shape says {want[0]}x{want[1]}; set resize: stretch, fit or crop "
                                "to resize images")
            arrays.append(arr)
            labs.append(c)
        shape = (len(arrays), *spec.input_shape)
        images = np.stack(arrays).reshape(shape) if arrays else np.zeros(shape, np.uint8)
        labels = np.asarray(labs, dtype=np.int64)
        if cache:
            _write_cache(cpath, images, labels, skipped)
    if skipped:
        print(f"imac: {spec.source}: {where}: skipped {len(skipped)} image file(s) that cannot be decoded: "
              f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", file=sys.stderr)
    skipped_set = set(skipped)
    return images, labels, [f for f in files if str(f.relative_to(root)) not in skipped_set]


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"], [str(s) for s in z["skipped"]]
    except Exception:  # a broken cache file is never fatal: decode again
        return None


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray, skipped: list[str]) -> None:
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels, skipped=np.asarray(skipped, dtype=str))
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as err:  # a read-only cache must not stop the run
        print(f"imac: could not write dataset cache {path}: {err}", file=sys.stderr)


# -- one source ----------------------------------------------------------------------------
def _read_source(spec: DataSpec, where: str, src: SplitSource, classes: list[str], cache: bool
                 ) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Checked (images, labels, files read) of one source."""
    if spec.format == "folder":
        images, labels, files = _read_folder(spec, where, src, classes, cache)
        what = spec.resolve(src.root or "")
        ipath = lpath = what
    elif spec.format == "npz":
        im, labels, ipath = _load_npz(spec, where, src)
        assert im is not None
        images, lpath, files = im, ipath, [ipath]
    else:
        assert src.images is not None and src.labels is not None
        reader = _load_npy if spec.format == "npy" else _read_idx
        images, ipath = reader(spec, f"{where}.images", src.images)
        labels, lpath = reader(spec, f"{where}.labels", src.labels)
        files = [ipath, lpath]
    images = _check_images(spec, where, ipath, images)
    labels = _check_labels(spec, where, lpath, labels)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{spec.source}: {where}: {images.shape[0]} images ({ipath}) but {labels.shape[0]} "
                        f"labels ({lpath})")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        bad = labels[(labels < 0) | (labels >= len(classes))]
        raise DataError(f"{spec.source}: {where}: label {int(bad[0])} in {lpath} is outside 0..{len(classes) - 1} "
                        f"({len(classes)} classes; {bad.size} label(s) out of range)")
    return images, labels, files


def _check_classes(spec: DataSpec, split: str, labels: np.ndarray, classes: list[str], what: str) -> None:
    counts = np.bincount(labels, minlength=len(classes))
    missing = [classes[c] for c in np.flatnonzero(counts == 0)]
    if missing:
        raise DataError(f"{spec.source}: the {split} split has no sample of class(es) "
                        f"{', '.join(map(repr, missing))} ({what})")


def holdout_indices(labels: np.ndarray, test_fraction: float, seed: int, classes: list[str] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, test) indices, each sorted: ``round(test_fraction * n_c)`` samples of
    every class c go to test (at least 1, and at least 1 left for train); reproducible by seed."""
    rng = np.random.default_rng(seed)
    n = int(labels.max()) + 1 if labels.size else 0
    test = []
    for c in range(n if classes is None else len(classes)):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue  # reported as a missing class by the caller
        if idx.size < 2:
            name = classes[c] if classes is not None else str(c)
            raise DataError(f"class {name!r} has {idx.size} sample: a hold-out split needs at least 2 "
                            "(one for train, one for test)")
        k = min(max(round(test_fraction * idx.size), 1), idx.size - 1)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    mask = np.ones(labels.shape[0], dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


def _spec_digest(spec: DataSpec) -> str:
    data = spec.model_dump(mode="json")
    if data.get("resize") == "none":  # the default leaves digests of array specs as they were
        del data["resize"]
    if spec.format == "folder":  # the same files decode to other pixels under other rules or filter
        data["decode"] = {"version": DECODE_VERSION, "resample": RESAMPLE}
    return json.dumps(data, sort_keys=True)


# -- public --------------------------------------------------------------------------------
def load_user_dataset(spec_or_path: DataSpec | str | os.PathLike[str], split: str,
                      limit: int | None = None, *, cache: bool = True) -> Dataset:
    """Split ``split`` ('train' or 'test') of the user data set the spec declares, checked.

    Images are (N, *input_shape): uint8 when stored as uint8, float32 otherwise; labels int64
    in 0..n_classes-1.  ``sha256`` covers the files read and the spec's content; ``sources`` are
    the files read (and the YAML file), recorded for provenance.  ``limit``: the first N samples.
    """
    spec = as_data_spec(spec_or_path)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {SPLITS}")
    classes = _class_names(spec)
    if spec.split is None:
        src = spec.train if split == "train" else spec.test
        assert src is not None
        images, labels, files = _read_source(spec, split, src, classes, cache)
        what = f"read from {split}"
    else:
        where = "train" if spec.train is not None else "test"
        src = spec.train or spec.test
        assert src is not None
        images, labels, files = _read_source(spec, where, src, classes, cache)
        _check_classes(spec, "whole", labels, classes, f"read from {where}")
        try:
            tr, te = holdout_indices(labels, spec.split.test_fraction, spec.split.seed, classes)
        except DataError as err:
            raise DataError(f"{spec.source}: {err}") from None
        keep = tr if split == "train" else te
        images, labels = images[keep], labels[keep]
        what = f"hold-out of {where} with test_fraction {spec.split.test_fraction:g}, seed {spec.split.seed}"
    _check_classes(spec, split, labels, classes, what)
    h = hashlib.sha256(_spec_digest(spec).encode())
    for f in files:
        h.update(file_sha256(f).encode())
    sources = [*files, *([spec._spec_path] if spec._spec_path is not None else [])]
    data = Dataset(spec.name, split, images, labels, tuple(classes), h.hexdigest(), sources)
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be positive, got {limit}")
    return data.subset(limit)


def _per_channel(value: list[float] | float | None, default: float, c: int) -> np.ndarray:
    if value is None:
        value = default
    v = np.asarray(value if isinstance(value, list) else [value], dtype=np.float32)
    return np.broadcast_to(v, (c,)).reshape(1, c, 1, 1)


def prepare_images(spec: DataSpec, images: np.ndarray | Any) -> Any:
    """(N, *input_shape) images as stored -> (N, C, H, W) float32 tensor
    ``((x * scale) - mean) / std``, per channel."""
    import torch

    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if tuple(t.shape[1:]) != tuple(spec.input_shape) or t.ndim < 3:
        raise ShapeError(f"{spec.source}: images of shape {tuple(t.shape)} do not fit input_shape "
                         f"{tuple(spec.input_shape)} (expected (N, {', '.join(map(str, spec.input_shape))}))")
    t = t.to(torch.float32)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    c = spec.channels
    mean = torch.from_numpy(_per_channel(spec.mean, 0.0, c).copy())
    std = torch.from_numpy(_per_channel(spec.std, 1.0, c).copy())
    return ((t * spec.scale - mean) / std).contiguous()
