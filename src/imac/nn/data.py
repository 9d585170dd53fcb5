"""MNIST and CIFAR-10 loaders: find the files, validate them, decode once, cache as .npz.

Look-up order for a dataset (the first place that holds the files wins):

1. the explicit ``data_dir`` argument (the data root, or the dataset's own folder);
2. the environment variable ``IMAC_DATA_DIR``;
3. ``../shared/data`` beside the repository root (found by walking up from this file to the
   folder holding ``pyproject.toml``), then ``../shared/data`` relative to the current directory;
4. the download folder in the user cache (``<cache>/downloads``);
5. a download from the canonical source into that folder (skipped when ``download=False`` or
   ``IMAC_OFFLINE=1``; a failed download is reported, not raised on its own).

When nothing is found a :class:`~imac.errors.DataError` lists every place tried.

Accepted layouts:

* MNIST: the four original IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, gzip
  compressed (``.gz``) or not, in ``<root>/mnist/`` or ``<root>/`` itself.
* CIFAR-10: the ImageFolder tar ``cifar10-jpeg.tar.gz`` (``train/<class>/NNNN.jpg``,
  ``test/<class>/NNNN.jpg``), or the official python batches ``cifar-10-batches-py/`` (folder)
  or ``cifar-10-python.tar.gz`` (the official archive), in ``<root>/cifar10/`` or ``<root>/``.

Decoded arrays are cached in ``<cache>/datasets`` (``<cache>`` is ``IMAC_CACHE_DIR`` or
``~/.cache/imac``) under a name that carries the sha256 of the source files, so a changed file
is decoded again and a second load takes well under a second for MNIST and about a second for
CIFAR-10 instead of a ~30 s JPEG decode.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import sys
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from imac.errors import DataError
from imac.io import atomic_write_bytes, cache_dir
from imac.provenance import file_sha256, record_data, repo_root

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_COUNTS = {"train": 60000, "test": 10000}
# Canonical mirrors (yann.lecun.com throttles; the PyTorch S3 mirror holds the same bytes).
MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# md5 of the gzip files as published by the canonical mirrors.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_COUNTS = {"train": 50000, "test": 10000}
CIFAR10_JPEG_TAR = "cifar10-jpeg.tar.gz"
CIFAR10_PY_DIR = "cifar-10-batches-py"
CIFAR10_PY_TAR = "cifar-10-python.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_PY_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}

SPLITS = ("train", "test")
CACHE_FORMAT = 2  # bump when the cached array layout changes


@dataclass
class Dataset:
    """One split of a dataset as numpy arrays.

    ``images``: uint8, (N, 28, 28) for MNIST, (N, 32, 32, 3) for CIFAR-10 (HWC, RGB).
    ``labels``: int64 in 0..9.  ``sha256``: digest over the source file(s), recorded in
    checkpoints so a result names the exact data it came from.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    sha256: str
    sources: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sources:  # results name the files they were computed from (provenance.data_used)
            record_data(f"{self.name}/{self.split}", self.sources)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int | None) -> Dataset:
        """The first ``n`` samples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataError(f"subset size must be positive, got {n}")
        return Dataset(self.name, self.split, self.images[:n], self.labels[:n], self.classes,
                       self.sha256, self.sources)


# -- places --------------------------------------------------------------------------------
def _authoritative_root(why: str, path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{why} {path} does not exist")
    if not path.is_dir():
        raise DataError(f"{why} {path} is not a folder")
    return path


def candidate_roots(data_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Data roots in look-up order, each with the reason it is tried.

    A place the user names (``data_dir``, else ``IMAC_DATA_DIR``) is the only one searched:
    results must come from the data the user pointed to, never silently from another copy.
    It must be an existing folder.  Without one, the shared data folders and the download
    cache are tried in turn.
    """
    if data_dir is not None:
        return [("explicit path", _authoritative_root("data folder", Path(data_dir).expanduser()))]
    env = os.environ.get("IMAC_DATA_DIR")
    if env:
        return [("IMAC_DATA_DIR (unset it to search the default places)",
                 _authoritative_root("IMAC_DATA_DIR =", Path(env).expanduser()))]
    out: list[tuple[str, Path]] = []
    root = repo_root()
    if root is not None:
        out.append(("../shared/data beside the repository", root.parent / "shared" / "data"))
    out.append(("../shared/data from the current directory", Path.cwd().parent / "shared" / "data"))
    out.append(("download cache", cache_dir() / "downloads"))
    # the same folder may come up twice (repo root == cwd); keep the first reason
    seen: set[Path] = set()
    unique = []
    for why, p in out:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            unique.append((why, p))
    return unique


def _searches_default_places(data_dir: str | os.PathLike[str] | None) -> bool:
    return data_dir is None and not os.environ.get("IMAC_DATA_DIR")


def _offline() -> bool:
    return os.environ.get("IMAC_OFFLINE", "").strip() not in ("", "0", "false", "no")


# -- helpers -------------------------------------------------------------------------------
def _combined_sha256(paths: list[Path]) -> str:
    if len(paths) == 1:
        return file_sha256(paths[0])
    h = hashlib.sha256()
    for p in paths:
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def _progress(total: int, desc: str) -> Any:
    from imac.progress import progress_bar

    return progress_bar(total=total, desc=desc, unit="img", leave=False, enabled=total >= 2000)


def _cache_path(name: str, split: str, sha: str) -> Path:
    return cache_dir() / "datasets" / f"{name}-{split}-{sha[:20]}-v{CACHE_FORMAT}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached arrays, or None when absent or unreadable (then we decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"]
    except Exception:  # a broken cache file is never fatal: the source is still there
        return None


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as err:  # a read-only home must not stop training
        print(f"imac: could not write dataset cache {path}: {err}", file=sys.stderr)


def _check_arrays(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                  shape: tuple[int, ...], strict: bool, what: str) -> None:
    expected = (MNIST_COUNTS if name == "mnist" else CIFAR10_COUNTS)[split]
    if images.dtype != np.uint8 or images.shape[1:] != shape:
        raise DataError(f"{what}: images have shape {images.shape} / dtype {images.dtype}, "
                        f"expected (N, {', '.join(map(str, shape))}) uint8")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{what}: {labels.shape[0] if labels.ndim else 0} labels for "
                        f"{images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{what}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    if strict and images.shape[0] != expected:
        raise DataError(f"{what}: {images.shape[0]} {split} samples, expected {expected} "
                        "(pass strict=False for a subset)")
    if strict and np.unique(labels).size != 10:
        raise DataError(f"{what}: only {np.unique(labels).size} of 10 classes present")


# -- MNIST / IDX ---------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) of unsigned bytes; validate magic and sizes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read IDX file {path}: {err} (truncated or corrupt gzip?)") \
            from None
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, no header")
    zero0, zero1, dtype_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()}, "
                        "expected 00000801 or 00000803)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    payload = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != payload:
        raise DataError(f"IDX file {path}: header says {dims} = {payload} bytes of data, "
                        f"found {len(raw) - header} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find_mnist(roots: list[tuple[str, Path]], split: str) -> tuple[list[Path] | None, list[str]]:
    tried: list[str] = []
    for why, root in roots:
        for folder in (root / "mnist", root):
            found = []
            for stem in MNIST_FILES[split]:
                hit = next((folder / (stem + ext) for ext in (".gz", "")
                            if (folder / (stem + ext)).is_file()), None)
                if hit is not None:
                    found.append(hit)
            if len(found) == 2:
                return found, tried
            tried.append(f"{folder} ({why})")
    return None, tried


def _download(url: str, dest: Path, md5: str | None) -> None:
    """Fetch ``url`` into ``dest`` atomically; refuse a body whose md5 does not match."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    if md5 is not None and hashlib.md5(body).hexdigest() != md5:
        raise DataError(f"download {url}: md5 mismatch")
    atomic_write_bytes(dest, body)


def _download_mnist(split: str) -> tuple[list[Path] | None, str]:
    dest = cache_dir() / "downloads" / "mnist"
    errors = []
    for base in MNIST_URLS:
        try:
            for stem in MNIST_FILES[split]:
                fname = stem + ".gz"
                if not (dest / fname).is_file():
                    _download(base + fname, dest / fname, MNIST_MD5[fname])
            return [dest / (s + ".gz") for s in MNIST_FILES[split]], ""
        except Exception as err:  # network closed, DNS, HTTP errors: report, try next
            errors.append(f"{base}: {err}")
    return None, "; ".join(errors)


def load_mnist(split: str = "train", data_dir: str | os.PathLike[str] | None = None, *,
               download: bool = True, cache: bool = True, strict: bool = True) -> Dataset:
    """MNIST ``split`` ('train' or 'test') as uint8 (N, 28, 28) images and int64 labels.

    ``strict`` also checks the official counts (60000 / 10000) and that all 10 classes occur;
    turn it off for subsets.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {SPLITS}")
    paths, tried = _find_mnist(candidate_roots(data_dir), split)
    if paths is None and download and not _offline() and _searches_default_places(data_dir):
        paths, err = _download_mnist(split)
        if paths is None:
            tried.append(f"download from {', '.join(MNIST_URLS)} failed: {err}")
    elif paths is None:
        tried.append("download skipped (download=False, IMAC_OFFLINE set, or a data folder was named)")
    if paths is None:
        raise DataError(f"MNIST {split} files ({', '.join(MNIST_FILES[split])}[.gz]) not found; "
                        "tried:\n  " + "\n  ".join(tried))
    sha = _combined_sha256(paths)
    cpath = _cache_path("mnist", split, sha)
    arrays = _read_cache(cpath) if cache else None
    if arrays is None:
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3:
            raise DataError(f"{paths[0]}: expected a 3-D image IDX file, got {images.ndim}-D")
        if labels.ndim != 1:
            raise DataError(f"{paths[1]}: expected a 1-D label IDX file, got {labels.ndim}-D")
        labels = labels.astype(np.int64)
        if cache:
            _check_arrays("mnist", split, images, labels, (28, 28), strict, f"{paths[0].parent}")
            _write_cache(cpath, images, labels)
    else:
        images, labels = arrays
    _check_arrays("mnist", split, images, labels, (28, 28), strict, f"{paths[0].parent}")
    return Dataset("mnist", split, images, labels, tuple(str(i) for i in range(10)), sha, paths)


# -- CIFAR-10 ------------------------------------------------------------------------------
def _find_cifar(roots: list[tuple[str, Path]]) -> tuple[Path | None, list[str]]:
    tried: list[str] = []
    for why, root in roots:
        for folder in (root / "cifar10", root):
            for name in (CIFAR10_JPEG_TAR, CIFAR10_PY_DIR, CIFAR10_PY_TAR):
                p = folder / name
                if (p.is_dir() if name == CIFAR10_PY_DIR else p.is_file()):
                    return p, tried
            tried.append(f"{folder} ({why})")
    return None, tried


def _decode_jpeg_tar(path: Path, strict: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of an ImageFolder tar of 32x32 JPEGs, sorted by (file name, class): the
    classes interleave, so the first N images of a split (``--limit-train N``) are balanced."""
    from PIL import Image

    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    found: dict[str, list[tuple[int, str, np.ndarray]]] = {s: [] for s in SPLITS}
    try:
        tf = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"cannot open CIFAR-10 tar {path}: {err}") from None
    total = sum(CIFAR10_COUNTS.values()) if strict else 0
    try:
        with tf, _progress(total, f"decoding {path.name}") as bar:
            for member in tf:
                parts = member.name.strip("./").split("/")
                if not member.isfile() or len(parts) != 3 or not parts[2].lower().endswith(
                        (".jpg", ".jpeg", ".png")):
                    continue
                split, cls, fname = parts
                if split not in SPLITS:
                    continue
                if cls not in index:
                    raise DataError(f"{path}: unknown class folder {split}/{cls}; expected "
                                    f"{', '.join(CIFAR10_CLASSES)}")
                fh = tf.extractfile(member)
                data = fh.read() if fh is not None else b""
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
                except Exception as err:
                    raise DataError(f"{path}: corrupt image {member.name}: {err}") from None
                if arr.shape != (32, 32, 3):
                    raise DataError(f"{path}: image {member.name} is {arr.shape}, "
                                    "expected 32x32 RGB")
                found[split].append((index[cls], fname, arr))
                bar.update(1)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"CIFAR-10 tar {path} is truncated or corrupt: {err}") from None
    out = {}
    for split, items in found.items():
        if not items:
            raise DataError(f"{path}: no {split}/<class>/*.jpg images inside")
        items.sort(key=lambda t: (t[1], t[0]))
        out[split] = (np.stack([t[2] for t in items]),
                      np.array([t[0] for t in items], dtype=np.int64))
    return out


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler limited to what the CIFAR batches hold (dicts, lists, numpy arrays), so a
    tampered file cannot run code."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _decode_py_batch(raw: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as err:
        raise DataError(f"corrupt CIFAR-10 batch {what}: {err}") from None
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"CIFAR-10 batch {what}: data shape {data.shape}, expected (N, 3072)")
    # rows are 1024 R, 1024 G, 1024 B values, row-major 32x32 -> NHWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _decode_py(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    blobs: dict[str, bytes] = {}
    wanted = {b for names in CIFAR10_PY_BATCHES.values() for b in names}
    if path.is_dir():
        for b in wanted:
            if (path / b).is_file():
                blobs[b] = (path / b).read_bytes()
    else:
        try:
            with tarfile.open(path, "r:*") as tf:
                for member in tf:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted:
                        fh = tf.extractfile(member)
                        blobs[base] = fh.read() if fh is not None else b""
        except (OSError, tarfile.TarError, EOFError, zlib.error) as err:
            raise DataError(f"CIFAR-10 archive {path} is truncated or corrupt: {err}") from None
    out = {}
    for split, names in CIFAR10_PY_BATCHES.items():
        missing = [b for b in names if b not in blobs]
        if missing:
            raise DataError(f"{path}: missing CIFAR-10 batches {', '.join(missing)}")
        parts = [_decode_py_batch(blobs[b], f"{path}/{b}") for b in names]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out


def _download_cifar() -> tuple[Path | None, str]:
    dest = cache_dir() / "downloads" / "cifar10" / CIFAR10_PY_TAR
    try:
        if not dest.is_file():
            _download(CIFAR10_URL, dest, CIFAR10_MD5)
        return dest, ""
    except Exception as err:
        return None, str(err)


def load_cifar10(split: str = "train", data_dir: str | os.PathLike[str] | None = None, *,
                 download: bool = True, cache: bool = True, strict: bool = True) -> Dataset:
    """CIFAR-10 ``split`` as uint8 (N, 32, 32, 3) RGB images and int64 labels (official class
    order).  Decoding the JPEG tar takes ~30 s once; later loads come from the cache."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {SPLITS}")
    src, tried = _find_cifar(candidate_roots(data_dir))
    if src is None and download and not _offline() and _searches_default_places(data_dir):
        src, err = _download_cifar()
        if src is None:
            tried.append(f"download from {CIFAR10_URL} failed: {err}")
    elif src is None:
        tried.append("download skipped (download=False, IMAC_OFFLINE set, or a data folder was named)")
    if src is None:
        raise DataError(f"CIFAR-10 ({CIFAR10_JPEG_TAR}, {CIFAR10_PY_DIR}/ or {CIFAR10_PY_TAR}) "
                        "not found; tried:\n  " + "\n  ".join(tried))
    if src.is_dir():
        files = [src / b for names in CIFAR10_PY_BATCHES.values() for b in names
                 if (src / b).is_file()]
        sha = _combined_sha256(files) if files else hashlib.sha256(b"").hexdigest()
    else:
        sha = file_sha256(src)
    cpath = _cache_path("cifar10", split, sha)
    arrays = _read_cache(cpath) if cache else None
    if arrays is None:
        if src.is_dir() or src.name == CIFAR10_PY_TAR:
            both = _decode_py(src)
        else:
            both = _decode_jpeg_tar(src, strict)
        # validate both splits before caching either, so the cache never holds bad data
        for s, (im, lab) in both.items():
            _check_arrays("cifar10", s, im, lab, (32, 32, 3), strict, str(src))
        if cache:
            for s, (im, lab) in both.items():
                _write_cache(_cache_path("cifar10", s, sha), im, lab)
        images, labels = both[split]
    else:
        images, labels = arrays
    _check_arrays("cifar10", split, images, labels, (32, 32, 3), strict, str(src))
    return Dataset("cifar10", split, images, labels, CIFAR10_CLASSES, sha, [src])


LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10}
N_CLASSES = {"mnist": 10, "cifar10": len(CIFAR10_CLASSES)}


def load_dataset(name: object, split: str, data_dir: str | os.PathLike[str] | None = None,
                 **kwargs: bool) -> Dataset:
    """Dispatch on the dataset name ('mnist' or 'cifar10'), or load a user data set given as a
    data-spec YAML path (``.yaml``/``.yml``) or :class:`~imac.nn.userdata.DataSpec` (its paths
    are relative to the YAML file, so ``data_dir`` is not used; ``cache`` is honoured)."""
    if isinstance(name, str) and name in LOADERS:
        return LOADERS[name](split, data_dir, **kwargs)
    from imac.nn.userdata import is_data_spec, load_user_dataset

    if is_data_spec(name):
        return load_user_dataset(name, split, cache=bool(kwargs.get("cache", True)))  # type: ignore[arg-type]
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)} or a data-spec YAML (.yaml/.yml)")


def n_classes(name_or_spec: object) -> int:
    """Number of classes of a built-in data set ('mnist', 'cifar10') or of a user data set (a
    data-spec YAML path or :class:`~imac.nn.userdata.DataSpec`)."""
    from imac.nn.userdata import as_data_spec, is_data_spec

    if isinstance(name_or_spec, str) and name_or_spec in N_CLASSES:
        return N_CLASSES[name_or_spec]
    if is_data_spec(name_or_spec):
        return as_data_spec(name_or_spec).n_classes()  # type: ignore[arg-type]
    raise DataError(f"unknown dataset {name_or_spec!r}; known: {', '.join(N_CLASSES)} or a data-spec YAML")
