"""Shared fixtures: where the bench data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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

_FORBIDDEN = (Path("/var/lib/umbra"), Path.home() / ".local" / "state" / "umbra")
_written: list[str] = []


def _audit_writes(event: str, args: tuple) -> None:
    if event != "open" or not args or not isinstance(args[0], (str, os.PathLike)):
        return
    mode, flags = (args[1] if len(args) > 1 else "r") or "r", (args[2] if len(args) > 2 else 0) or 0
    writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
    if writing:
        path = os.path.abspath(os.fspath(args[0]))
        if any(path == str(f) or path.startswith(str(f) + os.sep) for f in _FORBIDDEN):
            _written.append(path)


@pytest.fixture(scope="session", autouse=True)
def _write_guard() -> None:
    import sys

    sys.addaudithook(_audit_writes)  # cannot be removed: it only records, the fixture below fails the test


@pytest.fixture(autouse=True)
def _no_state_outside_tmp(_write_guard: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A test that writes to /var/lib/umbra or the user's real state folder fails; `~` is the test's tmp."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _written.clear()
    yield
    if _written:
        pytest.fail(f"the test wrote outside its tmp folder: {sorted(set(_written))[:3]}")
