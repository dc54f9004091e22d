"""Config values as an attacker writes them: NaN, infinities, absurd magnitudes and geometry that is not
geometry. Every one must be a ConfigError naming the key, never a traceback and never a quiet change."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config import UmbraConfig, parse, to_toml
from firmware.errors import ConfigError

BASE: dict[str, Any] = {"sync": {"uploader": {"device_id": "d-1"}}}


def _numeric_fields(cls: type, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, Any]]:
    """(section path, field name, type) of every number or tuple of numbers in the config, recursively."""
    out = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _numeric_fields(tp, (*path, f.name))  # type: ignore[arg-type]
        elif tp in (int, float) or (get_origin(tp) is tuple and _scalar_items(tp)):
            out.append((path, f.name, tp))
    return out


def _scalar_items(tp: Any) -> bool:
    return all(a in (int, float, Ellipsis) for a in get_args(tp))


FIELDS = _numeric_fields(UmbraConfig)
BAD_FLOATS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                       st.floats(min_value=1e13, allow_infinity=False),
                       st.floats(max_value=-1e13, allow_infinity=False))
BAD_INTS = st.one_of(st.integers(min_value=2**41, max_value=2**63 - 1), st.integers(min_value=-2**63, max_value=-2**41))


def _default(path: tuple[str, ...], name: str) -> Any:
    obj: Any = UmbraConfig()
    for p in path:
        obj = getattr(obj, p)
    return getattr(obj, name)


def _table_with(path: tuple[str, ...], name: str, value: Any) -> dict[str, Any]:
    table: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    table["sync"] = {"uploader": dict(BASE["sync"]["uploader"])}
    node = table
    for p in path:
        node = node.setdefault(p, {})
    node[name] = value
    return table


def _bad_value(tp: Any, default: Any, data: st.DataObject) -> Any:
    if tp in (int, float):
        return data.draw(BAD_INTS if tp is int else BAD_FLOATS)
    items = list(default) or [1.0]
    i = data.draw(st.integers(0, len(items) - 1))
    item_tp = get_args(tp)[0 if get_args(tp)[-1] is Ellipsis else i]
    items[i] = data.draw(BAD_INTS if item_tp is int else BAD_FLOATS)
    return items


def test_the_walk_sees_every_numeric_setting() -> None:
    names = {".".join((*p, n)) for p, n, _ in FIELDS}
    for key in ("tracker.max_lost_s", "tracker.meas_noise", "camera.fps", "quantize.min_speed_mps",
                "privacy.daily_epsilon", "privacy.dwell_edges_s", "privacy.heatmap_cell_m",
                "flowgroups.hyperplanes", "sync.uploader.backoff_max_s", "ota.check_every_s", "geometry.image_size"):
        assert key in names
    assert len(FIELDS) > 80


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), st.data())
def test_no_number_that_is_not_a_number_passes(field: tuple, data: st.DataObject) -> None:
    path, name, tp = field
    value = _bad_value(tp, _default(path, name), data)
    with pytest.raises(ConfigError) as e:
        parse(to_toml(_table_with(path, name, value)))
    msg = str(e.value)
    assert name in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize(("toml", "words"), [
    ("[privacy]\ndaily_epsilon = 1e12\n", ["daily_epsilon", "at most"]),
    ("[flowgroups]\nhyperplanes = 4611686018427387904\n", ["hyperplanes", "1 to 24"]),
    ("[tracker]\nmax_lost_s = nan\n", ["max_lost_s", "finite"]),
    ("[tracker]\nmeas_noise = inf\n", ["meas_noise", "finite"]),
    ("[loop]\nreopen_backoff_s = [0.5, inf]\n", ["reopen_backoff_s[1]"]),
    ("[sync.uploader]\ndevice_id = \"d\"\nbackoff_max_s = inf\n", ["backoff_max_s"]),
])
def test_absurd_values_named(toml: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        parse(toml)
    for w in words:
        assert w in str(e.value)


def _zone(poly: list[list[float]]) -> str:
    return to_toml({"geometry": {"zones": [{"name": "z", "polygon": poly}]}})


@pytest.mark.parametrize(("toml", "words"), [
    (_zone([[0, 0], [2, 2], [2, 0], [0, 2]]), ["zone 'z'", "crosses itself"]),  # a bow tie
    (_zone([[0, 0], [1, 1], [2, 2]]), ["zone 'z'", "m2"]),  # no area
    (_zone([[0, 0], [4, 0], [4, 4], [2, 0], [0, 4]]), ["crosses itself"]),  # touches its own edge
    (_zone([[0, 0], [1e9, 0], [0, 1]]), ["polygon[1][0]"]),
    (to_toml({"geometry": {"lines": [{"name": "l", "a": [1.0, 1.0], "b": [1.0, 1.000001]}]}}), ["line 'l'", "apart"]),
    (to_toml({"geometry": {"homography": [[1, 2, 3], [1, 2, 3.0000001], [0, 0, 1]]}}), ["homography", "singular"]),
    (to_toml({"geometry": {"homography": [[1e-15, 0, 0], [0, 1, 0], [0, 0, 1]]}}), ["homography", "condition"]),
    (to_toml({"geometry": {"image_size": [0, 480]}}), ["image_size[0]"]),
])
def test_geometry_that_is_not_geometry(toml: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        parse(toml)
    for w in words:
        assert w in str(e.value)


@settings(max_examples=100, deadline=None)
@given(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), st.tuples(st.floats(-1, 1), st.floats(-1, 1)),
       st.lists(st.floats(-50, 50), min_size=3, max_size=8))
def test_collinear_zones_are_refused(origin: tuple, direction: tuple, ts: list[float]) -> None:
    poly = [[origin[0] + t * direction[0], origin[1] + t * direction[1]] for t in ts]
    with pytest.raises(ConfigError):
        parse(_zone(poly))


def test_real_geometry_still_passes() -> None:
    cfg = parse(to_toml({"geometry": {
        "homography": [[0.05345140447, -0.6041246, 88.5765506], [-0.139303754, -0.399810678, 120.417519],
                       [0.000917480166, 0.0196253016, 1.0]], "image_size": [768, 576],
        "zones": [{"name": "west", "polygon": [[-21, -17], [-8, -17], [-8, 9], [-21, 9]]}]}}))
    assert cfg.geometry.image_size == (768, 576)
