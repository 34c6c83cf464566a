"""OpenTelemetry tracing: W3C trace context in, through the task envelope, out.

Trace context always flows (so log lines carry trace ids); spans are recorded and exported
over OTLP only when the standard variables ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER=otlp``; ``console`` prints
them). Without an exporter the sampler drops every span: ids are still made and propagated,
at a fraction of the cost (recording spans nobody reads cost the gateway 25 % throughput).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def setup_tracing(service_name: str) -> None:
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    wants_otlp = exporter == "otlp" or (
        exporter != "none"
        and any(
            os.environ.get(name)
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
    )
    if wants_otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)


def extract(carrier: Mapping[str, str]) -> Context:
    """The trace context a ``traceparent``/``tracestate`` carrier holds (empty if none)."""
    return _propagator.extract(carrier)


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Writes the current trace context into ``carrier`` and returns it."""
    _propagator.inject(carrier)
    return carrier


def trace_id_in(carrier: Mapping[str, str]) -> str | None:
    """The trace id a carrier's ``traceparent`` names, for log lines outside any span."""
    context = trace.get_current_span(extract(carrier)).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
