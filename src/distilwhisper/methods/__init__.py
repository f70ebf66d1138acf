"""The training methods, one module each, and the one registry that maps a `--method` name to its `Method`.

Adding a method: write a module with a `Method` subclass (methods/base.py says what it decides) and add it to
`register(...)` below, or call `register` from your own code before `train`; nothing else names methods.
"""

from __future__ import annotations

from distilwhisper.methods import clsr_ft, distilwhisper, ft, lora
from distilwhisper.methods.base import Method

_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Make `method` a `--method` value of `train` (and loadable from the run folders it writes)."""
    if not method.name:
        raise ValueError(f"{type(method).__name__}: a method needs a name")
    _REGISTRY[method.name] = method
    return method


def names() -> tuple[str, ...]:
    """Every registered method's name, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Method:
    """The method called `name`; an unknown name is refused, listing the others."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"--method must be one of {', '.join(_REGISTRY)}, not {name!r}") from None


for _module in (distilwhisper, clsr_ft, ft, lora):
    register(_module.METHOD)

__all__ = ["Method", "get", "names", "register"]
