"""Deferred imports for modules that plugins import at registration time.

Method modules subclass the shared episode classes, so registering them (``rlcf-bench ls``) would
import torch (about 2.5 s) if those classes imported it at module level. They use these stand-ins
instead: the real module is imported on first attribute access, i.e. when a run needs it.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class LazyModule(types.ModuleType):
    """A module proxy that imports ``name`` on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_lazy_target"])
        return getattr(module, attr)


def no_grad(fn: F) -> F:
    """``torch.no_grad()`` as a decorator, without importing torch at decoration time."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
