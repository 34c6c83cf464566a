"""Model workers: the `Model` base class users subclass, and the runtime that serves it."""

from workers.base import BytesModel, Model

__all__ = ["BytesModel", "Model"]
