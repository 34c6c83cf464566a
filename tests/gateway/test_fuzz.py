"""Fuzzing: no input makes the gateway answer 5xx, and no bytes crash request decoding."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_service.core.codec import decode_request
from inferq.errors import InferqError
from proto import models_pb2
from tests.stack import Stack

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def test_openapi_operations_never_answer_5xx(shared_stack: Stack) -> None:
    # Driven through schemathesis's Python API: its pytest plugin does not support pytest 9.
    api = schemathesis.openapi.from_url(f"{shared_stack.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @FUZZ
        def never_5xx(case: schemathesis.Case) -> None:
            response = case.call(base_url=shared_stack.url, timeout=40)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        never_5xx()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(body=st.dictionaries(st.sampled_from(["data", "pixels", "x", ""]), json_values))
@FUZZ
def test_json_bodies_get_2xx_or_4xx(shared_stack: Stack, body: dict[str, object]) -> None:
    for model in ("model_a", "model_b"):
        response = httpx.post(f"{shared_stack.url}/predict/{model}", json=body)
        assert response.status_code in (202, 422), response.text


@given(body=st.binary(max_size=512))
@FUZZ
def test_any_bytes_decode_or_fail_cleanly(body: bytes) -> None:
    for content_type in ("application/x-protobuf", "application/json"):
        for message in (models_pb2.ModelARequest, models_pb2.ModelBRequest):
            try:
                decode_request(body, content_type, message)
            except InferqError as error:
                assert 400 <= error.status_code < 500
