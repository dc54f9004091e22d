"""De-identification on the shared photos: detections before and after, and before/after PNGs.

    python -m bench.deid [--out out/deid] [--data DIR]

For each photo (cut to 4:3 and sized to the 640x480 main stream): persons found by the person detector
(score >= its threshold) and faces found by BlazeFace, then `firmware.samples.taking.deidentify`, then both
detectors again. Prints the counts and, after blurring, the best person score inside any blurred region
and the number of faces anywhere. Saves `<name>_before.png` and `<name>_after.png` (the after image is the
JPEG-encoded sample, decoded) into the output folder.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hal.detections import Detections
from hal.frame import Frame

PHOTOS = ("kite_and_cold.jpg", "grace_hopper.bmp", "squat.bmp", "face.jpg")
PERSON_THRESHOLD = 0.3  # DetectorConfig.score_threshold default


def data_dir() -> Path:
    env = os.environ.get("UMBRA_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def person_detector():  # noqa: ANN201 - a hal Detector
    """The project's person detector as the loop runs it by default (`[detector]`: tiles, threshold)."""
    from firmware.config import DetectorConfig
    from hal.tflite import TfliteDetector

    d = DetectorConfig()
    return TfliteDetector(d.model, tiles=d.tiles, overlap=d.overlap, score_threshold=d.score_threshold,
                          num_threads=d.threads)


def person_finder(detector):  # noqa: ANN001, ANN201 - a hal Detector -> firmware.samples.taking.PersonFinder
    """The de-identification's re-check: the detector's persons above PERSON_THRESHOLD, normalized."""
    return lambda rgb: detect_persons(detector, rgb).boxes


def detect_persons(detector, rgb: np.ndarray, threshold: float = PERSON_THRESHOLD) -> Detections:  # noqa: ANN001
    frame = Frame(rgb, None, 0, 0, (rgb.shape[1], rgb.shape[0]))
    return detector.detect(frame).persons(threshold)


def inside_regions(boxes_px: np.ndarray, regions: Sequence[tuple[int, int, int, int]], frac: float = 0.5) -> np.ndarray:
    """Which boxes lie at least `frac` of their area inside one blurred region."""
    out = np.zeros(len(boxes_px), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes_px):
        area = max((x1 - x0) * (y1 - y0), 1e-9)
        for rx0, ry0, rx1, ry1 in regions:
            iw = max(0.0, min(x1, rx1) - max(x0, rx0))
            ih = max(0.0, min(y1, ry1) - max(y0, ry0))
            if iw * ih / area >= frac:
                out[i] = True
                break
    return out


def run_photo(path: Path, persons, faces, verify_faces) -> dict:  # noqa: ANN001
    """De-identifies one photo; returns the figures and the before/after images."""
    import cv2

    from firmware.samples.taking import deidentify_regions, encode_sample, fit_main

    rgb = fit_main(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    before_p = detect_persons(persons, rgb)
    before_f = verify_faces.detect(rgb)
    blurred, regions = deidentify_regions(rgb, before_p.boxes, faces, person_finder=person_finder(persons))
    jpeg = encode_sample(blurred)
    after = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    all_after = persons.detect(Frame(after, None, 0, 0, (640, 480))).persons(0.0)
    in_blur = inside_regions(all_after.to_pixels(640, 480), regions)
    after_f = verify_faces.detect(after)
    return {
        "name": path.name, "persons_before": len(before_p), "faces_before": len(before_f),
        "regions": len(regions), "jpeg_bytes": len(jpeg),
        "persons_after_in_blur": int(((all_after.scores >= PERSON_THRESHOLD) & in_blur).sum()),
        "best_person_score_in_blur": float(all_after.scores[in_blur].max()) if in_blur.any() else 0.0,
        "persons_after_outside": int(((all_after.scores >= PERSON_THRESHOLD) & ~in_blur).sum()),
        "faces_after": len(after_f), "before": rgb, "after": after,
    }


def main(argv: Sequence[str] | None = None) -> int:
    import cv2

    from hal.faces import FaceConfig, FaceDetector

    ap = argparse.ArgumentParser(prog="umbra bench deid", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/deid"))
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args(argv)
    images = (args.data or data_dir()) / "images"
    args.out.mkdir(parents=True, exist_ok=True)
    persons = person_detector()
    faces = FaceDetector(FaceConfig())
    # an independent check: the other BlazeFace variant, more tiles, lower threshold
    checker = FaceDetector(FaceConfig(variant="full_range", tiles=(1, 2, 3, 4, 5, 6), score_threshold=0.5))
    print(f"{'photo':20s} {'persons':>7s} {'faces':>5s} {'regions':>7s} | after: {'persons in blur':>15s} "
          f"{'best score':>10s} {'outside':>7s} {'faces':>5s} {'jpeg':>7s}")
    for name in PHOTOS:
        r = run_photo(images / name, persons, faces, checker)
        print(f"{r['name']:20s} {r['persons_before']:7d} {r['faces_before']:5d} {r['regions']:7d} | "
              f"{'':7s}{r['persons_after_in_blur']:15d} {r['best_person_score_in_blur']:10.2f} "
              f"{r['persons_after_outside']:7d} {r['faces_after']:5d} {r['jpeg_bytes']:7d}")
        stem = Path(name).stem
        cv2.imwrite(str(args.out / f"{stem}_before.png"), cv2.cvtColor(r["before"], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(args.out / f"{stem}_after.png"), cv2.cvtColor(r["after"], cv2.COLOR_RGB2BGR))
    print(f"person threshold {PERSON_THRESHOLD}; pictures in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
