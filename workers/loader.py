"""Finds the model class a worker serves, from a built-in name, an import string, or
``onnx:NAME[@REF]`` for a version stored in the catalog.

An import string names a module the way uvicorn and Celery name apps: relative to the
directory the command runs in (``--app-dir``, default the current directory), which is put
first on the import path, so a model in the user's own folder loads without installing it.

``onnx:digits``, ``onnx:digits@3`` and ``onnx:digits@production`` name a catalog version
(`catalog.names`): the reference is resolved once, when the worker starts, and the worker
serves that version (``digits@3``) until it stops, even if the alias moves meanwhile.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from inferq.errors import InferqError
from inferq.settings import CatalogSettings
from workers.base import BytesModel, Model

if TYPE_CHECKING:
    from workers.onnx_model import OnnxModel

BUILTIN_MODELS = {
    "model_a": "workers.models.model_a:ModelA",
    "model_b": "workers.models.model_b:ModelB",
    "sleep": "workers.models.sleep:SleepModel",
    "big_mlp": "workers.models.big_mlp:BigMLP",
}
ONNX_PREFIX = "onnx:"


def load_model_class(target: str, app_dir: str | Path = ".") -> type[Model]:  # type: ignore[type-arg]
    """``model_a``, ``package.module:ClassName`` (importable from ``app_dir``) or
    ``onnx:NAME[@REF]`` -> the class."""
    if target.startswith(ONNX_PREFIX):
        return load_onnx_model_class(target.removeprefix(ONNX_PREFIX), CatalogSettings())
    import_string = BUILTIN_MODELS.get(target, target)
    module_name, _, class_name = import_string.partition(":")
    if not class_name:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ValueError(
            f"{target!r} is neither a built-in model ({known}), 'module:Class' nor "
            "'onnx:NAME[@REF]' (a catalog version)"
        )
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


def load_onnx_model_class(ref: str, settings: CatalogSettings) -> type[OnnxModel]:
    """The class serving the catalog version ``ref`` names, its file fetched to the cache.
    Raises ValueError for an unknown model, version or alias, or a file the store lacks."""
    # Imported here: a class model's worker needs neither the database nor ONNX Runtime.
    from sqlalchemy.exc import SQLAlchemyError

    from catalog.db import Catalog
    from catalog.files import open_model_files
    from workers.onnx_model import onnx_model_class

    try:
        catalog = Catalog.open(settings.catalog_url)
        try:
            version = catalog.resolve(ref)
        finally:
            catalog.close()
        files = open_model_files(settings.model_store_url)
        path = files.local_path(version.file_key, Path(settings.model_cache_dir))
    except InferqError as error:
        raise ValueError(f"cannot serve onnx:{ref}: {error.message}") from error
    except SQLAlchemyError as error:  # the database is down, or the URL is wrong
        raise ValueError(
            f"cannot serve onnx:{ref}: cannot read the catalog at {settings.catalog_url} "
            f"(INFERQ_CATALOG_URL): {type(error).__name__}: {error}"
        ) from error
    return onnx_model_class(version, path)
