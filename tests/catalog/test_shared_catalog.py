"""Several gateways sharing one catalog, as a deployment runs them: the catalog on the real
PostgreSQL, the model files in an S3-compatible store (moto's server, reached over HTTP by
boto3), a worker that fetches its file from there. A model uploaded through one gateway is
predicted on through the other."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import httpx
import pytest

from tests.catalog.databases import postgres_schema
from tests.catalog.s3_server import S3Server
from tests.conftest import new_namespace
from tests.models.onnx_graphs import doubler
from tests.stack import Stack


@pytest.fixture
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Stack]]:
    namespace = new_namespace()
    logs = tmp_path_factory.mktemp(namespace)
    with S3Server(logs / "moto.log") as s3, postgres_schema("test_shared") as catalog_url:
        credentials = {
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        bucket = f"test-{os.urandom(4).hex()}"
        boto3.client("s3", endpoint_url=s3.endpoint, **_keys(credentials)).create_bucket(
            Bucket=bucket
        )
        env = {
            **credentials,
            "INFERQ_CATALOG_URL": catalog_url,
            "INFERQ_MODEL_STORE_URL": f"s3://{bucket}/models",
            "INFERQ_MODEL_CHANGES": "loopback",
        }
        with (
            Stack(namespace, logs / "a", **env) as first,
            Stack(namespace, logs / "b", **env) as second,
        ):
            first.start_gateway()
            second.start_gateway()
            yield first, second


def _keys(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        "region_name": credentials["AWS_DEFAULT_REGION"],
    }


def test_an_upload_to_one_gateway_is_served_through_the_other(
    two_gateways: tuple[Stack, Stack],
) -> None:
    first, second = two_gateways
    uploaded = httpx.post(
        f"{first.url}/models/shared/versions",
        files={"file": ("m.onnx", doubler(5.0))},
        data={"alias": "production"},
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text
    seen = httpx.get(f"{second.url}/models/shared/versions", timeout=10).json()
    assert [v["sha256"] for v in seen["versions"]] == [uploaded.json()["sha256"]]

    worker = second.start_worker("onnx:shared@production")  # its file comes from S3
    second.wait_live("shared@1", timeout=60, watch=[worker])
    answer = httpx.post(
        f"{first.url}/predict/shared@production", params={"wait": 10}, json={"x": [1, 2, 3]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == {"y": [5.0, 10.0, 15.0]}
    cached = list((second.log_dir / "model-cache").rglob("*.onnx"))
    assert len(cached) == 1 and cached[0].read_bytes() == doubler(5.0)

    moved = httpx.put(f"{second.url}/models/shared/aliases/canary", json={"version": 1}, timeout=10)
    assert moved.status_code == 200
    listed = httpx.get(f"{first.url}/catalog", timeout=10).json()["models"]
    assert listed[0]["aliases"] == {"canary": 1, "production": 1}
