"""Packaging fixtures: version N of the package installed into a fake root once per module (tests/packaging/
fakeroot.py; a venv is ~5-20 s), and a copy of it for each test to work on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.fakeroot import FakeRoot, N, ok


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> FakeRoot:
    fake = FakeRoot(tmp_path_factory.mktemp("installed"))
    ok(fake.dpkg_install(N))
    return fake


@pytest.fixture
def fake(installed: FakeRoot, tmp_path: Path) -> FakeRoot:
    return FakeRoot.copy_of(installed, tmp_path)
