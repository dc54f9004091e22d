"""`umbra run` on bad configuration and bad input, through the real command line in subprocesses: each run
exits non-zero with one line naming the key or file and what is allowed, never a Python traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from firmware.config import to_toml

UMBRA = str(Path(sys.executable).parent / "umbra")  # the installed command line


def _base(tmp: Path, shared: Path) -> dict[str, Any]:
    return {"device": {"state_dir": str(tmp / "state")},
            "camera": {"kind": "video", "source": str(shared / "video/vtest.avi")},
            "detector": {"kind": "scripted", "ground_truth": str(shared / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
            "output": {"aggregates_file": str(tmp / "agg.jsonl")},
            "privacy": {"window_s": 60, "budget_file": str(tmp / "b.sqlite"), "audit_file": str(tmp / "a.jsonl")},
            "samples": {"enabled": False}}


def _cases(tmp: Path, shared: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (config file, words the one-line error must hold)."""
    (tmp / "empty.avi").write_bytes(b"")
    (tmp / "text.avi").write_text("this is not a video\n" * 100)
    (tmp / "adir").mkdir()
    cases: dict[str, tuple[dict[str, Any] | str | bytes | None, list[str]]] = {
        "missing config": (None, ["cannot read config file"]),
        "not toml": ("[loop\n", ["not valid TOML"]),
        "not utf-8": (b"\xff\xfe[loop]\n", ["not UTF-8"]),
        "nan": ({"tracker": {"max_lost_s": float("nan")}}, ["max_lost_s", "finite"]),
        "inf": ({"tracker": {"meas_noise": float("inf")}}, ["meas_noise", "finite"]),
        "huge epsilon": ({"privacy": {"daily_epsilon": 1e12}}, ["daily_epsilon"]),
        "huge hyperplanes": ({"flowgroups": {"hyperplanes": 2**62}}, ["hyperplanes"]),
        "bow tie": ({"geometry": {"zones": [{"name": "z", "polygon": [[0, 0], [2, 2], [2, 0], [0, 2]]}]}},
                    ["zone 'z'", "crosses itself"]),
        "missing video": ({"camera": {"source": str(tmp / "nope.avi")}}, ["nope.avi", "not found"]),
        "empty video": ({"camera": {"source": str(tmp / "empty.avi")}}, ["empty.avi", "empty"]),
        "text video": ({"camera": {"source": str(tmp / "text.avi")}}, ["text.avi"]),
        "wrong size": ({"geometry": {"image_size": [640, 480]}}, ["768x576", "image_size", "640x480"]),
        "missing gt": ({"detector": {"ground_truth": str(tmp / "gt.txt")}}, ["gt.txt"]),
        "output is a dir": ({"output": {"aggregates_file": str(tmp / "adir")}}, ["adir"]),
        "budget in a dir": ({"privacy": {"budget_file": str(tmp / "adir")}}, ["adir"]),
    }
    out = {}
    for i, (name, (body, words)) in enumerate(cases.items()):
        path = tmp / f"c{i}.toml"
        if isinstance(body, dict):
            table = _base(tmp, shared)
            for section, values in body.items():
                table.setdefault(section, {}).update(values)
            path.write_text(to_toml(table))
        elif isinstance(body, str):
            path.write_text(body)
        elif isinstance(body, bytes):
            path.write_bytes(body)
        out[name] = (path, words)
    return out


def test_every_bad_run_is_one_line_and_non_zero(tmp_path: Path, shared_data: Path) -> None:
    cases = _cases(tmp_path, shared_data)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(name: str) -> tuple[str, subprocess.CompletedProcess]:
        cmd = [UMBRA, "run", "--config", str(cases[name][0]), "--max-frames", "3"]
        return name, subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)

    failures = []
    with ThreadPoolExecutor(4) as pool:  # four at a time: the suite shares two cores
        for name, proc in pool.map(run, cases):
            err, words = proc.stderr, cases[name][1]
            lines = [ln for ln in err.splitlines() if ln.startswith("umbra:")]
            if proc.returncode == 0 or "Traceback" in err or len(lines) != 1 or not all(w in lines[0] for w in words):
                failures.append(f"{name}: exit {proc.returncode}, stderr {err[-600:]!r}")
    assert not failures, "\n".join(failures)


def test_the_base_config_runs(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "ok.toml").write_text(to_toml(_base(tmp_path, shared_data)))
    proc = subprocess.run([UMBRA, "run", "--config", str(tmp_path / "ok.toml"),
                           "--max-frames", "3"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


_ = pytest
