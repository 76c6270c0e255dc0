"""Model registry: factories register under a name; the CLI, trainer and model files use only names.

A factory is `def factory(num_classes: int = 10, in_channels: int = 1) -> nn.Module` (it may accept
more keyword arguments). `create` checks the arguments against the factory's signature, so a typo
fails loudly instead of being ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fmnist.bounded import brief, listing, one_line
from fmnist.errors import FmnistError
from fmnist.limits import MAX_INTEGER

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    description: str
    parameters: tuple[str, ...]  # the keyword arguments the factory accepts


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, description: str) -> Callable[[Factory], Factory]:
    """Decorator: make `factory` available as `create(name)`. Registering a name twice is a bug."""

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].factory.__qualname__})")
        parameters = tuple(inspect.signature(factory).parameters)
        missing = {"num_classes", "in_channels"} - set(parameters)
        if missing:
            raise ValueError(f"factory for {name!r} must accept {', '.join(sorted(missing))}")
        _REGISTRY[name] = _Entry(factory, description, parameters)
        return factory

    return decorator


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise FmnistError(f"unknown model {brief(name)}; known models: {', '.join(names())}") from None


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a fresh model (weights drawn from torch's global RNG, so `torch.manual_seed` fixes them)."""
    entry = _entry(name)
    check_arguments(name, kwargs)
    check_counts(f"model {name!r}", kwargs)
    try:
        return entry.factory(**kwargs)
    except (ValueError, TypeError) as exc:  # a factory's own check of an option's value (fast's activation)
        raise FmnistError(f"model {name!r}: {one_line(exc)}") from None


def check_counts(what: str, kwargs) -> None:
    """num_classes (at least 2) and in_channels, where given, must be integers of a sane size."""
    for key in ("num_classes", "in_channels"):
        value = kwargs.get(key, 2)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTEGER:
            raise FmnistError(f"{what}: {key} must be a positive integer up to {MAX_INTEGER:,}, got {brief(value)}")
    if kwargs.get("num_classes", 2) < 2:
        raise FmnistError(f"{what}: num_classes must be at least 2, got {kwargs['num_classes']}")


def check_arguments(name: str, kwargs) -> None:
    """Fail, listing what the factory accepts, when `kwargs` holds an argument it does not take."""
    entry = _entry(name)
    unknown = set(map(str, kwargs)) - set(entry.parameters)
    if unknown or not all(isinstance(key, str) for key in kwargs):
        raise FmnistError(
            f"model {name!r} got unknown argument(s) {listing(unknown)}; it accepts: {', '.join(entry.parameters)}"
        )


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """The one-line description given at registration."""
    return _entry(name).description
