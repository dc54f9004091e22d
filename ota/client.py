"""The device side of OTA: check, download, verify (python-tuf's ngclient does the TUF part: signatures,
thresholds, versions, expiry, lengths and hashes, from the root embedded at provisioning), then install into
the inactive slot and switch; a health check after the switch commits or rolls back.

Transport: `PinnedFetcher` speaks HTTPS with the fleet CA as the only anchor, the device's client
certificate, and the server's SPKI checked against the pin set before the request is sent, the same rules as
the uploader (certificate times judged on the device's trusted time with a `trust.tls.device_context`).
Every download is bounded by the length TUF expects (ngclient enforces it too).

Time: given the device's clock (`time`, a `trust.tls.DeviceTime` such as hal.trustedtime.TrustedClock), a
check is held (`Held`, counted in `held`) while wall time is not trusted, and once it is, python-tuf judges
metadata expiry at that trusted time instead of the system clock (`judge_expiry_at`), as the rollout stages
are. Without it (ops tools, tests), the system clock is used as python-tuf does by default.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import shutil
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tuf.api.exceptions import DownloadError as TufDownloadError
from tuf.api.exceptions import DownloadHTTPError, RepositoryError
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from hal.boot import BootControl
from ota.bundle import parse_version, verify_and_extract
from ota.errors import Held, OtaError, Refused
from ota.lock import LockedBoot, SlotLock
from ota.repo import ROLLOUT
from ota.rollout import in_stage
from ota.slots import has_wheelhouse, install_venv
from trust.errors import CertTimeRefused
from trust.pki import spki_sha256_der_cert
from trust.tls import CertTimes, DeviceTime, needs_time_check, peer_chain

log = logging.getLogger(__name__)


class PinnedFetcher(FetcherInterface):
    """HTTPS GETs over `ssl_context` (CA, client cert, hostname), refusing a server whose SPKI is not pinned."""

    def __init__(self, ssl_context: ssl.SSLContext, pin_check: Callable[[bytes], None] | None,
                 timeout_s: float = 30.0, cert_times: CertTimes | None = None) -> None:
        needs_time_check(ssl_context, cert_times)
        self.ctx, self.pin_check, self.timeout_s = ssl_context, pin_check, timeout_s
        self.cert_times = cert_times
        self.bytes_received = 0
        self.restarted = False
        self.connections = 0
        self._conn: http.client.HTTPSConnection | None = None
        self._conn_to: tuple[str, int] | None = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self.fetch_from(url, 0)

    def fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        """GET from byte `offset` on (a Range request); a server that ignores the range sends it all, and the
        caller sees that as `self.restarted`. One kept-alive connection per server, pinned when it opens."""
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise TufDownloadError(f"{url}: only https is used")
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn = self._connection(parts.hostname or "", parts.port or 443)
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.HTTPException, ConnectionError, BrokenPipeError, TimeoutError) as e:
                self._drop()
                if attempt:
                    raise TufDownloadError(f"{url}: {e}") from e
        if resp.status not in (200, 206):
            resp.read()
            raise DownloadHTTPError(f"{url}: HTTP {resp.status}", resp.status)
        self.restarted = bool(offset) and resp.status == 200
        return self._chunks(resp)

    def _connection(self, host: str, port: int) -> http.client.HTTPSConnection:
        if self._conn is not None and self._conn_to == (host, port):
            return self._conn
        self._drop()
        conn = http.client.HTTPSConnection(host, port, timeout=self.timeout_s, context=self.ctx)
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True) if conn.sock else None  # type: ignore[union-attr]
        if self.pin_check is not None:
            try:
                if der is None:
                    raise TufDownloadError("no server certificate")
                self.pin_check(der)
            except Exception as e:
                conn.close()
                raise TufDownloadError(f"server key is not pinned: {e}") from e
        if self.cert_times is not None and der is not None:
            try:
                self.cert_times.check(der, peer_chain(conn.sock))
            except CertTimeRefused as e:
                conn.close()
                raise TufDownloadError(str(e)) from e
        self._conn, self._conn_to = conn, (host, port)
        self.connections += 1
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _chunks(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        done = False
        try:
            while chunk := resp.read(64 * 1024):
                self.bytes_received += len(chunk)
                yield chunk
            done = True
        finally:
            if not done or resp.will_close:
                self._drop()  # a response not read to its end leaves the connection unusable


@dataclass(frozen=True, slots=True)
class Update:
    name: str
    version: str
    min_from: str
    length: int


@dataclass(frozen=True, slots=True)
class OtaClientConfig:
    base_url: str  # e.g. https://cloud:8443/ota  (metadata/ and targets/ below it)
    device_id: str
    hardware: str
    version: str  # the running firmware
    version_floor: str = "0"  # never install below this, whatever is signed
    max_bundle_bytes: int = 256 * 1024 * 1024


def judge_expiry_at(up: Updater, when: float) -> Updater:
    """Make python-tuf judge metadata expiry at `when` (Unix seconds) instead of the system clock.

    python-tuf (7.x) has no public setting for this: ngclient's TrustedMetadataSet takes
    `datetime.now(timezone.utc)` when the Updater is made, keeps it as `reference_time`, and every expiry check
    (root, timestamp, snapshot, targets, delegations) reads it. This is the one place that sets it, before
    `refresh()`; it refuses (OtaError) rather than silently use the system clock if python-tuf changes."""
    trusted_set = getattr(up, "_trusted_set", None)
    if not isinstance(getattr(trusted_set, "reference_time", None), dt.datetime):
        raise OtaError("python-tuf no longer keeps Updater._trusted_set.reference_time: cannot judge expiry at "
                       "the device's trusted time (see ota.client.judge_expiry_at)")
    trusted_set.reference_time = dt.datetime.fromtimestamp(when, dt.UTC)  # type: ignore[union-attr]
    return up


class OtaClient:
    def __init__(self, config: OtaClientConfig, state_dir: Path, trusted_root: bytes, fetcher: FetcherInterface,
                 boot: BootControl, time: DeviceTime | None = None, lock: SlotLock | None = None) -> None:
        """`time`: the device's clock; checks are held while it is not trusted, and expiry judged on it.
        `lock`: the slots lock shared with the package's scripts (ota.lock), held over each install and each
        change of the boot state (`self.boot` is then a LockedBoot: use it for boot, commit and rollback)."""
        self.config, self.dir, self.fetcher = config, Path(state_dir), fetcher
        self.lock = lock
        wrapped = lock is None or (isinstance(boot, LockedBoot) and boot.lock is lock)
        self.boot: BootControl = boot if wrapped else LockedBoot(boot, lock)  # type: ignore[arg-type]
        self.time = time
        self.held = 0  # checks held because wall time was not trusted
        self.meta_dir, self.cache_dir = self.dir / "metadata", self.dir / "downloads"
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.trusted_root = trusted_root

    def trusted_now(self) -> float | None:
        """The device's trusted wall time (None: no device clock given, the system clock judges); Held
        (counted) while it is not trusted."""
        if self.time is None:
            return None
        if not self.time.trusted:
            self.held += 1
            raise Held("time untrusted (no NTP sync, no signed time from the cloud yet); checked again next time")
        return self.time.wall()

    def _updater(self, at: float | None) -> Updater:
        base = self.config.base_url.rstrip("/")
        up = Updater(str(self.meta_dir), f"{base}/metadata/", str(self.cache_dir), f"{base}/targets/",
                     fetcher=self.fetcher, config=UpdaterConfig(timestamp_max_length=16_384,
                                                                snapshot_max_length=1_000_000,
                                                                targets_max_length=4_000_000),
                     bootstrap=self._root_bytes())
        return judge_expiry_at(up, at) if at is not None else up

    def _root_bytes(self) -> bytes:
        cached = self.meta_dir / "root.json"
        return cached.read_bytes() if cached.exists() else self.trusted_root

    def check(self, now: float | None = None) -> Update | None:
        """Refresh the signed metadata; the newest release for this hardware that this device may take now
        (rollout stage, version floor, min_from), or None. Raises Refused on any attack TUF detects, Held
        while the device's time is not trusted."""
        at = self.trusted_now()
        now = at if now is None else now
        try:
            up = self._updater(at)
            up.refresh()
        except (RepositoryError, TufDownloadError) as e:
            raise Refused("metadata", f"{type(e).__name__}: {e}") from e
        plan = self._rollout(up)
        current = parse_version(self.config.version)
        floor = parse_version(self.config.version_floor)
        best: Update | None = None
        prefix = f"releases/{self.config.hardware}/"
        for name, tf in sorted(up._trusted_set.targets.targets.items()):  # the verified targets role
            if not name.startswith(prefix):
                continue
            custom = tf.unrecognized_fields.get("custom", {})
            if custom.get("hardware") != self.config.hardware:
                continue
            v = parse_version(str(custom.get("version")))
            if v <= current or v < floor or current < parse_version(str(custom.get("min_from", "0"))):
                continue
            if not in_stage(plan, self.config.device_id, str(custom["version"]), now):
                continue
            if best is None or v > parse_version(best.version):
                best = Update(name, str(custom["version"]), str(custom.get("min_from", "0")), tf.length)
        self._up = up
        return best

    def _rollout(self, up: Updater) -> dict:
        info = up.get_targetinfo(ROLLOUT)
        if info is None:
            return {}
        path = up.find_cached_target(info) or up.download_target(info)
        return json.loads(Path(path).read_text())

    def download(self, update: Update) -> Path:
        if update.length > self.config.max_bundle_bytes:
            raise Refused("too_large", f"{update.name} is {update.length} bytes, over {self.config.max_bundle_bytes}")
        up = getattr(self, "_up", None) or self._updater(self.trusted_now())
        info = up.get_targetinfo(update.name)
        if info is None:
            raise Refused("metadata", f"{update.name} is no longer a signed target")
        sha = info.hashes["sha256"]
        final = self.cache_dir / f"{sha}.tar"
        if final.exists():
            return final
        part = final.with_suffix(".part")
        offset = part.stat().st_size if part.exists() else 0
        if offset >= info.length:
            part.unlink()
            offset = 0
        name = Path(update.name)
        url = f"{self.config.base_url.rstrip('/')}/targets/{name.parent.as_posix()}/{sha}.{name.name}"
        try:
            chunks = self.fetcher.fetch_from(url, offset)  # type: ignore[attr-defined]
            with open(part, "wb" if getattr(self.fetcher, "restarted", False) else "ab") as f:
                got = offset
                for chunk in chunks:
                    got += len(chunk)
                    if got > info.length:
                        raise Refused("target", f"{update.name}: more than the {info.length} signed bytes")
                    f.write(chunk)
            with open(part, "rb") as f:
                info.verify_length_and_hashes(f)
        except Refused:
            part.unlink(missing_ok=True)
            raise
        except (RepositoryError, TufDownloadError, OSError) as e:
            if isinstance(e, RepositoryError):
                part.unlink(missing_ok=True)  # wrong bytes: start over next time; a cut connection resumes
            raise Refused("target", f"{update.name}: {type(e).__name__}: {e}") from e
        part.replace(final)
        return final

    def install(self, update: Update, bundle: Path) -> str:
        """Verify and unpack into the inactive slot (a fresh folder, renamed into place); a release that carries
        a wheelhouse is installed from it into the slot's venv `<slot>/<version>` (ota.slots.install_venv:
        offline, hashes checked); then ask the boot control to try it once. Returns the slot. A venv that
        cannot be built is Refused("install") and the slot is not tried. All of it under the slots lock (if
        given): the slot chosen is still the inactive one when it is tried, and no package install switches
        `current` meanwhile (SlotsBusy if one holds the lock past its wait)."""
        if self.lock is None:
            return self._install(update, bundle)
        with self.lock:
            return self._install(update, bundle)

    def _install(self, update: Update, bundle: Path) -> str:
        slot = self.boot.inactive()
        dest = self.boot.slot_path(slot)
        staging = dest.with_name(dest.name + ".staging")
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        man = verify_and_extract(bundle, staging, self.config.hardware)
        if man.version != update.version:
            shutil.rmtree(staging)
            raise Refused("bad_bundle", f"bundle says {man.version}, the signed target says {update.version}")
        old = dest.with_name(dest.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        if old.exists():
            shutil.rmtree(old)
        if has_wheelhouse(dest):  # a packaged release: its locked wheels into a venv of its own, offline
            try:
                install_venv(dest / "wheelhouse", dest / man.version)
            except OtaError as e:
                raise Refused("install", str(e)) from e
        self.boot.try_next(slot)
        log.info("installed %s into slot %s; it boots once on trial", update.version, slot)
        return slot


def pin_checker(pins: Callable[[], frozenset[str]]) -> Callable[[bytes], None]:
    """A `pin_check` for PinnedFetcher from the device's pin store (trust.tls.PinStore.pins)."""

    def check(der: bytes) -> None:
        got = spki_sha256_der_cert(der)
        if got not in pins():
            raise Refused("pin", f"server key {got} is not in the pin set")

    return check

