"""A fleet of simulated sensors (10,000 by default) uploading every 30 s into two cloud worker processes on one
PostgreSQL server, on loopback. Mid-run one worker is SIGKILLed and restarted; a bad release is staged
(1%, 10%, 50%, 100%, a stage every --stage-s) and the rollout controller, running on its own, must halt it in
its first stage. Prints: sustained ingest (batches/s, records/s), batch latency p50/p99 in steady state and,
apart, for the batches sent around the kill, the CPU of the simulator, the workers and PostgreSQL apart, what
the kill lost or stored twice, the halt, and how long the fleet view takes with every device in it (its first
request, which renders every row, apart from the next ones).

What is simplified, to fit one machine: connections are shared (a pool per worker, as a load balancer would
keep them) and plain HTTP on 127.0.0.1, the device named by a header (the workers run with
insecure_identity_header), so TLS handshakes are not measured; every batch is still signed (HMAC per device
key), its nonce checked, the batch and its records schema-validated and stored in one transaction. The fleet
speaks HTTP/1.1 through a small keep-alive client of its own (`HttpPool`), far cheaper per request than
aiohttp's, so that the simulator takes less of the machine from the workers; each device still signs every
attempt afresh (new timestamp and nonce), as a device does. Each device releases one aggregate per 30 s window
(never the same window twice), so the privacy watch sees an honest device.

Latency "on a connection" runs from writing the request on one of the shared connections to reading the ack,
so it holds the workers' queueing but not the wait for a free shared connection (a real device has its own),
which is printed apart. Where a batch's CPU goes is printed too: the unkilled worker's handler by stage
(`Cloud.stage_cpu`: signature, JSON, schema checks, the store transaction, the privacy watch, the ack) and what is
left outside it (aiohttp, the event loop), PostgreSQL's CPU per stored batch, the device channel's mutual TLS
measured apart in process (`tls_costs`: the fleet itself runs plain HTTP), the simulator's own split, and,
labelled as a projection, the rate the measured cloud CPU per batch implies on dedicated cores.
`UMBRA_FLEET_PROFILE=/tmp/prof` makes each worker write a cProfile (CPU time) of
itself to /tmp/prof.<pid> when stopped.

`python -m bench.fleet_scale [--devices 10000] [--seconds 90]`"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import math
import os
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from cloud import customers
from cloud.app import Cloud, CloudConfig
from cloud.fleet import ControllerConfig, RolloutController
from cloud.pgserver import LocalPostgres
from cloud.store import Store
from hal.clock import SystemClock
from ota.repo import Repository
from ota.rollout import in_stage, make_plan, position
from trust.keys import BatchKey, sign_headers
from trust.tls import client_context

RELEASE = "2.0.0"
PERCENTS = (1, 10, 50, 100)
ZONE_PLAN = {"zones": [{"name": "shop", "polygon": [[0.0, 0.0], [8.0, 0.0], [8.0, 6.0], [0.0, 6.0]]},
                       {"name": "till", "polygon": [[8.0, 0.0], [12.0, 0.0], [12.0, 6.0], [8.0, 6.0]]}],
             "lines": [{"name": "door", "a": [0.0, 2.0], "b": [0.0, 4.0]}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_main(data_dir: str, database: str, port: int, api_port: int) -> None:
    """One cloud worker process (plain HTTP on loopback; device named by header, see the module doc)."""
    async def serve() -> None:
        cloud = Cloud(CloudConfig(data_dir=data_dir, database=database, api_burst=1000), SystemClock(),
                      insecure_identity_header=True)
        await cloud.start(host="127.0.0.1", port=port, tls=False)
        await cloud.start_api(host="127.0.0.1", port=api_port, tls=False)
        cloud.stage_cpu = Counter()  # CPU ns per ingest stage, printed as one JSON line on SIGUSR1
        gc_start = [0]

        def gc_cb(phase: str, info: dict) -> None:  # the cyclic collector's CPU, wherever it runs
            if phase == "start":
                gc_start[0] = time.thread_time_ns()
            elif cloud.stage_cpu is not None:
                cloud.stage_cpu["gc"] += time.thread_time_ns() - gc_start[0]
        gc.callbacks.append(gc_cb)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(cloud.stage_cpu), flush=True))
        print("ready", flush=True)
        await stop.wait()

    profile = os.environ.get("UMBRA_FLEET_PROFILE")  # a file: this worker's cProfile (CPU time), on SIGTERM
    if not profile:
        asyncio.run(serve())
        return
    import cProfile

    prof = cProfile.Profile(time.process_time)
    prof.enable()
    asyncio.run(serve())
    prof.disable()
    prof.dump_stats(f"{profile}.{os.getpid()}")


class Worker:
    def __init__(self, data_dir: Path, database: str) -> None:
        self.data_dir, self.database = data_dir, database
        self.port, self.api_port = free_port(), free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fleet_scale", "--worker", str(self.data_dir),
                                      self.database, str(self.port), str(self.api_port)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("a cloud worker did not start")

    def cpu_s(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def stages(self) -> dict[str, int]:
        """CPU ns per ingest stage (and "batches") this worker spent since it started (`Cloud.stage_cpu`)."""
        assert self.proc is not None and self.proc.stdout is not None
        os.kill(self.proc.pid, signal.SIGUSR1)
        return dict(json.loads(self.proc.stdout.readline()))

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class Device:
    id: str
    key: BatchKey
    outbox_id: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    updated: bool = False
    bad: bool = False  # on the bad release this device's health check fails
    started: bool = False  # its first status (after starting) carries the zone plan
    window: int = 0  # the start of the next 30 s window it releases (one release per window, as a device makes)

    def status(self, now: float) -> dict:
        rec = {"schema": "umbra.status/1", "t": int(now), "firmware": "1.9.0", "profile": "aggregates",
               "uptime_s": 100.0, "outbox_records": 0, "dropped": {}, "detector": "edgetpu", "overruns": 0,
               "fps": 10.0, "slot": "a"}
        if not self.started:
            self.started = True
            rec["zone_plan"] = ZONE_PLAN
        return rec

    def batch(self, now: float, doc: dict) -> tuple[str, bytes, int]:
        self.window = max(self.window + 30, int(now) // 30 * 30 - 30)  # never the same window twice
        recs = [self.status(now),
                {"schema": "umbra.aggregate/1", "window_start": self.window, "window_s": 30,
                 "metric": "line_flow", "zone": "door", "values": [3, 2], "k": 5, "epsilon": 0.1, "sensitivity": 1,
                 "mechanism": "discrete_laplace"}]
        if not self.updated and doc and in_stage(doc, self.id, RELEASE, now):
            self.updated = True
            base = {"schema": "umbra.ota/1", "t": int(now), "release": RELEASE, "from_version": "1.9.0"}
            recs += [{**base, "result": "installed"}, {**base, "result": "rolled_back" if self.bad else "committed"}]
        seqs = list(range(self.seq + 1, self.seq + 1 + len(recs)))
        self.seq += len(recs)
        batch_id = secrets.token_hex(16)
        body = json.dumps({"schema": "umbra.batch/1", "device_id": self.id, "outbox_id": self.outbox_id,
                           "batch_id": batch_id, "seq": seqs[0], "seqs": seqs, "records": recs}).encode()
        return batch_id, body, len(recs)


@dataclass
class Tally:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, s on a connection) per ack
    pool_wait: list[float] = field(default_factory=list)  # s waiting for one of the shared connections
    end_to_end: list[float] = field(default_factory=list)  # first attempt to ack, retries included
    acked: dict[tuple[str, str], int] = field(default_factory=dict)  # (device, batch id) -> records
    retries: int = 0
    duplicate_acks: int = 0
    failed_attempts: int = 0
    unacked: int = 0
    per_worker: dict[int, int] = field(default_factory=dict)  # port -> batches acknowledged
    installs: dict[str, float] = field(default_factory=dict)
    first_failure_acked: float | None = None
    sample_request: bytes = b""  # one request as written (headers and body) and its answer, for the TLS cost
    sample_answer: bytes = b""


class PoolTimeout(TimeoutError):
    """No shared connection came free before the run's end."""


class HttpPool:
    """A minimal HTTP/1.1 keep-alive client for the simulated fleet: `limit` connections shared by all devices
    (as a load balancer keeps them), each request written as one buffer and the answer read by Content-Length.
    It costs the simulator a fraction of aiohttp's client per request, so more of the machine is left to the
    workers; the workers see the same requests (headers, signed body) either way."""

    def __init__(self, limit: int, timeout_s: float = 30.0) -> None:
        self.free = asyncio.Semaphore(limit)
        self.idle: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.timeout_s = timeout_s

    async def post(self, port: int, headers: str, body: bytes, deadline: float) -> tuple[int, bytes, float]:
        """(status, body, s waited for a free connection); PoolTimeout if no connection is free by `deadline`
        (wall time: the run's end, when the device keeps the batch in its outbox)."""
        t = time.perf_counter()
        try:
            await asyncio.wait_for(self.free.acquire(), max(0.0, deadline - time.time()))
        except TimeoutError:
            raise PoolTimeout from None
        try:
            waited = time.perf_counter() - t
            idle = self.idle.setdefault(port, [])
            conn = idle.pop() if idle else None
            try:
                async with asyncio.timeout(self.timeout_s):
                    if conn is None:
                        conn = await asyncio.open_connection("127.0.0.1", port)
                    reader, writer = conn
                    writer.write(f"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                 f"Content-Type: application/json\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
                                 .encode() + body)
                    first = (await reader.readline()).split(b" ", 2)
                    if len(first) < 2:
                        raise ConnectionResetError("the connection closed before an answer")
                    status = int(first[1])
                    length, keep = 0, True
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        k, _, v = line.partition(b":")
                        k = k.strip().lower()
                        if k == b"content-length":
                            length = int(v)
                        elif k == b"connection" and v.strip().lower() == b"close":
                            keep = False
                    answer = await reader.readexactly(length)
            except BaseException:
                if conn is not None:
                    conn[1].close()
                raise
            if keep:
                idle.append(conn)
            else:
                conn[1].close()
            return status, answer, waited
        finally:
            self.free.release()

    def close(self) -> None:
        for conns in self.idle.values():
            for _, w in conns:
                w.close()


class Fleet:
    def __init__(self, devices: list[Device], workers: list[Worker], repo: Repository, tally: Tally) -> None:
        self.devices, self.workers, self.repo, self.tally = devices, workers, repo, tally
        self.doc: dict = {}
        self.cpu: Counter[str] = Counter()  # simulator CPU ns: building batches, signing them
        self.stop_at = 0.0
        self.drain_s = 30.0

    async def refresh_doc(self, stop: asyncio.Event) -> None:
        while not stop.is_set():  # devices read the signed rollout document from the TUF repository
            self.doc = self.repo.rollout_document()
            await asyncio.sleep(1.0)

    async def send(self, http: HttpPool, d: Device, i: int, now: float) -> None:
        c0 = time.thread_time_ns()
        batch_id, body, n = d.batch(now, self.doc)
        self.cpu["build"] += time.thread_time_ns() - c0
        self.cpu["built"] += 1
        has_ota = b"umbra.ota/1" in body
        t_first = time.perf_counter()
        for attempt in range(10_000):
            if time.time() > self.stop_at + self.drain_s:
                self.tally.unacked += 1  # still in the device's outbox: sent again at its next upload
                return
            w = self.workers[(i + attempt) % len(self.workers)]
            c0 = time.thread_time_ns()
            head = "".join(f"{k}: {v}\r\n" for k, v in sign_headers(d.key, "POST", "/v1/batches", d.id, body,
                                                                     time.time()).items())
            self.cpu["sign"] += time.thread_time_ns() - c0
            sent_at, t = time.time(), time.perf_counter()
            try:
                status, answer, waited = await http.post(w.port, f"X-Umbra-Device: {d.id}\r\n{head}", body,
                                                         self.stop_at + self.drain_s)
                if status != 200:
                    raise OSError(f"{status} {answer[:200]!r}")
                ack = json.loads(answer)
            except PoolTimeout:
                self.tally.unacked += 1  # never sent: still in the device's outbox
                return
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                self.tally.failed_attempts += 1
                self.tally.retries += attempt > 0
                await asyncio.sleep(min(10.0, 0.5 * (attempt + 1)))
                continue
            done = time.perf_counter()
            self.tally.latencies.append((sent_at + waited, done - t - waited))  # written on a connection then
            self.tally.pool_wait.append(waited)
            self.tally.end_to_end.append(done - t_first)
            self.tally.duplicate_acks += bool(ack["duplicate"])
            if not self.tally.sample_request:  # as written, for the TLS cost (the answer's headers about 200 bytes)
                self.tally.sample_request = (f"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1:{w.port}\r\n{head}"
                                             f"Content-Length: {len(body)}\r\n\r\n").encode() + body
                self.tally.sample_answer = b"h" * 200 + answer
            self.tally.acked[(d.id, batch_id)] = n
            self.tally.per_worker[w.port] = self.tally.per_worker.get(w.port, 0) + 1
            if has_ota:
                self.tally.installs[d.id] = time.time()
                if d.bad and self.tally.first_failure_acked is None:
                    self.tally.first_failure_acked = time.time()
            return

    async def device_loop(self, http: HttpPool, d: Device, i: int, period: float, t0: float) -> None:
        due = t0 + (int(hashlib.sha256(d.id.encode()).hexdigest()[:8], 16) % int(period * 1000)) / 1000
        while due < self.stop_at:
            await asyncio.sleep(max(0.0, due - time.time()))
            await self.send(http, d, i, time.time())
            due += period


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def simulate(fleet: Fleet, args: argparse.Namespace, store: Store, t0: float) -> dict:
    stop = asyncio.Event()
    ctl = RolloutController(fleet.repo, store, SystemClock(), ControllerConfig(every_s=2.0))
    halted_at: list[float] = []

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.to_thread(ctl.check)
            if ctl.halts and not halted_at:
                halted_at.append(time.time())
            await asyncio.sleep(ctl.config.every_s)

    async def killer() -> None:
        await asyncio.sleep(args.seconds * 0.4)
        cpu_at_kill.append(fleet.workers[0].cpu_s())
        fleet.workers[0].kill()
        killed.append(time.time())
        await asyncio.sleep(3)
        await asyncio.to_thread(fleet.workers[0].start)
        restarted.append(time.time())

    killed: list[float] = []
    restarted: list[float] = []
    cpu_at_kill: list[float] = []
    fleet.stop_at = t0 + args.seconds
    http = HttpPool(args.connections)
    bg = [asyncio.create_task(fleet.refresh_doc(stop)), asyncio.create_task(watch()),
          asyncio.create_task(killer())]
    await asyncio.gather(*(fleet.device_loop(http, d, i, args.period, t0) for i, d in enumerate(fleet.devices)))
    stop.set()
    await asyncio.gather(*bg, return_exceptions=True)
    http.close()
    return {"halted_at": halted_at[0] if halted_at else None, "halts": ctl.halts, "killed": killed,
            "restarted": restarted, "cpu_at_kill": cpu_at_kill}


def setup(args: argparse.Namespace, tmp: Path, pg: LocalPostgres) -> tuple[str, list[Device], Repository, float]:
    url = pg.create_database("cloud")
    cloud = Cloud(CloudConfig(data_dir=str(tmp / "cloud"), database=url), SystemClock())  # PKI, migrations
    now = time.time()
    devices = [Device(f"sim-{i:05d}", BatchKey.generate(now, 86_400)) for i in range(args.devices)]
    for d in devices:
        d.bad = int(hashlib.sha256(d.id.encode()).hexdigest()[:2], 16) % 2 == 0  # half fail on the bad release
    with cloud.store.db.tx() as db:
        db.executemany("INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                       [(d.id, d.key.key_id, d.key.secret, d.key.not_before, d.key.expires) for d in devices])
    cloud.store.close()
    repo = Repository(tmp / "repo")
    repo.init()
    t0 = time.time() + 3
    starts = [t0 + i * args.stage_s for i in range(len(PERCENTS))]
    repo.set_rollout(make_plan(RELEASE, PERCENTS, starts, [0.02] * len(PERCENTS)))
    return url, devices, repo, t0


class _TlsPair:
    """A device (client) and a cloud (server) TLS endpoint over memory BIOs, the server's calls timed (CPU)."""

    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext, session: ssl.SSLSession | None) -> None:
        self.bios = [ssl.MemoryBIO() for _ in range(4)]  # client in, client out, server in, server out
        self.c = client.wrap_bio(self.bios[0], self.bios[1], server_hostname="localhost", session=session)
        self.s = server.wrap_bio(self.bios[2], self.bios[3], server_side=True)
        self.server_ns = 0

    def _server(self, f: object) -> object:
        t = time.thread_time_ns()
        try:
            return f()  # type: ignore[operator]
        except ssl.SSLWantReadError:
            return None
        finally:
            self.server_ns += time.thread_time_ns() - t

    def _pump(self) -> None:
        self.bios[2].write(self.bios[1].read())
        self.bios[0].write(self.bios[3].read())

    def handshake(self) -> None:
        for _ in range(20):
            try:
                self.c.do_handshake()
                self._pump()
                self._server(self.s.do_handshake)
                self._pump()
                break
            except ssl.SSLWantReadError:
                self._pump()
                self._server(self.s.do_handshake)
                self._pump()

    def exchange(self, request: bytes, answer: bytes) -> None:
        """One request and its answer on the established connection (the server decrypts and encrypts)."""
        self.c.write(request)
        self._pump()
        got = b""
        while len(got) < len(request):
            got += self._server(lambda: self.s.read(65536)) or b""  # type: ignore[operator]
            self._pump()
        self._server(lambda: self.s.write(answer))
        self._pump()
        got = b""
        while len(got) < len(answer):
            try:
                got += self.c.read(65536)
            except ssl.SSLWantReadError:
                self._pump()


def tls_costs(cloud_dir: Path, request: bytes, answer: bytes, n: int = 40) -> dict[str, float]:
    """Server-side CPU ms of the device channel's mutual TLS with the cloud's own server context and a device's
    client context (fleet CA, device certificate): a full handshake (client certificate verified), a resumed one
    (TLS 1.3 session ticket), and one batch's request and ack on an open connection. In process, over memory
    BIOs: the fleet itself runs plain HTTP (see the module doc)."""
    from trust import pki
    from trust.tls import server_context

    p = pki.DevPkiPaths(cloud_dir / "pki")
    server = server_context(p.server_cert, p.server_key, p.ca_cert)
    client = client_context(p.ca_cert, p.device_cert, p.device_key)
    full: list[int] = []  # server ns per handshake
    resumed: list[int] = []
    record: list[float] = []  # server ns per request and ack
    reused = 0
    session = None
    for i in range(n):
        pair = _TlsPair(server, client, session if i % 2 else None)
        pair.handshake()
        (resumed if i % 2 else full).append(pair.server_ns)
        reused += bool(i % 2 and pair.c.session_reused)
        if pair.s.getpeercert() is None:
            raise SystemExit("TLS cost: the server saw no client certificate")
        pair.server_ns = 0
        for _ in range(5):
            pair.exchange(request, answer)
        record.append(pair.server_ns / 5)
        session = pair.c.session
    return {"full_ms": statistics.median(full) / 1e6, "resumed_ms": statistics.median(resumed) / 1e6,
            "record_ms": statistics.median(record) / 1e6, "resumed_share": reused / max(1, n // 2)}


def fill_fleet(store: Store, n: int) -> int:
    """Rows for the simulated devices the run did not reach, so the fleet view is timed at full size."""
    have = set(store.device_ids())
    rows = [(f"sim-{i:05d}", time.time(), "1.9.0", "edgetpu", 10.0) for i in range(n) if f"sim-{i:05d}" not in have]
    with store.db.tx() as db:
        db.executemany("INSERT INTO devices (device_id, last_seen, firmware, detector, fps) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT DO NOTHING",
                       rows)
    return len(rows)


def fleet_view_ms(store: Store, workers: list[Worker], n: int = 8) -> tuple[list[float], int]:
    key = customers.create_key(store, "ops", "ops", time.time())

    async def go() -> tuple[list[float], int]:
        out, size = [], 0
        async with aiohttp.ClientSession() as http:
            for _ in range(n):
                t = time.perf_counter()
                async with http.get(f"http://127.0.0.1:{workers[1].api_port}/ops/v1/fleet?limit=10000",
                                    headers={"Authorization": f"Bearer {key}"}) as r:
                    body = await r.read()
                    assert r.status == 200, body[:200]
                out.append((time.perf_counter() - t) * 1000)
                size = len(body)
        return out, size

    return asyncio.run(go())


def report(args: argparse.Namespace, tally: Tally, sim: dict, store: Store, devices: list[Device],
           view: tuple[list[float], int], wall_s: float, cpu: tuple[float, float, int, float, float],
           filled: int, costs: dict) -> None:
    n_batches, n_records = len(tally.acked), sum(tally.acked.values())
    stored = set(store.db.all("SELECT device_id, batch_id FROM batches"))
    lost = [k for k in tally.acked if k not in stored]
    rec_db = store.count("records")
    first_stage = {d.id for d in devices if position(d.id, RELEASE) < PERCENTS[0] / 100}
    beyond = sorted(set(tally.installs) - first_stage)
    print(f"fleet: {args.devices} simulated sensors, one batch each every {args.period:.0f} s, "
          f"{args.seconds:.0f} s run, 2 cloud workers on PostgreSQL {pg_version(store)} (each taking up to "
          f"{CloudConfig().db_threads} batches at once, CloudConfig.db_threads); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"ingest: {n_batches} batches ({n_batches / wall_s:.0f}/s), {n_records} records "
          f"({n_records / wall_s:.0f}/s) acknowledged over {wall_s:.0f} s (offered {args.devices / args.period:.0f} "
          f"batches/s); {tally.unacked} batches not yet acknowledged when the run stopped (still in their outboxes)")
    kill = (sim["killed"][0], (sim["restarted"] or [math.inf])[0] + KILL_SETTLE_S) if sim["killed"] else (0, 0)
    steady = [x for t, x in tally.latencies if not kill[0] <= t < kill[1]]
    around = [x for t, x in tally.latencies if kill[0] <= t < kill[1]]
    every = [x for _, x in tally.latencies]
    held = sum(n for k, n in tally.acked.items() if k in stored)
    print(f"batch latency on a connection (request written to ack read), steady state (all but the kill window): "
          f"p50 {percentile(steady, 0.5) * 1000:.0f} ms, p99 {percentile(steady, 0.99) * 1000:.0f} ms over "
          f"{len(steady)} batches; around the kill (sent from the SIGKILL to {KILL_SETTLE_S:.0f} s after the "
          f"restart): p50 {percentile(around, 0.5) * 1000:.0f} ms, p99 {percentile(around, 0.99) * 1000:.0f} ms over "
          f"{len(around)}; all: p99 {percentile(every, 0.99) * 1000:.0f} ms, max {max(every, default=0) * 1000:.0f} ms")
    print(f"simulator side: waiting for one of the {args.connections} shared connections p99 "
          f"{percentile(tally.pool_wait, 0.99) * 1000:.0f} ms; first send to ack (resends and their backoff too): "
          f"p50 {percentile(tally.end_to_end, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(tally.end_to_end, 0.99) * 1000:.0f} ms")
    sim_s, w_s, w_n, w_all, pg_s = cpu
    requests = n_batches + tally.failed_attempts
    print(f"CPU over the run: simulator {sim_s:.1f} s ({sim_s * 1000 / max(requests, 1):.2f} ms per request), "
          f"workers {w_all:.1f} s, PostgreSQL {pg_s:.1f} s ({pg_s * 1000 / max(len(stored), 1):.2f} ms per stored "
          f"batch), of {os.cpu_count()} CPUs x {wall_s:.0f} s = {(os.cpu_count() or 1) * wall_s:.0f} CPU s")
    print(f"worker CPU: {w_s * 1000 / max(w_n, 1):.2f} ms per batch (the unkilled worker during the run, start-up "
          f"excluded: {w_s:.1f} CPU s for {w_n} batches), so one core takes about {w_n / max(w_s, 1e-9):.0f} batches/s")
    print_costs(costs, w_s, w_n, pg_s, len(stored), sim_s, requests, w_all, wall_s)
    print(f"worker SIGKILL at {args.seconds * 0.4:.0f} s, restarted 3 s later: {tally.failed_attempts} attempts "
          f"failed (refused connections, timeouts) and were resent; {tally.duplicate_acks} resends had been stored "
          f"already and were acknowledged as duplicates. Acknowledged but not stored: {len(lost)}. Stored twice: "
          f"{store.count('duplicate_records')} records (records in the database {rec_db}: the {held} of acknowledged "
          f"batches + {rec_db - held} of {len(stored) - n_batches} batches stored whose ack had not arrived yet)")
    halted = sim["halted_at"]
    if halted and tally.first_failure_acked:
        print(f"rollout: {RELEASE} halted by the controller {halted - tally.first_failure_acked:.1f} s after the first "
              f"failure report, in stage 1 ({len(first_stage)} devices): {sim['halts'][0]}; devices outside stage 1 "
              f"that installed it: {len(beyond)}")
    else:
        print(f"rollout: NOT halted (halts {sim['halts']}); installs outside stage 1: {len(beyond)}")
    ms, size = view
    warm = ms[1:]
    print(f"fleet view: GET /ops/v1/fleet with {store.count('devices')} devices ({filled} not reached by the run "
          f"filled in directly; {size / 1e6:.1f} MB JSON): first request (every row rendered) {ms[0]:.0f} ms, then "
          f"median {statistics.median(warm):.0f} ms, max {max(warm):.0f} ms over {len(warm)} requests")


def print_costs(costs: dict, w_s: float, w_n: int, pg_s: float, pg_n: int, sim_s: float, requests: int,
                w_all: float, wall_s: float) -> None:
    """Where a batch's CPU goes: the worker by stage, PostgreSQL, TLS (measured apart), the simulator; and the
    rate that cloud CPU per batch implies on dedicated cores (a projection, not a measurement)."""
    st, tls, sim = costs["stages"], costs["tls"], costs["sim"]
    n = max(1, int(st.get("batches", 0)))
    names = ("signature", "inflate", "json_parse", "schema_validate", "json_dump_records", "store_tx",
             "privacy_watch", "ack")
    ms = {k: st.get(k, 0) / 1e6 / n for k in names}
    total = w_s * 1000 / max(w_n, 1)
    print("worker CPU per batch by stage (the unkilled worker's handler, its thread's CPU; store_tx is psycopg's "
          "side of the batch's transaction: nonce, batch claim, records, derived rows, commit): "
          + ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
          + f" ms; outside the handler (aiohttp's HTTP parsing and writing, the event loop): "
            f"{total - sum(ms.values()):.3f} ms; total {total:.3f} ms; the cyclic GC, wherever it ran (also inside "
            f"the stages): {st.get('gc', 0) / 1e6 / n:.3f} ms")
    pg = pg_s * 1000 / max(pg_n, 1)
    print(f"TLS, measured apart (the fleet runs plain HTTP): server CPU {tls['record_ms']:.3f} ms per batch on an "
          f"open mutual-TLS connection; a handshake {tls['full_ms']:.2f} ms full (client certificate verified), "
          f"{tls['resumed_ms']:.2f} ms resumed ({tls['resumed_share']:.0%} of resumptions took)")
    req = max(requests, 1)
    print(f"simulator CPU: building a batch {sim['build'] / 1e6 / max(1, sim['built']):.3f} ms ({sim['built']} built,"
          f" also those never sent), per request: signing it "
          f"{sim['sign'] / 1e6 / req:.3f} ms, the rest (HTTP client, asyncio, rollout controller, TUF reads) "
          f"{(sim_s * 1e9 - sim['build'] - sim['sign']) / 1e6 / req:.3f} ms; the simulator took "
          f"{sim_s / max(sim_s + w_all + pg_s, 1e-9):.0%} of the CPU the run's processes used "
          f"({sim_s / max((os.cpu_count() or 1) * wall_s, 1e-9):.0%} of the machine)")
    cloud = total + pg + tls["record_ms"]
    print(f"PROJECTION (not measured: what the measured CPU per batch implies, nothing else on the cores): cloud "
          f"CPU {cloud:.2f} ms per batch (worker {total:.2f} + PostgreSQL {pg:.2f} + TLS records "
          f"{tls['record_ms']:.3f}); two workers and PostgreSQL sharing 2 dedicated cores: about "
          f"{2000 / cloud:.0f} batches/s; two workers on 2 dedicated cores, PostgreSQL on its own: about "
          f"{2000 / (total + tls['record_ms']):.0f} batches/s (goal 333/s; no handshake a batch: a device keeps its "
          f"connection open across uploads, UploaderConfig.keepalive_s, and pays a {tls['full_ms']:.2f} ms "
          f"handshake only when it opens a new one)")


KILL_SETTLE_S = 10.0  # batches sent up to this long after the killed worker is back count as "around the kill"


def process_cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def pg_cpu_s(pg: LocalPostgres) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster, its live backends and the exited ones it reaped."""
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    p = psutil.Process(pid)
    t = p.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for c in p.children():
        try:
            total += process_cpu_s(c)
        except psutil.NoSuchProcess:
            pass
    return float(total)


def pg_version(store: Store) -> str:
    row = store.db.one("SHOW server_version")
    return str(row[0]) if row else "?"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker_main(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.fleet_scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--period", type=float, default=30.0, help="seconds between a device's uploads")
    ap.add_argument("--stage-s", type=float, default=30.0, help="seconds between rollout stage starts")
    ap.add_argument("--connections", type=int, default=64, help="client connections shared by the fleet")
    ap.add_argument("--drain-s", type=float, default=30.0, help="after the run, how long resends may go on")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="umbra-fleet-") as tmp_s, LocalPostgres(max_connections=50) as pg:
        tmp = Path(tmp_s)
        url, devices, repo, t0 = setup(args, tmp, pg)
        workers = [Worker(tmp / "cloud", url), Worker(tmp / "cloud", url)]
        try:
            for w in workers:
                w.start()
            tally = Tally()
            fleet = Fleet(devices, workers, repo, tally)
            fleet.drain_s = args.drain_s
            store = Store(url)
            start = time.time()
            me = psutil.Process()
            cpu0 = (process_cpu_s(me), workers[0].cpu_s(), workers[1].cpu_s(), pg_cpu_s(pg))
            sim = asyncio.run(simulate(fleet, args, store, t0))
            wall = time.time() - max(start, t0)
            w1 = workers[1].cpu_s() - cpu0[2]
            w0 = (sim["cpu_at_kill"] or [cpu0[1]])[0] - cpu0[1] + (workers[0].cpu_s() if sim["killed"] else 0.0)
            cpu = (process_cpu_s(me) - cpu0[0], w1, tally.per_worker.get(workers[1].port, 0), w0 + w1,
                   pg_cpu_s(pg) - cpu0[3])
            costs = {"stages": workers[1].stages(), "sim": fleet.cpu,
                     "tls": tls_costs(tmp / "cloud", tally.sample_request, tally.sample_answer)}
            filled = fill_fleet(store, args.devices)
            view = fleet_view_ms(store, workers)
            report(args, tally, sim, store, devices, view, wall, cpu, filled, costs)
            store.close()
        finally:
            for w in workers:
                w.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
