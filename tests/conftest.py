"""Shared fixtures: where the bench data lives; hypothesis without deadlines; the write guard."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]

# No time limit on an example: hypothesis's default (200 ms) is a timed assertion, and on a loaded machine it
# failed examples that were right (a line-counter property, once, at a load average of 16). What an example
# computes is what the tests assert; speed is measured in bench/.
settings.register_profile("umbra", deadline=None)
settings.load_profile("umbra")


def data_dir() -> Path:
    env = os.environ.get("UMBRA_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if not d.is_dir():
        pytest.fail(f"bench data not found at {d}: set UMBRA_DATA_DIR or run the README's set-up")
    return d


# ---------------------------------------------------------------- tests write only inside their tmp folders
#
# An audit hook sees every write the test process makes (open for writing, mkdir, rename, remove, rmdir,
# truncate) and the fixture below fails the test that wrote outside its folders: its tmp_path, pytest's base
# temp folder (module fixtures' tmp_path_factory.mktemp), and the test's scratch folder, which is where
# `tempfile` puts what the code under test makes with mkdtemp/mkstemp (the local PostgreSQL and Mosquitto,
# Chromium's profile). TMPDIR is NOT changed: subprocesses keep /tmp (Chromium's socket path must stay under
# 108 bytes), and the scratch folder is short and world-traversable (initdb runs as the postgres user, which
# cannot enter root's 0700 pytest folders). Device nodes (/dev) and Python's bytecode caches are not state.

_written: list[str] = []
_allowed: list[str] = []
_EXEMPT = ("/dev/",)
_PATH_EVENTS = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.truncate": (0,)}
_SCRATCH_ROOT: list[Path] = []


def _outside(path: str) -> bool:
    path = os.path.abspath(path)
    if path.startswith(_EXEMPT) or f"{os.sep}__pycache__{os.sep}" in path:
        return False
    return not any(path == a or path.startswith(a + os.sep) for a in _allowed)


def _audit_writes(event: str, args: tuple) -> None:
    if event == "open":
        if not args or not isinstance(args[0], (str, os.PathLike)):
            return
        mode, flags = (args[1] if len(args) > 1 else "r") or "r", (args[2] if len(args) > 2 else 0) or 0
        if not (any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
            return
        paths = [args[0]]
    elif event in _PATH_EVENTS:
        dir_fd = args[-1] if event != "os.truncate" else None
        paths = [args[i] for i in _PATH_EVENTS[event] if i < len(args) and isinstance(args[i], (str, os.PathLike))]
        if dir_fd is not None and isinstance(dir_fd, int) and dir_fd >= 0:
            paths = [p for p in paths if os.path.isabs(os.fspath(p))]  # relative to a folder fd: rmtree's own
        if event == "os.mkdir":  # mkdir(exist_ok=True) of a folder that is there writes nothing
            paths = [p for p in paths if not os.path.isdir(p)]
    else:
        return
    for p in paths:
        p = os.fsdecode(os.fspath(p))
        if _outside(p):
            _written.append(os.path.abspath(p))


def _scratch_root() -> Path:
    """A short, world-traversable folder for this test run's scratch folders (removed at the end)."""
    if not _SCRATCH_ROOT:
        root = Path(tempfile.mkdtemp(prefix="umbra-t-", dir="/tmp"))
        root.chmod(0o755)
        _SCRATCH_ROOT.append(root)
    return _SCRATCH_ROOT[0]


@pytest.fixture(scope="session", autouse=True)
def _write_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import sys

    from hypothesis.configuration import set_hypothesis_home_dir

    root = _scratch_root()
    set_hypothesis_home_dir(str(root / "hypothesis"))  # its examples and caches: not the repository's .hypothesis
    _allowed[:] = [str(tmp_path_factory.getbasetemp().resolve()), str(root)]
    saved = tempfile.tempdir
    tempfile.tempdir = str(root)  # module fixtures' mkdtemp
    sys.addaudithook(_audit_writes)  # cannot be removed: it only records, the fixture below fails the test
    yield
    tempfile.tempdir = saved
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_state_outside_tmp(_write_guard: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that writes outside its tmp folders fails; `~` is the test's tmp, and so is `tempfile`'s folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    scratch = Path(tempfile.mkdtemp(prefix="", dir=_scratch_root()))
    scratch.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _written.clear()
    yield
    found = sorted(set(_written))
    _written.clear()
    if found:
        pytest.fail(f"the test wrote outside its tmp folder: {found[:3]}")
