"""`umbra installer`: the operator's side of installer mode (a key pair, signed short-lived tokens), and the
wiring that attaches the installer view to a running sensor loop (`attach_installer`, called by `umbra run`).

    umbra installer keygen --out installer-authority.pem   # prints the public key for [installer]
    umbra installer sign-token --key installer-authority.pem --device ID [--hours 2] [--out token.txt]

With `[installer] enabled = true` the sensor serves http://127.0.0.1:8765/ (or the link-local address
configured); the page asks for the token, then shows the de-identified view and the editor."""

from __future__ import annotations

import argparse
import logging
import secrets
import time
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.cli.samples import load_customer_key
from firmware.config import UmbraConfig, resolve_path
from firmware.config.installer import MAX_VALIDITY_S, InstallerConfig
from firmware.config.sensing import DetectorConfig
from firmware.errors import SamplesCommandError
from firmware.installer.counts import RunCounts
from firmware.installer.live import LiveGeometry
from firmware.installer.server import InstallerServer
from firmware.installer.token import InstallerAuthorizer, sign_installer_token
from firmware.installer.view import InstallerView
from firmware.privacy.audit import AuditSink, NoAudit
from firmware.samples.authorization import public_key_b64
from firmware.samples.grantstore import device_id_of
from firmware.sensing.loop import SensorLoop
from hal.clock import Clock
from hal.detections import Detections
from hal.faces import FaceConfig, FaceDetector
from hal.frame import Frame
from hal.trustedtime import TrustedClock
from trust.files import write_atomic

log = logging.getLogger(__name__)
VIEW_VERIFY_PASSES = 2  # as samples: a second re-check only when the first still found someone
PERSON_RECHECK_SCORE = 0.2  # below the 0.3 the privacy test checks the served views at
RECHECK_THREADS = 1  # the worker's models run in its own (low-priority) thread only: no pool threads at the
# loop's priority, and on the Pi's cores the loop's detector already uses what a second thread would add
FACES = FaceConfig(variant="short_range", tiles=(1, 2))  # the view's BlazeFace, in the tick and the worker


@dataclass
class Installer:
    view: InstallerView
    server: InstallerServer
    live: LiveGeometry

    def stop(self) -> None:
        self.view.close()  # no more views; the one in progress ends (it holds only a JPEG)
        self.server.stop()


def attach_installer(cfg: UmbraConfig, config_path: Path, loop: SensorLoop, counts: RunCounts, audit: AuditSink | None,
                     clock: Clock, faces: Any = None, port: int | None = None, persons: Any = None,
                     executor: Executor | None = None) -> Installer | None:
    """With [installer] enabled: the view's hooks on the loop and the server started. `faces`, `persons`:
    the view's face detector and person re-check (defaults: see make_view); `port` overrides the config's;
    `executor`: where the view's jobs run (default: a worker thread of the view's own)."""
    ic = cfg.installer
    if not ic.enabled:
        return None
    sink = audit if audit is not None else NoAudit()
    view = make_view(cfg, counts, clock, faces, persons=persons, executor=executor)
    loop.frame_hooks.append(view.on_frame)
    loop.track_hooks.append(view.on_tracks)
    target = resolve_path(ic.config_file, config_path.resolve().parent) if ic.config_file else config_path
    if port is not None:
        ic = replace(ic, port=port)
    trusted = (lambda: clock.trusted) if isinstance(clock, TrustedClock) else None  # tokens held until trusted
    authorizer = InstallerAuthorizer(ic, device_id_of(cfg), sink, trusted=trusted)
    live = LiveGeometry(loop, counts, view, sink)  # what the page saves, counted from the next frame
    live.attach()
    server = InstallerServer(ic, view, authorizer, target, clock, sink, live=live)
    server.start()
    sink.append("installer_mode_started", clock.wall(), bind=ic.bind, port=server.port)
    return Installer(view, server, live)


def make_view(cfg: UmbraConfig, counts: RunCounts, clock: Clock, faces: Any = None,
              ic: InstallerConfig | None = None, persons: Any = None, executor: Executor | None = None
              ) -> InstallerView:
    """The view as the sensor makes it: de-identified as samples are (the same blur, then re-checks of the
    result by a face detector and by the person detector, flattening what they still find, twice), with lighter
    passes than a sample's: BlazeFace short range on the whole frame and 2 x 2 tiles, and the person model
    on 2 x 2 tiles at PERSON_RECHECK_SCORE (the project's default detector settings). The view is
    de-identified and encoded in the loop's tick, and re-checked in its worker thread (`executor`: default
    its own), which gets only the JPEG, so that the loop keeps its rate (bench.installer_cost). A scripted
    detector cannot look: no person re-check then."""

    recheck_faces = None  # the tick's detector, when given
    if faces is None:
        faces = FaceDetector(FACES)
        recheck_faces = FaceDetector(replace(FACES, threads=RECHECK_THREADS))
    if persons is None and cfg.detector.kind == "tflite":
        persons = person_recheck(cfg)
    ic = ic or cfg.installer
    samples = replace(cfg.samples, verify_passes=max(cfg.samples.verify_passes, VIEW_VERIFY_PASSES),
                      jpeg_quality=ic.jpeg_quality)  # the re-checks see the JPEG as it is served
    return InstallerView(ic, cfg.geometry, counts, clock, faces, samples=samples,
                         min_score=cfg.loop.min_score, person_finder=persons or None, executor=executor,
                         recheck_faces=recheck_faces)


def person_recheck(cfg: UmbraConfig, threads: int | None = None) -> Any:
    """The person model on the blurred view, 2 x 2 tiles: normalized boxes of persons above
    PERSON_RECHECK_SCORE. Each tile's own detections are kept (no pixels: a digest of the tile's pixels
    names them) and the model runs again only on the tiles whose pixels changed since the last check: a
    view's next check differs from the last only around what was blurred, so the other tiles would give the
    same detections (same pixels, same model); the merge across tiles is redone as `detect` does it."""
    from hal.tflite import TfliteDetector

    d = DetectorConfig()
    det = TfliteDetector(cfg.detector.model, edgetpu={"auto": None, "on": True, "off": False}[cfg.detector.edgetpu],
                         tiles=d.tiles, overlap=d.overlap, score_threshold=PERSON_RECHECK_SCORE,
                         num_threads=RECHECK_THREADS if threads is None else threads)
    return TileMemo(det, PERSON_RECHECK_SCORE)


class TileMemo:
    """`find(rgb)`: `det`'s persons above `score` in `rgb` (normalized boxes), as `det.detect` finds them
    with its fixed tiling, running the model only on the tiles whose pixels differ from the last image's
    (`runs` and `reused` count tiles). What is kept between calls is each tile's digest and detections."""

    def __init__(self, det: Any, score: float) -> None:
        self.det, self.score = det, score
        self.grid = det.grid
        self.runs = self.reused = 0
        self._memo: dict[int, tuple[bytes, tuple[Any, Any, Any]]] = {}

    def __call__(self, rgb: Any) -> Any:
        import numpy as np

        from hal.nms import merge_tiles

        if not rgb.flags.c_contiguous:
            raise ValueError("the re-check reads a C-contiguous image (a copy would outlive the check)")
        h, w = rgb.shape[:2]
        frame = Frame(rgb, None, 0, 0, (w, h))
        parts = []
        for t, tile in enumerate(self.grid):
            digest = _tile_digest(frame.pixels, tile)
            kept = self._memo.get(t)
            if kept is not None and kept[0] == digest:
                self.reused += 1
                parts.append(kept[1])
                continue
            boxes, scores, classes, _ = self.det.detect_tiles(frame, self.grid[t:t + 1])
            self.det.invokes += 1
            self.runs += 1
            self._memo[t] = (digest, (boxes, scores, classes))
            parts.append((boxes, scores, classes))
        boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4)
        scores = np.concatenate([p[1] for p in parts])
        classes = np.concatenate([p[2] for p in parts])
        tile_of = np.concatenate([np.full(len(p[1]), t, dtype=np.int64) for t, p in enumerate(parts)])
        if len(self.grid) > 1:
            keep = merge_tiles(boxes, scores, tile_of, self.grid, self.det.iou_threshold, self.det.drop_fragments)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        return Detections(boxes.astype(np.float32), scores, classes).persons(self.score).boxes


def _tile_digest(img: Any, tile: Any) -> bytes:
    """A digest of the pixels of one tile (normalized xyxy, rounded to pixels as the detector crops it),
    with the image's shape and the tile's place; read row by row from the image, no copy made."""
    import hashlib

    h, w = img.shape[:2]
    x0, y0 = int(round(tile[0] * w)), int(round(tile[1] * h))
    x1, y1 = int(round(tile[2] * w)), int(round(tile[3] * h))
    d = hashlib.blake2b(repr((img.shape, str(img.dtype), x0, y0, x1, y1)).encode(), digest_size=16)
    for y in range(y0, y1):
        d.update(memoryview(img[y, x0:x1]).cast("B"))
    return d.digest()


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="installer_command", required=True, metavar="ACTION")
    kg = sub.add_parser("keygen", help="operator: make the installer-authority key pair")
    kg.add_argument("--out", required=True, type=Path, help="where the private key goes (PEM, mode 0600)")
    kg.set_defaults(func=_cmd_keygen)
    st = sub.add_parser("sign-token", help="operator: sign a token that unlocks one device's installer mode")
    st.add_argument("--key", required=True, type=Path)
    st.add_argument("--device", required=True)
    st.add_argument("--hours", type=float, default=2.0, help=f"validity (at most {MAX_VALIDITY_S // 3600} h)")
    st.add_argument("--out", type=Path, default=None)
    st.set_defaults(func=_cmd_sign)


def _cmd_keygen(args: argparse.Namespace) -> int:


    if args.out.exists():
        raise SamplesCommandError(f"{args.out} exists; a key is not overwritten (choose another --out)")
    key = Ed25519PrivateKey.generate()
    write_atomic(args.out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), private=True)
    print(f"# private key written to {args.out} (the operator's; devices hold only the public key)")
    print("[installer]")
    print(f'authority_public_key = "{public_key_b64(key)}"')
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    if not 0 < args.hours * 3600 <= MAX_VALIDITY_S:
        raise SamplesCommandError(f"--hours: above 0 and at most {MAX_VALIDITY_S // 3600}")
    now = int(time.time())
    token = sign_installer_token(load_customer_key(args.key), device_id=args.device, not_before=now,
                                 expires=now + int(args.hours * 3600), token_id="inst-" + secrets.token_hex(6))
    if args.out is not None:

        write_atomic(args.out, (token + "\n").encode(), private=True)
    else:
        print(token)
    return 0
