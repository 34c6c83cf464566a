"""Finds the model class a worker serves, from a built-in name or an import string."""

from __future__ import annotations

import importlib

from workers.base import Model

BUILTIN_MODELS = {
    "model_a": "workers.models.model_a:ModelA",
    "model_b": "workers.models.model_b:ModelB",
    "sleep": "workers.models.sleep:SleepModel",
    "big_mlp": "workers.models.big_mlp:BigMLP",
}


def load_model_class(target: str) -> type[Model]:  # type: ignore[type-arg]
    """``model_a`` or ``package.module:ClassName`` -> the class."""
    import_string = BUILTIN_MODELS.get(target, target)
    module_name, _, class_name = import_string.partition(":")
    if not class_name:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ValueError(f"{target!r} is neither a built-in model ({known}) nor 'module:Class'")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ValueError(f"{import_string!r} is not a subclass of workers.Model")
    for attribute in ("name", "request_type", "response_type"):
        if not hasattr(cls, attribute):
            raise ValueError(f"{import_string!r} must set the class attribute {attribute!r}")
    return cls
