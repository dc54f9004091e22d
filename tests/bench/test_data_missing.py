"""A bench whose data is missing says what to provide and where, and exits 1: no traceback (bench.lib.data's
clean_exit around each main)."""

from __future__ import annotations

import importlib

import pytest

from bench.lib import data

MAINS = ("bench.run", "bench.gating", "bench.countscenes", "bench.counting_loso", "bench.installer_cost",
         "bench.sample_stall", "bench.loop_speed", "bench.lib.data")


@pytest.mark.parametrize("module", MAINS)
def test_missing_data_is_named_not_a_traceback(module, tmp_path, monkeypatch, capsys):
    def no_fetch(f: data.DataFile) -> None:
        raise OSError("no fetching in tests")

    monkeypatch.setattr(data, "candidates", lambda: [tmp_path / "empty"])
    monkeypatch.setattr(data, "_fetch", no_fetch)
    assert importlib.import_module(module).main([]) == 1
    err = capsys.readouterr().err
    assert "bench data missing:" in err and "video/vtest.avi" in err and str(tmp_path / "empty") in err
    assert "Traceback" not in err
