"""Release files that lie, beyond the sparse member (test_bundle_hostile): a manifest that is not a plain file
or not the shape it claims, nested past the parser, a key or a member given twice (the second would shadow the
first unseen), file names that are not plain relative paths, links and device files, truncated archives. Each
is refused as `bad_bundle` before anything lands outside the destination, never an exception of another kind.
The cases marked in the tally of bench/HOSTILE.md raised AttributeError or RecursionError, or were accepted."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.bundle import SCHEMA, verify_and_extract
from ota.errors import Refused

DATA = b"hello"


def _manifest(files: Any, **kw: Any) -> bytes:
    doc = {"schema": SCHEMA, "version": "1.0.0", "hardware": ["umbra-pi4"], "min_from": "0", "files": files}
    return json.dumps({**doc, **kw}).encode()


def _entry(data: bytes) -> dict[str, Any]:
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **kw: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)
    return info


def _tar(path: Path, fill: Callable[[tarfile.TarFile], object]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        fill(tar)
    return path


def _one(name: str, data: bytes = DATA, **man: Any) -> Callable[[tarfile.TarFile], None]:
    def fill(tar: tarfile.TarFile) -> None:
        _add(tar, "manifest.json", _manifest({name: _entry(data)}, **man))
        _add(tar, "files/" + name, data)
    return fill


CASES: dict[str, tuple[Callable[[tarfile.TarFile], object], str]] = {
    "files is a list": (lambda t: _add(t, "manifest.json", _manifest([])), "not of type 'object'"),
    "entry is a number": (lambda t: (_add(t, "manifest.json", _manifest({"a": 5})), _add(t, "files/a", DATA)),
                          "not of type 'object'"),
    "manifest nested past the parser": (lambda t: _add(t, "manifest.json", b"[" * 100_000 + b"]" * 100_000),
                                        "nested too deep"),
    "manifest is a folder": (lambda t: _add(t, "manifest.json", type=tarfile.DIRTYPE), "not a plain file"),
    "manifest is a fifo": (lambda t: _add(t, "manifest.json", type=tarfile.FIFOTYPE), "not a plain file"),
    "manifest is a device": (lambda t: _add(t, "manifest.json", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
                             "not a plain file"),
    "manifest is a symlink": (lambda t: (_add(t, "x", _manifest({})),
                                         _add(t, "manifest.json", type=tarfile.SYMTYPE, linkname="x")),
                              "not a plain file"),
    "manifest is a hard link": (lambda t: (_add(t, "files/a", _manifest({"a": _entry(b"")})),
                                           _add(t, "manifest.json", type=tarfile.LNKTYPE, linkname="files/a")),
                                "not a plain file"),
    "manifest twice, the second another version": (
        lambda t: (_one("a")(t), _add(t, "manifest.json", _manifest({"a": _entry(DATA)}, version="9.9.9"))),
        "appears twice"),
    "member twice": (lambda t: (_one("a")(t), _add(t, "files/a", b"other")), "appears twice"),
    "a key twice": (lambda t: _add(t, "manifest.json", b'{"schema": "%s", "files": {}, "version": "1.0.0", '
                                   b'"hardware": ["umbra-pi4"], "min_from": "0", "files": {"a": 1}}'
                                   % SCHEMA.encode()), "repeats the key 'files'"),
    "length is a bool": (lambda t: (_add(t, "manifest.json", _manifest({"a": {**_entry(b"h"), "length": True}})),
                                    _add(t, "files/a", b"h")), "not of type 'integer'"),
    "version is a table": (lambda t: _add(t, "manifest.json", _manifest({}, version={"x": 1})), "not of type"),
    "hardware is a string": (lambda t: _add(t, "manifest.json", _manifest({}, hardware="umbra-pi4")), "not of type"),
    "hash is not hex": (lambda t: (_add(t, "manifest.json", _manifest({"a": {"length": 5, "sha256": "x"}})),
                                   _add(t, "files/a", DATA)), "does not match"),
    "name is '.'": (_one("."), "not a relative path"),
    "name is empty": (_one(""), "not a relative path"),
    "name climbs out": (_one("../../evil"), "not a relative path"),
    "name is absolute": (_one("/tmp/evil"), "not a relative path"),
    "member is a symlink": (lambda t: (_add(t, "manifest.json", _manifest({"a": _entry(DATA)})),
                                       _add(t, "files/a", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
                            "not a plain file"),
    "member is a block device": (lambda t: (_add(t, "manifest.json", _manifest({"a": _entry(DATA)})),
                                            _add(t, "files/a", type=tarfile.BLKTYPE)), "not a plain file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bundle_that_lies_is_refused(tmp_path: Path, case: str) -> None:
    fill, words = CASES[case]
    bundle = _tar(tmp_path / "b.tar", fill)
    dest = tmp_path / "out" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(Refused) as e:
        verify_and_extract(bundle, dest, "umbra-pi4")
    assert e.value.reason == "bad_bundle" and words in str(e.value), str(e.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dest"]  # nothing written beside it
    assert not list(dest.iterdir())


@pytest.mark.parametrize("cut", [10, 512, 700, 1024, 1536])
def test_a_truncated_bundle_is_refused(tmp_path: Path, cut: int) -> None:
    whole = _tar(tmp_path / "b.tar", _one("a", DATA * 200)).read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[:cut])
    with pytest.raises(Refused) as e:
        verify_and_extract(tmp_path / "cut.tar", tmp_path / "out", "umbra-pi4")
    assert e.value.reason == "bad_bundle"


PART = st.sampled_from(["a", "b.c", "...", "..", ".", "", "d"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(PART, min_size=1, max_size=4), st.booleans())
def test_only_plain_relative_names_are_extracted(tmp_path_factory: pytest.TempPathFactory, parts: list[str],
                                                 absolute: bool) -> None:
    name = ("/" if absolute else "") + "/".join(parts)
    tmp = tmp_path_factory.mktemp("n")
    bundle = _tar(tmp / "b.tar", _one(name))
    dest = tmp / "out" / "dest"
    dest.mkdir(parents=True)
    plain = not absolute and all(p not in ("", ".", "..") for p in parts)
    if plain:
        verify_and_extract(bundle, dest, "umbra-pi4")
        assert (dest / name).read_bytes() == DATA
    else:
        with pytest.raises(Refused):
            verify_and_extract(bundle, dest, "umbra-pi4")
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["dest"]
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in dest.rglob("*"))
