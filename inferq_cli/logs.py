"""Logging set-up, called only by entry points (libraries just use module loggers).

Lines go to stderr as JSON (one object a line, for log shippers) or plain text on a
terminal (``INFERQ_LOG_FORMAT`` = ``json`` | ``text`` | ``auto``), and with ``INFERQ_LOG_FILE``
also to that file as JSON lines, rotated by size. Every line carries the current
OpenTelemetry trace id when there is one, and the context fields (``task_id``, ``model`` ...)
a caller passes in ``extra``. The settings are `inferq.settings.LogSettings`.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace

from inferq.settings import LogSettings

CONTEXT_FIELDS = (
    "task_id",
    "model",
    "status",
    "queue_ms",
    "run_ms",
    "http_status",
    "duration_ms",
    "worker_id",
    "trace_id",
    "span_id",
)


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
    converter = time.gmtime  # type: ignore[assignment]  # the "Z" below says UTC

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None and value != "":  # a queue time of 0 ms is still one
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
            if getattr(record, field, None) not in (None, "")
        )
        return f"{super().format(record)}{'  ' + context if context else ''}"


def configure_logging(settings: LogSettings | None = None) -> None:
    settings = settings or LogSettings()
    fmt = settings.format
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    console = logging.StreamHandler()
    console.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handlers: list[logging.Handler] = [console]
    if settings.file:
        Path(settings.file).parent.mkdir(parents=True, exist_ok=True)
        # JSON whatever the terminal shows: a file is read by programs and by grep.
        to_file = logging.handlers.RotatingFileHandler(
            settings.file,
            maxBytes=settings.file_max_bytes,
            backupCount=settings.file_backups,
            encoding="utf-8",
        )
        to_file.setFormatter(JsonFormatter())
        handlers.append(to_file)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    for handler in handlers:
        handler.addFilter(TraceContextFilter())
    root.handlers[:] = handlers
    root.setLevel(settings.level.upper())
    # No format here shows the caller's file and line, thread or process: not looking them
    # up makes a record ~20 % cheaper (a worker writes one per task). The logging HOWTO's
    # "Optimization" section names these switches.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # aio-pika logs every reconnect attempt at length; its warnings are enough.
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    # Alembic says "setup plugin ..." ten times each time a process opens the catalog;
    # httpx a line per request of `inferq predict` (the client).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def log_file_for(base: str, process: str) -> str:
    """The log file of one of several processes started together (`inferq up`, replicas):
    each writes its own, since a rotating file cannot be shared by processes."""
    path = Path(base)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in process)
    return str(path.with_name(f"{path.stem}-{safe}{path.suffix}"))
