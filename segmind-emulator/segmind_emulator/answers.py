"""Building blocks of every HTTP answer: JSON errors as exceptions, the request body, our own URL.

Why errors are raised rather than returned: a handler that calls a helper (read the body, find
the job, charge the credit) would otherwise have to inspect every result for "was that an error
answer?". An :class:`aiohttp.web.HTTPException` carrying the JSON body ends the request from
anywhere, and the middleware turns it into the answer in one place (where stats and faults see it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

_EXCEPTIONS: dict[int, type[web.HTTPException]] = {
    cls.status_code: cls
    for cls in (
        web.HTTPBadRequest,
        web.HTTPUnauthorized,
        web.HTTPNotFound,
        web.HTTPNotAcceptable,
        web.HTTPUnprocessableEntity,
        web.HTTPTooManyRequests,
    )
}


def json_exception(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.HTTPException:
    """An exception that answers ``status`` with ``body`` as JSON (and ``headers``) when raised."""
    return _EXCEPTIONS[status](text=json.dumps(body), content_type="application/json", headers=headers)


def api_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.HTTPException:
    """The API's error shape, ``{"error": message}``: what the official SDK reads."""
    return json_exception(status, {"error": message}, headers)


def to_response(exc: web.HTTPException, path: str) -> web.Response:
    """A raised answer as a plain response; aiohttp's own (unknown path, wrong method) become JSON too."""
    if exc.content_type == "application/json":
        return web.Response(status=exc.status, reason=exc.reason, body=exc.body, headers=exc.headers)
    message = f"No such endpoint: {path}" if exc.status == 404 else exc.reason
    return web.json_response({"error": message}, status=exc.status)


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or the documented refusal: 406 for another Content-Type, 400 otherwise."""
    ctype = request.headers.get("Content-Type", "")
    if ctype and "json" not in ctype.lower():
        raise api_error(406, f"Unsupported Content-Type {ctype!r}: send application/json")
    raw = await request.read()
    if not raw.strip():
        raise api_error(400, "The request body is empty: send a JSON object of parameters")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise api_error(400, f"The request body is not valid JSON: {exc}") from None
    except RecursionError:  # "[[[[..." deeper than the parser's recursion limit: bad JSON, not a crash
        raise api_error(400, "The request body is not valid JSON: nested too deeply") from None


def origin(request: web.Request) -> str:
    """Base URL as the client reached us (Host header), so the URLs we hand out work for any port or name."""
    return f"{request.scheme}://{request.host}"
