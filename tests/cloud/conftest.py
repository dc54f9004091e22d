"""Cloud test fixtures: one real PostgreSQL server per test session (Debian's binaries, unix socket only, in a
/tmp folder of its own), and `cloud_db`, parametrized over the two backends: "" (the embedded SQLite default)
and a fresh schema of a PostgreSQL database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from cloud.pgserver import LocalPostgres

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
