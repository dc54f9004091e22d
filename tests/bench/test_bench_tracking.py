"""bench.tracking's slower-detector view (`--every K`): frames 1, 1+K, ... renumbered, the rate divided."""

from __future__ import annotations

import numpy as np

from bench.lib.sequences import every


def test_every_second_frame_is_the_sequence_a_detector_half_as_fast_sees():
    dets = [np.full((1, 5), float(f)) for f in range(1, 8)]  # frame f's detection holds f
    gt = np.array([[f, 1, f, 0, 10, 20] for f in range(1, 8)], float)
    d, g, fps = every(dets, gt, 14.0, 2)
    assert [int(x[0, 0]) for x in d] == [1, 3, 5, 7] and fps == 7.0
    assert g[:, 0].tolist() == [1, 2, 3, 4] and g[:, 2].tolist() == [1, 3, 5, 7]  # gt of frames 1, 3, 5, 7
