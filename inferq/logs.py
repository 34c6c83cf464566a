"""Logging set-up, called only by entry points (libraries just use module loggers).

Lines are JSON (one object a line, for log shippers) or plain text on a terminal; pick with
``INFERQ_LOG_FORMAT`` = ``json`` | ``text`` | ``auto`` (default: text on a terminal, else
JSON). Every line carries the current OpenTelemetry trace id when there is one, and the
``task_id`` / ``model`` a caller passes in ``extra``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson
from opentelemetry import trace

CONTEXT_FIELDS = ("task_id", "model", "worker_id", "trace_id", "span_id")


class TraceContextFilter(logging.Filter):
    """Adds the active span's trace and span ids to each record that has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "trace_id", None):
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{field}={getattr(record, field)}"
            for field in CONTEXT_FIELDS
            if getattr(record, field, None)
        )
        return f"{super().format(record)}{'  ' + context if context else ''}"


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    fmt = fmt or os.environ.get("INFERQ_LOG_FORMAT", "auto")
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("INFERQ_LOG_LEVEL", "INFO")).upper())
    # aio-pika logs every reconnect attempt at length; its warnings are enough.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
