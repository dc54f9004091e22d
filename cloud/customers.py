"""Customer and ops access: API keys kept as a hash of their secret, each bound to one tenant and a role
("customer" reads its own sensors; "ops" reads the fleet), and a per-key rate limit (a token bucket on the
injected clock, kept in the cloud database, so every worker behind it shares one bucket per key).

A key reads `umbra_<key id>_<secret>`; the secret is 32 random bytes, so one SHA-256 is enough to keep it
(a slow password hash buys nothing against a 256-bit secret) and the comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cloud.db import Db
from cloud.errors import AccessError
from cloud.store import Store

ROLES = ("customer", "ops")
_KEY = re.compile(r"^umbra_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    tenant: str
    role: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_key(store: Store, tenant: str, role: str, now: float) -> str:
    """A new key for `tenant`; returns it (shown once: only its hash is stored)."""
    if not _NAME.match(tenant):
        raise AccessError("tenant: 1 to 64 of A-Z a-z 0-9 . _ -")
    if role not in ROLES:
        raise AccessError(f"role: one of {', '.join(ROLES)}")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    store.db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, 0)", (key_id, _hash(secret), tenant, role, int(now)))
    return f"umbra_{key_id}_{secret}"


def revoke_key(store: Store, key_id: str) -> bool:
    return int(store.db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,)).rowcount) > 0


def authenticate(store: Store, presented: str) -> Caller | None:
    m = _KEY.match(presented)
    if not m:
        return None
    row = store.db.one("SELECT secret_sha256, tenant, role, revoked FROM api_keys WHERE key_id = ?", (m.group(1),))
    if row is None or row[3] or not hmac.compare_digest(row[0], _hash(m.group(2))):
        return None
    return Caller(m.group(1), row[1], row[2])


def assign_sensor(store: Store, device_id: str, tenant: str, name: str = "") -> None:
    """Give `device_id` to `tenant` (moving it from any other)."""
    if not _NAME.match(tenant) or not _NAME.match(device_id):
        raise AccessError("device and tenant: 1 to 64 of A-Z a-z 0-9 . _ -")
    store.db.execute("INSERT INTO sensors VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                     "tenant = excluded.tenant, name = excluded.name", (device_id, tenant, name[:120] or device_id))


def sensors(store: Store, tenant: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in store.db.all("SELECT device_id, name FROM sensors WHERE tenant = ? "
                                               "ORDER BY device_id", (tenant,))]


def owns(store: Store, tenant: str, device_id: str) -> bool:
    return store.db.one("SELECT 1 FROM sensors WHERE device_id = ? AND tenant = ?", (device_id, tenant)) is not None


class RateLimiter:
    """`rate` requests a second per key, bursts up to `burst`; `take()` returns 0 or the seconds to wait.

    The bucket lives in the database (table `rate_limits`), one row per key, so all workers share it. It is kept
    as the bucket's theoretical arrival time (GCRA, the same limit as a token bucket holding `burst` tokens):
    a request at `now` passes when max(tat, now) + 1/rate is at most now + burst/rate, and moves tat there; one
    atomic upsert per request, whatever the number of workers."""

    def __init__(self, db: Db, rate: float, burst: float) -> None:
        self.db, self.rate, self.burst = db, rate, burst

    def take(self, key: str, now: float) -> float:
        step = 1.0 / self.rate
        limit = now + self.burst * step + 1e-9  # (the slack absorbs float rounding in tat's sums)
        passed = self.db.all(
            "INSERT INTO rate_limits VALUES (?, ?) ON CONFLICT(key_id) DO UPDATE SET "
            "tat = CASE WHEN rate_limits.tat > ? THEN rate_limits.tat ELSE ? END + ? "
            "WHERE CASE WHEN rate_limits.tat > ? THEN rate_limits.tat ELSE ? END + ? <= ? RETURNING tat",
            (key, now + step, now, now, step, now, now, step, limit))
        if passed:
            return 0.0
        row = self.db.one("SELECT tat FROM rate_limits WHERE key_id = ?", (key,))
        return max(1e-3, float(row[0]) + step - limit) if row else step
