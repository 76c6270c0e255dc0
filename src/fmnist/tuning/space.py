"""The search-space file of `fmnist tune`: what varies between trials, and the fixed part they share.

    fixed:                                # optional: TrainConfig values every trial shares
      optimizer: adam
    lr: {log: [1e-4, 1e-1]}               # a float drawn on a log scale
    weight_decay: {float: [0.0, 1e-3]}    # a float, uniform (`step: X` makes it discrete)
    epochs: {int: [1, 5]}                 # an integer (`step: N`)
    batch_size: [64, 128, 256]            # a choice
    conv_blocks: {int: [1, 3]}            # spec CNNs: keep the first N conv blocks of the fixed spec
    conv1.channels: {int: [16, 128], step: 16}   # any field of a spec block (convN.F, fcN.F)
    dropout: {float: [0.0, 0.5]}          # the spec's dropout

Every key, range and value is checked against the fixed config before any trial starts: an unknown
key, an empty range, or a value TrainConfig or the spec would refuse is a one-line error.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist.bounded import read_yaml_file
from fmnist.engine.config import (FIELDS, ConfigError, TrainConfig, build_config, checked_options,
                                  config_from_dict)
from fmnist.errors import DataError, FmnistError
from fmnist.limits import MAX_CONFIG_BYTES
from fmnist.models.spec import CONV_FIELDS, FC_FIELDS, SpecError, validate_spec

# TrainConfig keys a trial may vary. Not: where the data are and what validates (every trial must be
# measured on the same images), the device, checkpoints, notes.
NOT_TUNABLE = {"spec", "model_options", "data", "device", "val", "limit", "checkpoint", "extra", "recipe",
               "eval_batch_size", "seed", "precision"}
TRAIN_KEYS = sorted(FIELDS - NOT_TUNABLE)
SPEC_KEY = re.compile(r"(conv|fc)(0|[1-9][0-9]{0,2})\.([a-z]+)")
KINDS = ("log", "float", "int")


class SpaceError(FmnistError):
    """A search-space file is malformed or names what cannot vary."""


@dataclass(frozen=True)
class Dimension:
    """One searched value: a list of choices, or a numeric range (`kind` log | float | int)."""

    key: str
    kind: str  # choice | log | float | int
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None

    def probes(self) -> list:
        """The values checked before the study starts: every choice, both ends of a range."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log", step=self.step)

    def grid(self) -> list:
        """Every value, for the grid sampler (choices, or a range with a step)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "log" or (self.kind == "float" and self.step is None):
            raise SpaceError(f"{self.key}: the grid sampler needs a list of values or a range with a step")
        count = int(round((self.high - self.low) / (self.step or 1))) + 1
        values = [self.low + index * (self.step or 1) for index in range(count)]
        return [int(value) for value in values] if self.kind == "int" else values

    def as_dict(self) -> dict:
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        return {self.kind: [self.low, self.high], **({"step": self.step} if self.step is not None else {})}


@dataclass
class SearchSpace:
    dimensions: list[Dimension]
    fixed: dict  # TrainConfig values from the file's `fixed:` section
    origin: str = "space"

    def fingerprint(self) -> str:
        """Equal for equal spaces: a study remembers it and refuses another space under its name."""
        text = json.dumps([d.as_dict() | {"key": d.key} for d in self.dimensions], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def grid(self) -> dict[str, list]:
        """Every value of every key, for the grid sampler."""
        return {dimension.key: dimension.grid() for dimension in self.dimensions}

    def describe(self) -> dict:
        return {d.key: d.as_dict() for d in self.dimensions}

    def base_config(self, config: TrainConfig | dict | None = None) -> TrainConfig:
        """The fixed part of every trial: `fixed:`, and over it `config` — the command line's options as
        build_config takes them (a dict; `config` names a config file), or, from the API, a TrainConfig's
        values that differ from the defaults."""
        fixed = dict(self.fixed)
        if isinstance(fixed.get("spec"), dict):
            fixed["spec"] = _checked_spec(fixed["spec"], f"{self.origin}: fixed: spec")
        try:
            build_config(under=fixed)  # `fixed:` alone first, so that its mistakes are named as its own
        except ConfigError as exc:
            raise SpaceError(f"{self.origin}: fixed: {exc}") from None
        options = _non_default(config) if isinstance(config, TrainConfig) else dict(config or {})
        return build_config(options.pop("config", None), under=fixed, **options)

    def check(self, base: TrainConfig) -> None:
        """Every value a trial could be given, tried against `base`: refused ones are errors now."""
        for dimension in self.dimensions:
            if _is_spec_key(dimension.key) and base.spec is None:
                raise SpaceError(f"{self.origin}: {dimension.key}: varies a spec CNN, but the fixed config trains "
                                 f"the registered model {base.model!r}; give a spec (--spec FILE or fixed: spec:)")
            if dimension.key == "conv_blocks":
                blocks = _conv_count(base.spec)
                if dimension.low < 0 or dimension.high > blocks:
                    raise SpaceError(f"{self.origin}: conv_blocks: the fixed spec has {blocks} conv blocks, so the "
                                     f"range must lie within [0, {blocks}], got [{dimension.low:g}, {dimension.high:g}]")
            for value in dimension.probes():
                try:
                    apply(base, {dimension.key: value})
                except (ConfigError, SpecError) as exc:
                    raise SpaceError(f"{self.origin}: {dimension.key}: the config refuses {value!r} ({exc})") from None
        if len(self.dimensions) == 0:
            raise SpaceError(f"{self.origin}: names nothing to vary")


def load_space(source: str | Path | dict | SearchSpace) -> SearchSpace:
    """A search space from a YAML file, a dict of the same shape, or as it is."""
    if isinstance(source, SearchSpace):
        return source
    origin = "space"
    if not isinstance(source, dict):
        origin = str(source)
        try:
            source = read_yaml_file(source, MAX_CONFIG_BYTES, "a YAML search-space file")
        except DataError as exc:
            raise SpaceError(str(exc)) from None
    if not isinstance(source, dict) or not source:
        raise SpaceError(f"{origin}: expected a mapping of key: values to search (see configs/tune-fast.yaml)")
    values = {str(key): value for key, value in source.items()}
    try:
        fixed = checked_options(values.pop("fixed", None) or {}, f"{origin}: fixed")
    except ConfigError as exc:
        raise SpaceError(str(exc)) from None
    dimensions = [_dimension(origin, key.replace("-", "_") if "." not in key else key, value)
                  for key, value in values.items()]
    return SearchSpace(dimensions, fixed, origin)


def _dimension(origin: str, key: str, value: Any) -> Dimension:
    where = f"{origin}: {key}"
    if key not in TRAIN_KEYS and not _is_spec_key(key):
        hint = " (it stays fixed for every trial: give it as an option)" if key in NOT_TUNABLE else ""
        raise SpaceError(f"{where}: unknown key{hint}; tunable: {', '.join(TRAIN_KEYS)}, conv_blocks, dropout, "
                         f"convN.{{{','.join(CONV_FIELDS)}}}, fcN.{{{','.join(FC_FIELDS)}}}")
    if isinstance(value, list):
        if not value:
            raise SpaceError(f"{where}: empty list of choices")
        if not all(isinstance(item, (str, int, float, bool)) for item in value):
            raise SpaceError(f"{where}: choices must be numbers, strings or booleans, got {value!r}")
        if len(set(map(repr, value))) != len(value):
            raise SpaceError(f"{where}: a choice is listed twice in {value!r}")
        return Dimension(key, "choice", choices=tuple(value))
    if not isinstance(value, dict):
        raise SpaceError(f"{where}: expected a list of choices or {{log|float|int: [LOW, HIGH]}}, got {value!r}")
    kinds = [kind for kind in KINDS if kind in value]
    extra = sorted(set(value) - set(KINDS) - {"step"})
    if len(kinds) != 1 or extra:
        raise SpaceError(f"{where}: expected exactly one of log, float, int (and an optional step), got {value!r}")
    kind, bounds, step = kinds[0], value[kinds[0]], value.get("step")
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(_is_number(item) for item in bounds)):
        raise SpaceError(f"{where}: {kind}: expected [LOW, HIGH], two numbers, got {bounds!r}")
    low, high = (float(item) for item in bounds)
    if kind == "int" and not all(float(item).is_integer() for item in bounds):
        raise SpaceError(f"{where}: int: the bounds must be integers, got {bounds!r}")
    if not low < high:
        raise SpaceError(f"{where}: empty range [{low:g}, {high:g}] (LOW must be below HIGH)")
    if kind == "log" and low <= 0:
        raise SpaceError(f"{where}: log: the range must be above 0, got [{low:g}, {high:g}]")
    if step is not None:
        if kind == "log" or not _is_number(step) or float(step) <= 0 or (kind == "int" and not float(step).is_integer()):
            raise SpaceError(f"{where}: step: must be a positive {'integer' if kind == 'int' else 'number'} "
                             f"on an int or float range, got {step!r}")
        steps = (high - low) / float(step)
        if not math.isclose(steps, round(steps), abs_tol=1e-9):
            raise SpaceError(f"{where}: step {float(step):g} does not divide the range [{low:g}, {high:g}]")
        step = float(step)
    if kind == "int":
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    return Dimension(key, kind, low=low, high=high, step=step)


def suggest(trial, space: SearchSpace, base: TrainConfig) -> TrainConfig:
    """The trial's config: each dimension suggested by the trial, put over `base`. A spec block's
    fields are suggested only when the block is kept (conv_blocks), so TPE sees conditional ones."""
    values: dict[str, Any] = {}
    by_key = {d.key: d for d in space.dimensions}
    blocks = by_key["conv_blocks"].suggest(trial) if "conv_blocks" in by_key else None
    for dimension in space.dimensions:
        if dimension.key == "conv_blocks":
            continue
        match = SPEC_KEY.fullmatch(dimension.key)
        if blocks is not None and match and match[1] == "conv" and int(match[2]) >= blocks:
            continue
        values[dimension.key] = dimension.suggest(trial)
    if blocks is not None:
        values["conv_blocks"] = blocks
    return apply(base, values)


def apply(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """`base` with `values` (TrainConfig keys and spec keys) put over it; checked as a config is."""
    config = base.to_dict()
    spec = copy.deepcopy(base.spec)
    for key, value in values.items():
        if key in TRAIN_KEYS:
            config[key] = value
            continue
        if key == "dropout":
            spec["dropout"] = value
        elif key == "conv_blocks":
            continue
        else:
            kind, index, field = SPEC_KEY.fullmatch(key).groups()
            block = f"{kind}{index}"
            if block not in spec:
                raise SpecError(f"the fixed spec has no block {block}")
            if kind == "fc" and field == "neurons" and f"fc{int(index) + 1}" not in spec:
                raise SpecError(f"{block} is the output layer: its neurons are the number of classes")
            if field not in (CONV_FIELDS if kind == "conv" else FC_FIELDS):
                raise SpecError(f"{block} has no field {field!r}")
            spec[block][f"{block}_{field}"] = value
    if "conv_blocks" in values:
        kept = int(values["conv_blocks"])
        spec = {key: value for key, value in spec.items()
                if not (key.startswith("conv") and int(key[4:]) >= kept)}
    if spec is not None:
        config["spec"] = validate_spec(spec)
    return config_from_dict(config, origin="trial")


def _checked_spec(spec: dict, where: str) -> dict:
    try:
        return validate_spec(spec)
    except SpecError as exc:
        raise SpaceError(f"{where}: {exc}") from None


def _non_default(config: TrainConfig) -> dict:
    defaults = TrainConfig()
    given = {key: value for key, value in config.to_dict().items() if value != getattr(defaults, key)}
    given.pop("recipe", None)  # its values are in the config already
    if config.spec is not None:
        given["spec"] = config.spec
    return given


def _conv_count(spec: dict) -> int:
    return sum(1 for key in spec if key.startswith("conv"))


def _is_spec_key(key: str) -> bool:
    return key in ("dropout", "conv_blocks") or SPEC_KEY.fullmatch(key) is not None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
