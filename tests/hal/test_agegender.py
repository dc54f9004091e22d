"""The age and gender estimator at the hardware boundary: real BlazeFace and real ONNX inference on the
shared labeled faces, the eye alignment onto dlib's template, and no chip or tensor left holding a face."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.agegender import AgeGenderConfig, Estimate, OnnxAgeGender, ScriptedAgeGender
from hal.errors import DetectorError
from hal.facemarks import EYE_LEFT_OF_IMAGE, EYE_RIGHT_OF_IMAGE, FaceMarks, chip_transform, face_chip
from models import ModelError, resolve


@pytest.fixture(scope="module")
def estimator():
    try:
        resolve("dlib_age_v1")
        resolve("dlib_gender_v1")
    except ModelError as e:
        pytest.fail(f"the age/gender models are fetched by `python -m bench.data` (bash bench/go.sh does it): {e}")
    with OnnxAgeGender() as est:
        yield est


def _faces(shared_data, band, gender, n):
    import cv2

    with (shared_data / "faces" / "labels.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["age_band"] == band and r["gender"] == gender][:n]
    return [cv2.cvtColor(cv2.imread(str(shared_data / "faces" / r["file"])), cv2.COLOR_BGR2RGB) for r in rows]


def test_adults_gender_and_age_come_out_right_mostly(estimator, shared_data):
    right, ages = 0, []
    for gender in ("female", "male"):
        for img in _faces(shared_data, "28-37", gender, 10):
            e = estimator.estimate(img)
            assert e is not None and 0.0 <= e.p_male <= 1.0
            right += (e.p_male > 0.5) == (gender == "male")
            ages.append(e.age)
    assert right >= 16  # of 20 (the bench measures 98.6% on this band)
    assert 22 <= float(np.median(ages)) <= 45


def test_nothing_of_the_face_is_left_in_the_estimator_after_a_call(estimator, shared_data):
    img = _faces(shared_data, "18-27", "male", 1)[0]
    assert estimator.estimate(img) is not None
    for net in (estimator._age, estimator._gender):
        assert not net.tensor.any()
    assert not estimator._marker._tensor.any()
    it = estimator._marker._it
    assert not it.get_tensor(estimator._marker._in).any()


def test_a_blank_image_has_no_face_and_no_estimate(estimator):
    assert estimator.estimate(np.zeros((120, 100, 3), np.uint8)) is None
    with pytest.raises(DetectorError, match="uint8"):
        estimator.estimate(np.zeros((10, 10), np.float32))


@settings(max_examples=40, deadline=None)
@given(angle=st.floats(-0.6, 0.6), dist=st.floats(8, 300), x=st.floats(0, 600), y=st.floats(0, 400),
       size=st.sampled_from([32, 64]))
def test_the_eyes_land_on_dlibs_template_eyes(angle, dist, x, y, size):
    left = np.array([x, y])
    right = left + dist * np.array([np.cos(angle), np.sin(angle)])
    kps = np.zeros((6, 2))
    kps[0], kps[1] = right, left  # MediaPipe's order need not follow the image's left and right
    m = chip_transform(FaceMarks((0, 0, 1, 1), 1.0, kps), size, 0.2)
    for src, dst in ((left, EYE_LEFT_OF_IMAGE), (right, EYE_RIGHT_OF_IMAGE)):
        want = (0.2 + dst) / 1.4 * size
        assert np.allclose(m[:, :2] @ src + m[:, 2], want, atol=1e-6)


def test_a_chip_is_the_face_and_the_warp_keeps_no_copy():
    img = np.zeros((400, 400, 3), np.uint8)
    img[100:300, 100:300] = 200  # a bright square where the face is
    kps = np.zeros((6, 2))
    kps[0], kps[1] = (250, 170), (150, 170)
    chip = face_chip(img, FaceMarks((100, 100, 300, 300), 1.0, kps), 64)
    assert chip.shape == (64, 64, 3) and chip.dtype == np.uint8
    assert chip[32, 32].min() == 200 and chip[0, 0].max() == 0  # centre on the face; corners outside it


def test_the_fake_answers_its_script_and_fails_when_told():
    fake = ScriptedAgeGender([Estimate(30.0, 0.9, 1.0), None], fail_every=3)
    img = np.zeros((8, 8, 3), np.uint8)
    assert fake.estimate(img) == Estimate(30.0, 0.9, 1.0)
    assert fake.estimate(img) is None
    with pytest.raises(DetectorError):
        fake.estimate(img)


def test_config_is_checked():
    with pytest.raises(ValueError, match="threads"):
        AgeGenderConfig(threads=0).validate()
