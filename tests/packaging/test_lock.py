"""The per-platform wheelhouse locks hold every runtime dependency of pyproject.toml, and every requirement of the
locked wheels themselves: a lock that misses one builds a package whose postinst cannot install (pip refuses an
unpinned requirement under --require-hashes, and there is no index on the device)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "packaging" / "wheelhouse.py")
assert spec and spec.loader
wheelhouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheelhouse)

ARCHES = sorted(wheelhouse.MACHINE)


@pytest.mark.parametrize("arch", ARCHES)
def test_every_runtime_dependency_of_pyproject_is_in_the_lock(arch):
    locked = wheelhouse.locked_versions(arch)
    assert wheelhouse.unmet(arch, wheelhouse.runtime_requirements(), "pyproject.toml", locked) == []
    assert {"tomlkit", "onnxruntime", "ai-edge-litert"} <= set(locked)


@pytest.mark.parametrize("requirement", wheelhouse.runtime_requirements())
def test_a_runtime_dependency_dropped_from_the_lock_is_named(requirement):
    name = canonicalize_name(Requirement(requirement).name)
    locked = {n: v for n, v in wheelhouse.locked_versions("arm64").items() if n != name}
    (line,) = wheelhouse.unmet("arm64", wheelhouse.runtime_requirements(), "pyproject.toml", locked)
    assert line.startswith(f"arm64: {Requirement(requirement).name}") and "is not in packaging/lock/arm64.txt" in line


def test_a_pin_outside_the_specifier_and_markers_of_the_target():
    locked = {"numpy": "1.26.4", "tomlkit": "0.11.0"}
    reqs = ["numpy>=1.24", "tomlkit>=0.12", "pywin32>=300; sys_platform == 'win32'",
            "ai-edge-litert>=1.2; platform_machine == 'x86_64' or platform_machine == 'aarch64'",
            "tomli>=1.1; python_version < '3.11'"]
    assert wheelhouse.unmet("amd64", reqs, "x", locked) == [
        "amd64: tomlkit>=0.12 (x) but the lock pins tomlkit==0.11.0",
        "amd64: ai-edge-litert>=1.2; platform_machine == \"x86_64\" or platform_machine == \"aarch64\" (x) "
        "is not in packaging/lock/amd64.txt"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """The locked wheels of both targets: the build's cache when a build ran (hash-checked by fetch), else
    downloaded (hashes checked by pip)."""
    tmp = tmp_path_factory.mktemp("wheels")
    for arch in ARCHES:
        cached = REPO / "packaging" / "build" / "wheelhouse" / arch
        if cached.is_dir():
            shutil.copytree(cached, tmp / arch)
        try:
            wheelhouse.fetch(arch, tmp / arch)
        except subprocess.CalledProcessError as e:
            pytest.skip(f"the locked {arch} wheels could not be downloaded (no index reachable?): {e}")
    return tmp


@pytest.mark.timeout(600)
@pytest.mark.parametrize("arch", ARCHES)
def test_the_locked_wheels_own_requirements_are_locked_too(arch, wheels):
    assert wheelhouse.check(arch, wheels / arch) == []
    # the closure is followed: onnxruntime's own requirements are what it needs, and all are in the lock
    (ort,) = [w for n, _, _, w in wheelhouse.entries(arch) if n == "onnxruntime"]
    needs = {canonicalize_name(Requirement(r).name) for r in wheelhouse.wheel_requirements(wheels / arch / ort)
             if Requirement(r).marker is None}
    assert {"numpy", "protobuf", "flatbuffers"} <= needs <= set(wheelhouse.locked_versions(arch))
