"""The zone and line editor's write: zones and count lines (ground metres) and, after a calibration, the
homography, put into the device's TOML config with its comments and other sections kept (tomlkit), the
result validated as any config is (firmware.config.parse), then written atomically. A config that would not
load is never written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tomlkit

from firmware import config as cfgmod
from firmware.errors import ConfigError, InstallerError
from trust.files import write_atomic

Ground = tuple[float, float]


def _r(p: Sequence[float]) -> list[float]:
    return [round(float(p[0]), 3), round(float(p[1]), 3)]


def geometry_text(text: str, zones: Sequence[tuple[str, Sequence[Ground]]] | None,
                  lines: Sequence[tuple[str, Ground, Ground]] | None,
                  homography: Sequence[Sequence[float]] | None = None, source: str = "<config>",
                  image_size: tuple[int, int] | None = None) -> str:
    """The config text with [geometry]'s zones, lines, homography and/or the image size it was fitted on
    replaced (None: kept)."""
    try:
        doc = tomlkit.parse(text)
    except Exception as e:  # tomlkit's parse errors have no common public base
        raise InstallerError(f"{source}: not valid TOML: {e}") from None
    if "geometry" not in doc:
        doc["geometry"] = tomlkit.table()
    geo = doc["geometry"]
    if homography is not None:
        geo["homography"] = [[float(f"{v:.10g}") for v in row] for row in homography]  # type: ignore[index]
    if image_size is not None:
        geo["image_size"] = [int(image_size[0]), int(image_size[1])]  # type: ignore[index]
    if zones is not None:
        aot = tomlkit.aot()
        for name, poly in zones:
            t = tomlkit.table()
            t.update({"name": name, "polygon": [_r(p) for p in poly]})
            aot.append(t)
        geo["zones"] = aot  # type: ignore[index]
    if lines is not None:
        aot = tomlkit.aot()
        for name, a, b in lines:
            t = tomlkit.table()
            t.update({"name": name, "a": _r(a), "b": _r(b)})
            aot.append(t)
        geo["lines"] = aot  # type: ignore[index]
    out = tomlkit.dumps(doc)
    try:
        cfgmod.parse(out, source)
    except ConfigError as e:
        raise InstallerError(f"not saved: {e}") from None
    return out


def save_geometry(path: Path, zones: Sequence[tuple[str, Sequence[Ground]]] | None,
                  lines: Sequence[tuple[str, Ground, Ground]] | None,
                  homography: Sequence[Sequence[float]] | None = None,
                  image_size: tuple[int, int] | None = None) -> cfgmod.UmbraConfig:
    """Writes the new geometry into `path` (atomically) and returns the config as it now loads."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InstallerError(f"cannot read config file {path}: {e.strerror}") from None
    out = geometry_text(text, zones, lines, homography, str(path), image_size)
    write_atomic(path, out.encode("utf-8"))
    return cfgmod.parse(out, str(path))
