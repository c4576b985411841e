"""One run per output folder: a lock, a writability check before any work, and cleanup of a killed run.

Two runs writing into one folder would interleave the shared submission csv; the second is
refused while the first holds the lock (an advisory `flock`, released by the OS even when the
holder is killed). Under the lock, temporary files a killed run left behind are removed. A folder
the run created and left empty (every case refused) is removed again, so a refusal leaves nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from .io import PARTIAL_MARKER, OutputError, output_error

LOCK_NAME = ".ribfracseg.lock"


def _open_lock(folder: Path) -> int:
    """An fd holding the exclusive lock on the folder's lock file (retrying if the holder just removed it)."""
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise output_error(folder, err, resume=False) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(errno.EBUSY, f"another ribfracseg run ({holder}) is writing into {folder}; wait for it "
                                           "to finish or choose another output folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our lock: try again


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete temporary files (`.<name>.partial-*`) left by a killed run; call only under the lock."""
    removed = []
    for path in folder.rglob(f".*{PARTIAL_MARKER}*"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike, command: str = "ribfracseg") -> Iterator[Path]:
    """Hold `folder` (created if needed) for one run: OutputError if it is read-only or in use."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(errno.ENOTDIR, f"the output folder {folder} is a file; choose a folder (new or existing)")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(folder, err, resume=False) from None
    try:
        fd = _open_lock(folder)
    except OutputError:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command}, pid {os.getpid()}, since {time.strftime('%H:%M:%S')}".encode(), 0)
        remove_partial_files(folder)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK_NAME)  # before unlocking: a waiting run then re-creates it
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a run that wrote nothing leaves nothing


def run_in_output_folder(folder: str | os.PathLike, command: str, work: Callable[[Path], int]) -> int:
    """A command's exit status from `work(folder)` run under the lock; 2, with one line, if it is refused."""
    try:
        with output_folder(folder, command) as held:
            return work(held)
    except OutputError as err:  # read-only, a file, or in use: refused before any work
        print(f"error: {err}", file=sys.stderr)
        return 2
