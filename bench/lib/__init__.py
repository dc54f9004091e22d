"""The small library the benchmarks share (data, cached detections, replay, crossings, scenes, scoring);
no benchmark imports another."""
