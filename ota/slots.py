"""Installing into a slot: a tree copied so that a power cut leaves the old or the new one (the slots and the
boot decision are hal.boot's)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def copy_tree_atomic(src: Path, dest: Path) -> None:
    """Replace `dest` with a copy of `src` so that a power cut leaves either the old or the new tree."""
    tmp = dest.with_name(dest.name + ".new")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.exists():
        shutil.rmtree(old)
