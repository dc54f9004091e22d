"""De-identification on the shared photos: after blurring, no face anywhere and no person inside a blurred
box, with the real BlazeFace and SSD person models (the person detector is the project's when present)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.deid import PERSON_THRESHOLD, detect_persons, inside_regions, person_detector, person_finder
from firmware.config.samples import SamplesConfig
from firmware.samples.taking import deidentify_regions, encode_sample, fit_main
from hal.faces import FaceConfig, FaceDetector
from hal.frame import Frame

PHOTOS = ("kite_and_cold.jpg", "grace_hopper.bmp", "squat.bmp", "face.jpg")


@pytest.fixture(scope="module")
def detectors():
    return person_detector(), FaceDetector(FaceConfig()), (
        FaceDetector(FaceConfig(variant="full_range", tiles=(1, 2, 3, 4))),
        FaceDetector(FaceConfig(variant="short_range", tiles=(1, 2, 3))),
    )


@pytest.fixture(scope="module")
def results(shared_data: Path, detectors):
    persons, faces, checkers = detectors
    out = {}
    for name in PHOTOS:
        rgb = fit_main(cv2.cvtColor(cv2.imread(str(shared_data / "images" / name)), cv2.COLOR_BGR2RGB))
        before = detect_persons(persons, rgb)
        original = rgb.copy()
        blurred, regions = deidentify_regions(rgb, before.boxes, faces, person_finder=person_finder(persons))
        assert np.array_equal(rgb, original)  # the input is not modified
        jpeg = encode_sample(blurred, 50)
        after = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out[name] = dict(rgb=rgb, before=before, regions=regions, after=after, jpeg=jpeg,
                         faces_before=[len(c.detect(rgb)) for c in checkers],
                         faces_after=[len(c.detect(after)) for c in checkers],
                         persons_after=persons.detect(Frame(after, None, 0, 0, (640, 480))).persons(PERSON_THRESHOLD))
    return out


@pytest.mark.parametrize("name", PHOTOS)
def test_photo_had_people_to_hide(results, name: str) -> None:
    r = results[name]
    assert len(r["before"]) >= 1
    if name != "kite_and_cold.jpg":  # the kite beach people are too small for a face detector
        assert max(r["faces_before"]) >= 1


@pytest.mark.parametrize("name", PHOTOS)
def test_no_face_anywhere_after_deidentification(results, name: str) -> None:
    assert results[name]["faces_after"] == [0, 0]


@pytest.mark.parametrize("name", PHOTOS)
def test_no_person_above_threshold_inside_a_blurred_box(results, name: str) -> None:
    r = results[name]
    inside = inside_regions(r["persons_after"].to_pixels(640, 480), r["regions"])
    assert not inside.any(), r["persons_after"].scores[inside]


@pytest.mark.parametrize("name", PHOTOS)
def test_no_person_above_threshold_anywhere_in_the_sample(results, name: str) -> None:
    """Stronger than the rule (inside a blurred box): the re-check on the encoded image also catches the
    people the first detection missed (the SSD gives at most 10 boxes a call, so a crowd hides some until
    its neighbours are blurred)."""
    assert len(results[name]["persons_after"]) == 0, results[name]["persons_after"].scores


@pytest.mark.parametrize("name", PHOTOS)
def test_sample_is_640x480_jpeg_and_the_blurred_region_lost_its_detail(results, name: str) -> None:
    r = results[name]
    img = cv2.imdecode(np.frombuffer(r["jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (480, 640, 3) and r["jpeg"][:2] == b"\xff\xd8"
    x0, y0, x1, y1 = max(r["regions"], key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    detail = lambda im: cv2.Laplacian(cv2.cvtColor(im[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert detail(r["after"]) < 0.1 * detail(r["rgb"])


def test_face_outside_any_person_box_is_blurred(shared_data: Path, detectors) -> None:
    """No person boxes at all: the faces are still found and blurred. Without the verify pass, a blur edge
    may look face-like to the detector (seen once at 0.53 above a blurred head), so here we check that no
    face is found where the real ones were; the default pass re-blurs such artefacts too (tests above)."""
    _, faces, (checker, _) = detectors
    rgb = fit_main(cv2.cvtColor(cv2.imread(str(shared_data / "images" / "face.jpg")), cv2.COLOR_BGR2RGB))
    original = checker.detect(rgb).to_pixels(640, 480)
    assert len(original) >= 2
    blurred, regions = deidentify_regions(rgb, np.zeros((0, 4)), faces, SamplesConfig(verify_passes=0))
    assert len(regions) >= 2
    after = checker.detect(blurred).to_pixels(640, 480)
    assert not inside_regions(original, [tuple(b) for b in after], frac=0.3).any()
