"""De-identification on the shared photos: detections before and after, and before/after PNGs.

    python -m bench.deid [--out out/deid] [--data DIR] [--pets-every N] [--photos-only]

For each photo (cut to 4:3 and sized to the 640x480 main stream): persons found by the person detector
(score >= its threshold) and faces found by BlazeFace, then `firmware.samples.taking.deidentify`, then both
detectors again. Prints the counts and, after blurring, the best person score inside any blurred region
and the number of faces anywhere. Saves `<name>_before.png` and `<name>_after.png` (the after image is the
JPEG-encoded sample, decoded) into the output folder.

Then the sample taker's whole path on footage the blur was not tuned on: every frame of every MOT17 frame
folder, the shared photos, and every N-th frame of PETS09 (`video/vtest.avi`). Each frame is fitted whole
into 640x480 (letterboxed, as the camera's main stream), cleaned by `clean_sample` (blur, re-check with the
person detector and BlazeFace, blur harder, or drop), and every sample that would be sent is checked again
as sent: by the same gate (`firmware.samples.gate`: the person model on square grids 1x1..6x6 from score 0.2,
both BlazeFace variants on 1..6 tile grids from 0.4; must find 0) and by a check at the models' own
thresholds, in part on tilings the gate does not run: the shared person detector at 0.3 on the loop's 2x2
tiling (overlap 0.15), on 3x2 and 2x3 tilings and on the 5x5 and 6x6 grids (which the gate also searches, at
0.2), and both BlazeFace variants on 1..6 tile grids at 0.5. No setting of the gate was chosen on these
frames (its scores were fixed below the check's, and its grids to every scale the check looks at, before
measuring). It is not a different model: only the SSD and BlazeFace are in the shared data.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.lib.data import clean_exit
from bench.lib.images import decode_rgb, read_rgb
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


def run_photo(path: Path, persons, gate, verify_faces) -> dict:  # noqa: ANN001
    """De-identifies one photo; returns the figures and the before/after images."""

    from firmware.samples.taking import deidentify_regions, encode_sample, fit_main

    rgb = fit_main(read_rgb(path))
    before_p = detect_persons(persons, rgb)
    before_f = verify_faces.detect(rgb)
    blurred, regions = deidentify_regions(rgb, before_p.boxes, gate[0], person_finder=gate[1])
    jpeg = encode_sample(blurred)
    after = decode_rgb(jpeg, "sample")
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


def footage(data: Path, pets_every: int) -> list[tuple[str, list[Path] | tuple[Path, int]]]:
    """(source name, image files) per MOT17 frame folder and the photos; (name, (video, every)) for PETS09."""
    mot = sorted(p for p in (data / "mot" / "MOT17-frames").iterdir() if (p / "img1").is_dir())
    out: list[tuple[str, list[Path] | tuple[Path, int]]] = [
        (p.name, sorted((p / "img1").glob("*.jpg"))) for p in mot]
    out.append(("photos", [data / "images" / n for n in PHOTOS]))
    out.append((f"PETS09 1/{pets_every}", (data / "video" / "vtest.avi", pets_every)))
    return out


def frames_of(src: list[Path] | tuple[Path, int]):  # noqa: ANN201 - yields RGB frames
    import cv2

    if isinstance(src, list):
        for path in src:
            yield read_rgb(path)
        return
    cap = cv2.VideoCapture(str(src[0]))
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % src[1] == 0:
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()


def independent_check(persons_model: str = "ssd_mobilenet_v1_coco_quant"):  # noqa: ANN201
    """(person finder, face finder) of the independent check: tilings and thresholds the gate does not use."""
    from firmware.config import DetectorConfig
    from firmware.samples.gate import AllFaces
    from hal.faces import FaceConfig, FaceDetector
    from hal.tflite import TfliteDetector, tile_grid

    d = DetectorConfig()
    det = TfliteDetector(persons_model, score_threshold=PERSON_THRESHOLD, num_threads=d.threads)
    tilings = [tile_grid(*d.tiles, d.overlap), tile_grid(3, 2, d.overlap), tile_grid(2, 3, d.overlap),
               tile_grid(5, 5, 0.3), tile_grid(6, 6, 0.3)]

    def persons(rgb: np.ndarray) -> int:
        frame = Frame(rgb, None, 0, 0, (rgb.shape[1], rgb.shape[0]))
        return sum(len(det.detect(frame, g).persons(PERSON_THRESHOLD)) for g in tilings)

    tiles = (1, 2, 3, 4, 5, 6)
    faces = AllFaces([FaceDetector(FaceConfig(variant=v, tiles=tiles, score_threshold=0.5))
                      for v in ("full_range", "short_range")])
    return persons, faces


def sample_path(rgb: np.ndarray, persons, faces, gate, checkers) -> dict:  # noqa: ANN001
    """One frame through the taker's path: detect, letterbox, clean or drop, and the checks on what is sent."""

    from firmware.samples.taking import clean_sample, encode_sample, letterbox

    boxes = detect_persons(persons, rgb).boxes
    fitted, mapped = letterbox(rgb, boxes)
    gate_faces, gate_persons = gate
    cleaned = clean_sample(fitted, mapped, gate_faces, gate_persons)
    r = {"persons_before": len(boxes), "dropped": cleaned.image is None, "harder": cleaned.harder > 0}
    if cleaned.image is None:
        return r
    jpeg = encode_sample(cleaned.image)
    sent = decode_rgb(jpeg, "sample")
    person_check, face_check = checkers
    r.update(gate_persons=len(gate_persons(sent)), gate_faces=len(gate_faces.detect(sent)),
             check_persons=person_check(sent), check_faces=len(face_check.detect(sent)))
    return r


def run_footage(data: Path, pets_every: int, persons, gate) -> int:  # noqa: ANN001
    """Prints the footage table; returns how many sent samples any check found a person or face on."""
    checkers = independent_check()
    print(f"\n{'source':18s} {'frames':>6s} {'persons':>7s} {'harder':>6s} {'dropped':>7s} | on sent samples: "
          f"{'gate persons':>12s} {'gate faces':>10s} | {'check persons':>13s} {'check faces':>11s}")
    bad = 0
    for name, src in footage(data, pets_every):
        rows = []
        for i, rgb in enumerate(frames_of(src)):
            r = sample_path(rgb, persons, None, gate, checkers)
            rows.append(r)
            if not r["dropped"] and (r["check_persons"] or r["check_faces"] or r["gate_persons"] or r["gate_faces"]):
                print(f"  flagged: {name} frame #{i}: check {r['check_persons']} person(s), {r['check_faces']} "
                      f"face(s); gate {r['gate_persons']}, {r['gate_faces']}")
        sent = [r for r in rows if not r["dropped"]]
        tot = {k: sum(r[k] for r in sent) for k in ("gate_persons", "gate_faces", "check_persons", "check_faces")}
        bad += sum(1 for r in sent if r["gate_persons"] or r["gate_faces"] or r["check_persons"] or r["check_faces"])
        print(f"{name:18s} {len(rows):6d} {sum(r['persons_before'] for r in rows):7d} "
              f"{sum(r['harder'] for r in rows):6d} {len(rows) - len(sent):7d} | {'':16s} {tot['gate_persons']:12d} "
              f"{tot['gate_faces']:10d} | {tot['check_persons']:13d} {tot['check_faces']:11d}")
    print("persons: found before blurring (loop detector, whole frame); harder: samples the last stage re-blurred; "
          "dropped: not clean after it, never sent; gate = the taker's own check (firmware.samples.gate); "
          "check = the independent check (other tilings, thresholds 0.3 / 0.5)")
    return bad


@clean_exit
def main(argv: Sequence[str] | None = None) -> int:
    import cv2

    from hal.faces import FaceConfig, FaceDetector

    ap = argparse.ArgumentParser(prog="umbra bench deid", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/deid"))
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--pets-every", type=int, default=10, help="every N-th PETS09 frame (default 10)")
    ap.add_argument("--photos-only", action="store_true", help="only the per-photo table")
    args = ap.parse_args(argv)
    images = (args.data or data_dir()) / "images"
    args.out.mkdir(parents=True, exist_ok=True)
    from firmware.config import SamplesConfig
    from firmware.samples.gate import sample_faces, sample_persons

    persons = person_detector()
    gate = sample_faces(SamplesConfig()), sample_persons(SamplesConfig(), "ssd_mobilenet_v1_coco_quant")
    # an independent check: the other BlazeFace variant, more tiles, lower threshold
    checker = FaceDetector(FaceConfig(variant="full_range", tiles=(1, 2, 3, 4, 5, 6), score_threshold=0.5))
    print(f"{'photo':20s} {'persons':>7s} {'faces':>5s} {'regions':>7s} | after: {'persons in blur':>15s} "
          f"{'best score':>10s} {'outside':>7s} {'faces':>5s} {'jpeg':>7s}")
    for name in PHOTOS:
        r = run_photo(images / name, persons, gate, checker)
        print(f"{r['name']:20s} {r['persons_before']:7d} {r['faces_before']:5d} {r['regions']:7d} | "
              f"{'':7s}{r['persons_after_in_blur']:15d} {r['best_person_score_in_blur']:10.2f} "
              f"{r['persons_after_outside']:7d} {r['faces_after']:5d} {r['jpeg_bytes']:7d}")
        stem = Path(name).stem
        cv2.imwrite(str(args.out / f"{stem}_before.png"), cv2.cvtColor(r["before"], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(args.out / f"{stem}_after.png"), cv2.cvtColor(r["after"], cv2.COLOR_RGB2BGR))
    print(f"person threshold {PERSON_THRESHOLD}; pictures in {args.out}/")
    if args.photos_only:
        return 0
    bad = run_footage(args.data or data_dir(), max(1, args.pets_every), persons, gate)
    print(f"sent samples with a person or face found on them: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
