"""The [sync] section: the outbox and the uploader ([sync.tls] is trust.tls.TlsConfig)."""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware.config.checks import number, whole
from trust.tls import TlsConfig

KEEPALIVE_PERIODS = 1.5  # an idle connection is kept this many upload periods (UploaderConfig.keepalive_s)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: str = "{state_dir}/outbox.sqlite"  # {state_dir}: [device] state_dir
    max_records: int = 2_000_000  # ~24 h of tracks at a busy site, then drops by kind
    max_bytes: int = 512 * 1024 * 1024
    batch_records: int = 5000
    batch_bytes: int = 2 * 1024 * 1024  # uncompressed JSON of one batch's records
    synchronous: str = "FULL"  # or "NORMAL" (kill-safe, may lose the last commits on power loss)
    validate_records: bool = True  # check each record against its schema (firmware.schemas) before storing

    def validate(self) -> None:
        whole("max_records", self.max_records, 1, 1_000_000_000)
        whole("max_bytes", self.max_bytes, 1024, 1 << 40, unit="bytes")
        whole("batch_records", self.batch_records, 1, 100_000)
        whole("batch_bytes", self.batch_bytes, 1024, 64 * 1024 * 1024, unit="bytes")
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous: 'FULL' or 'NORMAL'")


@dataclass(frozen=True, slots=True)
class UploaderConfig:
    url: str = "https://cloud.umbra.invalid:8443"
    server_hostname: str = ""  # the name checked against the certificate; "" = the URL's host
    device_id: str = ""
    keyring_file: str = "{state_dir}/keys.json"
    period_s: float = 30.0
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0
    max_response_bytes: int = 256 * 1024
    gzip_level: int = 6
    max_batches_per_cycle: int = 1000
    backoff_base_s: float = 2.0
    backoff_max_s: float = 900.0
    key_lead_s: float = 3600.0  # ask for the next key when none is valid this far ahead
    pins_refresh_s: float = 6 * 3600.0
    cert_renew_before_s: float = 7 * 86400.0
    authorizations_file: str = ""  # where customer sampling tokens from the cloud land ("" = not fetched)
    authorizations_refresh_s: float = 300.0

    def validate(self) -> None:
        if not self.url.startswith("https://"):
            raise ValueError("url: must be https:// (plain HTTP is never used)")
        if not self.device_id:
            raise ValueError("device_id: the device's certificate common name")
        number("period_s", self.period_s, 1, 3600, unit="s")
        number("connect_timeout_s", self.connect_timeout_s, 0, 600, lo_open=True, unit="s")
        number("request_timeout_s", self.request_timeout_s, 0, 600, lo_open=True, unit="s")
        if self.connect_timeout_s > self.request_timeout_s:
            raise ValueError("connect_timeout_s/request_timeout_s: 0 < connect <= request <= 600")
        whole("max_response_bytes", self.max_response_bytes, 1024, 16 * 1024 * 1024, unit="bytes")
        whole("gzip_level", self.gzip_level, 0, 9)
        whole("max_batches_per_cycle", self.max_batches_per_cycle, 1, 1_000_000)
        number("backoff_base_s", self.backoff_base_s, 0, 3600, lo_open=True, unit="s")
        number("backoff_max_s", self.backoff_max_s, 0, 86_400, lo_open=True, unit="s")
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s/backoff_max_s: 0 < base <= max")
        number("key_lead_s", self.key_lead_s, 0, 30 * 86_400, unit="s")
        number("pins_refresh_s", self.pins_refresh_s, 60, 30 * 86_400, unit="s")
        number("cert_renew_before_s", self.cert_renew_before_s, 0, 365 * 86_400, unit="s")
        number("authorizations_refresh_s", self.authorizations_refresh_s, 30, 86_400, unit="s")

    @property
    def keepalive_s(self) -> float:
        """How long the uploader keeps an idle connection to the cloud: past one upload period (half a period to
        spare for a late cycle), so every upload after the first reuses the open mutual-TLS connection instead of
        shaking hands again (aiohttp's own 15 s is shorter than the 30 s period). The cloud keeps idle
        connections longer still (cloud.app.CloudConfig.keepalive_s), so the device is the one that closes."""
        return KEEPALIVE_PERIODS * self.period_s


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Cloud sync: the durable outbox and the uploader (mutual TLS with pins, signed batches)."""

    enabled: bool = False
    tls: TlsConfig = field(default_factory=TlsConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    uploader: UploaderConfig = field(default_factory=UploaderConfig)

    def validate(self) -> None:
        if self.enabled:
            self.tls.validate()
            try:
                self.tls.check_fleet_root()
            except ValueError as e:
                raise ValueError(f"tls.{e}; sync needs it to check pin-set updates") from None
            self.outbox.validate()
            self.uploader.validate()
