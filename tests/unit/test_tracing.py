"""Trace ids for log lines written outside any span (the dead-letter consumer's)."""

from inferq.tracing import inject, trace_id_in

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_trace_id_in_reads_a_traceparent() -> None:
    assert trace_id_in({"traceparent": TRACEPARENT}) == "0af7651916cd43dd8448eb211c80319c"


def test_trace_id_in_is_none_without_a_valid_traceparent() -> None:
    assert trace_id_in({}) is None
    assert trace_id_in({"traceparent": "garbage"}) is None
    assert trace_id_in(inject({})) is None  # no active span: nothing to carry
