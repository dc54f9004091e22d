"""Release files that lie: a bundle whose member is sparse (its header declares far more bytes than the file
holds) is refused from the headers alone, before a byte of it is read."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from bench.hostile_memory import sparse_bundle
from ota.bundle import build, verify_and_extract
from ota.errors import Refused


def test_a_sparse_member_is_refused_by_its_declared_size_without_reading_it(tmp_path: Path) -> None:
    bundle = sparse_bundle(tmp_path / "b.tar", 200 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(Refused) as e:
            verify_and_extract(bundle, tmp_path / "out", "umbra-pi4")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "declares" in str(e.value)
    assert peak < 5 * 2**20  # nothing near the 200 MB the member claims was allocated
    assert not (tmp_path / "out").exists()


def test_an_honest_bundle_still_extracts_streamed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a" * 1000)
    good = build(src, tmp_path / "good.tar", "1.0.0", ["umbra-pi4"])
    assert good.files["a.bin"]["length"] == 1000
    assert verify_and_extract(tmp_path / "good.tar", tmp_path / "ok", "umbra-pi4").version == "1.0.0"
    assert (tmp_path / "ok" / "a.bin").read_bytes() == b"a" * 1000
