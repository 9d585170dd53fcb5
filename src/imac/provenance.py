"""Where results come from: the repository root, its git revision, file digests.

Kept free of heavy imports so that every result writer (demo, checkpoints, calibration) can
record its provenance without loading torch.
"""

from __future__ import annotations

import hashlib
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


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
