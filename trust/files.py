"""Durable small files and the one canonical JSON form that every signature in Umbra covers."""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def check_regular(path: str | os.PathLike[str]) -> None:
    """Raise OSError unless `path` is absent or a regular file (through any symlink): a state file replaced by
    /dev/full or /dev/zero would read for ever, a fifo would block its opener, both before any content check."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file (a device, a fifo or a folder stands there)", str(path))


def private_dirs(folder: str | os.PathLike[str]) -> Path:
    """Make `folder` and every missing folder above it 0700, whatever the umask (mkdir's mode is masked by
    it: 0755 under the usual 022, 0777 under 000); a folder that already stands is left as it is. For the
    folders that hold secrets (a device key, key ring, tokens) and the sensor's state dir."""
    folder = Path(folder)
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another writer: theirs, left as it is
            continue
        os.chmod(d, 0o700)
    return folder


def write_atomic(path: Path, data: bytes, private: bool = False, mode: int | None = None) -> None:
    """Temp file in the same folder, fsync, os.replace, fsync of the folder: a reader (or a power cut) sees
    the old file or the new one, never a mix. `private`: mode 0600; `mode`: that mode (the temp file's own is
    0600), set before the file appears. Standard library only, so the set-up (models, bench.lib.data) and the
    boot switch (hal.tryboot_switch) use it too. With `private`, folders it makes are 0700 (`private_dirs`)."""
    path = Path(path)
    if private:
        private_dirs(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if private or mode is not None:
            os.fchmod(fd, 0o600 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url(b: bytes) -> str:
    """Unpadded base64url, as signed tokens carry their payload and signature."""
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
