"""Fuzzing: no input makes the gateway answer 5xx, and no bytes crash request decoding."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_service.core.codec import decode_request
from catalog.db import Catalog
from inferq.errors import InferqError
from proto import models_pb2
from tests.conftest import make_stack
from tests.stack import Stack

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A gateway of its own, requiring keys, and a key with every scope: the fuzzing reaches
    every operation, the admin ones too (`POST /keys` makes keys, which must not land in the
    shared gateway's catalog), and changes nothing another test reads."""
    for stack in make_stack(tmp_path_factory, INFERQ_AUTH="on"):
        with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
            token = catalog.create_key("fuzz", ["predict", "read", "admin"]).secret
        stack.api_key = token
        stack.start_gateway()
        stack.start_worker("model_a")
        stack.wait_live("model_a")
        yield stack, token


def test_openapi_operations_never_answer_5xx(keyed: tuple[Stack, str]) -> None:
    stack, token = keyed
    headers = {"Authorization": f"Bearer {token}"}
    # Driven through schemathesis's Python API: its pytest plugin does not support pytest 9.
    api = schemathesis.openapi.from_url(f"{stack.url}/openapi.json", headers=headers)
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 6
    assert any(op.path == "/keys" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @FUZZ
        def never_5xx(case: schemathesis.Case) -> None:
            response = case.call(base_url=stack.url, headers=headers, timeout=40)
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
