"""The OpenAPI document: FastAPI's, for the routes it serves, plus the two hot routes the
front door serves, with each live model's request and response schema under
``/predict/{model}`` (derived from the descriptors its workers registered)."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from api_service.core.gateway import MAX_DEADLINE_S, MAX_WAIT_S, Gateway
from model_registry.json_schema import message_json_schema

ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            "required": ["type", "message"],
        }
    },
}
TASK_VIEW = {
    "type": "object",
    "description": "The task: status (queued, running, succeeded, failed, expired), result "
    "(the response message as JSON) when succeeded, error when failed or expired, timestamps.",
    "properties": {
        "task_id": {"type": "string"},
        "model": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "expired"]},
        "result": {"type": "object"},
        "error": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "deadline": {"type": "string", "format": "date-time"},
        "worker_id": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
    },
}


def _wait(what: str) -> dict[str, Any]:
    return {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": f"Hold up to S seconds for {what}",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S, "default": 0},
    }


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"description": "error", "content": {"application/json": {"schema": ERROR}}}
            for code in codes}  # fmt: skip


def hot_paths(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The two hot routes; ``models``: each live model's request and response schema."""
    request_schemas = [{"title": name, **schemas["request"]} for name, schemas in models.items()]
    # ({"title", "$ref"}: a title beside a $ref names the model in the docs' picker.)
    json_body: dict[str, Any] = {"type": "object"}
    if request_schemas:
        json_body = {"oneOf": request_schemas}
    predict = {
        "tags": ["tasks"],
        "summary": "Submit a prediction task",
        "description": "The body is the model's request message as JSON (proto3 JSON mapping) "
        "or binary protobuf. 202 once the broker confirmed the task; with ?wait=S, 200 with "
        "the whole task if it ended within S. Headers: Idempotency-Key, X-Inferq-Timeout, "
        "traceparent.",
        "parameters": [
            {
                "name": "model",
                "in": "path",
                "required": True,
                "schema": {"type": "string", **({"enum": list(models)} if models else {})},
            },
            _wait("the result"),
            {
                "name": "timeout",
                "in": "query",
                "required": False,
                "description": "The task's deadline, seconds from now",
                "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEADLINE_S},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_body},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {"description": "ended within the wait",
                    "content": {"application/json": {"schema": TASK_VIEW}}},
            "202": {"description": "accepted, pending",
                    "content": {"application/json": {"schema": TASK_VIEW}}},
            **_errors("404", "408", "413", "415", "422", "429", "503"),
        },
    }  # fmt: skip
    task = {
        "tags": ["tasks"],
        "summary": "A task's status and result",
        "parameters": [
            {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
            _wait("the task to end"),
        ],
        "responses": {
            "200": {"description": "the task",
                    "content": {"application/json": {"schema": TASK_VIEW}}},
            **_errors("404", "422", "503"),
        },
    }  # fmt: skip
    return {"/predict/{model}": {"post": predict}, "/tasks/{task_id}": {"get": task}}


async def openapi_document(app: FastAPI, gateway: Gateway) -> dict[str, Any]:
    """The whole document, with the models live now."""
    document = copy.deepcopy(app.openapi())
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    models = {
        entry.record.name: {
            "request": _component(message_json_schema(entry.request_class.DESCRIPTOR), components),
            "response": _component(
                message_json_schema(entry.response_class.DESCRIPTOR), components
            ),
        }
        for entry in await gateway.entries()
        if entry.workers
    }
    document["paths"] = {**hot_paths(models), **document.get("paths", {})}
    return document


def _component(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Moves a message's JSON Schema and its ``$defs`` into the document's components (a
    ``$ref`` inside an embedded schema would resolve against the document, not the schema);
    returns a reference to it."""
    root = schema.pop("title")
    schema.pop("$schema", None)
    place = "#/components/schemas/"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref == "#":
                return {**node, "$ref": place + root}
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return {**node, "$ref": place + ref.removeprefix("#/$defs/")}
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(value) for value in node]
        return node

    for name, definition in schema.pop("$defs", {}).items():
        components[name] = rewrite(definition)
    components[root] = {"title": root, **rewrite(schema)}
    return {"$ref": place + root}
