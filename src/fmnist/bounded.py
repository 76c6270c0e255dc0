"""Reading text that anyone may have written (model metadata, spec files) within fixed bounds.

Python's json module and PyYAML parse recursively: a document nested 100,000 deep ends in a
RecursionError and thousands of lines of traceback, not in an error message. So size and nesting
depth are checked first, by a flat scan that never recurses, and only then is the text parsed.
`brief` shows a hostile value in an error message without printing (or expanding) all of it.
`check_shape` then checks that the parsed value is shaped as fmnist writes it, one line per problem.

No torch here: the ONNX runtime uses this module too.
"""

from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from fmnist._io import read_regular_file
from fmnist.errors import DataError, FmnistError
from fmnist.limits import MAX_DEPTH


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SCANNER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's scanner: 70x faster, and flat too
_YAML_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
              yaml.FlowSequenceStartToken)
_YAML_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: `1e-4` and `3E2` are floats (YAML 1.1
    wants a dot, `1.0e-4`, and PyYAML reads `1e-4` as the string "1e-4")."""


_Loader.add_implicit_resolver(  # a copy of the resolvers is made for the subclass: SafeLoader is untouched
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


class BoundsError(ValueError):
    """A document is larger or deeper than its bound, or does not parse. The message says which, as
    a phrase the caller puts after the document's name: "nested deeper than 32 levels"."""


def _deeper_than(steps, limit: int) -> bool:
    """Whether a running depth (+1 per opening, -1 per closing step) ever exceeds `limit`."""
    depth = 0
    for step in steps:
        depth += step
        if depth > limit:
            return True
    return False


def check_size(text: str, max_bytes: int) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise BoundsError(f"{size:,} bytes, more than the limit of {max_bytes:,}")


def parse_json(text: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads(text)` after checking its size and nesting depth without recursing."""
    check_size(text, max_bytes)
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub('""', text))
    if _deeper_than((1 if char in "[{" else -1 for char in brackets), max_depth):
        raise BoundsError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; an integer of over 4,300 digits
        raise BoundsError(f"not valid JSON ({one_line(exc)})") from None


def parse_yaml(text: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """`yaml.safe_load(text)`, numbers read as YAML 1.2 reads them, after checking its size and nesting
    depth with PyYAML's (flat) scanner."""
    check_size(text, max_bytes)
    try:
        tokens = yaml.scan(text, Loader=_SCANNER)
        steps = (1 if isinstance(token, _YAML_OPEN) else -1 if isinstance(token, _YAML_CLOSE) else 0
                 for token in tokens)
        if _deeper_than(steps, max_depth):
            raise BoundsError(f"nested deeper than {max_depth} levels")
        return yaml.load(text, Loader=_Loader)  # a safe loader: SafeLoader with one more resolver
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # RecursionError: aliases nested in aliases
        if isinstance(exc, BoundsError):
            raise
        raise BoundsError(f"not valid YAML ({one_line(exc)})") from None


def read_text_file(path: str | Path, max_bytes: int, expected: str) -> str:
    """The UTF-8 text of a file someone gave by name (a config, a spec, a search space): a regular file
    only (a FIFO would wait forever, a device never end), at most `max_bytes`; DataError otherwise."""
    data = read_regular_file(path, expected=expected, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(path, f"not UTF-8 text, expected {expected}") from None


def read_yaml_file(path: str | Path, max_bytes: int, expected: str) -> Any:
    """`parse_yaml` of `read_text_file`: a YAML file's content, or a DataError naming the file."""
    text = read_text_file(path, max_bytes, expected)
    try:
        return parse_yaml(text, max_bytes)
    except BoundsError as exc:
        raise DataError(path, str(exc)) from None


def one_line(exc: Exception) -> str:
    """An exception's message as one short line (PyYAML's messages span several)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return " ".join(str(exc).split())[:200] or type(exc).__name__


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 40, 40, 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 3


def listing(names, limit: int = 5) -> str:
    """Names for an error message, sorted, each cut to 40 characters: "a, b, c" or "a, b, ... (9 more)"."""
    shown = sorted(str(name) if len(str(name)) <= 40 else str(name)[:39] + "…" for name in names)
    more = f", ... ({len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def brief(value: Any) -> str:
    """A short repr for an error message: nested, long or huge values are cut, never expanded."""
    try:
        return _SHORT.repr(value)
    except (ValueError, RecursionError):  # an int too long to print; a self-referencing structure
        return f"<a {type(value).__name__}>"


# --------------------------------------------------------------------------- the shape of a parsed value
# A schema is a type (or a tuple of types) the value must be; `[schema]`, a list whose items all match;
# `{key: schema}`, a mapping with those keys (a key ending in "?" may be missing or null; other keys
# are allowed); NUMBER, an int or a float but not a bool.

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
