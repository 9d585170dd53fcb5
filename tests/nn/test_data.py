"""Data loaders: IDX/JPEG-tar/python-batch parsing, validation, look-up order, cache."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import idx_bytes, write_cifar_py, write_cifar_tar, write_mnist
from imac.errors import DataError
from imac.nn import data as D


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_roundtrip(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path / "mnist", gz=gz)
    tr = D.load_mnist("train", tmp_path, strict=False)
    te = D.load_mnist("test", tmp_path / "mnist", strict=False)  # dataset folder also accepted
    assert tr.images.shape == (64, 28, 28) and tr.images.dtype == np.uint8
    assert tr.labels.dtype == np.int64 and te.labels.shape == (32,)
    assert list(tr.labels[:10]) == list(range(10))
    assert tr.images[3, 8:12, 4:24].min() == 255


def test_mnist_strict_counts(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    with pytest.raises(DataError, match="expected 60000"):
        D.load_mnist("train", tmp_path)


def test_mnist_cache_used(tmp_path: Path, isolated_cache: Path) -> None:
    write_mnist(tmp_path)
    a = D.load_mnist("train", tmp_path, strict=False)
    cached = list((isolated_cache / "datasets").glob("mnist-train-*.npz"))
    assert len(cached) == 1
    # break the source's decoder: a second load must come from the cache
    orig = D.read_idx
    D.read_idx = None  # type: ignore[assignment]
    try:
        b = D.load_mnist("train", tmp_path, strict=False)
    finally:
        D.read_idx = orig
    np.testing.assert_array_equal(a.images, b.images)
    # a changed source file gets a new cache key
    write_mnist(tmp_path, seed=1)
    c = D.load_mnist("train", tmp_path, strict=False)
    assert c.sha256 != a.sha256
    assert not np.array_equal(a.images, c.images)


def test_truncated_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        D.load_mnist("train", tmp_path, strict=False)


def test_truncated_payload(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t10k-images.*truncated"):
        D.load_mnist("test", tmp_path, strict=False)


def test_bad_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    p = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(p.read_bytes())
    raw[2] = 0x0D  # float type code
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="magic"):
        D.load_mnist("test", tmp_path, strict=False)


def test_label_range_and_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(32, 12, np.uint8)))
    with pytest.raises(DataError, match=r"0\.\.9"):
        D.load_mnist("test", tmp_path, strict=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(31, np.uint8)))
    with pytest.raises(DataError, match="31 labels for 32 images"):
        D.load_mnist("test", tmp_path, strict=False)


def test_read_idx_header_only(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(gzip.compress(bytes([0, 0, 8, 3, 0, 0])))
    with pytest.raises(DataError, match="header"):
        D.read_idx(p)


def test_not_found_lists_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAC_DATA_DIR", raising=False)
    monkeypatch.setattr(D, "repo_root", lambda: tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        D.load_mnist("test")
    msg = str(err.value)
    for place in ("shared", "download cache", "download skipped"):
        assert place in msg


def test_a_named_data_folder_is_the_only_place_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAC_DATA_DIR or an explicit folder that lacks the data (or is no folder) is an error,
    never a silent fall-back to another copy of the data."""
    write_mnist(tmp_path / "shared" / "data" / "mnist")  # a copy in the default place
    monkeypatch.setattr(D, "repo_root", lambda: tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "shared")
    monkeypatch.setenv("IMAC_DATA_DIR", str(tmp_path / "shared" / "data"))
    assert len(D.load_mnist("test", strict=False)) == 32  # the named place itself works
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    for env, match in ((tmp_path / "empty", "IMAC_DATA_DIR"), (tmp_path / "afile", "not a folder"),
                       (tmp_path / "missing", "does not exist")):
        monkeypatch.setenv("IMAC_DATA_DIR", str(env))
        with pytest.raises(DataError, match=match) as err:
            D.load_mnist("test", strict=False)
        assert "download cache" not in str(err.value) and "beside the repository" not in str(err.value)
    monkeypatch.delenv("IMAC_DATA_DIR")
    with pytest.raises(DataError, match="explicit"):
        D.load_mnist("test", tmp_path / "empty", strict=False)


def test_env_var_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "root" / "mnist")
    monkeypatch.setenv("IMAC_DATA_DIR", str(tmp_path / "root"))
    assert len(D.load_mnist("test", strict=False)) == 32


def test_download_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAC_OFFLINE")
    monkeypatch.setattr(D, "repo_root", lambda: tmp_path / "repo")
    monkeypatch.chdir(tmp_path)

    def refuse(url: str, dest: Path, md5: str | None) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(D, "_download", refuse)
    monkeypatch.delenv("IMAC_DATA_DIR", raising=False)
    monkeypatch.setattr(D, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(DataError, match="network unreachable"):
        D.load_cifar10("test")


def test_cifar_jpeg_tar(tmp_path: Path) -> None:
    write_cifar_tar(tmp_path / "cifar10" / D.CIFAR10_JPEG_TAR)
    tr = D.load_cifar10("train", tmp_path, strict=False)
    te = D.load_cifar10("test", tmp_path, strict=False)
    assert tr.images.shape == (30, 32, 32, 3) and tr.images.dtype == np.uint8
    assert te.images.shape == (20, 32, 32, 3)
    assert list(tr.labels) == list(range(10)) * 3  # classes interleave
    # class c was drawn at grey 20*c + [0, 10): the order and pixels survived the JPEG round
    means = [tr.images[tr.labels == c].mean() for c in range(10)]
    np.testing.assert_allclose(means, 20 * np.arange(10) + 4.5, atol=3)
    with pytest.raises(DataError, match="expected 50000"):
        D.load_cifar10("train", tmp_path, cache=False)


def test_cifar_corrupt_member(tmp_path: Path) -> None:
    write_cifar_tar(tmp_path / D.CIFAR10_JPEG_TAR, extra={"train/cat/9999.jpg": b"notajpeg"})
    with pytest.raises(DataError, match=r"train/cat/9999.jpg"):
        D.load_cifar10("train", tmp_path, strict=False)


def test_cifar_unknown_class(tmp_path: Path) -> None:
    write_cifar_tar(tmp_path / D.CIFAR10_JPEG_TAR, extra={"train/unicorn/0001.jpg": b"x"})
    with pytest.raises(DataError, match="unicorn"):
        D.load_cifar10("train", tmp_path, strict=False)


def test_cifar_truncated_tar(tmp_path: Path) -> None:
    p = write_cifar_tar(tmp_path / D.CIFAR10_JPEG_TAR)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DataError, match=D.CIFAR10_JPEG_TAR):
        D.load_cifar10("train", tmp_path, strict=False)


def test_cifar_python_batches(tmp_path: Path) -> None:
    folder = write_cifar_py(tmp_path / D.CIFAR10_PY_DIR)
    tr = D.load_cifar10("train", tmp_path, strict=False)
    assert tr.images.shape == (50, 32, 32, 3)
    raw = pickle.loads((folder / "data_batch_1").read_bytes())[b"data"]
    # channel-planar rows -> HWC: pixel (0, 1) of image 0 is (R[1], G[1], B[1])
    np.testing.assert_array_equal(tr.images[0, 0, 1], raw[0, [1, 1025, 2049]])
    assert len(D.load_cifar10("test", tmp_path, strict=False)) == 10


def test_cifar_python_official_tar(tmp_path: Path) -> None:
    import tarfile

    folder = write_cifar_py(tmp_path / "src" / D.CIFAR10_PY_DIR)
    with tarfile.open(tmp_path / D.CIFAR10_PY_TAR, "w:gz") as tf:
        tf.add(folder, arcname=D.CIFAR10_PY_DIR)
    assert len(D.load_cifar10("train", tmp_path, strict=False)) == 50


def test_cifar_pickle_refuses_code(tmp_path: Path) -> None:
    folder = write_cifar_py(tmp_path / D.CIFAR10_PY_DIR)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="test_batch"):
        D.load_cifar10("train", tmp_path, strict=False)


def test_real_mnist(mnist_dir: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAC_CACHE_DIR", str(shared_cache))
    te = D.load_mnist("test", mnist_dir)
    assert te.images.shape == (10000, 28, 28)
    assert np.bincount(te.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                               974, 1009]
    assert te.sha256 == D._combined_sha256(te.sources)
