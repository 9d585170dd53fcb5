"""Atomic writes and run directories: complete or absent, never half-written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imac import io as imac_io
from imac.errors import ImacError, OutputError, OutputExistsError
from imac.io import MARKER, atomic_write_bytes, atomic_write_text, check_output_target, run_directory


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
    assert sorted(f.name for f in out.parent.iterdir()) == ["r1"]  # no lock file, no temp folder
    assert sorted(f.name for f in out.iterdir()) == [MARKER, "a.txt"]


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


def _imac_run(out: Path, name: str = "old.txt") -> None:
    with run_directory(out) as tmp:
        (tmp / name).write_text(name)


def test_run_directory_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r3"
    _imac_run(out)
    with run_directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(f.name for f in out.iterdir()) == [MARKER, "new.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r3"]


def test_run_directory_overwrite_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "r4"
    _imac_run(out)
    with pytest.raises(Boom):
        with run_directory(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise Boom
    assert sorted(f.name for f in out.iterdir()) == [MARKER, "old.txt"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r4"]


def test_overwrite_never_replaces_a_folder_imac_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputExistsError, match="not written by imac"):
        with run_directory(out, overwrite=True):
            pytest.fail("the body must not run")  # pragma: no cover
    assert sorted(f.name for f in out.iterdir()) == ["thesis.tex"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["mine"]


@pytest.mark.parametrize("target", [".", "./", "..", "sub/..", "."])
def test_working_directory_and_its_parents_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       target: str) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    (work / MARKER).write_text("{}")  # even a marker does not make the working directory replaceable
    monkeypatch.chdir(work)
    with pytest.raises(OutputError, match="working directory"):
        with run_directory(Path(target), overwrite=True):
            pytest.fail("the body must not run")  # pragma: no cover
    assert sorted(f.name for f in work.iterdir()) == [MARKER, "notes.txt", "sub"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["work"]


def test_a_file_a_path_below_a_file_and_a_symlink_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "report.txt"
    f.write_text("mine")
    with pytest.raises(OutputExistsError, match="is a file"):
        check_output_target(f, overwrite=True)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_target(f / "deeper" / "run")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output_target(link, overwrite=True)
    assert f.read_text() == "mine"


def test_a_second_writer_of_the_same_target_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    with run_directory(out) as tmp:
        with pytest.raises(OutputError, match="another imac process"):
            with run_directory(out):
                pytest.fail("the body must not run")  # pragma: no cover
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    _imac_run(tmp_path / "free")  # the lock is gone once the first run is done


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "r5"
    partial = tmp_path / ".r5.imac-partial-abc123"  # what SIGKILL leaves behind
    partial.mkdir()
    (partial / MARKER).write_text('{"status": "partial"}')
    (partial / "half.csv").write_text("1,2")
    (tmp_path / ".r5.lock").write_text("12345\n")  # lock file of the dead run (its flock died with it)
    stranger = tmp_path / ".r5.imac-partial-notours"  # no marker: not ours, left alone
    stranger.mkdir()
    notes: list[str] = []
    with run_directory(out, note=notes.append) as tmp:
        (tmp / "a.txt").write_text("a")
    assert not partial.exists() and stranger.exists()
    assert len(notes) == 1 and "killed" in notes[0]
    assert sorted(f.name for f in tmp_path.iterdir()) == [".r5.imac-partial-notours", "r5"]


def test_a_run_directory_killed_while_being_replaced_is_restored(tmp_path: Path) -> None:
    out = tmp_path / "r6"
    _imac_run(out)
    os.replace(out, tmp_path / ".r6.imac-old-999")  # killed after setting the old one aside
    notes: list[str] = []
    with pytest.raises(OutputExistsError):  # restored, so without --overwrite it is refused again
        with run_directory(out, note=notes.append):
            pytest.fail("the body must not run")  # pragma: no cover
    assert (out / "old.txt").read_text() == "old.txt"
    assert any("restored" in n for n in notes)


def test_unwritable_place_is_one_clear_error_and_leaves_nothing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*a: object, **k: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imac_io.tempfile, "mkdtemp", denied)
    with pytest.raises(OutputError, match="Permission denied"):
        with run_directory(tmp_path / "new" / "deep" / "run"):
            pytest.fail("the body must not run")  # pragma: no cover
    assert list(tmp_path.iterdir()) == []  # the folders it made on the way are gone too


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


def test_cache_off_writes_nothing_where_the_user_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       mnist_available: bool) -> None:
    """IMAC_CACHE_DIR=off once made a folder named `off` in the working directory (data caches);
    now the process keeps a throw-away cache in the system temp folder, removed when it exits, and
    a checkpoint that would land in the cache asks for --out instead of vanishing."""
    import subprocess
    import sys
    import tempfile

    work, sys_tmp = tmp_path / "work", tmp_path / "sys-tmp"
    work.mkdir()
    sys_tmp.mkdir()
    env = {**os.environ, "IMAC_CACHE_DIR": "off", "TMPDIR": str(sys_tmp)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    imac = [sys.executable, "-m", "imac.cli"]
    res = subprocess.run([*imac, "simulate", "mlp-mnist", "--limit", "20", "--fidelity", "circuit"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert list(work.iterdir()) == [] and list(sys_tmp.iterdir()) == []  # its cache went with it
    res = subprocess.run([*imac, "train", "mlp-mnist", "--epochs", "1", "--limit-train", "16"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "IMAC_CACHE_DIR is off" in res.stderr and "--out" in res.stderr
    assert list(work.iterdir()) == [] and list(sys_tmp.iterdir()) == []
    # in this process: the tile cache is memory only, the rest in a folder of this process
    monkeypatch.setenv("IMAC_CACHE_DIR", "OFF ")
    monkeypatch.setattr(tempfile, "tempdir", str(sys_tmp))
    monkeypatch.setattr(imac_io, "_SESSION_CACHE", [])
    from imac.hardware.tiles import cache_dir as tile_cache_dir

    assert imac_io.cache_disabled() and tile_cache_dir() is None
    here = imac_io.cache_dir()
    assert here.parent == sys_tmp and here.name.startswith(f"imac-cache-{os.getpid()}-") and here.is_dir()
    assert imac_io.cache_dir() == here  # one per process
    # the leftover of a killed process is removed by the next one that needs such a folder
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = sys_tmp / f"imac-cache-{dead.pid}-abcd"
    stale.mkdir()
    monkeypatch.setattr(imac_io, "_SESSION_CACHE", [])
    imac_io.cache_dir()
    assert not stale.exists()
