"""imac installed like any package (issue 13 item 5): a wheel built from the repository, installed
into a fresh virtual environment and run from a folder outside the repository, finds its shipped
network specs and checkpoints (package data) and evaluates a shipped model.

The wheel is built offline (``--no-build-isolation --no-index``: setuptools and wheel come from
the running interpreter) from a copy of the working tree, so the repository's own ``build/`` and
``*.egg-info`` are never touched.  The venv sees the system's site-packages (torch and the other
dependencies are not installed again); the wheel's ``imac`` shadows the editable one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "imac"


def working_tree_files() -> list[str]:
    """The repository's tracked and untracked-but-not-ignored files (what a checkout holds)."""
    res = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                         check=False)
    if res.returncode != 0:
        pytest.skip(f"not a git checkout ({res.stderr.decode(errors='replace').strip()})")
    return [p for p in res.stdout.decode().split("\0") if p]


def copy_tree(dest: Path) -> None:
    for rel in working_tree_files():
        src = REPO / rel
        if src.is_symlink() or not src.is_file():
            continue  # the configs -> src/imac/configs link; files deleted but not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
        ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n" \
                                f"{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A wheel of the working tree installed into a --system-site-packages venv."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    copy_tree(src)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), "."], cwd=src, env=env)
    wheels = list(dist.glob("imac-*.whl"))
    assert len(wheels) == 1, wheels
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=root)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheels[0])],
        cwd=root, env=env)
    work = root / "elsewhere"
    work.mkdir()
    return {"wheel": wheels[0], "venv": venv, "work": work, "cache": root / "cache"}


def venv_env(installed: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IMAC_DATA_DIR", "VIRTUAL_ENV")}
    venv_bin = str(installed["venv"] / "bin")
    return {**env, "PATH": venv_bin + os.pathsep + env.get("PATH", ""), "VIRTUAL_ENV": str(installed["venv"]),
            "IMAC_CACHE_DIR": str(installed["cache"]), "IMAC_OFFLINE": "1", **extra}


def shipped_specs() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((SHIPPED / "networks").glob("*.yaml"))}


@pytest.mark.slow
def test_wheel_carries_specs_and_checkpoints(installed: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for p in sorted((SHIPPED / "networks").glob("*.yaml")):
        assert f"imac/networks/{p.name}" in names
    shipped = sorted(p.relative_to(SHIPPED).as_posix() for p in (SHIPPED / "checkpoints").rglob("*") if p.is_file())
    assert shipped, "no shipped checkpoints in src/imac/checkpoints"
    missing = [p for p in shipped if f"imac/{p}" not in names]
    assert not missing, f"shipped checkpoints missing from the wheel: {missing}"


@pytest.mark.slow
def test_installed_imac_lists_its_checkpoints(installed: dict[str, Path]) -> None:
    venv = installed["venv"]
    where = run([str(venv / "bin" / "python"), "-c", "import imac; print(imac.__file__)"],
                cwd=installed["work"], env=venv_env(installed)).stdout.strip()
    site = Path(where).resolve().parent.parent
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"imac imported from {where}, not the venv"
    out = run([str(venv / "bin" / "imac"), "list-models"], cwd=installed["work"], env=venv_env(installed)).stdout
    rows = {line.split("\t")[0]: line.split("\t") for line in out.splitlines() if "\t" in line}
    specs = shipped_specs()
    assert set(specs) <= set(rows), out
    for name, spec in specs.items():
        status = rows[name][1]
        if spec.get("trainable", True):
            assert status.startswith("checkpoint "), f"{name}: {status}"
            path = Path(status.removeprefix("checkpoint ")).resolve()
            assert path.is_relative_to(site), f"{name}: checkpoint {path} is not the installed package's"
            assert path.is_file()
        else:
            assert status == "no checkpoint", f"{name}: {status}"


@pytest.mark.slow
def test_installed_imac_evaluates_lenet(installed: dict[str, Path]) -> None:
    data = REPO.parent / "shared" / "data"
    env_dir = os.environ.get("IMAC_DATA_DIR")
    root = Path(env_dir) if env_dir else data
    if not ((root / "mnist" / "t10k-images-idx3-ubyte.gz").is_file() or (root / "t10k-images-idx3-ubyte.gz").is_file()):
        pytest.skip("MNIST not found ($IMAC_DATA_DIR or ../shared/data/mnist)")
    res = run([str(installed["venv"] / "bin" / "imac"), "evaluate", "lenet-mnist", "--limit", "200", "--json"],
              cwd=installed["work"], env=venv_env(installed, IMAC_DATA_DIR=str(root)))
    out = json.loads(res.stdout)
    assert out["n_test"] == 200
    assert Path(out["checkpoint"]).resolve().is_relative_to(installed["venv"].resolve())
    assert out["accuracy"] > 0.95 and out["accuracy_float"] > 0.95, out
