"""The trust package's one exception family: certificates, TLS, pins, signing keys, the device key."""

from __future__ import annotations

import aiohttp


class TrustError(Exception):
    """Something a certificate, key, pin set or signature check refused; the message says which and why."""


class PkiError(TrustError):
    """A certificate, key or CSR is malformed or refused (the message says which and why)."""


class TlsError(TrustError):
    """TLS set-up failed: a certificate, key, CA or pin file is missing or bad (the message names it)."""


class PinMismatch(TlsError, aiohttp.ClientConnectionError):
    """The server passed CA and hostname checks but its public key is not in the pin set."""


class CertTimeRefused(TlsError, aiohttp.ClientConnectionError):
    """The server's chain verified, but a certificate in it is not valid at the device's time (checked by
    `trust.tls.CertTimes` after the handshake, since OpenSSL is told not to judge time on the system clock)."""


class PinUpdateRefused(TlsError):
    """A pin-set update was refused (bad signature, old version, too few pins, malformed)."""


class SigningKeyError(TrustError):
    """A key message or key-ring file is malformed or cannot be read."""


class NoUsableKey(SigningKeyError):
    """No key in the ring is valid now: ask the cloud for the next one."""


class DeviceKeyError(TrustError):
    """The device key or a public key / certificate given to check a signature is missing or unusable."""
