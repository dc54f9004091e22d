"""A disk that fills: Python's file layer under one folder as a file system with `free` bytes left. A write that
does not fit writes what fits and raises ENOSPC, as a full ext4 does; every later write under the folder fails
the same way. Files opened elsewhere are untouched, and so is SQLite (it writes through its own C layer): the
outbox then stands for a database on another partition, or one whose pages are reused while the log, which
only grows, runs out of room."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path
from typing import Any

import pytest


class FullDisk:
    def __init__(self, root: Path, free: int) -> None:
        self.root = str(Path(root).resolve())
        self.free = free
        self.refused = 0  # writes that failed for want of room

    def holds(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FullDisk:
        real_open, real_fdopen = builtins.open, os.fdopen

        def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = real_open(file, mode, *args, **kwargs)
            if isinstance(file, int | str | os.PathLike) and any(c in mode for c in "wax+"):
                path = os.readlink(f"/proc/self/fd/{f.fileno()}")
                if self.holds(path):
                    return _Metered(f, self)
            return f

        def fake_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = real_fdopen(fd, mode, *args, **kwargs)
            if any(c in mode for c in "wax+") and self.holds(os.readlink(f"/proc/self/fd/{fd}")):
                return _Metered(f, self)
            return f

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "fdopen", fake_fdopen)
        return self


class _Metered:
    """A file object whose writes take room from the disk."""

    def __init__(self, f: Any, disk: FullDisk) -> None:
        self._f, self._disk = f, disk

    def write(self, data: Any) -> int:
        n = len(data.encode() if isinstance(data, str) else data)
        if n <= self._disk.free:
            self._disk.free -= n
            return int(self._f.write(data))
        part = data[:self._disk.free]
        if part:
            self._f.write(part)
            self._f.flush()  # the torn part is on the disk, as a short write leaves it
        self._disk.free = 0
        self._disk.refused += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self) -> _Metered:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)
