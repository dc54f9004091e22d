"""The [installer] section: the local installer view and zone editor (firmware.installer), off by default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from firmware.config.checks import number
from trust.keys import ed25519_public_key

MAX_VALIDITY_S = 4 * 3600  # an installer token is good for a visit, never longer than this


def local_only(host: str) -> str | None:
    """None when `host` is a loopback or link-local address, else why it is refused."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return f"{host!r} is not an IP address (give 127.0.0.1 or a link-local address such as 169.254.x.y)"
    if ip.is_loopback or ip.is_link_local:
        return None
    return (f"{host} is neither loopback (127.0.0.0/8, ::1) nor link-local (169.254.0.0/16, fe80::/10): the "
            f"installer view never listens on a network that reaches beyond the installer's cable")


@dataclass(frozen=True, slots=True)
class InstallerConfig:
    """`authority_public_key`: base64 of the raw 32-byte Ed25519 key whose holder (the operator) signs
    installer tokens; "" accepts none. `max_validity_s`: the longest span a token may have (at most 4 h).
    `view_hz`: de-identified frames made per second while someone watches (none otherwise).
    `config_file`: the TOML the editor writes ("": the file the sensor was started with)."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = 8765
    authority_public_key: str = ""
    max_validity_s: int = MAX_VALIDITY_S
    view_hz: float = 0.5  # at most one view every 2 s (fewer when the loop leaves the worker little CPU time):
    # what it costs the PETS09 loop and the rate served are in bench/INSTALLER.md
    jpeg_quality: int = 50  # as samples
    watch_timeout_s: float = 5.0  # no request for this long: nobody is watching, no frames are made
    config_file: str = ""

    def validate(self) -> None:
        why = local_only(self.bind)
        if why is not None:
            raise ValueError(f"bind: {why}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is outside 0 (any free port) to 65535")
        if self.authority_public_key:
            try:
                ed25519_public_key(self.authority_public_key)
            except ValueError as e:
                raise ValueError(f"authority_public_key: {e}") from None
        if not 60 <= self.max_validity_s <= MAX_VALIDITY_S:
            raise ValueError(f"max_validity_s: 60 to {MAX_VALIDITY_S} seconds (a token is good for one visit)")
        number("view_hz", self.view_hz, 0.1, 10, unit="views per second")
        if not 10 <= self.jpeg_quality <= 95:
            raise ValueError("jpeg_quality: 10 to 95")
        number("watch_timeout_s", self.watch_timeout_s, 0.5, 60, unit="s")
