"""The tile disk cache stays within its size bound: least recently used reductions go first."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from test_hardware import _random_sub


def test_disk_cache_is_pruned_least_recently_used_first(rng: np.random.Generator, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from imac.hardware.tiles import TileCache, reduce_tiles, tile_key

    subs = [_random_sub(rng, 32, 16, "difference") for _ in range(4)]
    cache = TileCache(tmp_path, max_bytes=10**9)
    monkeypatch.setenv("IMAC_TILE_CACHE_MB", "1000")
    reduce_tiles(subs, cache=cache, jobs=1)
    files = {tile_key(s): next((tmp_path / "tiles").rglob(f"{tile_key(s)}.npz")) for s in subs}
    size = max(f.stat().st_size for f in files.values())
    # ages: tile 0 oldest ... tile 3 newest; then tile 0 is read again (used: now the newest)
    for i, s in enumerate(subs):
        t = time.time() - 1000 + 10 * i
        os.utime(files[tile_key(s)], (t, t))
    assert TileCache(tmp_path).get(tile_key(subs[0])) is not None
    stale = tmp_path / "tiles" / "00" / "dead.tmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    # room for about two reductions: pruned to 80 % of it, the least recently used first
    removed = cache.prune_disk(max_mb=2.2 * size / 2**20)
    left = {k for k, f in files.items() if f.exists()}
    assert not stale.exists() and removed >= 3
    assert left == {tile_key(subs[0])}  # tiles 1, 2 (oldest unused) then 3 went; the one just read stayed
    # under the bound: nothing removed
    assert cache.prune_disk(max_mb=1000) == 0
