"""The output folder of an inference run: checks before anything is written, one run at a time, and what
killed runs left behind.

:func:`check_output_folder` creates it (a DataError when it is a file), :func:`refuse_links` refuses symbolic
links where a run writes, :func:`remove_stale_temporaries` deletes the staging folders and temporaries of killed
runs, :func:`output_error` turns an OSError while writing into one line naming the path.

One run at a time per output folder: :class:`OutputLock`, an exclusive lock held for the whole run.

The lock is the file ``.bgmatting.lock`` inside the output folder, locked with ``flock``: the kernel holds the
lock, not the file, so the lock of a process that died (killed, crashed) is gone with the process and the next
run takes the folder over; there is nothing to judge "stale" by age or process id. The file names the holder
(host and process id) for the refusal message and is deleted when the run releases the lock. A second run that
finds the lock held is refused up front (:class:`OutputFolderBusy`, before it changes anything in the folder).
Locks are per open file, so two threads of one process exclude each other as two processes do.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import warnings
from collections.abc import Iterable
from pathlib import Path

from bgmatting.io import DataError

LOCK_NAME = ".bgmatting.lock"
STAGING_PREFIX = ".staging-"
OUTPUT_FOLDERS = ("alpha", "foreground", "composite")
#: errno values of file systems that do not support flock (some network file systems).
_NO_LOCKING = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def output_error(error: OSError, path: Path) -> DataError:
    """One line for an OSError while writing ``path``: "no space left on device writing PATH" and the like."""
    if error.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the output folder is not writable"
    else:
        reason = (error.strerror or str(error)).lower()
    return DataError(f"{reason} writing {path}")


def check_output_folder(folder: str | os.PathLike) -> Path:
    """The output folder, created if needed; a DataError when it is a file or cannot be created."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: the output path is a file, not a folder")
    if folder.is_symlink() and not folder.exists():
        raise DataError(f"{folder}: the output path is a symbolic link to a folder that does not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, folder) from None
    return folder


def link_error(path: Path) -> DataError:
    """The refusal of a symbolic link where a run would write."""
    return DataError(f"{path}: is a symbolic link; refusing to write through it (remove it or choose another "
                     "output folder)")


def refuse_links(folder: Path, names: Iterable[str]) -> None:
    """A DataError naming the first symbolic link among ``folder / name`` for ``names`` (what a run writes) and
    the entries of those that are folders; nothing is written through a link. ``folder`` itself may be one."""
    for name in names:
        path = folder / name
        if path.is_symlink():
            raise link_error(path)
        if path.is_dir():
            with os.scandir(path) as entries:
                link = next((entry.name for entry in entries if entry.is_symlink()), None)
            if link is not None:
                raise link_error(path / link)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete what killed runs left in an output folder: staging folders and hidden ``*.tmp*`` files (this
    package's temporary names) in it and its output subfolders, never through a symbolic link. Call it only while
    holding the folder's lock (a running run's staging folder looks the same). Returns what was removed."""
    removed = []
    for place in [folder] + [folder / name for name in OUTPUT_FOLDERS]:
        if (place != folder and place.is_symlink()) or not place.is_dir():
            continue
        for entry in place.iterdir():
            if entry.is_symlink():
                continue
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            elif entry.name.startswith(".") and ".tmp" in entry.name and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


class OutputFolderBusy(DataError):
    """Another run holds the output folder's lock."""


def _holder(fd: int) -> str:
    """What the lock file says about its holder ("process 123 on host"), or "another process"."""
    try:
        host, pid = os.pread(fd, 256, 0).decode("utf-8", "replace").split()[:2]
    except ValueError:
        return "another process"
    return f"process {pid} on {host}"


def _same_file(fd: int, path: Path) -> bool:
    """The open file ``fd`` is still the file at ``path`` (not unlinked or replaced by a releasing holder)."""
    try:
        here = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)


class OutputLock:
    """The lock of one output ``folder`` (an existing folder); :meth:`acquire`, then :meth:`release` (idempotent).

    ``acquire`` raises :class:`OutputFolderBusy` naming the folder and the holder while another run holds it, and
    a DataError naming the lock file when it is a symbolic link or cannot be created. Where the file system cannot
    lock, the run goes on unlocked with a warning.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        for _ in range(100):  # a retry only when a holder released (and deleted) the file under our feet
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise OutputFolderBusy(
                    f"{self.folder}: another run ({holder}) is writing into this output folder; wait for it to "
                    "finish or choose another output folder") from None
            except OSError as error:
                os.close(fd)
                if error.errno not in _NO_LOCKING:
                    raise DataError(f"cannot lock {self.path}: {error.strerror or error}") from None
                warnings.warn(f"{self.folder}: the file system cannot lock files; a second run into this folder "
                              "at the same time would not be refused", stacklevel=2)
                return
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
                self._fd = fd
                return
            os.close(fd)
        raise DataError(f"{self.path}: could not take the lock (the file keeps changing)")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise DataError(f"{self.path}: is a symbolic link; refusing to write through it") from None
            raise output_error(error, self.path) from None

    def release(self) -> None:
        """Delete the lock file (while still holding it) and unlock; nothing when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()
