"""Errors as OpenAI sends them: ``{"error": {"message", "type", "param", "code"}}`` with the right status.

OpenAI clients read that body (the ``openai`` package raises ``BadRequestError``,
``AuthenticationError``, ``NotFoundError``, ``RateLimitError``... by status and shows the message),
so every way a request can fail ends here, in that shape:

* :class:`APIError`, raised by the routes: an unknown model (404), a bad key (401), a full queue (429);
* a body that does not fit the schema (FastAPI's ``RequestValidationError``, a 422 by default):
  400, with ``param`` naming the field, ``messages[0].role`` style;
* :class:`fromzero.errors.FromzeroError`, the library's own user errors (a prompt too long for the
  context, a character the tokenizer lacks): 400 with its one-line message;
* an unknown path or method: 404 / 405;
* anything else is a bug in fromzero: 500, logged with its traceback, never shown to the client.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fromzero.errors import FromzeroError

log = logging.getLogger("fromzero.serve")

INVALID = "invalid_request_error"
HTTP_MESSAGES = {404: "no such route: see /docs for the API", 405: "this route does not take that method"}


class APIError(Exception):
    """A request that fails for a reason the client can act on."""

    def __init__(self, status: int, message: str, type: str = INVALID, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


def error_body(message: str, type: str = INVALID, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.type, error.param, error.code), error.status,
                        headers=error.headers)


def install(app: FastAPI) -> None:
    """Make every failure of ``app`` answer in OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error.errors()))

    @app.exception_handler(FromzeroError)
    async def user_error(request: Request, error: FromzeroError) -> JSONResponse:
        return error_response(APIError(400, str(error)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = HTTP_MESSAGES.get(error.status_code, str(error.detail))
        return error_response(APIError(error.status_code, message, headers=error.headers))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, "internal server error (a bug in fromzero: the server log has the "
                                            "traceback)", type="server_error"))


def validation_error(errors: Sequence[dict[str, Any]]) -> APIError:
    """One 400 for pydantic's list of errors: the first bad field, with every reason it failed.

    A field that may take several types (``stop``: a string or a list) fails once per type, each
    error's location ending in the name of the type tried; the start they share is the field.
    """
    first = errors[0]
    if first["type"] == "json_invalid":
        return APIError(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})")
    locs = [[part for part in error["loc"] if part != "body"] for error in errors]
    if not locs[0]:
        return APIError(400, f"the request body must be a JSON object: {first['msg']}")
    field = [(loc, error) for loc, error in zip(locs, errors) if loc[:1] == locs[0][:1]]
    param = _param(os.path.commonprefix([loc for loc, _ in field]))  # works on lists too, item by item
    if first["type"] == "missing":
        return APIError(400, f"{param} is required", param=param, code="missing_field")
    reasons = "; or ".join(dict.fromkeys(error["msg"] for _, error in field))
    return APIError(400, f"invalid {param}: {reasons}", param=param, code="invalid_value")


def _param(loc: Sequence[str | int]) -> str:
    """``["messages", 0, "role"]`` -> ``"messages[0].role"``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
