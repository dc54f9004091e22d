"""Cloud test fixtures: one real PostgreSQL server per test session (Debian's binaries, unix socket only, in a
/tmp folder of its own); `cloud_db`, parametrized over the two backends: "" (the embedded SQLite default)
and a fresh schema of a PostgreSQL database per test; and `tenant_api`, the cloud's HTTPS API with two tenants'
sensors holding the same records (tests/cloud/tenant.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from cloud.harness import CloudThread
from cloud.pgserver import LocalPostgres
from hal.clock import FakeClock
from tests.cloud.tenant import MakeTenantApi, TenantApi

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    with LocalPostgres(durable=False) as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgres"])
def cloud_db(request: pytest.FixtureRequest) -> str:
    """The CloudConfig.database to use: "" for SQLite in the data folder, else a postgresql:// URL."""
    if request.param == "sqlite":
        return ""
    pg: LocalPostgres = request.getfixturevalue("postgres")
    return pg.create_schema(f"t{next(_names)}")


@pytest.fixture
def tenant_api(tmp_path: Path, cloud_db: str) -> Iterator[MakeTenantApi]:
    """`tenant_api(start_wall, records)`: a TenantApi on a cloud of its own (in tmp_path, on the cloud_db backend,
    its clock starting at `start_wall`), closed after the test."""
    started: list[CloudThread] = []

    def make(start_wall: float, records: Sequence[Mapping]) -> TenantApi:
        clock = FakeClock(start_wall=start_wall)
        started.append(CloudThread(tmp_path / "cloud", clock, database=cloud_db, api_burst=1000))
        return TenantApi(started[-1], clock, records)

    try:
        yield make
    finally:
        for ct in started:
            ct.close()
            ct.cloud.store.close()
