"""Every number of every config section, arrays of tables included ([[geometry.zones]], [[geometry.lines]],
[[alerts.rules]]), against wrong types (a string, a bool, an array, a table) and numbers that are not numbers;
and every range a section states through firmware.config.checks, read from the checks themselves as they run
(so a key added with a range is covered without editing this file): a value just past either end is refused
with one line naming the key. test_config_hostile covers the top-level keys with NaN, infinities and absurd
magnitudes; this walks into the arrays of tables and the types."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, get_args, get_origin, get_type_hints

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config import UmbraConfig, checks, parse, to_toml
from firmware.config import alerts as alerts_cfg
from firmware.config import demographics as demo_cfg
from firmware.config import flows as flows_cfg
from firmware.config import installer as installer_cfg
from firmware.config import privacy as privacy_cfg
from firmware.config import sensing as sensing_cfg
from firmware.config import sync as sync_cfg
from firmware.errors import ConfigError

ITEMS: dict[str, dict[str, Any]] = {  # one honest item of each array of tables
    "geometry.zones": {"name": "z", "polygon": [[0, 0], [4, 0], [4, 4], [0, 4]]},
    "geometry.lines": {"name": "l", "a": [0.0, 0.0], "b": [2.0, 0.0]},
    "alerts.rules": {"rule": "dwell_above", "zone": "z", "dwell_s": 10.0},
}
BASE: dict[str, Any] = {"sync": {"uploader": {"device_id": "d-1"}}}
Path_ = tuple[str, ...]


def _walk(cls: type, path: Path_ = ()) -> list[tuple[Path_, str, Any]]:
    out = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = get_args(tp)
        if dataclasses.is_dataclass(tp):
            out += _walk(tp, (*path, f.name))  # type: ignore[arg-type]
        elif get_origin(tp) is tuple and args and dataclasses.is_dataclass(args[0]):
            out += _walk(args[0], (*path, f.name + "[]"))
        elif tp in (int, float) or (get_origin(tp) is tuple and all(a in (int, float, Ellipsis) for a in args)):
            out.append((path, f.name, tp))
    return out


FIELDS = _walk(UmbraConfig)


def _table(path: Path_, name: str, value: Any) -> dict[str, Any]:
    table = copy.deepcopy(BASE)
    node = table
    for i, p in enumerate(path):
        if p.endswith("[]"):
            item = copy.deepcopy(ITEMS[".".join([*path[:i], p[:-2]])])
            node[p[:-2]] = [item]
            node = item
        else:
            node = node.setdefault(p, {})
    node[name] = value
    return table


def _refused(path: Path_, name: str, value: Any) -> str:
    with pytest.raises(ConfigError) as e:
        parse(tomli_w.dumps(_table(path, name, value)))
    msg = str(e.value)
    assert name in msg and "\n" not in msg, msg
    return msg


def test_the_walk_reaches_into_arrays_of_tables() -> None:
    keys = {".".join((*p, n)) for p, n, _ in FIELDS}
    assert {"alerts.rules[].limit", "alerts.rules[].dwell_s", "alerts.rules[].open_hour",
            "geometry.lines[].a", "alerts.utc_offset_h", "installer.port", "ota.max_restarts"} <= keys


WRONG_TYPES = ["1", "", True, {"a": 1}, [[1.0]]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), st.sampled_from(WRONG_TYPES))
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(field: tuple, value: Any) -> None:
    path, name, tp = field
    if get_origin(tp) is tuple and isinstance(value, list):
        value = [value] * 2  # an array of arrays where numbers belong
    _refused(path, name, value)


NOT_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, 2**62, -2**62, 1e300, -1e300])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([f for f in FIELDS if any(p.endswith("[]") for p in f[0]) or f[0][:1] == ("alerts",)]),
       NOT_NUMBERS)
def test_numbers_in_arrays_of_tables_that_are_not_numbers_are_refused(field: tuple, value: float) -> None:
    path, name, tp = field
    if get_origin(tp) is tuple:
        value = [value] * (2 if get_args(tp)[-1] is Ellipsis or len(get_args(tp)) == 2 else len(get_args(tp)))
    if isinstance(value, int) and not isinstance(value, bool) and tp is float and abs(value) < 2**63:
        value = float(value)
    _refused(path, name, value)


def _stated_ranges() -> list[tuple[str, str, dict[str, Any]]]:
    """(section, key, the range its check stated) for every check.number / check.whole call that validating
    the default config (with one item of each array of tables) makes: the validation's own table."""
    seen: list[tuple[str, str, dict[str, Any]]] = []
    real_number, real_whole = checks.number, checks.whole

    def spy(kind: str, real: Any) -> Any:
        def check(key: str, value: Any, lo: Any, hi: Any, **kw: Any) -> None:
            seen.append((section[0], key, {"kind": kind, "lo": lo, "hi": hi, **kw}))
            real(key, value, lo, hi, **kw)
        return check

    section = [""]
    modules = (sensing_cfg, privacy_cfg, sync_cfg, alerts_cfg, demo_cfg, flows_cfg, installer_cfg)
    with pytest.MonkeyPatch.context() as mp:
        for m in modules:
            if hasattr(m, "number"):
                mp.setattr(m, "number", spy("number", real_number))
            if hasattr(m, "whole"):
                mp.setattr(m, "whole", spy("whole", real_whole))
        mp.setattr(checks, "number", spy("number", real_number))
        geometry = {"zones": [ITEMS["geometry.zones"]], "lines": [ITEMS["geometry.lines"]]}
        cfg = parse(to_toml({**BASE, "geometry": geometry, "alerts": {"rules": [ITEMS["alerts.rules"]]}}))
        seen.clear()  # the loader's own calls: their section is told below
        for f in dataclasses.fields(cfg):
            section[0] = f.name
            obj = getattr(cfg, f.name)
            for sub in [obj, *(getattr(obj, g.name) for g in dataclasses.fields(obj)
                               if dataclasses.is_dataclass(getattr(obj, g.name)))]:
                if callable(getattr(sub, "validate", None)):
                    sub.validate()
    return seen


RANGES = [(s, k, r) for s, k, r in _stated_ranges() if "[" not in k and " " not in k]


def test_the_stated_ranges_cover_every_section_that_states_one() -> None:
    sections = {s for s, _, _ in RANGES}
    assert {"tracker", "loop", "geometry", "quantize", "camera", "privacy", "demographics", "flowgroups",
            "alerts", "installer", "pseudonym"} <= sections, sections
    assert len(RANGES) > 60


def _owner(section: str, key: str) -> Path_ | None:
    """The table path of `key` in `section` (a nested table's key, such as sync.uploader's, found by name)."""
    for path, name, _ in FIELDS:
        if name == key and path[:1] == (section,) and not any(p.endswith("[]") for p in path):
            return path
    return None


@pytest.mark.parametrize(("section", "key", "rng"), RANGES, ids=[f"{s}.{k}" for s, k, _ in RANGES])
def test_a_value_just_past_a_stated_range_is_refused(section: str, key: str, rng: dict[str, Any]) -> None:
    path = _owner(section, key)
    if path is None:
        pytest.skip(f"{section}.{key} is checked, not a key of its own")
    lo, hi = rng["lo"], rng["hi"]
    tp = dict(((p, n), t) for p, n, t in FIELDS)[(path, key)]
    if rng["kind"] == "whole":
        below, above = lo - 1, hi + 1
    else:
        below = lo if rng.get("lo_open") else math.nextafter(lo, -math.inf)
        above = hi if rng.get("hi_open") else math.nextafter(hi, math.inf)
    for v in (below, above):
        if rng.get("zero") and v == 0:
            continue
        value: Any = v
        if get_origin(tp) is tuple:
            n = len(get_args(tp)) if get_args(tp)[-1] is not Ellipsis else 1
            value = [v] * n
        elif tp is float:
            value = float(v)
        msg = _refused(path, key, value)
        assert "not allowed" in msg or "must" in msg or "needs" in msg, msg
