"""One database interface for the cloud over SQLite (embedded default) or PostgreSQL (fleets).

The same SQL runs on both: statements are written with `?` placeholders (turned into `%s` for psycopg) and
in the subset both engines share (ON CONFLICT, BIGINT, BYTEA, DOUBLE PRECISION). The schema is plain versioned
SQL in `cloud/migrations/NNNN_name.sql`, applied in order inside one transaction each and recorded in
`schema_version`; on PostgreSQL an advisory lock lets several workers start at once."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from cloud.errors import DbError

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x756D627261  # "umbra": the advisory lock taken while migrating
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction open on the connection


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration shipped in cloud/migrations, in order."""
    out = []
    for f in resources.files("cloud").joinpath("migrations").iterdir():
        m = _MIGRATION.match(f.name)
        if m:
            out.append((int(m.group(1)), f.name, f.read_text("utf-8")))
    out.sort()
    if [v for v, _, _ in out] != list(range(1, len(out) + 1)):
        raise DbError("cloud/migrations must be numbered 0001, 0002, ... without gaps")
    return out


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class _Conn:
    """One connection and the state of its transaction and pipeline (PostgreSQL: one thread's; SQLite: shared
    by every thread, under its lock)."""

    __slots__ = ("conn", "lock", "depth", "pipe", "cursor")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.lock = threading.RLock()
        self.depth = 0
        self.pipe: Any = None  # PostgreSQL: the psycopg pipeline open on it, if any
        self.cursor: Any = None  # PostgreSQL: the cursor `run` uses


class Db:
    """The cloud's database; `tx()` is one transaction. `url` is a SQLite file path or a postgresql:// URL.

    SQLite: one connection, shared by every thread under a lock. PostgreSQL: a connection per thread that uses
    the Db, opened on its first use, so a worker's pool of database threads (`Cloud`'s `db_threads`) runs that
    many transactions at once, each on its own connection (their commits share WAL flushes: group commit)."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        self.postgres = is_postgres(self.url)
        self._local = threading.local()
        self._all: list[_Conn] = []  # every connection opened, to close
        self._all_lock = threading.Lock()
        self._shared: _Conn | None = None  # SQLite's one connection
        if not self.postgres:
            self._shared = self._open()
        else:
            self._mine()  # the creating thread's: a bad URL fails here, not at the first batch
        self.migrate()

    def _shown(self) -> str:
        return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", self.url)

    def _open(self) -> _Conn:
        try:
            c = _Conn(self._connect())
        except Exception as e:  # psycopg.Error or sqlite3.Error: say which database
            raise DbError(f"cannot open the cloud database {self._shown()}: {e}") from None
        with self._all_lock:
            self._all.append(c)
        return c

    def _mine(self) -> _Conn:
        """This thread's connection (SQLite: the shared one)."""
        if self._shared is not None:
            return self._shared
        c: _Conn | None = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = self._open()
        return c

    @property
    def connections(self) -> int:
        """How many connections this Db has opened (PostgreSQL: one per thread that used it)."""
        return len(self._all)

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        conn = sqlite3.connect(self.url, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most unacked work
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                c.conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        c = self._mine()
        with c.lock:
            return c.conn.execute(self._sql(sql), tuple(params))

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Execute a statement whose result is not read. On PostgreSQL through one cursor kept for such
        statements (a fresh cursor a statement, as `execute` gives, costs psycopg about a fifth more CPU); inside
        a pipeline its errors surface at the next read or the end of the block, as `execute`'s do."""
        c = self._mine()
        with c.lock:
            if not self.postgres:
                c.conn.execute(sql, tuple(params))
                return
            if c.cursor is None:
                c.cursor = c.conn.cursor()
            c.cursor.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run `sql` for each row; returns the number of rows changed."""
        if not rows:
            return 0
        c = self._mine()
        with c.lock:
            if self.postgres:
                with c.conn.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)
                    return int(cur.rowcount)
            return int(c.conn.executemany(sql, rows).rowcount)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        row = self.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    @contextmanager
    def pipeline(self) -> Iterator[Db]:
        """On PostgreSQL, send statements without waiting for each one's answer (psycopg's pipeline mode): a
        statement's result is awaited only when read (`all`, `one`), so statements whose results are not read
        share one round trip with the next read or the end of the block. A transaction (`tx`) inside it commits
        at the end of the block, with the statements before it. SQLite: no change."""
        c = self._mine()
        with c.lock:
            if not self.postgres or c.pipe is not None:
                yield self
                return
            try:
                with c.conn.pipeline() as c.pipe:
                    yield self
            except BaseException:
                # an error that surfaced at the block's end (a statement not read, or the commit) left the
                # transaction open and failed: end it, so the connection is fit for the next one
                if c.conn.info.transaction_status != _IDLE:
                    c.conn.execute("ROLLBACK")
                raise
            finally:
                c.pipe = None

    @contextmanager
    def tx(self) -> Iterator[Db]:
        """One transaction (nested calls join the outer one). On SQLite it takes the write lock at once. On
        PostgreSQL inside a `pipeline`, BEGIN and COMMIT are sent as the pipeline's statements: no round trip of
        their own (psycopg's transaction block waits for the server at BEGIN, at the block's end and at COMMIT),
        and the commit is confirmed when the pipeline ends."""
        c = self._mine()
        with c.lock:
            if c.depth:
                c.depth += 1
                try:
                    yield self
                finally:
                    c.depth -= 1
                return
            if c.pipe is not None:
                c.conn.execute("BEGIN")
                c.depth = 1
                try:
                    yield self
                except BaseException:
                    c.depth = 0
                    self._rollback_pipelined(c)
                    raise
                c.depth = 0
                c.conn.execute("COMMIT")
                return
            if self.postgres:  # psycopg's own transaction block
                c.depth = 1
                try:
                    with c.conn.transaction():
                        yield self
                finally:
                    c.depth = 0
                return
            c.conn.execute("BEGIN IMMEDIATE")
            c.depth = 1
            try:
                yield self
            except BaseException:
                c.depth = 0
                c.conn.execute("ROLLBACK")
                raise
            c.depth = 0
            c.conn.execute("COMMIT")

    @staticmethod
    def _rollback_pipelined(c: _Conn) -> None:
        """Roll the pipeline's open transaction back: first let the server answer what was sent (after an error
        it skips the rest up to the sync; those errors are the one being raised already), then ROLLBACK."""
        import psycopg

        try:
            c.pipe.sync()
        except psycopg.Error:
            pass
        c.conn.execute("ROLLBACK")
        c.pipe.sync()

    def version(self) -> int:
        row = self.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    def migrate(self) -> int:
        """Apply the migrations not applied yet; returns the schema version now in force."""
        with self.tx():
            if self.postgres:
                self.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            have = self.version()
            for version, name, sql in migrations():
                if version <= have:
                    continue
                for stmt in _statements(sql):
                    self.execute(stmt)
                self.execute("INSERT INTO schema_version VALUES (?, ?)", (version, name))
        return self.version()
