from __future__ import annotations

import random

import pytest

from firmware.sensing.pseudonym import Pseudonymizer


def seeded(seed):
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def test_stable_within_a_period_and_distinct_between_tracks():
    p = Pseudonymizer(3600, seeded(1))
    e1, a = p.pseudonym(7, 1000.0)
    e2, b = p.pseudonym(7, 3599.0)
    _, c = p.pseudonym(8, 3599.0)
    assert (e1, a) == (e2, b)
    assert a != c
    assert len(a) == 16 and int(a, 16) >= 0


def test_rotation_changes_every_pseudonym_and_forgets_the_key():
    p = Pseudonymizer(3600, seeded(2))
    before = {i: p.pseudonym(i, 3599.0)[1] for i in range(200)}
    old_key = bytes(p._key)
    after = {i: p.pseudonym(i, 3600.0)[1] for i in range(200)}
    assert p.rotations == 2
    assert not set(before.values()) & set(after.values())
    assert bytes(p._key) != old_key  # overwritten in place: the one key buffer holds only the new key


def test_rotation_does_not_preserve_any_relation():
    """Across a rotation, the mapping old -> new looks like a random one: no shared prefix structure,
    about half the bits flip between a track's two pseudonyms."""
    p = Pseudonymizer(60, seeded(3))
    flips = []
    for i in range(500):
        a = int(p.pseudonym(i, 59.0)[1], 16)
        flips.append(a)
    for i in range(500):
        b = int(p.pseudonym(i, 60.0)[1], 16)
        flips[i] = bin(flips[i] ^ b).count("1")
    mean = sum(flips) / len(flips)
    assert 30 < mean < 34  # 64 bits, half flip


def test_same_key_source_same_pseudonyms_and_bad_inputs():
    assert Pseudonymizer(3600, seeded(5)).pseudonym(1, 10.0) == Pseudonymizer(3600, seeded(5)).pseudonym(1, 10.0)
    with pytest.raises(ValueError):
        Pseudonymizer(0)
    with pytest.raises(ValueError, match="random source"):
        Pseudonymizer(10, lambda n: b"short").pseudonym(1, 1.0)


def test_forget_zeroes_key():
    p = Pseudonymizer(3600, seeded(6))
    p.pseudonym(1, 1.0)
    p.forget()
    assert bytes(p._key) == bytes(32)


def test_the_hash_reads_the_key_buffer_itself_and_makes_no_copy_of_it(monkeypatch):
    """A bytes copy of the key a call (what `bytes(self._key)` made) is immutable: it stays in freed memory after
    the key is overwritten at rotation. The HMAC must be given the one buffer that `_rotate` and `forget` zero."""
    import hashlib
    import hmac

    import firmware.sensing.pseudonym as mod

    seen = []
    real = hmac.new

    def spy(key, msg, digestmod):
        seen.append(key)
        return real(key, msg, digestmod)

    monkeypatch.setattr(mod.hmac, "new", spy)
    p = Pseudonymizer(3600, seeded(7))
    _, got = p.pseudonym(5, 1.0)
    assert seen and all(k is p._key for k in seen)
    assert got == real(bytes(p._key), (5).to_bytes(8, "big", signed=True), hashlib.sha256).hexdigest()[:16]
