"""Fixtures for the nn tests: tiny synthetic MNIST/CIFAR files and an isolated cache."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from imac.nn.data import CIFAR10_CLASSES, repo_root


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000 08 ndim, big-endian dims)."""
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 64, n_test: int = 32, gz: bool = True,
                seed: int = 0) -> Path:
    """Tiny MNIST-like set: digit d is a bright block at row 2*d (learnable, all classes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, d in enumerate(labels):
            images[i, 2 * d + 2: 2 * d + 6, 4:24] = 255
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(arr)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def jpeg_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_cifar_tar(path: Path, per_class: tuple[int, int] = (3, 2), seed: int = 0,
                    extra: dict[str, bytes] | None = None) -> Path:
    """Tiny ImageFolder tar.gz: class c is a flat image of grey level 20*c + noise."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for split, n in zip(("train", "test"), per_class, strict=True):
            for c, cls in enumerate(CIFAR10_CLASSES):
                for i in range(n):
                    img = np.clip(20 * c + rng.integers(0, 10, (32, 32, 3)), 0, 255)
                    add(f"{split}/{cls}/{i:04d}.jpg", jpeg_bytes(img.astype(np.uint8)))
        for name, data in (extra or {}).items():
            add(name, data)
    return path


def write_cifar_py(folder: Path, per_batch: int = 10, seed: int = 0) -> Path:
    """Tiny official-layout python batches (5 train batches + test batch)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh)
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                   ) -> Path:
    """Every test gets its own cache dir and never touches the network."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("IMAC_CACHE_DIR", str(cache))
    monkeypatch.setenv("IMAC_OFFLINE", "1")
    monkeypatch.delenv("IMAC_DATA_DIR", raising=False)
    return cache


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by the tests on the real data, so MNIST is decoded once per session."""
    return tmp_path_factory.mktemp("shared-cache")


def real_data_dir() -> Path | None:
    root = repo_root()
    cand = root.parent / "shared" / "data" if root else None
    if cand is not None and (cand / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        return cand
    return None


@pytest.fixture
def mnist_dir() -> Path:
    d = real_data_dir()
    if d is None:
        pytest.skip("real MNIST not found at ../shared/data/mnist (data absent on this machine)")
    return d


def small_vgg(hidden: list[int]) -> Any:
    """The shipped VGG spec with a narrow trunk of the same kind (five conv-BN-ReLU-pool stages)."""
    layers: list[object] = []
    for c in (4, 8, 16, 16, 32):
        layers += [{"conv": {"out": c, "kernel": 3, "padding": 1, "bias": False}}, "batchnorm", "relu", {"maxpool": 2}]
    from imac.nn.models import build_model

    return build_model("vgg11-cifar10", {"trunk": [*layers, "flatten"], "head.hidden": hidden})


def tensors_in(obj: object) -> Iterator[torch.Tensor]:
    """Every tensor in a checkpoint payload (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors_in(v)
