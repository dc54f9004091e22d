"""The one config file: TOML, typed, validated. Each section is a frozen dataclass owned by the part it
configures; an unknown key or a bad value is a ConfigError naming the key and what is allowed."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from firmware.analytics import PrivacyConfig
from firmware.authorization import AuthorizationConfig
from firmware.configload import build
from firmware.errors import ConfigError
from firmware.flowgroups import FlowGroupConfig
from firmware.geometry import GeometryConfig
from firmware.loop import LoopConfig
from firmware.outbox import OutboxConfig
from firmware.quantize import QuantizeConfig
from firmware.samples import SamplesConfig
from firmware.tls import TlsConfig
from firmware.tracker import TrackerConfig
from firmware.uploader import UploaderConfig
from ota.agent import OtaConfig


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    id: str = "bench-0001"
    state_dir: str = "~/.local/state/umbra"

    def validate(self) -> None:
        if not self.id or len(self.id) > 64 or not all(c.isalnum() or c in "-_." for c in self.id):
            raise ValueError(f"id: {self.id!r} must be 1 to 64 letters, digits, '-', '_' or '.'")


@dataclass(frozen=True, slots=True)
class CameraConfig:
    kind: Literal["pi", "video"] = "pi"
    source: str = ""  # video file or image folder (kind = "video")
    fps: float = 0.0  # 0: the source's own rate
    realtime: bool = False  # video only: pace frames at their rate instead of as fast as asked
    main_size: tuple[int, int] = (640, 480)
    stall_timeout_s: float = 2.0

    def validate(self) -> None:
        if self.kind == "video" and not self.source:
            raise ValueError('source: a video camera needs a video file or image folder, e.g. "data/vtest.avi"')
        if self.fps < 0:
            raise ValueError("fps: must be 0 (the source's own rate) or positive")
        if self.stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s: must be positive")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    kind: Literal["tflite", "scripted"] = "tflite"
    model: str = "ssd_mobilenet_v1_coco_quant"
    edgetpu: Literal["auto", "on", "off"] = "auto"
    tiles: tuple[int, int] = (2, 2)
    overlap: float = 0.15
    score_threshold: float = 0.3
    threads: int = 2
    ground_truth: str = ""  # scripted only: a MOTChallenge gt.txt to replay

    def validate(self) -> None:
        if not (1 <= self.tiles[0] <= 8 and 1 <= self.tiles[1] <= 8):
            raise ValueError("tiles: each of [nx, ny] must be 1 to 8")
        if not 0 <= self.overlap < 0.5:
            raise ValueError("overlap: must be at least 0 and below 0.5")
        if not 0 < self.score_threshold < 1:
            raise ValueError("score_threshold: must be between 0 and 1")
        if not 1 <= self.threads <= 16:
            raise ValueError("threads: must be 1 to 16")
        if self.kind == "scripted" and not self.ground_truth:
            raise ValueError('ground_truth: a scripted detector needs a gt.txt to replay')


@dataclass(frozen=True, slots=True)
class PseudonymConfig:
    rotate_s: float = 3600.0

    def validate(self) -> None:
        if not 60 <= self.rotate_s <= 86400:
            raise ValueError(f"rotate_s: {self.rotate_s} is outside 60 to 86400 seconds")


@dataclass(frozen=True, slots=True)
class OutputConfig:
    tracks_file: str = ""  # JSON lines of released track records (bench); empty: none
    aggregates_file: str = ""  # JSON lines of released aggregates (bench); empty: none


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
    authorization: AuthorizationConfig = field(default_factory=AuthorizationConfig)  # customer sampling tokens
    ota: OtaConfig = field(default_factory=OtaConfig)


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
