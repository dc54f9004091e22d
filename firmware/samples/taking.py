"""De-identified sample images: one per hour at a uniformly random instant (more only with a customer's
signed authorization), every person and every face blurred before encoding, 640x480 JPEG quality 50.

The pixels of a sample exist only in memory: `deidentify()` returns a new blurred array, `encode_sample()`
turns it into JPEG bytes, and the record goes to the outbox (the integrator's `put`); nothing here writes
pixels to disk. `purge_expired()` removes samples older than the retention (30 days) from the outbox.

Blur: each region (person box plus a margin, face box plus a margin) is averaged, together with one block of
its surroundings, into blocks of a quarter of the region's longer side (at least 8 px), Gaussian-blurred at
that scale (sigma one block) and smoothly upsampled: the region keeps about one colour per block (a 4 x 4
grid for a whole person), so neither the edges nor the silhouette of a face or body are left.
`deidentify()` then runs the face detector again on the result and blurs anything it still finds (up to
`verify_passes` times); the bench and tests show that on the shared photos neither faces nor persons are
re-detected inside the blurred regions.

Pure with respect to time and randomness: the scheduler takes the wall time and an RNG as arguments.
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from firmware import schemas
from firmware.config.samples import SamplesConfig
from firmware.errors import AuthorizationRefused, SampleError
from firmware.privacy.audit import AuditSink, audited
from firmware.samples.authorization import Authorizer, Grant

log = logging.getLogger(__name__)

SCHEMA = "umbra.sample/1"
HOUR_S = 3600
MAX_JPEG_B64 = 400_000  # a 640x480 q50 JPEG is 20 to 60 kB; anything larger is not a sample

RECORD_SCHEMA = schemas.schema("umbra.sample/1")


PersonFinder = Callable[[np.ndarray], np.ndarray]  # HxWx3 RGB -> (N, 4) normalized boxes of persons found


class FaceFinder(Protocol):
    """`hal.faces.FaceDetector` fits: faces in an RGB image, boxes normalized xyxy."""

    def detect(self, rgb: np.ndarray) -> Any: ...


class SampleStore(Protocol):
    """What the retention and erasure rules need from the outbox."""

    def purge_samples(self, before: float) -> int:
        """Deletes every stored (not yet uploaded) sample taken before `before`; returns how many."""
        ...



# ---------------------------------------------------------------- scheduling

@dataclass(frozen=True, slots=True)
class SampleSlot:
    """A sampling instant that came due; `grant` is set when it exists only thanks to an authorization."""

    instant: float
    grant: Grant | None

class SampleScheduler:
    """Picks the sampling instants. For an hour starting at H with rate r, the hour is cut into r equal slots
    and one instant is drawn uniformly in each slot (r = 1: a uniform instant in the hour). The rate of an
    hour is fixed at its start: the configured rate, or the highest rate among the verified grants valid
    then (a grant accepted or starting mid-hour counts from the next hour). If the hour's grant expires or is
    withdrawn within the hour, instants that exceed the default rate are dropped. A missed instant (the loop
    was busy) is taken late, once; missed instants never pile up."""

    def __init__(self, config: SamplesConfig, rng: random.Random, authorizer: Authorizer | None = None) -> None:
        config.validate()
        self.config = config
        self._rng = rng
        self._authorizer = authorizer
        self.grants: tuple[Grant, ...] = ()
        self._hour: int | None = None
        self._pending: list[float] = []
        self._taken_this_hour = 0
        self._hour_grant: Grant | None = None

    @property
    def grant(self) -> Grant | None:
        """The grant the current hour runs under (None: the default rate)."""
        return self._hour_grant

    def authorize(self, token: str, now: float) -> Grant:
        """Raises the rate with a customer token (verified and audited by the Authorizer). Raises
        AuthorizationRefused; without an Authorizer every token is refused."""
        if self._authorizer is None:
            raise AuthorizationRefused("no-authorizer", "this device accepts no sampling authorizations")
        grant = self._authorizer.verify(token, now)
        self.set_grants([*(g for g in self.grants if g.token_id != grant.token_id), grant])
        return grant

    def set_grants(self, grants: Sequence[Grant]) -> None:
        """The verified grants in force (the device's stored tokens, re-verified). A grant the current hour
        runs under that is no longer among them stops at once: the rest of the hour is at the default rate."""
        self.grants = tuple(grants)
        if self._hour_grant is not None and self._hour_grant not in self.grants:
            self._hour_grant = None

    def instants_for_hour(self, hour_start: float, rate: int) -> list[float]:
        slot = HOUR_S / rate if rate else HOUR_S
        return [hour_start + i * slot + self._rng.random() * slot for i in range(rate)]

    def due(self, now: float) -> SampleSlot | None:
        """The slot to take a sample for now (with the grant it is taken under, if above the default
        rate), or None. Each slot returned is consumed."""
        hour = int(now // HOUR_S)
        if hour != self._hour:
            self._plan(hour)
        ready = [t for t in self._pending if t <= now]
        if not ready:
            return None
        self._pending = [t for t in self._pending if t > now]
        over_default = self._taken_this_hour >= self.config.rate_per_hour
        if over_default and (self._hour_grant is None or not self._hour_grant.valid_at(now)):
            self._pending = []  # the grant lapsed: the rest of this hour runs at the default rate (used up)
            return None
        self._taken_this_hour += 1
        if over_default and self._hour_grant is not None:
            if self._authorizer is not None:
                self._authorizer.record_use(self._hour_grant, now)
            return SampleSlot(ready[0], self._hour_grant)
        return SampleSlot(ready[0], None)

    def _plan(self, hour: int) -> None:
        start = hour * HOUR_S
        valid = [g for g in self.grants if g.valid_at(start) and g.rate_per_hour > self.config.rate_per_hour]
        grant = max(valid, key=lambda g: (g.rate_per_hour, g.expires)) if valid else None
        rate = grant.rate_per_hour if grant else self.config.rate_per_hour
        self._hour, self._hour_grant, self._taken_this_hour = hour, grant, 0
        self._pending = self.instants_for_hour(start, rate) if self.config.enabled else []


# ---------------------------------------------------------------- de-identification

def _expand(box: np.ndarray, margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my))),
            min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my))))


def blur_region(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, min_block_px: int = 8) -> None:
    """Averages img[y0:y1, x0:x1] into blocks of a quarter of its longer side (at least `min_block_px`),
    blurs at that scale and upsamples smoothly, in place. The blocks are taken over the region plus one block
    of surroundings, so a small person's colours melt into the background instead of leaving a blob."""
    import cv2

    h, w = img.shape[:2]
    rw, rh = x1 - x0, y1 - y0
    if rw < 2 or rh < 2:
        return
    block = max(min_block_px, max(rw, rh) // 4)
    cx0, cy0 = max(0, x0 - block), max(0, y0 - block)
    cx1, cy1 = min(w, x1 + block), min(h, y1 + block)
    context = img[cy0:cy1, cx0:cx1]
    cw, ch = cx1 - cx0, cy1 - cy0
    area = cv2.resize(context, (max(1, round(cw / block)), max(1, round(ch / block))), interpolation=cv2.INTER_AREA)
    # blur at block scale (sigma of one block), then smooth upsampling: the region keeps at most one colour
    # per block of information, and costs the same whatever its size
    small = cv2.GaussianBlur(area, (0, 0), sigmaX=1.0, borderType=cv2.BORDER_REFLECT)
    smooth = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
    img[y0:y1, x0:x1] = smooth[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    for buf in (area, small, smooth):  # the region's colours, before and after the blur
        buf.fill(0)


def deidentify(main_rgb: np.ndarray, person_boxes: np.ndarray, face_detector: FaceFinder | None,
               config: SamplesConfig | None = None) -> np.ndarray:
    """A blurred copy of `main_rgb`: see `deidentify_regions`."""
    return deidentify_regions(main_rgb, person_boxes, face_detector, config)[0]


def deidentify_regions(main_rgb: np.ndarray, person_boxes: np.ndarray, face_detector: FaceFinder | None,
                       config: SamplesConfig | None = None, person_finder: PersonFinder | None = None,
                       held: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A blurred copy of `main_rgb` (HxWx3 uint8) and the pixel regions blurred. `person_boxes`: (N, 4)
    normalized xyxy (the loop's person detections, which are normalized to the frame). Every person box
    plus margin and every face the face detector finds plus margin is blurred. Then, up to `verify_passes`
    times, the face detector and `person_finder` (the person detector on the image, normalized boxes of the
    persons above its threshold) run again on the result: a face still found is blurred again, and a person
    still found is blurred again at twice the block size (a crowd's blurred blobs can still read as a person,
    and a person the first detection missed shows once its neighbours are blurred). The input is not
    modified. The blurred copy is appended to `held` (the caller zeroes it whatever happens); the images
    checked on the way (as sent) are zeroed here."""
    cfg = config or SamplesConfig()
    if main_rgb.ndim != 3 or main_rgb.shape[2] != 3 or main_rgb.dtype != np.uint8:
        raise SampleError(f"a sample is HxWx3 uint8, got {main_rgb.shape} {main_rgb.dtype}")
    h, w = main_rgb.shape[:2]
    scale = np.array([w, h, w, h], dtype=np.float64)
    regions = [_expand(b, cfg.person_margin, w, h) for b in np.asarray(person_boxes, np.float64).reshape(-1, 4) * scale]
    if face_detector is not None:
        faces = face_detector.detect(main_rgb)
        regions += [_expand(b, cfg.face_margin, w, h) for b in np.asarray(faces.boxes, np.float64) * scale]
    out = main_rgb.copy()
    if held is not None:
        held.append(out)
    for r in regions:
        blur_region(out, *r, min_block_px=cfg.min_block_px)
    for _ in range(cfg.verify_passes):
        more = _reblur(out, face_detector, person_finder, cfg)
        if not more:
            break
        log.info("sample: %d face(s) or person(s) still found after blurring; blurring again", len(more))
        regions += more
    return out, regions


def _reblur(out: np.ndarray, face_detector: FaceFinder | None, person_finder: PersonFinder | None,
            cfg: SamplesConfig) -> list[tuple[int, int, int, int]]:
    """One verify pass of `deidentify_regions` on `out`, in place: the regions blurred again."""
    h, w = out.shape[:2]
    scale = np.array([w, h, w, h], dtype=np.float64)
    more: list[tuple[int, int, int, int]] = []
    seen = _as_sent(out, cfg.jpeg_quality)  # check what will leave: JPEG blocks can redraw an edge
    try:
        if face_detector is not None:
            faces = face_detector.detect(seen)
            more += [_expand(b, cfg.face_margin, w, h) for b in np.asarray(faces.boxes, np.float64) * scale]
            for r in more:
                blur_region(out, *r, min_block_px=cfg.min_block_px)
        if person_finder is not None:
            people = [_expand(b, cfg.person_margin, w, h)
                      for b in np.asarray(person_finder(seen), np.float64).reshape(-1, 4) * scale]
            for r in people:
                blur_region(out, *r, min_block_px=max(cfg.min_block_px, max(r[2] - r[0], r[3] - r[1]) // 2))
            more += people
    finally:
        seen.fill(0)
    return more


def _as_sent(rgb: np.ndarray, quality: int) -> np.ndarray:
    """The image as the cloud will see it: through the sample's JPEG encoding and back."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(encode_sample(rgb, quality), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("the sample's own JPEG does not decode")
    rgb_seen = np.ascontiguousarray(bgr[:, :, ::-1])
    bgr.fill(0)
    return rgb_seen


@dataclass(frozen=True, slots=True)
class Cleaned:
    """The outcome of `clean_sample`: `image` is None when the sample could not be cleaned (`left` faces or
    persons were still found on the image as it would be sent, after every pass and the harder blur)."""

    image: np.ndarray | None
    regions: list[tuple[int, int, int, int]]
    harder: int  # regions blurred by the last, harder stage
    left: int


def still_found(rgb: np.ndarray, face_detector: FaceFinder | None, person_finder: PersonFinder | None,
                config: SamplesConfig) -> list[tuple[int, int, int, int]]:
    """Pixel regions (with margins) of the faces and persons the detectors find on `rgb` as it would be sent."""
    h, w = rgb.shape[:2]
    scale = np.array([w, h, w, h], dtype=np.float64)
    seen = _as_sent(rgb, config.jpeg_quality)
    found: list[tuple[int, int, int, int]] = []
    try:
        if face_detector is not None:
            found += [_expand(b, config.face_margin, w, h)
                      for b in np.asarray(face_detector.detect(seen).boxes, np.float64).reshape(-1, 4) * scale]
        if person_finder is not None:
            found += [_expand(b, config.person_margin, w, h)
                      for b in np.asarray(person_finder(seen), np.float64).reshape(-1, 4) * scale]
    finally:
        seen.fill(0)
    return found


def clean_sample(main_rgb: np.ndarray, person_boxes: np.ndarray, face_detector: FaceFinder | None,
                 person_finder: PersonFinder | None, config: SamplesConfig | None = None,
                 held: list[np.ndarray] | None = None) -> Cleaned:
    """De-identifies (`deidentify_regions`), then checks the result as it would be sent: anything the face
    detector or the person finder still finds is blurred harder (twice the margin, one colour per region),
    and checked again; if anything is still found, the sample cannot be cleaned (`image` None; the blurred
    copy is zeroed). The blurred copy is appended to `held`, for a caller that zeroes it whatever happens."""
    cfg = config or SamplesConfig()
    out, regions = deidentify_regions(main_rgb, person_boxes, face_detector, cfg, person_finder, held)
    found = still_found(out, face_detector, person_finder, cfg)
    harder = len(found)
    if found:
        h, w = out.shape[:2]
        for x0, y0, x1, y1 in found:
            mx, my = (x1 - x0) // 4, (y1 - y0) // 4
            r = (max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my))
            blur_region(out, *r, min_block_px=max(r[2] - r[0], r[3] - r[1]))
            regions.append(r)
        found = still_found(out, face_detector, person_finder, cfg)
    if found:
        out.fill(0)
        return Cleaned(None, regions, harder, len(found))
    return Cleaned(out, regions, harder, 0)


def letterbox(rgb: np.ndarray, boxes: np.ndarray, source_size: tuple[int, int] | None = None,
              width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """The image fitted whole into width x height (aspect ratio kept, black bars, never stretched) and its
    normalized boxes mapped into it. `source_size`: the view the boxes are normalized to, when `rgb` is
    already that view fitted into the main stream's size (`hal.frame.letterbox_rect`)."""
    import cv2

    from hal.frame import letterbox_rect

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = rgb.shape[:2]
    if (w, h) != (width, height):
        x0, y0, fw, fh = letterbox_rect((w, h), (width, height))
        out = np.zeros((height, width, 3), np.uint8)
        out[y0:y0 + fh, x0:x0 + fw] = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_AREA)
        rgb, source_size = out, (w, h)
    if source_size is not None:
        x0, y0, fw, fh = letterbox_rect(source_size, (width, height))
        boxes = (boxes * np.array([fw, fh, fw, fh]) + np.array([x0, y0, x0, y0])) / np.array(
            [width, height, width, height])
    return rgb, boxes


def fit_main(rgb: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """An image of another size cut to 4:3 around its centre and resized to the main stream's size (aspect
    ratio kept). The sample taker letterboxes instead (`letterbox`: nothing of the view is cut)."""
    import cv2

    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    target = width / height
    if w / h > target:
        cw = int(round(h * target))
        rgb = rgb[:, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = int(round(w / target))
        rgb = rgb[(h - ch) // 2:(h - ch) // 2 + ch]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def encode_sample(deidentified_rgb: np.ndarray, quality: int = 50) -> bytes:
    """640x480 JPEG at `quality` of an already de-identified RGB image."""
    import cv2

    img = fit_main(deidentified_rgb)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    try:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    finally:
        bgr.fill(0)
        if img is not deidentified_rgb:
            img.fill(0)
    if not ok:
        raise SampleError("JPEG encoding failed")
    jpeg = buf.tobytes()
    buf.fill(0)
    return jpeg


def sample_record(jpeg: bytes, taken_at: float, grant: Grant | None = None, width: int = 640,
                  height: int = 480) -> dict[str, Any]:
    """The record that leaves the device. `authorization` is the token id the sample was taken under
    (None at the default rate)."""
    return {
        "schema": SCHEMA, "taken_at": int(taken_at), "width": width, "height": height,
        "jpeg_b64": base64.b64encode(jpeg).decode("ascii"),
        "authorization": grant.token_id if grant is not None else None,
    }


@dataclass(slots=True)
class SampleJob:
    """A due sample, copied out of the frame in the tick: the main image fitted whole into 640x480 (the job's
    own buffer, never the frame's), the person boxes mapped into it, the instant and the grant it is taken
    under. `held` is every pixel buffer the job owns (the copy, then the blurred image): `zero()` clears them."""

    image: np.ndarray
    boxes: np.ndarray
    taken_at: float
    grant: Grant | None
    held: list[np.ndarray] = field(default_factory=list)

    def zero(self) -> None:
        for buf in self.held:
            buf.fill(0)


@dataclass(frozen=True, slots=True)
class Made:
    """A cleaned, encoded sample ready to leave: the record and its `sample_taken` audit fields."""

    record: dict[str, Any]
    fields: dict[str, Any]
    taken_at: float


class SampleTaker:
    """At the scheduled instants, a sample: `due()` (in the tick: the slot and a copy of what it needs),
    `make()` (de-identify, gate, encode: seconds of CPU, meant for `firmware.samples.hook.SampleWorker`),
    `release()` (audit `sample_taken`, then `put` into the outbox). `maybe_take()` does all three at once."""

    def __init__(self, config: SamplesConfig, scheduler: SampleScheduler, face_detector: FaceFinder | None,
                 put: Callable[[Mapping[str, Any]], Any], audit: AuditSink,
                 person_finder: PersonFinder | None = None) -> None:
        config.validate()
        self.config, self.scheduler, self.faces = config, scheduler, face_detector
        self.persons = person_finder
        self._put, self._audit = put, audit
        self.withheld = 0  # samples never put: their audit entry could not be written

    def due(self, main_rgb: np.ndarray | None, person_boxes: np.ndarray, now: float,
            source_size: tuple[int, int] | None = None) -> SampleJob | None:
        """At a due instant, the job for it (the main image fitted and copied: the frame may be zeroed as soon
        as this returns), else None. `person_boxes` are normalized to `source_size` (the sensor's view; the
        main image is that view fitted whole into 640x480). Consumes the slot."""
        if main_rgb is None:  # no main image this tick: a due slot stays pending until one comes
            return None
        slot = self.scheduler.due(now)
        if slot is None:
            return None
        fitted, boxes = letterbox(main_rgb, person_boxes, source_size)
        if fitted is main_rgb:
            fitted = main_rgb.copy()
        return SampleJob(fitted, boxes, now, slot.grant, [fitted])

    def make(self, job: SampleJob) -> Made | None:
        """The job de-identified, gated and encoded, or None when it could not be cleaned (then audited as
        `sample_dropped` and never put). Does not zero the job: its owner does, whatever happens."""
        grant, now = job.grant, job.taken_at
        cleaned = clean_sample(job.image, job.boxes, self.faces, self.persons, self.config, held=job.held)
        if cleaned.image is None:
            log.warning("sample: %d face(s) or person(s) still found after the harder blur; sample dropped",
                        cleaned.left)
            audited(self._audit, "sample_dropped", now, reason="not-clean", still_found=cleaned.left,
                    regions_blurred=len(cleaned.regions), authorization=grant.token_id if grant else None)
            return None
        jpeg = encode_sample(cleaned.image, self.config.jpeg_quality)
        cleaned.image.fill(0)
        record = sample_record(jpeg, now, grant)
        return Made(record, {"bytes": len(jpeg), "regions_blurred": len(cleaned.regions),
                             "blurred_harder": cleaned.harder, "authorization": record["authorization"],
                             "checked": [n for n, f in (("faces", self.faces), ("persons", self.persons)) if f]}, now)

    def release(self, made: Made) -> dict | None:
        """Audits `sample_taken`, then puts the record; None (counted in `withheld`) when the entry could not
        be written: a sample the log never recorded must never leave (a full disk fails it here)."""
        if not audited(self._audit, "sample_taken", made.taken_at, **made.fields):
            self.withheld += 1
            return None
        self._put(made.record)
        return made.record

    def maybe_take(self, main_rgb: np.ndarray | None, person_boxes: np.ndarray, now: float,
                   source_size: tuple[int, int] | None = None) -> dict | None:
        """At a due instant, all at once (`due`, `make`, `release`): the sample record put into the outbox, or
        None (not due, or dropped or withheld); every buffer the job held is zeroed on the way out."""
        job = self.due(main_rgb, person_boxes, now, source_size)
        if job is None:
            return None
        try:
            made = self.make(job)
            return self.release(made) if made is not None else None
        finally:
            job.zero()


def purge_expired(store: SampleStore, now: float, retention_days: int = 30,
                  audit: AuditSink | None = None) -> int:
    """Deletes samples older than `retention_days` (at most 30) from the outbox; the integrator calls it at
    least daily. Returns how many were deleted (audited when any)."""
    days = min(int(retention_days), 30)
    cutoff = now - days * 86400
    n = store.purge_samples(cutoff)
    if audit is not None and n:
        audit.append("samples_purged", now, count=n, before=int(cutoff), reason="retention")
    return n
