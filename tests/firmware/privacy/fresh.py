"""The privacy scans' parts: every frame-sized array reachable, and a test's function run in a fresh
interpreter (there every array is the run's, and the scan of all objects is quick; inside the suite's
process it would also see other tests' arrays and walk all of their objects)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]


def frame_sized_arrays(min_size: int) -> list[np.ndarray]:
    """Every ndarray of at least `min_size` elements reachable from a gc-tracked container."""
    found = {}
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if isinstance(ref, np.ndarray) and ref.size >= min_size:
                found[id(ref)] = ref
                base = ref.base
                while isinstance(base, np.ndarray):
                    found[id(base)] = base
                    base = base.base
    return list(found.values())


def in_fresh_interpreter(module: str, call: str, *args: str, cwd: Path, timeout: float = 100) -> Any:
    """`module.call(*args)` (a function returning JSON data; `module` dotted from the project's root) run in a
    fresh interpreter in `cwd`: what it returned."""
    code = (f"import json, sys; sys.path[:0] = [sys.argv[1]]; import {module} as t; "
            f"print(json.dumps(t.{call}(*sys.argv[2:])))")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
