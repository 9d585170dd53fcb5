"""Atomic writes and run directories: nothing half-written is left, nothing the user had is lost.

A run directory is built in a hidden temp folder *beside* its target (never inside it) and
renamed into place only when complete.  While it is built, an exclusive lock beside the target
keeps a second imac process from writing the same place.  A run killed without a chance to
clean up (SIGKILL, power loss) leaves its hidden partial folder; the next run into the same
target removes it, since only imac writes folders of that name and the lock proves that no live
process still does.  ``--overwrite`` replaces only a folder that imac itself wrote (it carries
the marker file :data:`MARKER`), and the old one is removed only after the new one is in place.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from imac.errors import ConfigError, OutputError, OutputExistsError

MARKER = ".imac-run.json"  # written into every run directory and export; --overwrite needs it
_PARTIAL = "imac-partial-"  # hidden temp folders: .<name>.imac-partial-XXXX beside the target
_OLD = "imac-old-"  # a replaced run directory, renamed aside until the new one is in place


CACHE_OFF = ("off", "none", "0")  # IMAC_CACHE_DIR values that turn the disk cache off
SESSION_CACHE_PREFIX = "imac-cache-"  # <prefix><pid>-XXXX in the system temp folder
_SESSION_CACHE: list[Path] = []  # this process's throw-away cache while the cache is off


def cache_disabled() -> bool:
    """``IMAC_CACHE_DIR=off`` (or ``none``, ``0``): nothing is kept between runs."""
    return os.environ.get("IMAC_CACHE_DIR", "").strip().lower() in CACHE_OFF


def cache_dir() -> Path:
    """User cache folder: ``IMAC_CACHE_DIR`` or ``~/.cache/imac`` (data caches, neuron
    characterizations, solved tiles: everything there can be deleted and is made again).

    With the cache off (:func:`cache_disabled`), a temporary folder of this process
    (``imac-cache-<pid>-XXXX`` in the system temp folder) removed when it exits, never a folder
    named ``off`` in the working directory; solved tiles then stay in memory only."""
    if cache_disabled():
        return _session_cache()
    env = os.environ.get("IMAC_CACHE_DIR", "").strip()
    try:
        return Path(env).expanduser() if env else Path.home() / ".cache" / "imac"
    except RuntimeError as err:  # `~user` of no such user, or no home folder at all
        raise ConfigError(f"IMAC_CACHE_DIR={env[:200]!r}: {err} (give an absolute folder)") from None


def _session_cache() -> Path:
    if not _SESSION_CACHE or not _SESSION_CACHE[0].is_dir():
        import atexit

        from imac.ngspice import remove_stale_temp_dirs

        try:
            remove_stale_temp_dirs()  # those of killed processes, this prefix included
        except OSError:
            pass
        path = Path(tempfile.mkdtemp(prefix=f"{SESSION_CACHE_PREFIX}{os.getpid()}-"))
        atexit.register(shutil.rmtree, path, True)
        _SESSION_CACHE[:] = [path]
    return _SESSION_CACHE[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _describe(err: OSError) -> str:
    return err.strerror or str(err)


def check_output_target(path: Path | str, overwrite: bool = False) -> Path:
    """The absolute path of a run directory to create at ``path``, or an error saying why not.

    Refused: an empty path; the working directory, one of its parents or the home folder (a
    replacement would take the user's files with it); a symbolic link; a path below a file; an
    existing file; an existing folder unless ``overwrite`` is set and the folder was written by
    imac.  Call it before long work, so that a bad ``--out`` fails in a second, not after it.
    """
    text = os.fspath(path)
    if not text.strip() or "\x00" in text:
        raise OutputError(f"invalid output path {text!r}")
    target = Path(os.path.abspath(os.path.expanduser(text)))  # lexical: '.' and '..' resolved
    if target.parent == target:
        raise OutputError(f"refusing to write a run directory at the filesystem root ({text!r})")
    try:
        target = target.parent.resolve() / target.name
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as err:
        raise OutputError(f"cannot resolve output path {text!r}: {err}") from None
    home = Path.home().resolve()
    if target == cwd or target in cwd.parents or target == home:
        what = "your home folder" if target == home else "the working directory or one of its parents"
        raise OutputError(f"refusing to use {text!r} as an output folder: it is {what}, and a run directory "
                          "replaces its target whole; give a new folder name (e.g. runs/my-run)")
    for ancestor in target.parents:
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                raise OutputError(f"cannot create {text!r}: {ancestor} is a file, not a folder")
            break
    if target.is_symlink():
        raise OutputError(f"refusing to replace {text!r}: it is a symbolic link")
    if target.exists():
        if not target.is_dir():
            raise OutputExistsError(f"{text!r} exists and is a file, not a run directory; choose another name")
        if not overwrite:
            raise OutputExistsError(f"{text!r} already exists; choose another --out or pass --overwrite")
        if not (target / MARKER).is_file():
            raise OutputExistsError(
                f"{text!r} exists and was not written by imac (it has no {MARKER}); refusing to replace a "
                "folder imac did not create: remove it yourself or choose another name")
    return target


class _TargetLock:
    """An exclusive, non-blocking ``flock`` on ``.<name>.lock`` beside the target.

    The kernel drops the lock when its process dies, however it dies, so a lock file left by a
    killed run never blocks the next one.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EAGAIN, errno.EACCES):
                    raise OutputError(f"another imac process is writing {self.target} "
                                      f"right now (lock {self.path}); wait for it or choose another name") from None
                raise
            try:  # the holder before us may have unlinked the file after we opened it: retry
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)
        raise OutputError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # unlink while holding the lock, then let go
            os.close(self.fd)
            self.fd = None


def remove_leftovers(target: Path) -> list[str]:
    """Clean up after earlier runs into ``target`` that were killed before they could (the caller
    holds the target's lock, so none of them is still running): their partial folders are
    removed; a run directory that was being replaced is put back if its replacement never
    arrived, else removed.  Returns one line per thing done."""
    done = []
    for p in sorted(target.parent.glob(f".{target.name}.{_PARTIAL}*")):
        if p.is_dir() and not p.is_symlink() and (p / MARKER).is_file():
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p}, the partial output of an earlier run that was killed")
    for p in sorted(target.parent.glob(f".{target.name}.{_OLD}*")):
        if p.is_dir() and not p.is_symlink() and (p / MARKER).is_file():
            if target.exists():
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p}, a replaced run directory an earlier run did not get to delete")
            else:
                os.replace(p, target)
                done.append(f"restored {target} from {p.name}: the run that was replacing it was killed")
    return done


def _write_marker(folder: Path, status: str, started: float) -> None:
    atomic_write_text(folder / MARKER, json.dumps({"status": status, "pid": os.getpid(), "started_unix_s": started,
                                                   "finished_unix_s": time.time() if status == "complete" else None}))


@contextmanager
def run_directory(path: Path, overwrite: bool = False,
                  note: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Yield a hidden temp folder beside ``path``; on success it is renamed to ``path``.

    ``path`` is checked first (:func:`check_output_target`).  On any error or interrupt the temp
    folder is removed, so ``path`` is either complete or absent, and an existing run directory
    replaced with ``overwrite`` stays as it was until the new one is complete.  ``note`` hears
    about leftovers of killed runs that were removed.
    """
    target = check_output_target(path, overwrite)
    created: list[Path] = []  # folders above the target that this run made (removed on failure)
    for ancestor in reversed(target.parents):
        if not ancestor.exists():
            created.append(ancestor)
    lock = _TargetLock(target)
    tmp: Path | None = None
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except OutputError:
            raise
        except OSError as err:
            raise OutputError(f"cannot write into {target.parent}: {_describe(err)}") from None
        for line in remove_leftovers(target):
            if note is not None:
                note(line)
        check_output_target(target, overwrite)  # again, now that we hold the lock
        started = time.time()
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_PARTIAL}", dir=target.parent))
            os.chmod(tmp, 0o777 & ~_umask())
            _write_marker(tmp, "partial", started)
        except OSError as err:
            raise OutputError(f"cannot write into {target.parent}: {_describe(err)}") from None
        yield tmp
        _write_marker(tmp, "complete", started)
        old: Path | None = None
        if target.exists():  # set aside, not deleted, until the new one is in place
            old = target.parent / f".{target.name}.{_OLD}{os.getpid()}"
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        lock.release()
        if not target.exists():
            for folder in reversed(created):
                try:
                    folder.rmdir()  # only if still empty
                except OSError:
                    break
        raise
    finally:
        lock.release()
