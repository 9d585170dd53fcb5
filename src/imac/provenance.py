"""Where results come from: the repository root, its git revision, file digests.

Kept free of heavy imports so that every result writer (demo, checkpoints, calibration) can
record its provenance without loading torch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def repo_root() -> Path | None:
    """The project root (the folder with ``pyproject.toml``) above this file, if any."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "imac").is_dir():
            return parent
    return None


def git_revision() -> str | None:
    """The repository's HEAD commit (with ``+dirty`` when files differ), or None."""
    root = repo_root()
    if root is None:
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest, this process
_DATA_USED: dict[tuple[str, str], dict[str, object]] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks (remembered while the file's size and
    modification time stay the same, so recording a data set's digest twice costs nothing)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def record_data(kind: str, files: list[Path]) -> None:
    """Note that this process read ``files`` as ``kind`` (e.g. ``mnist/test``, ``model card``),
    so that every result it writes can say which data it came from (:func:`data_used`)."""
    resolved = []
    for f in map(Path, files):  # a folder (CIFAR-10's Python batches) stands for its files
        resolved += sorted(p.resolve() for p in f.rglob("*") if p.is_file()) if f.is_dir() else [f.resolve()]
    _DATA_USED[(kind, "|".join(map(str, resolved)))] = {
        "data": kind,
        "folder": str(resolved[0].parent) if resolved else None,
        "files": [{"path": str(f), "bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in resolved],
    }


def data_used() -> list[dict[str, object]]:
    """Every data file this process has read so far, with its folder and SHA-256."""
    return list(_DATA_USED.values())
