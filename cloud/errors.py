"""The cloud's one exception family."""

from __future__ import annotations


class CloudError(Exception):
    """Root of every error raised by cloud/."""


class Refused(CloudError):
    """A request refused with an HTTP status and a JSON body {"error", "detail"} (device listener)."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


class ApiRefused(Refused):
    """The same, on the customer and ops API listener."""


class AccessError(CloudError):
    """A key or sensor assignment that cannot be made (bad tenant name, unknown role)."""


class DbError(CloudError):
    """The database cannot be opened or migrated; the message names it."""


class BrokerUnavailable(CloudError):
    """No mosquitto here (install the Debian package `mosquitto`), or it would not start."""


class PostgresUnavailable(CloudError):
    """No PostgreSQL server binaries here (install the Debian package `postgresql`), or it would not start."""
