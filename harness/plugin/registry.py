"""The method registry: plugins in `methods/` register themselves by name.

Modelled on timm's model registry: `@register_method("name")` on a
`MethodPlugin` subclass. `discover()` imports every module of the `methods`
package (and any extra packages named in `HARNESS_PLUGIN_PACKAGES`, comma
separated), so dropping a file into `methods/` is all it takes to add a method;
the core, the Snakefile and the tests never list methods.
"""
from __future__ import annotations

import importlib
import os
import pkgutil

from harness.errors import HarnessError
from harness.plugin.base import MethodPlugin

_REGISTRY: dict[str, type[MethodPlugin]] = {}
_discovered = False


def register_method(name: str):
    def wrap(cls: type[MethodPlugin]) -> type[MethodPlugin]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise HarnessError(
                f"two plugins register the method name {name!r}: {_REGISTRY[name].__module__} and {cls.__module__}",
                "rename one of them",
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def discover() -> None:
    global _discovered
    if _discovered:
        return
    packages = ["methods"] + [p for p in os.environ.get("HARNESS_PLUGIN_PACKAGES", "").split(",") if p]
    for pkg_name in packages:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")
    _discovered = True


def method_names() -> list[str]:
    discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodPlugin:
    discover()
    if name not in _REGISTRY:
        raise HarnessError(
            f"unknown method {name!r}",
            f"use one of: {', '.join(sorted(_REGISTRY))} (or add a plugin file to methods/)",
        )
    return _REGISTRY[name]()


def method_modules() -> dict[str, str]:
    """A registered method's plugin module -> its name (checkpoints name a method's classes by it)."""
    discover()
    return {cls.__module__: name for name, cls in sorted(_REGISTRY.items())}


def module_of_method(name: str):
    """The module of a registered method's plugin file (where a checkpoint's `method:<name>:` classes live)."""
    import sys

    return sys.modules[type(get_method(name)).__module__]
