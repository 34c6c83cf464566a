"""Turns every error into the JSON error shape with its status: inferq's own errors, Redis
failures, FastAPI's request validation, and a last one so nothing leaks a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from api_service.responses import JSONResponse
from inferq.errors import InferqError, StoreUnavailable, http_status

logger = logging.getLogger(__name__)


def error_response(error: Exception, method: str, path: str) -> JSONResponse:
    """The answer to an error raised while serving ``method path``: inferq's own errors with
    their status, Redis failures as 503, anything else as a logged 500."""
    if isinstance(error, RedisError):
        logger.warning("Redis failed on %s %s: %r", method, path, error)
        error = StoreUnavailable("the task store is unavailable", 2)
    if isinstance(error, InferqError):
        return JSONResponse(error.to_json(), status_code=http_status(error), headers=error.headers)
    logger.error("unhandled error on %s %s", method, path, exc_info=error)
    body = {"error": {"type": "InternalError", "message": "internal error; see gateway log"}}
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferqError)
    @app.exception_handler(RedisError)
    @app.exception_handler(Exception)
    async def known_error(request: Request, error: Exception) -> JSONResponse:
        return error_response(error, request.method, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        body = {"error": {"type": "InvalidRequest", "message": "; ".join(problems)}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        body = {"error": {"type": "HTTPError", "message": str(error.detail)}}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)
