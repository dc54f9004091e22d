"""JSON schemas of the records that leave the device, and validation for both sides (device and cloud).

Schemas here (`<kind>.json`): umbra.track/2 (and the older umbra.track/1, `track1.json`, which the cloud
still accepts from devices not yet updated), umbra.aggregate/1, umbra.audit/1, umbra.status/1, umbra.ota/1,
umbra.sample/1, umbra.flowgroups/1 and the envelope umbra.batch/1.

`validate(record)` picks the schema by the record's `schema` field. jsonschema costs ~100 us a record,
too slow for a 10,000 records/s drain, so each schema is also compiled into a plain-Python check for the
subset of keywords these schemas use; a record the fast check refuses is re-checked by jsonschema for the
error message, and a schema using any other keyword is checked by jsonschema alone. Tests check that the
two agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from firmware.errors import SchemaError

LOCAL = {"umbra.track/1": "track1.json", "umbra.track/2": "track.json", "umbra.aggregate/1": "aggregate.json",
         "umbra.audit/1": "audit.json",
         "umbra.status/1": "status.json", "umbra.batch/1": "batch.json", "umbra.ota/1": "ota.json",
         "umbra.sample/1": "sample.json", "umbra.flowgroups/1": "flowgroups.json",
         "umbra.demographics/1": "demographics.json", "umbra.alert/1": "alert.json"}
RECORD_SCHEMAS = tuple(sorted(set(LOCAL) - {"umbra.batch/1"}))

Check = Callable[[Any], bool]


@cache
def schema(schema_id: str) -> Mapping[str, Any]:
    """The JSON schema document for `schema_id` (e.g. 'umbra.track/1')."""
    if schema_id in LOCAL:
        return json.loads(resources.files(__name__).joinpath(LOCAL[schema_id]).read_text("utf-8"))
    raise SchemaError(f"unknown record schema {schema_id!r}; known: {', '.join(sorted(LOCAL))}")


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}
_IGNORED = {"$schema", "$id", "title", "description"}


class _Unsupported(Exception):
    pass


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(op: Callable[[float, float], bool], lim: float) -> Check:
    return lambda v: not _num(v) or op(float(v), lim)


def _compile(s: Any) -> Check:  # noqa: C901 - one branch per keyword, flat
    if s is True:
        return lambda v: True
    if s is False:
        return lambda v: False
    checks: list[Check] = []
    for key in s:
        if key not in _IGNORED | {"type", "const", "enum", "required", "properties", "additionalProperties",
                                  "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                                  "maxLength", "pattern", "prefixItems", "items", "minItems", "maxItems",
                                  "maxProperties", "oneOf", "anyOf", "allOf"}:
            raise _Unsupported(key)
    if "type" in s:
        ts = [s["type"]] if isinstance(s["type"], str) else list(s["type"])
        tc = [_TYPES[t] for t in ts]
        checks.append(tc[0] if len(tc) == 1 else (lambda v: tc[0](v) or tc[1](v)) if len(tc) == 2
                      else (lambda v: any(c(v) for c in tc)))
    if "const" in s:
        c = s["const"]
        checks.append(lambda v: v == c and type(v) is type(c))
    if "enum" in s:
        en = list(s["enum"])
        checks.append(lambda v: any(v == e and type(v) is type(e) for e in en))
    for key, op in (("minimum", float.__ge__), ("maximum", float.__le__), ("exclusiveMinimum", float.__gt__),
                    ("exclusiveMaximum", float.__lt__)):
        if key in s:
            checks.append(_bound(op, float(s[key])))
    if "minLength" in s or "maxLength" in s or "pattern" in s:
        lo, hi = s.get("minLength", 0), s.get("maxLength", 1 << 62)
        pat = re.compile(s["pattern"]).search if "pattern" in s else None
        checks.append(lambda v: not isinstance(v, str) or (lo <= len(v) <= hi and (pat is None or bool(pat(v)))))
    checks.extend(_compile_object(s))
    checks.extend(_compile_array(s))
    checks.extend(_compile_combined(s))
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        c0, c1 = checks
        return lambda v: c0(v) and c1(v)

    def every(v: Any) -> bool:
        for c in checks:
            if not c(v):
                return False
        return True
    return every


def _compile_object(s: Mapping[str, Any]) -> list[Check]:
    out: list[Check] = []
    if "required" in s:
        req = list(s["required"])
        out.append(lambda v: not isinstance(v, dict) or all(k in v for k in req))
    if "maxProperties" in s:
        mp = s["maxProperties"]
        out.append(lambda v: not isinstance(v, dict) or len(v) <= mp)
    props = {k: _compile(p) for k, p in s.get("properties", {}).items()}
    extra = s.get("additionalProperties", True)
    extra_c = _compile(extra) if extra is not True else None
    if props or extra_c is not None:
        def obj(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for k, x in v.items():
                c = props.get(k, extra_c)
                if c is not None and not c(x):
                    return False
            return True
        out.append(obj)
    return out


def _compile_combined(s: Mapping[str, Any]) -> list[Check]:
    """oneOf (exactly one subschema holds), anyOf (at least one), allOf (every one)."""
    out: list[Check] = []
    if "oneOf" in s:
        one = [_compile(x) for x in s["oneOf"]]
        out.append(lambda v: sum(1 for c in one if c(v)) == 1)
    if "anyOf" in s:
        anyc = [_compile(x) for x in s["anyOf"]]
        out.append(lambda v: any(c(v) for c in anyc))
    if "allOf" in s:
        allc = [_compile(x) for x in s["allOf"]]
        out.append(lambda v: all(c(v) for c in allc))
    return out


def _compile_array(s: Mapping[str, Any]) -> list[Check]:
    out: list[Check] = []
    if "minItems" in s or "maxItems" in s:
        lo, hi = s.get("minItems", 0), s.get("maxItems", 1 << 62)
        out.append(lambda v: not isinstance(v, list) or lo <= len(v) <= hi)
    prefix = [_compile(p) for p in s.get("prefixItems", [])]
    items = _compile(s["items"]) if "items" in s else None
    if prefix or items is not None:
        n = len(prefix)

        def arr(v: Any) -> bool:
            if not isinstance(v, list):
                return True
            for i, x in enumerate(v):
                c = prefix[i] if i < n else items
                if c is not None and not c(x):
                    return False
            return True
        out.append(arr)
    return out


@cache
def _validators(schema_id: str) -> tuple[Check | None, Draft202012Validator]:
    doc = schema(schema_id)
    slow = Draft202012Validator(doc)
    try:
        fast: Check | None = _compile(doc)
    except _Unsupported:
        fast = None
    return fast, slow


def is_valid(record: Any, schema_id: str | None = None) -> bool:
    sid = schema_id or (record.get("schema") if isinstance(record, dict) else None)
    if not isinstance(sid, str):
        return False
    try:
        fast, slow = _validators(sid)
    except SchemaError:
        return False
    return fast(record) if fast is not None else slow.is_valid(record)


def validate(record: Any, schema_id: str | None = None) -> None:
    """Raise SchemaError unless `record` matches its schema (by its `schema` field, or `schema_id`)."""
    if is_valid(record, schema_id):
        return
    sid = schema_id or (record.get("schema") if isinstance(record, dict) else None)
    if not isinstance(sid, str):
        raise SchemaError("record is not an object with a 'schema' field naming its schema id")
    _, slow = _validators(sid)
    err = next(iter(slow.iter_errors(record)), None)
    where = "/".join(str(p) for p in err.absolute_path) if err else ""
    raise SchemaError(f"{sid} record invalid at '{where}': {err.message if err else 'fast check refused it'}")
