"""`umbra draw --config FILE --out view.png [--frames N]`: the installer view's overlay (detections and
scores, track ids, zones, count lines, the ground grid, running counts) drawn on a de-identified snapshot,
for a bench without a browser. Runs the config's camera and detector for N frames (video: as fast as it
decodes), de-identifies the last view as the installer page does, and writes it as PNG."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from firmware import config as cfgmod
from firmware.cli.assemble import build_loop
from firmware.cli.installer import make_view
from firmware.errors import InstallerError
from firmware.installer.counts import RunCounts
from firmware.installer.overlay import draw_overlay
from firmware.installer.view import InlineExecutor
from firmware.sensing.geometry import Geometry
from hal.clock import FakeClock, SystemClock


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="the PNG to write")
    parser.add_argument("--frames", type=int, default=20, help="frames to run first, so tracks are confirmed")
    parser.set_defaults(func=_cmd_draw)


def snapshot(cfg, base: Path, frames: int, clock=None, camera=None, detector=None, faces=None):  # noqa: ANN001, ANN201
    """Runs the loop `frames` ticks with the installer view watching; returns (the last view, its counts)."""


    if clock is None:
        clock = FakeClock() if cfg.camera.kind == "video" else SystemClock()
    counts = RunCounts(Geometry(cfg.geometry))
    loop = build_loop(cfg, base, clock, sinks=[counts], camera=camera, detector=detector)
    view = make_view(cfg, counts, clock, faces, replace(cfg.installer, view_hz=10.0, watch_timeout_s=60.0),
                     executor=InlineExecutor())  # made in the tick: the last frame's view when the run ends
    loop.frame_hooks.append(view.on_frame)
    loop.track_hooks.append(view.on_tracks)
    view.watch()
    loop.run(max_ticks=frames)
    if view.latest is None:
        raise InstallerError(f"no frame came from the camera in {frames} ticks: nothing to draw")
    return view.latest


def render(jpeg: bytes, state: dict):  # noqa: ANN201 - an RGB array
    import cv2


    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InstallerError("the view's JPEG does not decode")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    draw_overlay(rgb, state)
    return rgb


def _cmd_draw(args: argparse.Namespace) -> int:
    import cv2


    cfg = cfgmod.load(args.config)
    view = snapshot(cfg, args.config.resolve().parent, args.frames)
    rgb = render(view.jpeg, view.state)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise InstallerError(f"cannot write {args.out} (a .png path in a writable folder)")
    st = view.state
    print(f"wrote {args.out}: frame {st['seq']}, {len(st['detections'])} detections, {len(st['tracks'])} tracks, "
          f"{len(st['zones'])} zones, {len(st['lines'])} lines, ground grid every {st['grid']['step_m']} m")
    return 0
