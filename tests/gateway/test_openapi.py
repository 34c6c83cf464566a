"""The OpenAPI document a client generator reads: the hot routes, with each live model's
request schema under ``/predict/{model}``."""

from __future__ import annotations

import httpx

from tests.stack import Stack


def test_the_openapi_document_shows_each_live_models_request_schema(shared_stack: Stack) -> None:
    document = httpx.get(f"{shared_stack.url}/openapi.json").json()
    predict = document["paths"]["/predict/{model}"]["post"]
    [model_parameter] = [p for p in predict["parameters"] if p["name"] == "model"]
    assert {"model_a", "model_b"} <= set(model_parameter["schema"]["enum"])
    body = predict["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    by_title = {schema["title"]: schema["$ref"] for schema in body}
    components = document["components"]["schemas"]
    model_b = components[by_title["model_b"].rsplit("/", 1)[1]]
    assert model_b["properties"]["pixels"]["type"] == "array"
    assert components[by_title["model_a"].rsplit("/", 1)[1]]["properties"]["data"] == {
        "type": "string"
    }
    assert "/tasks/{task_id}" in document["paths"] and "/models" in document["paths"]
    # Every $ref resolves inside the document.
    refs = {ref for ref in _refs(document) if ref.startswith("#/")}
    for ref in refs:
        node = document
        for part in ref[2:].split("/"):
            node = node[part]
    docs = httpx.get(f"{shared_stack.url}/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
