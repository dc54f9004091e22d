"""The [samples] and [authorization] sections: the hourly sample image and customer tokens."""

from __future__ import annotations

from dataclasses import dataclass

from trust.keys import ed25519_public_key

MAX_RATE_PER_HOUR = 60  # the most samples per hour any token may grant, whatever a device's config says
MAX_VALIDITY_DAYS = 366


@dataclass(frozen=True, slots=True)
class SamplesConfig:
    enabled: bool = True
    rate_per_hour: int = 1  # 1 (or 0: no samples); more only with a customer authorization token
    width: int = 640
    height: int = 480
    jpeg_quality: int = 50
    person_margin: float = 0.2  # fraction of the box's width/height added on every side
    face_margin: float = 0.35
    min_block_px: int = 8
    verify_passes: int = 2  # re-run the face detector on the blurred image and blur what it still finds
    retention_days: int = 30
    # the check before a sample leaves (firmware.samples.gate): the person model on these square tile grids,
    # a person from check_score; both BlazeFace variants, a face from check_face_score
    check_grids: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    check_overlap: float = 0.3
    check_score: float = 0.2
    check_face_score: float = 0.4

    def validate(self) -> None:
        if self.rate_per_hour not in (0, 1):
            raise ValueError("rate_per_hour: 0 or 1; a higher rate needs a customer-signed authorization token")
        if (self.width, self.height) != (640, 480):
            raise ValueError("width, height: samples are 640 x 480 (the main stream)")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError("jpeg_quality: 1 to 95 (default 50)")
        if not 0.0 <= self.person_margin <= 1.0 or not 0.0 <= self.face_margin <= 1.0:
            raise ValueError("person_margin, face_margin: 0 to 1 (fractions of the box size)")
        if not 2 <= self.min_block_px <= 64:
            raise ValueError("min_block_px: 2 to 64")
        if not 0 <= self.verify_passes <= 5:
            raise ValueError("verify_passes: 0 to 5")
        if not 1 <= self.retention_days <= 30:
            raise ValueError("retention_days: 1 to 30 (samples are never kept longer than 30 days)")
        self._validate_check()

    def _validate_check(self) -> None:
        if not self.check_grids or not all(1 <= g <= 8 for g in self.check_grids):
            raise ValueError("check_grids: a non-empty list of square grid sizes from 1 to 8, e.g. [1, 2, 3, 4]")
        if not 0.0 <= self.check_overlap < 0.5:
            raise ValueError("check_overlap: 0 to 0.5 (exclusive), a fraction of a tile")
        if not 0.0 < self.check_score < 1.0 or not 0.0 < self.check_face_score < 1.0:
            raise ValueError("check_score, check_face_score: between 0 and 1 (exclusive)")


@dataclass(frozen=True, slots=True)
class AuthorizationConfig:
    """`customer_public_key`: base64 of the customer's raw 32-byte Ed25519 public key ("" = no customer key,
    so no authorization can ever be accepted). `max_rate_per_hour`: the most any token may grant.
    `max_validity_days`: the longest span between not_before and expires a token may have.
    `revoked_token_ids`: tokens the customer has withdrawn."""

    customer_public_key: str = ""
    max_rate_per_hour: int = 12
    max_validity_days: int = 90
    revoked_token_ids: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.customer_public_key:
            try:
                ed25519_public_key(self.customer_public_key)
            except ValueError as e:
                raise ValueError(f"customer_public_key: {e}") from None
        if not 1 <= self.max_rate_per_hour <= MAX_RATE_PER_HOUR:
            raise ValueError(f"max_rate_per_hour: 1 to {MAX_RATE_PER_HOUR} samples per hour")
        if not 1 <= self.max_validity_days <= MAX_VALIDITY_DAYS:
            raise ValueError(f"max_validity_days: 1 to {MAX_VALIDITY_DAYS} days")
