"""Turns every error into the JSON error shape with its status: one handler for inferq's own
errors, one for FastAPI's request validation, and a last one so nothing leaks a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from api_service.responses import JSONResponse
from inferq.errors import InferqError, StoreUnavailable

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferqError)
    async def inferq_error(_: Request, error: InferqError) -> JSONResponse:
        return JSONResponse(error.to_json(), status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RedisError)
    async def redis_error(request: Request, error: RedisError) -> JSONResponse:
        logger.warning("Redis failed on %s %s: %r", request.method, request.url.path, error)
        return await inferq_error(request, StoreUnavailable("the task store is unavailable", 2))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        body = {"error": {"type": "InvalidRequest", "message": "; ".join(problems)}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        body = {"error": {"type": "HTTPError", "message": str(error.detail)}}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"error": {"type": "InternalError", "message": "internal error; see gateway log"}}
        return JSONResponse(body, status_code=500)
