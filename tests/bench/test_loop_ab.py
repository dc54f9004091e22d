"""bench.loop_ab loads another revision's firmware and hal beside this tree's: its own module objects, from its
own files, and this tree's modules stay the ones imported everywhere else."""

from __future__ import annotations

import sys

from bench.loop_ab import load_revision


def test_another_revision_loads_beside_this_tree_and_leaves_it_in_place(tmp_path):
    import firmware.cli.assemble as ours
    import hal.clock as our_clock

    asm, clock, video = load_revision("HEAD", tmp_path)
    assert asm is not ours and clock is not our_clock
    assert asm.__file__.startswith(str(tmp_path)) and video.__file__.startswith(str(tmp_path))
    assert sys.modules["firmware.cli.assemble"] is ours and sys.modules["hal.clock"] is our_clock
    assert asm.SensorLoop is not ours.SensorLoop  # its loop is its own code
    assert clock.FakeClock().monotonic_ns() == our_clock.FakeClock().monotonic_ns()
