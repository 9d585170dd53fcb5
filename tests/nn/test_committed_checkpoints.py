"""Re-evaluate every shipped checkpoint (src/imac/checkpoints) on its full test set (MNIST, CIFAR-10).

The full set, not a prefix: it takes a few seconds (CIFAR-10: ~15 s to decode the JPEGs once
per session, ~20 s to evaluate the half-width VGG-11 with its int8 trunk), and the first MNIST
test images are harder than the rest (the mlp scores ~4 points lower on the first 2000), so a
prefix would need a loose tolerance that hides real regressions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import real_data_dir
from imac.nn.checkpoint import load_checkpoint, shipped_dir
from imac.nn.data import CIFAR10_JPEG_TAR
from imac.nn.models import get_spec
from imac.nn.train import evaluate

MODELS = shipped_dir()
CHECKPOINTS = sorted(MODELS.glob("*.pt")) if MODELS.is_dir() else []
TOLERANCE = 0.002  # same data, same weights: only float summation order may differ


def test_checkpoints_are_committed() -> None:
    names = {p.stem for p in CHECKPOINTS}
    assert {"lenet-mnist", "mlp-mnist"} <= names


@pytest.mark.parametrize("path", CHECKPOINTS, ids=[p.stem for p in CHECKPOINTS])
def test_committed_checkpoint(path: Path, shared_cache: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = real_data_dir()
    dataset = get_spec(path.stem).dataset
    if data_dir is None or (dataset == "cifar10"
                            and not (data_dir / "cifar10" / CIFAR10_JPEG_TAR).is_file()):
        pytest.skip(f"real {dataset} data not found at ../shared/data (absent on this machine)")
    monkeypatch.setenv("IMAC_CACHE_DIR", str(shared_cache))
    payload = load_checkpoint(path, expected_model=path.stem)
    recorded = payload["metrics"]
    assert recorded["n_test"] == 10000
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["metrics"]["accuracy"] == recorded["accuracy"]
    res = evaluate(path.stem, path, data_dir=data_dir, progress=False)
    assert res["data_sha256_matches"] is True
    for key, value in recorded.items():
        if key.startswith("accuracy"):
            assert res[key] == pytest.approx(value, abs=TOLERANCE), key
