"""Network registry: architectures are chosen by name so a checkpoint can say which one it holds.

Every architecture lives in this package and is registered when `RibFracSegLib.networks` is
imported; tests and plug-ins may register more with the same decorator.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_network(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a module class (or factory) buildable as `build_network(name, **hparams)`."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"network name {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_networks() -> list[str]:
    return sorted(_REGISTRY)


def build_network(name: str, **hparams) -> nn.Module:
    """Instantiate a registered architecture; unknown names or hyper-parameters raise a clear error."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown network {name!r}; registered: {', '.join(sorted(_REGISTRY)) or 'none'}")
    try:
        return _REGISTRY[name](**hparams)
    except TypeError as err:
        raise TypeError(f"network {name!r} does not accept hyper-parameters {sorted(hparams)}: {err}") from None
