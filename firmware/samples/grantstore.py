"""The customer sampling tokens a device holds: intake, durable storage, and what the running sensor loads.

Tokens live in `<device.state_dir>/sampling_tokens.json` (`{"schema", "tokens": [...], "revoked": [...]}`),
written atomically with owner-only permissions and changed under an flock, so `umbra samples authorize` can
add a token while `umbra run` is running. A token is stored only after the `Authorizer` accepted it for this
device (a bad one is refused, with its reason, and the stored ones stay as they were); a token that starts
later is accepted ahead and used from its not_before. `load_grants` re-verifies every stored token (each
check audited by the Authorizer): expired and revoked ones are dropped from the file and audited as
`authorization_dropped`; others that fail (say the configured customer key changed) stay on disk unused.
`GrantRefresher` is the loop's frame hook that picks changes of the file up within `period_s`, and takes in
the tokens the cloud relays (the uploader writes them to `[sync.uploader] authorizations_file`; each is
verified, stored and audited here exactly like a token given to `umbra samples authorize`).
Tokens are never logged, only their ids.

Time: grants are judged on the sensor's wall time, and only once it is trusted (`trusted`, from
hal.trustedtime): until then nothing is loaded, taken in or dropped (a clock a day ahead would drop valid
tokens as expired for good; one behind would use withdrawn ones), sampling stays at the default rate, and the
hold is audited once (`authorizations_held`). The first frame after the time is trusted loads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from firmware.config import UmbraConfig, resolve_path
from firmware.errors import AuthorizationRefused, TokenStoreError
from firmware.privacy.audit import AuditSink, NoAudit
from firmware.samples.authorization import MAX_TOKEN_CHARS, Authorizer, Grant, _token_id_or_none
from firmware.samples.taking import SampleScheduler
from hal.detections import Detections
from hal.frame import Frame
from trust.files import write_atomic

log = logging.getLogger(__name__)

SCHEMA = "umbra.sampling-tokens/1"
FILE_NAME = "sampling_tokens.json"
MAX_TOKENS = 32
MAX_FILE_BYTES = MAX_TOKENS * (MAX_TOKEN_CHARS + 8) + 4096 + MAX_TOKENS * 80
FINAL = frozenset({"expired", "revoked"})  # refusals a token never recovers from


@dataclass(frozen=True, slots=True)
class StoredTokens:
    tokens: tuple[str, ...] = ()
    revoked: tuple[str, ...] = ()


class TokenStore:
    """The token file. `read()` never repairs: a damaged file is an error, not an empty store."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def read(self) -> StoredTokens:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return StoredTokens()
        except OSError as e:
            raise TokenStoreError(f"cannot read {self.path}: {e.strerror}") from e
        if len(raw) > MAX_FILE_BYTES:
            raise TokenStoreError(f"{self.path} is larger than a token file can be ({MAX_FILE_BYTES} bytes)")
        try:
            d = json.loads(raw)
            ok = (isinstance(d, dict) and d.get("schema") == SCHEMA
                  and all(isinstance(d.get(k), list) and all(isinstance(x, str) for x in d[k])
                          for k in ("tokens", "revoked")))
        except ValueError:
            ok = False
        if not ok:
            raise TokenStoreError(f"{self.path} is not a sampling-token file ({SCHEMA}); fix or remove it")
        return StoredTokens(tuple(d["tokens"]), tuple(d["revoked"]))

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the file is replaced (for the refresher)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    @contextlib.contextmanager
    def changing(self) -> Iterator[list[StoredTokens]]:
        """Read-modify-write under an exclusive lock: set `box[0]` to the new contents to write them."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            before = self.read()
            box = [before]
            yield box
            if box[0] != before:
                self._write(box[0])

    def _write(self, st: StoredTokens) -> None:
        body = {"schema": SCHEMA, "tokens": list(st.tokens), "revoked": list(st.revoked)}
        try:
            write_atomic(self.path, json.dumps(body, indent=1).encode("utf-8"), private=True)
        except OSError as e:
            raise TokenStoreError(f"cannot write {self.path}: {e.strerror}") from e


def store_for(cfg: UmbraConfig, base: Path) -> TokenStore:

    return TokenStore(resolve_path(cfg.device.state_dir, base) / FILE_NAME)


def device_id_of(cfg: UmbraConfig) -> str:
    """The id a token must name: the device's certificate name (what the customer and the cloud know it by)."""
    return cfg.sync.uploader.device_id or cfg.device.id


def authorizer_for(cfg: UmbraConfig, store: TokenStore, audit: AuditSink) -> Authorizer:
    """The device's Authorizer: the configured customer key, the config's and the device's revocations."""
    return Authorizer(cfg.authorization, device_id_of(cfg), audit, revoked=store.read().revoked)


def token_text(arg: str) -> str:
    """A token given on the command line, or the path of a file holding one."""
    p = Path(arg)
    try:
        is_file = p.is_file()
    except OSError:  # a token is longer than a file name may be
        is_file = False
    if is_file:
        try:
            with open(p, encoding="utf-8") as f:
                return f.read(MAX_TOKEN_CHARS + 64).strip()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenStoreError(f"cannot read the token file {p}: {e}") from e
    return arg.strip()


def accept(store: TokenStore, authorizer: Authorizer, token: str, now: float) -> Grant:
    """Verifies `token` (audited) and stores it; a token with the same id is replaced. Raises
    AuthorizationRefused (nothing stored changes) or TokenStoreError. The check and the write are one step
    under the store's lock, against the revocations stored at that moment: a `revoke` that lands while the
    token is being taken in (another process, or the cloud's relay) is never undone by it."""
    with store.changing() as box:
        held = box[0].tokens
        if len(held) >= MAX_TOKENS and _token_id(token) not in {_token_id(t) for t in held}:
            raise TokenStoreError(f"the device holds {MAX_TOKENS} tokens already; revoke old ones first")
        grant = authorizer.verify(token, now, accept_future=True, revoked=box[0].revoked)
        kept = [t for t in held if _token_id(t) != grant.token_id]
        box[0] = StoredTokens((*kept, token), box[0].revoked)
    log.info("sampling authorization %s stored: %d per hour", grant.token_id, grant.rate_per_hour)
    return grant


def load_grants(store: TokenStore, authorizer: Authorizer, now: float, audit: AuditSink) -> list[Grant]:
    """The grants of the stored tokens, each re-verified; expired and revoked tokens are dropped (audited)."""
    grants, dropped = [], []
    for token in store.read().tokens:
        try:
            grants.append(authorizer.verify(token, now, accept_future=True))
        except AuthorizationRefused as e:
            if e.reason in FINAL:
                dropped.append(token)
                audit.append("authorization_dropped", now, token_id=_token_id(token), reason=e.reason)
            else:
                log.warning("stored sampling token %s not used: %s", _token_id(token), e.reason)
    if dropped:
        with store.changing() as box:
            box[0] = StoredTokens(tuple(t for t in box[0].tokens if t not in dropped), box[0].revoked)
    return grants


def revoke(store: TokenStore, token_id: str, now: float, audit: AuditSink) -> bool:
    """Withdraws a token on the device: removed, and its id refused from now on. True if one was stored."""
    with store.changing() as box:
        kept = tuple(t for t in box[0].tokens if _token_id(t) != token_id)
        found = len(kept) != len(box[0].tokens)
        revoked = box[0].revoked if token_id in box[0].revoked else (*box[0].revoked, token_id)
        box[0] = StoredTokens(kept, revoked)
    audit.append("authorization_revoked", now, token_id=token_id, was_stored=found)
    return found


def _token_id(token: str) -> str | None:

    return _token_id_or_none(token)


def take_delivered(delivered: StoredTokens, store: TokenStore, authorizer_of: Callable[[], Authorizer], now: float,
                   audit: AuditSink, seen: set[str]) -> int:
    """Intake of what the cloud relayed (`inbox`, written by the uploader): each new token is verified, stored
    and audited like `umbra samples authorize` (a refused one is audited once per run: `seen`), and each
    withdrawn id the device still holds is revoked. Returns how many changes were made."""
    held = store.read()
    changes = 0
    for token_id in delivered.revoked:
        if token_id not in held.revoked:
            revoke(store, token_id, now, audit)
            changes += 1
    for token in delivered.tokens:
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        if token in held.tokens or digest in seen:
            continue
        seen.add(digest)
        try:
            accept(store, authorizer_of(), token, now)
            changes += 1
        except AuthorizationRefused:
            continue  # audited by the Authorizer, with its reason
    return changes


class GrantRefresher:
    """A loop frame hook: every `period_s` of wall time, if the token file changed (`umbra samples authorize`
    or `revoke` ran), re-loads the grants into the scheduler; with an `inbox` (the tokens the uploader fetched
    from the cloud), takes in what arrived there first."""

    def __init__(self, store: TokenStore, authorizer_of: Callable[[], Authorizer], scheduler: SampleScheduler,
                 audit: AuditSink, period_s: float = 60.0, inbox: TokenStore | None = None,
                 trusted: Callable[[], bool] | None = None) -> None:
        """`trusted`: whether the wall time passed in may be relied on (None: always)."""
        self.store, self._authorizer_of, self.scheduler, self.audit = store, authorizer_of, scheduler, audit
        self.period_s = period_s
        self.inbox = inbox
        self._trusted = trusted
        self.held = False  # grants held: the wall time was not trusted when they were to be loaded
        self._stamp = store.stamp()
        self._inbox_stamp: tuple[int, int, int] | None = None
        self._seen: set[str] = set()
        self._next = 0.0

    def refresh(self, now: float) -> Sequence[Grant]:
        """Loads the grants now (at start, and whenever the file changed); none while the time is untrusted."""
        if self._trusted is not None and not self._trusted():
            if not self.held:
                self.held = True
                self.audit.append("authorizations_held", now, reason="time-untrusted")
                log.warning("samples: customer authorizations held until the wall time is trusted (default rate)")
            self.scheduler.set_grants([])
            return []
        self.held = False
        grants = load_grants(self.store, self._authorizer_of(), now, self.audit)
        self._stamp = self.store.stamp()
        self.scheduler.set_grants(grants)
        return grants

    def __call__(self, frame: Frame, detections: Detections | None, wall: float) -> None:
        if self.held:
            if self._trusted is not None and not self._trusted():
                return  # nothing judged on an untrusted clock: no intake, no reload
            self._next = 0.0  # trusted now: load at once
            self._stamp = None
        if wall < self._next:
            return
        self._next = wall + self.period_s
        try:
            if self.inbox is not None and self.inbox.stamp() not in (None, self._inbox_stamp):
                self._inbox_stamp = self.inbox.stamp()
                take_delivered(self.inbox.read(), self.store, self._authorizer_of, wall, self.audit, self._seen)
            if self.store.stamp() != self._stamp:
                self.refresh(wall)
        except TokenStoreError as e:  # keep sampling under the grants already loaded
            log.error("sampling tokens not reloaded: %s", e)


def sensor_grants(cfg: UmbraConfig, base: Path, scheduler: SampleScheduler, audit: AuditSink | None, now: float,
                  trusted: Callable[[], bool] | None = None) -> GrantRefresher | None:
    """`umbra run`: the stored tokens loaded (re-verified) into the sample scheduler, and the hook that keeps
    them current; None when no customer key is configured (no token can verify then). `trusted`: the sensor's
    clock's trust (grants held until it is)."""
    if not cfg.authorization.customer_public_key:
        return None

    sink = audit if audit is not None else NoAudit()
    store = store_for(cfg, base)
    inbox_file = cfg.sync.uploader.authorizations_file if cfg.sync.enabled else ""
    refresher = GrantRefresher(store, lambda: authorizer_for(cfg, store, sink), scheduler, sink,
                               inbox=TokenStore(inbox_file) if inbox_file else None, trusted=trusted)
    try:
        grants = refresher.refresh(now)
    except TokenStoreError as e:  # the sensor runs on, at the default rate, and says why
        log.error("samples: no customer authorization loaded, sampling at the default rate: %s", e)
        return refresher
    if not refresher.held:
        log.info("samples: %d customer authorization(s) loaded from %s", len(grants), store.path)
    return refresher
