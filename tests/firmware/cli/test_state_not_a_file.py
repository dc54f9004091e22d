"""State files replaced between runs by what is not a file: a symlink to /dev/full or /dev/zero (reads that never
end), a fifo (an open that blocks). Through the real `umbra run`: each ends within the timeout, non-zero with
one `umbra:` line naming the file, or, for the continual state (which the audit log vouches for: see
bench/HOSTILE.md), runs on with the day suspended. On the old code the audit log, the continual state and the
aggregates file behind such a link ran past any timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from firmware.config import to_toml

pytestmark = pytest.mark.timeout(600)  # ten runs of `umbra run`, two at a time, on a loaded machine
UMBRA = str(Path(sys.executable).parent / "umbra")
FILES = {"audit": "audit.jsonl", "continual": "continual_state.json", "aggregates": "agg.jsonl"}
DAMAGE = ("/dev/full", "/dev/zero", "fifo")


def _config(tmp: Path, shared: Path) -> Path:
    st = tmp / "state"
    path = tmp / "c.toml"
    path.write_text(to_toml({
        "device": {"state_dir": str(st)}, "camera": {"kind": "video", "source": str(shared / "video/vtest.avi")},
        "detector": {"kind": "scripted", "ground_truth": str(shared / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
        "output": {"aggregates_file": str(st / "agg.jsonl")},
        "geometry": {"lines": [{"name": "l", "a": [0.0, -50.0], "b": [0.0, 50.0]}]},
        "privacy": {"window_s": 60, "tree_enabled": True}, "samples": {"enabled": False}}))
    return path


def test_a_state_file_that_is_not_a_file_is_named_and_never_hangs(tmp_path: Path, shared_data: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = tmp_path / "first"
    first.mkdir()
    cfg = _config(first, shared_data)
    subprocess.run([UMBRA, "run", "--config", str(cfg), "--max-frames", "40"], check=True, capture_output=True,
                   env=env, cwd=first, timeout=300)

    def run(case: tuple[str, str]) -> tuple[tuple[str, str], subprocess.CompletedProcess | None]:
        key, how = case
        tmp = tmp_path / f"{key}_{how.strip('/').replace('/', '_')}"
        subprocess.run(["cp", "-a", str(first), str(tmp)], check=True)
        cfg = _config(tmp, shared_data)
        target = tmp / "state" / FILES[key]
        target.unlink()
        if how == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to(how)
        try:
            return case, subprocess.run([UMBRA, "run", "--config", str(cfg), "--max-frames", "40"],
                                        capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
        except subprocess.TimeoutExpired:
            return case, None

    failures = []
    with ThreadPoolExecutor(2) as pool:
        for (key, how), proc in pool.map(run, [(k, d) for k in FILES for d in DAMAGE]):
            if proc is None:
                failures.append(f"{key} as {how}: still running after 60 s")
                continue
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("umbra:")]
            if "Traceback" in proc.stderr:
                failures.append(f"{key} as {how}: traceback {proc.stderr[-300:]!r}")
            elif key == "continual":
                if proc.returncode != 0 or "withheld" not in proc.stderr:
                    failures.append(f"{key} as {how}: exit {proc.returncode}, {proc.stderr[-300:]!r}")
            elif proc.returncode == 0 or len(lines) != 1 or FILES[key] not in lines[0]:
                failures.append(f"{key} as {how}: exit {proc.returncode}, {proc.stderr[-300:]!r}")
    assert not failures, "\n".join(failures)
