"""The one config file: TOML, typed, validated. Each section is a frozen dataclass in a module of this package
(the bottom of the firmware: it imports nothing from the rest of it); an unknown key or a bad value is a
ConfigError naming the key and what is allowed."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config.alerts import AlertsConfig
from firmware.config.demographics import DemographicsConfig
from firmware.config.device import DeviceConfig, OutputConfig
from firmware.config.flows import FlowGroupConfig
from firmware.config.installer import InstallerConfig
from firmware.config.loader import build
from firmware.config.privacy import PrivacyConfig
from firmware.config.samples import AuthorizationConfig, SamplesConfig
from firmware.config.sensing import (
    CameraConfig,
    DetectorConfig,
    GeometryConfig,
    LoopConfig,
    PseudonymConfig,
    QuantizeConfig,
    TrackerConfig,
)
from firmware.config.sync import SyncConfig
from firmware.errors import ConfigError
from ota.config import OtaConfig


@dataclass(frozen=True, slots=True)
class UmbraConfig:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    pseudonym: PseudonymConfig = field(default_factory=PseudonymConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    flowgroups: FlowGroupConfig = field(default_factory=FlowGroupConfig)  # off by default; see its docstring
    demographics: DemographicsConfig = field(default_factory=DemographicsConfig)  # off by default
    authorization: AuthorizationConfig = field(default_factory=AuthorizationConfig)  # customer sampling tokens
    ota: OtaConfig = field(default_factory=OtaConfig)
    installer: InstallerConfig = field(default_factory=InstallerConfig)  # off by default: firmware.installer
    alerts: AlertsConfig = field(default_factory=AlertsConfig)  # zone rules on the device; off by default

    def __post_init__(self) -> None:
        """`{state_dir}` in any path of any section becomes `[device] state_dir` (with `~` and $VARS expanded):
        every state file (budget store, audit log, outbox, keyring, TLS files, OTA state) defaults under it, and
        an explicit path still wins. A config built by `dataclasses.replace` is expanded again, but a path that
        was expanded before keeps the old folder: change `state_dir` in the TOML, not afterwards."""
        state_dir = os.path.expandvars(os.path.expanduser(self.device.state_dir))
        for f in dataclasses.fields(self):
            if f.name != "device":
                object.__setattr__(self, f.name, _expand(getattr(self, f.name), state_dir))


def parse(text: str, source: str = "<config>") -> UmbraConfig:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from e
    try:
        return build(UmbraConfig, table, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load(path: str | os.PathLike[str]) -> UmbraConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return parse(text, str(p))


STATE_DIR = "{state_dir}"


def _expand(value: Any, state_dir: str) -> Any:
    """`value` with STATE_DIR replaced by `state_dir` in every string, inside dataclasses and tuples too (the
    same object back where there is none)."""
    if isinstance(value, str):
        return value.replace(STATE_DIR, state_dir) if STATE_DIR in value else value
    if isinstance(value, tuple):
        items = [_expand(v, state_dir) for v in value]
        return tuple(items) if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            if (new := _expand(old, state_dir)) is not old:
                changed[f.name] = new
        return dataclasses.replace(value, **changed) if changed else value
    return value


def resolve_path(value: str, base: Path) -> Path:
    """A path from the config: `~` and $VARS expanded, relative paths taken from the config file's folder."""
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return p if p.is_absolute() else base / p


def to_toml(table: dict[str, Any]) -> str:
    """Write a (nested) mapping as TOML: enough for the configs the bench generates."""
    lines: list[str] = []
    _emit_table(lines, table, [])
    return "\n".join(lines) + "\n"


def _emit_table(lines: list[str], table: dict[str, Any], path: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if path and scalars:
        lines.append(f"[{'.'.join(path)}]")
    for k, v in scalars.items():
        lines.append(f"{k} = {_value(v)}")
    if scalars:
        lines.append("")
    for k, v in table.items():
        if isinstance(v, dict):
            _emit_table(lines, v, [*path, k])
        elif _is_table_array(v):
            for item in v:
                lines.append(f"[[{'.'.join([*path, k])}]]")
                for ik, iv in item.items():
                    lines.append(f"{ik} = {_value(iv)}")
                lines.append("")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(i, dict) for i in v)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(i) for i in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
