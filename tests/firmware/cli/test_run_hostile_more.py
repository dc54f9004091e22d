"""More of the classes of test_run_hostile, with new examples: a source that is a file of another kind (PNG
bytes: the decoder opens it but reports no picture size) and settings so small they are zero to the arithmetic.
Each run, through the real command line, exits non-zero with one `umbra:` line naming the key or file; the
three cases here ended in a Python traceback before (cv2.error, OverflowError, ZeroDivisionError)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from firmware.config import to_toml

UMBRA = str(Path(sys.executable).parent / "umbra")


def _base(tmp: Path, shared: Path) -> dict[str, Any]:
    return {"device": {"state_dir": str(tmp / "state")},
            "camera": {"kind": "video", "source": str(shared / "video/vtest.avi")},
            "detector": {"kind": "scripted", "ground_truth": str(shared / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
            "output": {"aggregates_file": str(tmp / "agg.jsonl")},
            "privacy": {"window_s": 60}, "samples": {"enabled": False}}


def test_new_bad_runs_are_one_line_and_non_zero(tmp_path: Path, shared_data: Path) -> None:
    png = tmp_path / "still.avi"  # a PNG header and noise, named like a video
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 12)
    cases: dict[str, tuple[dict[str, Any], list[str]]] = {
        "png as video": ({"camera": {"source": str(png)}}, ["still.avi"]),
        "vanishing emit_hz": ({"loop": {"emit_hz": 1e-300}}, ["emit_hz"]),
        "vanishing epsilon": ({"privacy": {"epsilon": 1e-300}}, ["epsilon"]),
    }
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def run(name: str) -> tuple[str, subprocess.CompletedProcess]:
        table = _base(tmp_path / name.replace(" ", "_"), shared_data)
        for section, values in cases[name][0].items():
            table[section].update(values) if section in table else table.setdefault(section, values)
        path = tmp_path / f"{name.replace(' ', '_')}.toml"
        path.write_text(to_toml(table))
        return name, subprocess.run([UMBRA, "run", "--config", str(path), "--max-frames", "30"],
                                    capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)

    failures = []
    with ThreadPoolExecutor(2) as pool:
        for name, proc in pool.map(run, cases):
            err, words = proc.stderr, cases[name][1]
            lines = [ln for ln in err.splitlines() if ln.startswith("umbra:")]
            if proc.returncode == 0 or "Traceback" in err or len(lines) != 1 or not all(w in lines[0] for w in words):
                failures.append(f"{name}: exit {proc.returncode}, stderr {err[-600:]!r}")
    assert not failures, "\n".join(failures)


def test_a_pi_camera_without_picamera2_is_one_line_and_non_zero(tmp_path: Path, shared_data: Path) -> None:
    """A permanent camera fault (here: the Pi camera named on a machine without picamera2) stops the run at
    start with one `umbra:` line and a non-zero exit; an empty config file means the Pi camera too. Both retried
    the camera for ever and exited 0 before (seen failing on the old code)."""
    import importlib.util

    if importlib.util.find_spec("picamera2") is not None:
        return  # on a Pi the camera may well be there
    table = _base(tmp_path / "pi", shared_data)
    table["camera"] = {"kind": "pi"}
    (tmp_path / "pi.toml").write_text(to_toml(table))
    (tmp_path / "empty.toml").write_text("")
    home = tmp_path / "home"  # an empty config keeps its state under ~/.local/state/umbra
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HOME": str(home)}
    failures = []
    for name in ("pi.toml", "empty.toml"):
        proc = subprocess.run([UMBRA, "run", "--config", str(tmp_path / name), "--max-frames", "20"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("umbra:")]
        if proc.returncode == 0 or "Traceback" in proc.stderr or len(lines) != 1 or "picamera2" not in lines[0]:
            failures.append(f"{name}: exit {proc.returncode}, stderr {proc.stderr[-600:]!r}")
    assert not failures, "\n".join(failures)


def test_umbra_run_and_audit_verify_agree_on_a_zeroed_audit_log(tmp_path: Path, shared_data: Path) -> None:
    """An audit log zeroed in place (a bad card, or by hand) with its head deleted: `umbra audit verify` fails
    naming the NUL bytes; `umbra run` keeps running (exit 0), records the damage in the chain it continues
    after the last good entry and leaves the zeros where they were, and verify still fails afterwards. Before,
    the run cut the zeros as a torn line and went on silently: the entries were gone and nothing said so."""
    table = _base(tmp_path / "s", shared_data)
    table["privacy"]["audit_file"] = str(tmp_path / "audit.jsonl")
    (tmp_path / "c.toml").write_text(to_toml(table))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def umbra(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([UMBRA, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)

    assert umbra("run", "--config", str(tmp_path / "c.toml"), "--max-frames", "5").returncode == 0
    log = tmp_path / "audit.jsonl"
    size = log.stat().st_size
    assert size > 0 and umbra("audit", "verify", str(log)).returncode == 0
    log.write_bytes(b"\0" * size)
    (tmp_path / "audit.jsonl.head").unlink()
    before = umbra("audit", "verify", str(log))
    assert before.returncode == 1 and "NUL" in before.stdout
    proc = umbra("run", "--config", str(tmp_path / "c.toml"), "--max-frames", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = log.read_bytes()
    assert data.startswith(b"\0" * size) and b'"event":"audit_tamper_found"' in data
    after = umbra("audit", "verify", str(log))
    assert after.returncode == 1 and "NUL" in after.stdout and "found it damaged" in after.stdout
