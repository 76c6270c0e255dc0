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

from fmnist.errors import FmnistError

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
        raise FmnistError(f"unknown model {name!r}; known models: {', '.join(names())}") from None


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build a fresh model (weights drawn from torch's global RNG, so `torch.manual_seed` fixes them)."""
    entry = _entry(name)
    check_arguments(name, kwargs)
    for key in ("num_classes", "in_channels"):
        value = kwargs.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FmnistError(f"model {name!r}: {key} must be a positive integer, got {value!r}")
    if kwargs.get("num_classes", 2) < 2:
        raise FmnistError(f"model {name!r}: num_classes must be at least 2, got {kwargs['num_classes']}")
    try:
        return entry.factory(**kwargs)
    except ValueError as exc:  # a factory's own check of an option's value (e.g. fast's activation)
        raise FmnistError(f"model {name!r}: {exc}") from None


def check_arguments(name: str, kwargs) -> None:
    """Fail, listing what the factory accepts, when `kwargs` holds an argument it does not take."""
    entry = _entry(name)
    unknown = sorted(set(map(str, kwargs)) - set(entry.parameters))
    if unknown:
        raise FmnistError(
            f"model {name!r} got unknown argument(s) {', '.join(unknown)}; it accepts: {', '.join(entry.parameters)}"
        )


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """The one-line description given at registration."""
    return _entry(name).description
