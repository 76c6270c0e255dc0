"""Model library: the registry, the write-ups' architectures, spec-built CNNs and Keras-style summaries.

Every model takes raw pixels (N, 1, 28, 28), uint8 or float in 0..255, scales them itself, and returns
logits (N, num_classes). Callers build models by name or spec, never by importing a class:

    build(architecture_for(name="baseline"))           # {"name": "baseline", "kwargs": {"num_classes": 10}}
    build(architecture_for(spec=load_spec("cnn.yaml")))  # {"spec": {...}, "kwargs": {"num_classes": 10}}

The architecture dict is plain JSON; a model file stores it so the model can be rebuilt exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fmnist.bounded import listing
from fmnist.errors import FmnistError
from fmnist.models import writeups as _writeups  # noqa: F401  (registers the write-ups' models)
from fmnist.models.fast import single_view  # (importing it registers fmnist's own fast models)
from fmnist.models.reorder import pool_before_activation, swappable
from fmnist.models.registry import check_arguments, check_counts, create, describe, names, register
from fmnist.models.spec import (
    DEFAULT_SPEC,
    MAX_ACTIVATION_BYTES,
    MAX_PARAMETERS,
    SpecError,
    build_from_spec,
    load_spec,
    spec_footprint,
    spec_num_classes,
    validate_spec,
)
from fmnist.models.summary import ModelSummary, format_summary, keras_param_counts, summarize

__all__ = [
    "DEFAULT_SPEC",
    "MAX_ACTIVATION_BYTES",
    "MAX_PARAMETERS",
    "ModelSummary",
    "SpecError",
    "architecture_for",
    "build",
    "build_from_spec",
    "create",
    "describe",
    "format_summary",
    "keras_param_counts",
    "load_spec",
    "names",
    "pool_before_activation",
    "register",
    "single_view",
    "skeleton",
    "spec_footprint",
    "summarize",
    "swappable",
    "validate_spec",
]

_SPEC_KWARGS = ("num_classes", "in_channels")


def architecture_for(name: str | None = None, spec: Mapping | None = None, num_classes: int = 10,
                     options: Mapping | None = None) -> dict[str, Any]:
    """The JSON-serialisable description of a model, by registered name or by spec (exactly one).

    `options` are further arguments of a registered model's factory (e.g. {"tta": False} for
    `fast`). A spec is validated and normalised; its last fc block must already have `num_classes`
    neurons.
    """
    if (name is None) == (spec is None):
        raise FmnistError("give exactly one of a model name or a spec")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise FmnistError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if name is not None:
        describe(name)  # fails now, with the known names, rather than at build time
        options = dict(options or {})
        fixed = sorted(set(options) & {"num_classes", "in_channels"})
        if fixed:
            raise FmnistError(f"model options cannot set {', '.join(fixed)}: the data decides them")
        check_arguments(name, options)
        return {"name": name, "kwargs": {"num_classes": num_classes, **options}}
    if options:
        raise FmnistError(f"model options {', '.join(map(str, options))} apply to registered models, not to a spec")
    normalised = validate_spec(spec)
    declared = spec_num_classes(normalised)
    if declared != num_classes:
        last = [key for key in normalised if key.startswith("fc")][-1]
        raise SpecError(f"{last}: {last}_neurons is {declared} but the data has {num_classes} classes")
    return {"spec": normalised, "kwargs": {"num_classes": num_classes}}


def build(architecture: Mapping) -> nn.Module:
    """A fresh model from `{"name": NAME, "kwargs": {...}}` or `{"spec": {...}, "kwargs": {...}}`.

    `kwargs` is optional. Weights come from torch's global RNG; load saved weights afterwards. The
    architecture's size is checked first (`skeleton`), so one over the bounds is never allocated.
    """
    skeleton(architecture)
    return _construct(architecture)


def skeleton(architecture: Mapping) -> nn.Module:
    """The model `architecture` describes on PyTorch's meta device: every shape, no memory and no random
    numbers drawn. An architecture over MAX_PARAMETERS (counted as Keras counts) is refused."""
    try:
        with torch.device("meta"):
            model = _construct(architecture)
    except RuntimeError as exc:
        # A Ctrl-C at the wrong moment leaves torch's device context unbalanced, and its exit raises
        # "trying to pop from empty mode stack" in place of the interrupt: give the interrupt back.
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    total = keras_param_counts(model)[0]
    if total > MAX_PARAMETERS:
        raise FmnistError(f"architecture: {total:,} parameters, more than the limit of {MAX_PARAMETERS:,}")
    return model


def _construct(architecture: Mapping) -> nn.Module:
    if not isinstance(architecture, Mapping):
        raise FmnistError(f"architecture: expected a mapping, got {type(architecture).__name__}")
    unknown = set(architecture) - {"name", "spec", "kwargs"}
    if unknown:
        raise FmnistError(f"architecture: unknown key(s) {listing(unknown)} (expected name or spec, kwargs)")
    kwargs = architecture.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise FmnistError(f"architecture: kwargs must be a mapping, got {type(kwargs).__name__}")
    if ("name" in architecture) == ("spec" in architecture):
        raise FmnistError("architecture: needs exactly one of 'name' or 'spec'")
    if "name" in architecture:
        return create(architecture["name"], **kwargs)
    bad = set(kwargs) - set(_SPEC_KWARGS)
    if bad:
        raise FmnistError(f"architecture: a spec model got unknown argument(s) {listing(bad)}; "
                          f"it accepts: {', '.join(_SPEC_KWARGS)}")
    check_counts("architecture", kwargs)
    spec = architecture["spec"]
    num_classes = kwargs.get("num_classes", spec_num_classes(validate_spec(spec)))
    return build_from_spec(spec, num_classes=num_classes, in_channels=kwargs.get("in_channels", 1))
