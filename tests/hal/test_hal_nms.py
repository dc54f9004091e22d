"""Merging tiled detections: duplicates, and the pieces of a person cut by a tile edge."""

from __future__ import annotations

import numpy as np

from hal.nms import merge_tiles, nms
from hal.tflite import tile_grid

W, H = 768, 576  # vtest.avi


def px(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64) / np.array([W, H, W, H])


def test_legs_cut_by_a_tile_edge_are_not_a_second_person():
    """vtest.avi frame 728 on 3x2 tiles: the lower right tile starts at y = 265 and sees only the legs of a
    person the upper right tile sees whole; plain NMS keeps the legs as a second person with the same feet."""
    grid = tile_grid(3, 2, 0.15)
    boxes = px((502, 200, 538, 298), (537, 198, 567, 281), (499, 266, 560, 305))
    scores = np.array([0.77, 0.74, 0.52], np.float32)
    tile_of = np.array([2, 2, 5])
    assert len(nms(boxes, scores)) == 3
    assert sorted(merge_tiles(boxes, scores, tile_of, grid).tolist()) == [0, 1]
    assert len(merge_tiles(boxes, scores, tile_of, grid, fragments=False)) == 3


def test_a_person_seen_whole_only_in_the_lower_tile_keeps_that_box():
    """The upper tile's piece (cut at its bottom edge, lying inside the lower tile) goes, not the whole box."""
    grid = tile_grid(2, 2, 0.15)  # rows: y 0-311 and 265-576
    boxes = px((100, 270, 130, 311), (98, 270, 131, 360))
    scores = np.array([0.8, 0.6], np.float32)  # the piece even scores better
    assert merge_tiles(boxes, scores, np.array([0, 2]), grid).tolist() == [1]


def test_a_cut_box_stays_when_the_tile_that_holds_it_found_nothing_there():
    grid = tile_grid(2, 2, 0.15)
    boxes = px((100, 270, 130, 311), (400, 100, 430, 180))
    keep = merge_tiles(boxes, np.array([0.8, 0.6], np.float32), np.array([0, 2]), grid)
    assert sorted(keep.tolist()) == [0, 1]


def test_a_cut_box_stays_when_what_the_other_tile_found_is_not_lined_up_with_it():
    """A big box in the neighbour tile overlapping a small cut one is not the same thing seen whole."""
    grid = tile_grid(2, 2, 0.15)
    boxes = px((100, 270, 130, 311), (115, 268, 300, 560))  # covers half of the cut box
    keep = merge_tiles(boxes, np.array([0.8, 0.3], np.float32), np.array([0, 2]), grid)
    assert sorted(keep.tolist()) == [0, 1]

