"""Model workers: the `Model` base class users subclass, and the runtime that serves it."""

from workers.base import Model

__all__ = ["Model"]
