"""Checking what was read from outside before it is trusted: the shape of a JSON value, one line per problem.

A schema is a type (or a tuple of types) the value must be; `[schema]`, a list whose items all match;
`{key: schema}`, a mapping with those keys (a key ending in "?" may be missing; other keys are
allowed). Numbers are int or float, never bool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError

NUMBER = "number"  # int or float, not bool


def check_shape(path: str | Path, value: Any, schema: Any, where: str = "") -> Any:
    """`value` when it matches `schema`; else FmnistError("PATH: WHERE: expected ...")."""
    if schema == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _wrong(path, where, "a number", value)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            _wrong(path, where, "a list", value)
        for index, item in enumerate(value):
            check_shape(path, item, schema[0], f"{where}[{index}]")
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            _wrong(path, where, "an object", value)
        for key, item_schema in schema.items():
            optional = key.endswith("?")
            name = key.rstrip("?")
            if name not in value:
                if optional:
                    continue
                raise FmnistError(f"{path}: {where + '.' if where else ''}{name} is missing")
            if not (optional and value[name] is None):
                check_shape(path, value[name], item_schema, f"{where}.{name}" if where else name)
    elif (schema is int and isinstance(value, bool)) or not isinstance(value, schema):
        names = " or ".join(kind.__name__ for kind in (schema if isinstance(schema, tuple) else (schema,)))
        _wrong(path, where, f"a {names}", value)
    return value


def _wrong(path, where: str, expected: str, value: Any) -> None:
    raise FmnistError(f"{path}: {where or 'the file'} must be {expected}, not {type(value).__name__}")
