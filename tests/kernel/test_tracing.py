"""Trace context without recorded spans (the default): what the gateway passes on, and the
trace ids of log lines."""

import pytest

from inferq.tracing import inject, server_span, start_consumer_span, trace_id_in

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_trace_id_in_reads_a_traceparent() -> None:
    assert trace_id_in({"traceparent": TRACEPARENT}) == "0af7651916cd43dd8448eb211c80319c"


def test_trace_id_in_is_none_without_a_valid_traceparent() -> None:
    assert trace_id_in({}) is None
    assert trace_id_in({"traceparent": "garbage"}) is None
    assert trace_id_in(inject({})) is None  # no active span: nothing to carry


def test_an_unrecorded_server_span_continues_the_callers_trace() -> None:
    with server_span("POST", {"traceparent": TRACEPARENT, "tracestate": "k=v"}) as span:
        passed_on = span.trace_context
    version, trace_id, span_id, flags = passed_on["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "00")
    assert span_id != "b7ad6b7169203331" and len(span_id) == 16  # a span of its own
    assert passed_on["tracestate"] == "k=v"


@pytest.mark.parametrize(
    "headers",
    [{}, {"traceparent": "garbage"}, {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"}],
)
def test_an_unrecorded_server_span_starts_a_trace_when_there_is_none(headers: dict) -> None:
    with server_span("POST", headers) as first, server_span("POST", headers) as second:
        ids = [trace_id_in(s.trace_context) for s in (first, second)]
    assert all(ids) and ids[0] != ids[1]  # valid and new each time
    assert "tracestate" not in first.trace_context


def test_an_unrecorded_consumer_span_carries_the_senders_ids_for_log_lines() -> None:
    context = start_consumer_span("run", {"traceparent": TRACEPARENT}).get_span_context()
    assert (format(context.trace_id, "032x"), format(context.span_id, "016x")) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert not start_consumer_span("run", {}).get_span_context().is_valid
