"""The [alerts] section: zone rules evaluated on the device (off by default)."""

from __future__ import annotations

from dataclasses import dataclass

from firmware.config.checks import number

RULES = ("occupancy_above", "presence_outside_hours", "dwell_above", "wrong_way")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One rule. `zone` names a [geometry] zone (or, for wrong_way, a count line).
    occupancy_above: more than `limit` people in the zone at once.
    presence_outside_hours: anyone in the zone outside [open_hour, close_hour) local time.
    dwell_above: someone in the zone for more than `dwell_s` seconds.
    wrong_way: a crossing of the line against `direction` (the allowed one, "+" or "-")."""

    rule: str
    zone: str
    limit: int = 0
    open_hour: int = 0
    close_hour: int = 24
    dwell_s: float = 0.0
    direction: str = "+"

    def validate(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule: one of {', '.join(RULES)}, got {self.rule!r}")
        if not 1 <= len(self.zone) <= 64:
            raise ValueError("zone: 1 to 64 characters")
        if self.rule == "occupancy_above" and self.limit < 1:
            raise ValueError("limit: at least 1 for occupancy_above")
        if not 0 <= self.open_hour < self.close_hour <= 24:
            raise ValueError("open_hour, close_hour: 0 <= open_hour < close_hour <= 24")
        if self.rule == "dwell_above" and self.dwell_s <= 0:
            raise ValueError("dwell_s: above 0 for dwell_above")
        if self.direction not in ("+", "-"):
            raise ValueError("direction: '+' or '-' (the allowed direction)")


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """`[alerts]`: rules whose alerts leave as umbra.alert/1 records (no image, no track, time rounded down
    to `time_bucket_s`), through the outbox; one alert per rule per `cooldown_s` while it holds."""

    enabled: bool = False
    rules: tuple[AlertRule, ...] = ()
    time_bucket_s: int = 60
    cooldown_s: float = 300.0
    utc_offset_h: float = 0.0  # the site's local time, for opening hours

    def validate(self) -> None:
        if not 1 <= self.time_bucket_s <= 3600:
            raise ValueError("time_bucket_s: 1 to 3600")
        number("cooldown_s", self.cooldown_s, 1, 7 * 86_400, unit="s")
        if self.cooldown_s < self.time_bucket_s:
            raise ValueError("cooldown_s: at least time_bucket_s")
        if not -14 <= self.utc_offset_h <= 14:
            raise ValueError("utc_offset_h: -14 to 14")
        if self.enabled and not self.rules:
            raise ValueError("rules: at least one when enabled")
