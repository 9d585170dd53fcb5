"""Atomic writes and run directories: complete or absent, never half-written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imac import io as imac_io
from imac.errors import ImacError, OutputExistsError
from imac.io import atomic_write_bytes, atomic_write_text, run_directory


class Boom(RuntimeError):
    pass


def test_atomic_write_text_writes_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "deep" / "er" / "result.txt"
    atomic_write_text(p, "first\n")
    assert p.read_text() == "first\n"
    atomic_write_text(p, "second, é\n")
    assert p.read_text(encoding="utf-8") == "second, é\n"
    assert sorted(f.name for f in p.parent.iterdir()) == ["result.txt"]


def test_atomic_write_leaves_no_temp_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "result.txt"
    p.write_text("old")

    def failing_replace(src: str, dst: str) -> None:
        raise Boom("disk full")

    monkeypatch.setattr(imac_io.os, "replace", failing_replace)
    with pytest.raises(Boom):
        atomic_write_text(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old"  # the old content is intact
    assert sorted(f.name for f in tmp_path.iterdir()) == ["result.txt"]


def test_atomic_write_leaves_no_temp_file_when_the_write_fails(tmp_path: Path) -> None:
    p = tmp_path / "result.bin"
    with pytest.raises(TypeError):
        atomic_write_bytes(p, 12345)  # type: ignore[arg-type]  # not bytes: fh.write fails
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_temp_file_on_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(imac_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "x.txt", "data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_run_directory_success(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "r1"
    with run_directory(out) as tmp:
        assert tmp != out
        assert tmp.parent == out.parent
        assert not out.exists()  # nothing visible until it is complete
        (tmp / "a.txt").write_text("a")
    assert out.is_dir()
    assert (out / "a.txt").read_text() == "a"
    assert sorted(f.name for f in out.parent.iterdir()) == ["r1"]


def test_run_directory_refuses_an_existing_directory(tmp_path: Path) -> None:
    out = tmp_path / "r1"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="r1"):
        with run_directory(out):
            pytest.fail("the body must not run")  # pragma: no cover
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r1"]
    err = OutputExistsError("x")
    assert isinstance(err, ImacError) and isinstance(err, FileExistsError)


def test_run_directory_removes_its_temp_dir_on_an_exception(tmp_path: Path) -> None:
    out = tmp_path / "r2"
    seen: list[Path] = []
    with pytest.raises(Boom):
        with run_directory(out) as tmp:
            seen.append(tmp)
            (tmp / "half.txt").write_text("half")
            raise Boom("crash mid-run")
    assert not seen[0].exists()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_run_directory_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r3"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with run_directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(f.name for f in out.iterdir()) == ["new.txt"]


def test_run_directory_overwrite_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "r4"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(Boom):
        with run_directory(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise Boom
    assert sorted(f.name for f in out.iterdir()) == ["old.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r4"]


def test_atomic_write_is_visible_only_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the moment of the rename the temp file already holds all the data."""
    p = tmp_path / "big.bin"
    data = bytes(range(256)) * 256
    seen: dict[str, bytes] = {}
    real_replace = os.replace

    def spying_replace(src: str, dst: str) -> None:
        seen["src"] = Path(src).read_bytes()
        real_replace(src, dst)

    monkeypatch.setattr(imac_io.os, "replace", spying_replace)
    atomic_write_bytes(p, data)
    assert seen["src"] == data
    assert p.read_bytes() == data
