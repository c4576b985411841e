"""Network registry: architectures are chosen by name so a checkpoint can say which one it holds.

Other packages register their own networks with the same decorator from their own files; a name
that is not yet registered triggers one import of the packages known to register networks.
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# Packages outside `networks` that register architectures when imported (tried on a miss only).
PLUGIN_PACKAGES = ("RibFracSegLib.l3.unet2d",)


def register_network(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a module class (or factory) buildable as `build_network(name, **hparams)`."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"network name {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = factory
        return factory

    return decorate


def _load_plugins() -> None:
    for package in PLUGIN_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as err:
            if err.name is None or not package.startswith(err.name):
                raise


def available_networks() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


def build_network(name: str, **hparams) -> nn.Module:
    """Instantiate a registered architecture; unknown names or hyper-parameters raise a clear error."""
    if name not in _REGISTRY:
        _load_plugins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown network {name!r}; registered: {', '.join(sorted(_REGISTRY)) or 'none'}")
    try:
        return _REGISTRY[name](**hparams)
    except TypeError as err:
        raise TypeError(f"network {name!r} does not accept hyper-parameters {sorted(hparams)}: {err}") from None
