"""The counting bench's own machinery: crossings with hysteresis, the bench run replayed on given detections,
and the crossing-by-crossing explanation."""

from __future__ import annotations

import numpy as np
import pytest

from bench.lib.crossings import crossing_events
from bench.lib.explain import explain
from bench.lib.replay import pets_config, replay
from firmware.config.sensing import LineConfig

FPS = 7


def test_a_path_hovering_on_the_line_counts_once_each_way():
    line = LineConfig(name="ns", a=(0.0, -10.0), b=(0.0, 10.0))
    x = np.array([-2, -0.6, -0.2, 0.3, -0.3, 0.4, 0.7, 2, 2.5, 0.2, -0.4, -1.0])
    path = np.column_stack((x, np.zeros_like(x)))
    ev = crossing_events([path], [line], band=0.5)
    assert [(e.direction, e.step) for e in ev] == [("-", 6), ("+", 11)]  # left of a->b is "+"
    far = np.column_stack((x, np.full_like(x, 11.0)))  # beyond the line's end
    assert crossing_events([far], [line], band=0.5) == []


def _walker(cfg, start: tuple[float, float], end: tuple[float, float], frames: int, height_px: float = 90.0):
    """One person walking straight on the ground: per-frame detections (N, 5) in pixels, and MOT15 gt rows."""
    inv = np.linalg.inv(np.asarray(cfg.geometry.homography, dtype=np.float64))
    dets, gt = [], []
    for f in range(1, frames + 1):
        w = np.array(start) + (np.array(end) - np.array(start)) * (f - 1) / (frames - 1)
        p = inv @ np.array([w[0], w[1], 1.0])
        u, v = p[0] / p[2], p[1] / p[2]
        box = (u - height_px / 6, v - height_px, u + height_px / 6, v)
        dets.append(np.array([[*box, 0.8]]))
        gt.append((f, 1, box[0], box[1], box[2] - box[0], box[3] - box[1], 1, w[0], w[1], 0))
    return dets, np.array(gt, dtype=np.float64)


@pytest.mark.usefixtures("shared_data")
def test_replay_releases_the_crossing_and_explain_finds_nothing_wrong():
    cfg = pets_config()
    dets, gt = _walker(cfg, (-11.0, -3.0), (-5.0, -3.0), 8 * FPS)
    rep = replay(dets, cfg)
    assert rep.frames == len(dets)
    assert rep.records and all(r["schema"] == "umbra.track/2" for r in rep.records)
    assert set(rep.pseudonym_of.values()) == {1}  # one track, one pseudonym
    lines = list(cfg.geometry.lines)
    findings, matched = explain(rep, gt, lines, FPS, dets=dets)
    assert (findings, matched) == ([], 1)


@pytest.mark.usefixtures("shared_data")
def test_explain_names_a_missed_crossing_and_a_false_one():
    cfg = pets_config()
    lines = list(cfg.geometry.lines)
    dets, gt = _walker(cfg, (-11.0, -3.0), (-5.0, -3.0), 8 * FPS)
    gone = [d if f < 20 else np.zeros((0, 5)) for f, d in enumerate(dets)]  # the detector loses them at -8.9 m
    findings, matched = explain(replay(gone, cfg), gt, lines, FPS, dets=gone)
    assert matched == 0
    assert [(f.kind, f.line, f.direction, f.cause) for f in findings] == [("missed", "north-south", "-",
                                                                           "detector miss")]
    # a track with no person behind it walks across: a false crossing from a false track
    _, fake = _walker(cfg, (-11.0, 3.0), (-5.0, 3.0), 8 * FPS)
    empty = fake[:0]
    findings, matched = explain(replay(dets, cfg), empty, lines, FPS, dets=dets)
    assert [(f.kind, f.cause) for f in findings] == [("false", "false track")]


def test_a_counting_scene_line_counts_a_walker_whose_feet_are_below_the_frame():
    """bench.lib.motscenes' lines run past the frame: a walker close to the camera crosses the upright line with
    the gt's foot point below the frame's bottom edge (its box runs past it), as the device sees them cross at
    the edge (the detector's box is cut there). A line that ended at the frame's edge left them out of the
    truth (MOT17-09: two walkers)."""
    from bench.lib.motscenes import count_lines

    w, h, scale = 100, 50, 0.1  # a 100 x 50 frame, 0.1 m a pixel: the upright line at x = 5 m
    upright, level = count_lines((w, h), scale)
    x = np.linspace(3.0, 7.0, 9)
    below = np.column_stack((x, np.full_like(x, h * scale + 0.8)))  # the feet 0.8 m below the frame
    assert [(e.line, e.direction) for e in crossing_events([below], [upright, level])] == [("upright", "-")]
    ending = LineConfig("upright", (5.0, 0.0), (5.0, h * scale))  # the line as it was: ending at the frame's edge
    assert crossing_events([below], [ending]) == []
    seen = np.column_stack((x, np.full_like(x, h * scale)))  # as the device has them: at the frame's edge
    assert [(e.line, e.direction) for e in crossing_events([seen], [upright, level])] == [("upright", "-")]


def test_counting_loso_gt_fed_run_is_a_perfect_tracker_on_the_same_ticks():
    """bench.counting_loso.gt_fed: the counter fed the gt's own points on a run's ticks (same frames, same tick
    times) counts the gt's crossing that the run's tracker missed (its track ended before the line)."""
    from bench.counting_loso import OLD, Run, count, errors, gt_fed

    line = LineConfig("ns", (0.0, -10.0), (0.0, 10.0))
    frames = np.arange(1, 31)
    x = np.linspace(-3.0, 3.0, len(frames))
    gt = np.array([(f, 7, 0, 0, 10, 30, 1, xi, 0.0, 0) for f, xi in zip(frames, x, strict=True)], np.float64)
    ticks = [(int(f), np.array([1]) if xi < 0 else np.zeros(0, np.int64),
              np.array([[xi, 0.0]]) if xi < 0 else np.zeros((0, 2)), f / 10.0) for f, xi in zip(frames, x, strict=True)]
    truth = [(16, "ns", "-", 7)]
    run = Run("toy", "10 fps", 10.0, [line], ticks[::3], truth)  # a tick every third frame, as a camera that skips
    assert errors(run, count(run, OLD.counter)).gross == 1  # the track ends at the line: the crossing is missed
    fed = gt_fed(run, gt)
    assert [(t[0], t[3]) for t in fed.ticks] == [(t[0], t[3]) for t in run.ticks]
    assert all(t[1].tolist() == [7] for t in fed.ticks)
    e = errors(fed, count(fed, OLD.counter))
    assert (e.net, e.gross) == (0, 0)
