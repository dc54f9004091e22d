"""Command-line flags as an attacker types them, through the real commands in subprocesses: NaN, infinities,
negative and absurd numbers. Each exits non-zero with one line naming the flag, never a traceback, never a
token or plan signed with the value, never an endless key generation. On the old code `--days nan` and
`--days inf` ended in tracebacks, `--days 1e300` and `--rate 10**20` signed tokens no device can honour,
`--max-frames -1` ran and exited 0, `--root-keys 10**8` never ended and `--every-hours nan` wrote a plan."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent

CASES: dict[str, tuple[list[str], str]] = {
    "max-frames -1": (["umbra", "run", "--config", "{c}", "--max-frames", "-1"], "--max-frames"),
    "max-frames 0": (["umbra", "run", "--config", "{c}", "--max-frames", "0"], "--max-frames"),
    "days nan": (["umbra", "samples", "sign-token", "--key", "{k}", "--device", "d", "--rate", "2", "--days", "nan"],
                 "--days"),
    "days inf": (["umbra", "samples", "sign-token", "--key", "{k}", "--device", "d", "--rate", "2", "--days", "inf"],
                 "--days"),
    "days 1e300": (["umbra", "samples", "sign-token", "--key", "{k}", "--device", "d", "--rate", "2", "--days",
                    "1e300"], "--days"),
    "rate 10**20": (["umbra", "samples", "sign-token", "--key", "{k}", "--device", "d", "--rate", "1" + "0" * 20,
                     "--days", "1"], "--rate"),
    "not-before 10**20": (["umbra", "samples", "sign-token", "--key", "{k}", "--device", "d", "--rate", "2", "--days",
                           "1", "--not-before", "1" + "0" * 20], "--not-before"),
    "root-keys 10**8": (["umbra-ota", "init", "--repo", "{t}/r1", "--root-keys", "100000000"], "root keys"),
    "every-hours nan": (["umbra-ota", "stage", "--repo", "{t}/r0", "--release", "1.0.0", "--every-hours", "nan"],
                        "--every-hours"),
    "every-hours -5": (["umbra-ota", "stage", "--repo", "{t}/r0", "--release", "1.0.0", "--every-hours", "-5"],
                       "--every-hours"),
}


def test_every_bad_flag_is_one_line_and_non_zero(tmp_path: Path, shared_data: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([BIN / "umbra", "samples", "keygen", "--out", tmp_path / "k.pem"], check=True, capture_output=True,
                   env=env)
    subprocess.run([BIN / "umbra-ota", "init", "--repo", tmp_path / "r0", "--root-keys", "1", "--threshold", "1"],
                   check=True, capture_output=True, env=env)
    (tmp_path / "c.toml").write_text(
        f'[device]\nstate_dir = "{tmp_path / "st"}"\n[camera]\nkind = "video"\nsource = "{shared_data}/video/vtest.avi"'
        f'\n[detector]\nkind = "scripted"\nground_truth = "{shared_data}/mot/MOT15/PETS09-S2L1/gt/gt.txt"\n'
        '[samples]\nenabled = false\n')
    plan_before = sorted(p.name for p in (tmp_path / "r0").rglob("*"))

    def run(name: str) -> tuple[str, subprocess.CompletedProcess | None]:
        argv, _ = CASES[name]
        argv = [a.format(c=tmp_path / "c.toml", k=tmp_path / "k.pem", t=tmp_path) for a in argv]
        try:
            return name, subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=env,
                                        cwd=tmp_path, timeout=60)
        except subprocess.TimeoutExpired:
            return name, None

    failures = []
    with ThreadPoolExecutor(2) as pool:
        for name, proc in pool.map(run, CASES):
            if proc is None:
                failures.append(f"{name}: still running after 60 s")
                continue
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("umbra:", "umbra-ota:"))]
            if proc.returncode == 0 or "Traceback" in proc.stderr or len(lines) != 1 or CASES[name][1] not in lines[0] \
                    or proc.stdout.strip():
                failures.append(f"{name}: exit {proc.returncode}, out {proc.stdout[-200:]!r}, "
                                f"err {proc.stderr[-400:]!r}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in (tmp_path / "r0").rglob("*")) == plan_before  # no plan written
