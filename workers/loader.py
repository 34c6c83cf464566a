"""Finds the model class a worker serves, from a built-in name or an import string.

An import string names a module the way uvicorn and Celery name apps: relative to the
directory the command runs in (``--app-dir``, default the current directory), which is put
first on the import path, so a model in the user's own folder loads without installing it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from workers.base import BytesModel, Model

BUILTIN_MODELS = {
    "model_a": "workers.models.model_a:ModelA",
    "model_b": "workers.models.model_b:ModelB",
    "sleep": "workers.models.sleep:SleepModel",
    "big_mlp": "workers.models.big_mlp:BigMLP",
}


def load_model_class(target: str, app_dir: str | Path = ".") -> type[Model]:  # type: ignore[type-arg]
    """``model_a`` or ``package.module:ClassName`` (importable from ``app_dir``) -> the class."""
    import_string = BUILTIN_MODELS.get(target, target)
    module_name, _, class_name = import_string.partition(":")
    if not class_name:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ValueError(f"{target!r} is neither a built-in model ({known}) nor 'module:Class'")
    directory = str(Path(app_dir).resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ValueError(
                f"cannot import {module_name!r}: no module {error.name!r} in {directory} "
                "(run the command from the folder that holds it, or pass --app-dir)"
            ) from error
        raise
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ValueError(f"{import_string!r} is not a subclass of workers.Model")
    if issubclass(cls, BytesModel):
        required: tuple[str, ...] = ("name", "get_request_format", "get_response_format")
        missing = [a for a in required if getattr(cls, a, None) is getattr(BytesModel, a, None)]
    else:
        missing = [a for a in ("name", "request_type", "response_type") if not hasattr(cls, a)]
    if missing:
        raise ValueError(f"{import_string!r} must define {', '.join(map(repr, missing))}")
    return cls
