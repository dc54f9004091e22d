"""A throwaway PostgreSQL server from Debian's binaries, for tests, benchmarks and a laptop fleet: `initdb`
into a folder, `pg_ctl start` listening only on a unix socket in that folder (no TCP port at all). As root it
runs as the `postgres` user (PostgreSQL refuses root), so the folder is made in /tmp and handed to that user.

    with LocalPostgres() as pg:
        url = pg.create_database("cloud")    # postgresql://umbra@/cloud?host=<folder>&port=5432
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from cloud.errors import PostgresUnavailable

BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
PORT = 5432  # only names the socket file (.s.PGSQL.5432) inside the folder; no TCP listener


def bin_dir() -> Path:
    for d in BIN_DIRS:
        if (Path(d) / "initdb").exists():
            return Path(d)
    raise PostgresUnavailable("no initdb in " + ", ".join(BIN_DIRS) + ": install the Debian package postgresql")


class LocalPostgres:
    def __init__(self, *, durable: bool = True, max_connections: int = 100) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="umbra-pg-"))
        self.data = self.root / "data"
        self.durable = durable
        self.max_connections = max_connections
        self._user: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no postgres user to run the server") from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self.started = False

    def _run(self, *cmd: str) -> None:
        res = subprocess.run([*self._user, *cmd], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise PostgresUnavailable(f"{Path(cmd[0]).name} failed: {(res.stderr or res.stdout).strip()[-400:]}")

    def start(self) -> LocalPostgres:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "umbra", "-A", "trust", "-E", "UTF8",
                  "--no-locale")
        opts = [f"-k {self.root}", "-c listen_addresses=''", f"-p {PORT}", f"-c max_connections={self.max_connections}"]
        if not self.durable:  # tests: no fsync (a crash of the test machine loses a throwaway database)
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "-o", " ".join(opts), "start")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://umbra@/{database}?host={self.root}&port={PORT}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_schema(self, name: str, database: str = "postgres") -> str:
        """A fresh schema (much quicker to make than a database): the URL sets it as the search path."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return self.url(database) + f"&options=-csearch_path%3D{name}"

    def stop(self) -> None:
        if self.started:
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            finally:
                self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
