"""What the installer view draws over the de-identified frame, as plain data (normalized image coordinates,
0..1 across and down the source image): detection boxes and scores, track ids, zones and count lines taken
from the ground plane into the image through the homography, the ground grid, and the running counts.
The web page draws it on a canvas; `draw_overlay` draws the same with OpenCV (`umbra draw`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from firmware.config.sensing import GeometryConfig

Point = tuple[float, float]


class ImagePlane:
    """Ground metres <-> normalized image coordinates of a source image of `size` (width, height)."""

    def __init__(self, geometry: GeometryConfig, size: tuple[int, int]) -> None:
        self.h = np.asarray(geometry.homography, dtype=np.float64)
        self.inv = np.linalg.inv(self.h)
        self.size = np.array(size, dtype=np.float64)
        centre = np.array([size[0] / 2, size[1], 1.0])  # a foot point at the bottom centre is on the ground
        g = self.h @ centre
        self._sign = np.sign((self.inv @ (g / g[2]))[2]) or 1.0

    def to_ground(self, norm: np.ndarray) -> np.ndarray:
        px = np.asarray(norm, dtype=np.float64).reshape(-1, 2) * self.size
        hom = np.column_stack((px, np.ones(len(px)))) @ self.h.T
        return hom[:, :2] / hom[:, 2:3]

    def to_image(self, ground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) normalized image points and which of them are in front of the camera."""
        g = np.asarray(ground, dtype=np.float64).reshape(-1, 2)
        hom = np.column_stack((g, np.ones(len(g)))) @ self.inv.T
        w = hom[:, 2]
        ok = np.sign(w) == self._sign
        w = np.where(np.abs(w) < 1e-12, 1e-12, w)
        return hom[:, :2] / w[:, None] / self.size, ok

    def polyline(self, ground: np.ndarray, closed: bool = False, steps: int = 24) -> list[list[Point]]:
        """A ground polyline sampled along each edge (straight on the ground, straight in the image too, but
        sampling lets the part behind the horizon be cut off), as visible image pieces."""
        g = np.asarray(ground, dtype=np.float64).reshape(-1, 2)
        if closed:
            g = np.vstack((g, g[:1]))
        t = np.linspace(0.0, 1.0, steps, endpoint=False)[:, None]
        pts = np.vstack([a + t * (b - a) for a, b in zip(g[:-1], g[1:], strict=True)] + [g[-1:]])
        img, ok = self.to_image(pts)
        ok &= np.all(np.abs(img - 0.5) < 2.0, axis=1)  # far outside the picture: not drawn
        return _pieces(img, ok)


def _pieces(img: np.ndarray, ok: np.ndarray) -> list[list[Point]]:
    out: list[list[Point]] = []
    cur: list[Point] = []
    for p, good in zip(img, ok, strict=True):
        if good:
            cur.append((round(float(p[0]), 5), round(float(p[1]), 5)))
        elif cur:
            out.append(cur)
            cur = []
    if len(cur) > 1:
        out.append(cur)
    return [c for c in out if len(c) > 1]


def ground_grid(plane: ImagePlane, max_lines: int = 40) -> dict[str, Any]:
    """Lines of equal X and equal Y on the ground over the part of it the picture sees, at a round step."""
    u, v = np.meshgrid(np.linspace(0.02, 0.98, 25), np.linspace(0.02, 0.98, 25))
    g = plane.to_ground(np.column_stack((u.ravel(), v.ravel())))
    _, front = plane.to_image(g)
    g = g[front & np.all(np.isfinite(g), axis=1)]
    if not len(g):
        return {"step_m": 0.0, "lines": []}
    lo, hi = np.percentile(g, 2, axis=0), np.percentile(g, 98, axis=0)
    span = float(max(hi - lo))
    step = next((s for s in (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0) if span / s <= max_lines / 2), 100.0)
    lines: list[list[Point]] = []
    for x in np.arange(np.floor(lo[0] / step) * step, hi[0] + step, step):
        lines += plane.polyline(np.array([[x, lo[1]], [x, hi[1]]]), steps=40)
    for y in np.arange(np.floor(lo[1] / step) * step, hi[1] + step, step):
        lines += plane.polyline(np.array([[lo[0], y], [hi[0], y]]), steps=40)
    return {"step_m": step, "lines": lines}


def overlay_state(geometry: GeometryConfig, size: tuple[int, int], detections: tuple[np.ndarray, np.ndarray],
                  tracks: Sequence[Any], counts: dict[str, Any], grid: dict[str, Any] | None = None) -> dict[str, Any]:
    """The overlay as JSON-ready data. `detections`: (N, 4) normalized boxes and (N,) scores; `tracks`:
    confirmed tracks with `track_id` and `box` in source pixels."""
    plane = ImagePlane(geometry, size)
    boxes, scores = detections
    w, h = size
    return {
        "size": [int(w), int(h)],
        "detections": [{"box": [round(float(c), 4) for c in b], "score": round(float(s), 3)}
                       for b, s in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).ravel(), strict=True)],
        "tracks": [{"id": int(t.track_id), "box": [round(float(t.box[0]) / w, 4), round(float(t.box[1]) / h, 4),
                                                    round(float(t.box[2]) / w, 4), round(float(t.box[3]) / h, 4)]}
                   for t in tracks],
        "zones": [{"name": z.name, "pieces": plane.polyline(np.asarray(z.polygon), closed=True)}
                  for z in geometry.zones],
        "lines": [{"name": ln.name, "pieces": plane.polyline(np.array([ln.a, ln.b]))} for ln in geometry.lines],
        "grid": grid if grid is not None else ground_grid(plane),
        "counts": counts,
    }


_BOX, _TRACK, _ZONE, _LINE, _GRID = (0, 255, 0), (255, 200, 0), (255, 0, 255), (255, 64, 0), (128, 128, 128)


def draw_overlay(rgb: np.ndarray, state: dict[str, Any]) -> None:
    """Draws `state` over an RGB image in place (any size: coordinates are normalized)."""
    import cv2

    h, w = rgb.shape[:2]

    def px(p: Sequence[float]) -> tuple[int, int]:
        return int(round(p[0] * w)), int(round(p[1] * h))

    for piece in state["grid"]["lines"]:
        cv2.polylines(rgb, [np.array([px(p) for p in piece], np.int32)], False, _GRID, 1, cv2.LINE_AA)
    for kind, colour in (("zones", _ZONE), ("lines", _LINE)):
        for item in state[kind]:
            for piece in item["pieces"]:
                cv2.polylines(rgb, [np.array([px(p) for p in piece], np.int32)], False, colour, 2, cv2.LINE_AA)
            if item["pieces"]:
                cv2.putText(rgb, item["name"], px(item["pieces"][0][0]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1)
    for d in state["detections"]:
        cv2.rectangle(rgb, px(d["box"][:2]), px(d["box"][2:]), _BOX, 1)
        cv2.putText(rgb, f"{d['score']:.2f}", px(d["box"][:2]), cv2.FONT_HERSHEY_SIMPLEX, 0.35, _BOX, 1)
    for t in state["tracks"]:
        cv2.rectangle(rgb, px(t["box"][:2]), px(t["box"][2:]), _TRACK, 2)
        x, y = px(t["box"][:2])
        cv2.putText(rgb, f"#{t['id']}", (x, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _TRACK, 1)
    for i, row in enumerate(count_lines(state["counts"])):
        cv2.putText(rgb, row, (8, 18 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def count_lines(counts: dict[str, Any]) -> list[str]:
    """The running counts as short text rows (the page shows the same rows)."""
    by: dict[str, dict[str, int]] = {}
    for c in counts.get("lines", []):
        by.setdefault(c["line"], {})[c["direction"]] = c["count"]
    rows = [f"{ln}: +{d.get('+', 0)} -{d.get('-', 0)}" for ln, d in by.items()]
    rows += [f"zone {z['zone']}: {z['now']} now, peak {z['peak']}" for z in counts.get("zones", [])]
    return rows
