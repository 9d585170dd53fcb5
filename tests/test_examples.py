"""The runnable examples of examples/, end to end, each into a temporary folder with its own cache.

``examples/idx_mlp`` needs MNIST's IDX files (skipped without them); ``examples/digits_cnn``
needs scikit-learn (skipped without it).  Both run the ``imac`` command as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def mnist_folder() -> Path | None:
    """MNIST's IDX files where the idx_mlp example looks for them."""
    cands = []
    env = os.environ.get("IMAC_DATA_DIR")
    if env:
        cands += [Path(env) / "mnist", Path(env)]
    cands.append(REPO.parent / "shared" / "data" / "mnist")
    for folder in cands:
        if (folder / "t10k-images-idx3-ubyte.gz").is_file() or (folder / "t10k-images-idx3-ubyte").is_file():
            return folder
    return None


def run_example(script: Path, out: Path, *args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAC_CACHE_DIR": str(cache), "IMAC_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(script), str(out), *args], cwd=out.parent, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, f"{script} failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_idx_mlp_example(tmp_path: Path) -> None:
    if mnist_folder() is None:
        pytest.skip("MNIST's IDX files not found ($IMAC_DATA_DIR or ../shared/data/mnist)")
    out = tmp_path / "run"
    user_cache = tmp_path / "user-cache"
    run_example(EXAMPLES / "idx_mlp" / "run_example.py", out, "--limit-train", "3000",
                "--limit-test", "1000", cache=user_cache)
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert "user-data/digits.yaml" in report
    # the user's files under their new names, read through the data spec
    names = sorted(p.name.split(".")[0] for p in (out / "user-data").iterdir() if p.suffix != ".yaml")
    assert names == [f"digits-{s}-{k}" for s in ("test", "train") for k in ("images", "labels")]
    software = results["evaluate"]["accuracy"]
    circuit = results["simulate_circuit_calibrated"]["accuracy"]
    assert results["evaluate"]["n_test"] == 1000
    assert software > 0.6, software  # 10 classes: chance is 0.1
    assert circuit > 0.5, circuit
    assert f"{100 * software:.2f} %" in report and f"{100 * circuit:.2f} %" in report
    # the run used its own cache only
    assert (out / "cache" / "checkpoints" / "idx-mlp.pt").is_file()
    assert not user_cache.exists() or not any(user_cache.rglob("idx-mlp*"))


@pytest.mark.slow
def test_digits_cnn_example(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    run_example(EXAMPLES / "digits_cnn" / "run_example.py", out, cache=tmp_path / "cache")
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    float_run, system = results["float_training"], results["cpu_imac"]
    n_test = float_run["test_images"]
    assert system["n_images"] == n_test
    calibrated = results["simulate_circuit_calibrated"]
    assert calibrated["calibration"] and system["calibration"]
    assert calibrated["accuracy"] >= 0.85, calibrated["accuracy"]
    assert system["accuracy_cpu_imac"] >= 0.85, system["accuracy_cpu_imac"]
    # CPU-only is the user's own float network (trunk + float head), image for image
    assert round(system["accuracy_cpu_only"] * n_test) == round(float_run["float_test_accuracy"] * n_test)
    assert round(results["import"]["accuracy_float"] * n_test) == round(float_run["float_test_accuracy"] * n_test)
    assert 0 < system["energy_saving"] < 1
    assert f"{100 * calibrated['accuracy']:.2f} %" in report
    assert f"{100 * float_run['float_test_accuracy']:.2f} %" in report
