"""Build frozen config dataclasses from TOML tables: typed, with unknown keys rejected and every error naming
the key path and what is allowed. Each part of the firmware owns its config dataclass; this module only
turns a mapping into one."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from firmware.errors import ConfigError

T = TypeVar("T")


def build(cls: type[T], table: Mapping[str, Any], path: str) -> T:
    """Make `cls` (a dataclass) from `table`. `path` is the dotted key path used in error messages."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[{path}] must be a table, not {type(table).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {_join(path, unknown[0])!r}; allowed keys in [{path}]: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for name, value in table.items():
        values[name] = _coerce(hints[name], value, _join(path, name))
    missing = [
        n for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key {_join(path, missing[0])!r}: it has no default, so set it")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as e:
            raise ConfigError(f"[{path}] {e}") from e
    return obj


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _union(tp, value, path)
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path} = {value!r} is not allowed; use one of {', '.join(map(repr, allowed))}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, path)
    if origin in (tuple, list):
        return _sequence(tp, origin, value, path)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table")
        return dict(value)
    return _scalar(tp, value, path)


def _union(tp: Any, value: Any, path: str) -> Any:
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(arg, value, path)
        except ConfigError as e:
            errors.append(str(e))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {tp}")


def _sequence(tp: Any, origin: Any, value: Any, path: str) -> tuple[Any, ...] | list[Any]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path} must be an array, not {type(value).__name__} {value!r}")
    args = get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{path} must have exactly {len(args)} items, not {len(value)}")
        items = [_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))]
    else:
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, not {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be a whole number, not {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path} must be a number, not {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, not {value!r}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: cannot read {value!r} as {getattr(tp, '__name__', tp)}")
