"""The Segmind API contract: the facts every model shares, in one place.

URLs and paths, the request states, how long requests are kept, the map from an HTTP answer to
an exception, and how an answer is read. The sync hook, the async hook, the operators, the
sensor and the trigger all import it, so a rule changes in one line and every side agrees. What
one model accepts is not here but in its own module under :mod:`airflow_provider_muscle_surge.models`;
:func:`validate_payload` looks the model up there.

This module does no I/O and imports nothing heavy: DAG files reach it at parse time.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    BadRequest,
    InferenceFailed,
    InsufficientCredits,
    InvalidParameter,
    MalformedResponse,
    ModelNotFound,
    RateLimited,
    RequestExpired,
    SegmindError,
    ServerError,
    TransportError,
)
from airflow_provider_muscle_surge.models import MODELS

# The slug the provider is named for, kept reachable as ``contract.MUSCLE_SURGE``: the hooks and the
# sensor wait on it by default when the model of a request is not known.
from airflow_provider_muscle_surge.models.muscle_surge import MUSCLE_SURGE
from airflow_provider_muscle_surge.retry import retry_after_seconds
from airflow_provider_muscle_surge.uris import join_url

# --- endpoints --------------------------------------------------------------------------------
DEFAULT_HOST = "https://api.segmind.com"
#: The real service takes uploads on a separate host; the emulator serves the same path itself.
REAL_UPLOAD_URL = "https://workflows-api.segmind.com/upload-asset"
UPLOAD_PATH = "/upload-asset"
API_KEY_HEADER = "x-api-key"
#: How long the service keeps a v2 request record and its result.
RETENTION_SECONDS = 3600
#: The Airflow connection the hooks, operators and sensor use unless told otherwise. Here rather
#: than in the hooks: the operators need it while a DAG file is parsed, and must not import them.
DEFAULT_CONN_ID = "segmind_default"


def v1_path(model: str) -> str:
    return f"/v1/{_slug(model)}"


def v2_submit_path(model: str) -> str:
    return f"/v2/{_slug(model)}"


def status_path(request_id: str) -> str:
    return f"/v2/requests/{_request_id(request_id)}/status"


def result_path(request_id: str) -> str:
    return f"/v2/requests/{_request_id(request_id)}"


def status_url(base_url: str, request_id: str) -> str:
    """The full status URL of a request on ``base_url``: what the operators and the sensor show."""
    return join_url(base_url, status_path(request_id))


def upload_url_for(host: str) -> str:
    """Where uploads go: Segmind's storage host for the real API, the same host otherwise."""
    if urlsplit(host).hostname == "api.segmind.com":
        return REAL_UPLOAD_URL
    return join_url(host, UPLOAD_PATH)


_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _slug(model: str) -> str:
    if not isinstance(model, str) or not _SLUG_RE.match(model):
        raise InvalidParameter("model", model, f"a Segmind model slug such as {MUSCLE_SURGE!r}")
    return model


def _request_id(request_id: str) -> str:
    if not isinstance(request_id, str) or not _ID_RE.match(request_id):
        raise InvalidParameter("request_id", request_id, "letters, digits, '-' or '_' only")
    return request_id


# --- request states ---------------------------------------------------------------------------
class RequestStatus(str, enum.Enum):
    """States of a v2 request. FAILED includes content (responsible-AI) blocks."""

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (RequestStatus.COMPLETED, RequestStatus.FAILED)

    @classmethod
    def parse(cls, body: Any, *, request_id: str | None = None) -> RequestStatus:
        """Read the state from a status body; anything else is a malformed answer, never "pending"."""
        value = body.get("status") if isinstance(body, Mapping) else None
        try:
            return cls(value)
        except ValueError:
            raise MalformedResponse(
                f"Segmind answered an unknown request state {value!r} for {request_id or 'a request'}; "
                f"expected one of {[s.value for s in cls]}. Body: {shorten(body)}",
                request_id=request_id,
            ) from None


def live_status(body: Any, request_id: str) -> RequestStatus:
    """The state of a status body, raising ``InferenceFailed`` with the server's detail on FAILED."""
    status = RequestStatus.parse(body, request_id=request_id)
    if status is RequestStatus.FAILED:
        raise error_for_status(422, body, request_id=request_id)
    return status


@dataclass(frozen=True)
class Submission:
    """What a v2 submit returns: the three fields the SDK also insists on."""

    request_id: str
    status_url: str
    response_url: str

    @classmethod
    def parse(cls, body: Any) -> Submission:
        if isinstance(body, Mapping):
            fields = [body.get(k) for k in ("request_id", "status_url", "response_url")]
            if all(isinstance(f, str) and f for f in fields):
                return cls(*fields)
        raise MalformedResponse(
            "Segmind accepted the submit but its answer lacks request_id/status_url/response_url; "
            f"the job may have been billed, check the Segmind console. Body: {shorten(body)}"
        )


#: Server-provided text quoted in an error is cut to this many characters: a 5 MB ``error`` must not
#: become a 5 MB exception, log line and trigger event.
DETAIL_LIMIT = 2000


def failure_detail(body: Any) -> str:
    """The server's explanation of a failure, wherever in the body it put it (at most ``DETAIL_LIMIT``)."""
    if isinstance(body, Mapping):
        for key in ("error", "detail", "message", "error_message"):
            value = body.get(key)
            if value:
                return _cut(value if isinstance(value, str) else _safe_str(value), DETAIL_LIMIT)
    if isinstance(body, str) and body.strip():
        return _cut(body.strip(), 500)
    return "no detail given"


def shorten(body: Any, limit: int = 300) -> str:
    return _cut(_safe_str(body, repr), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _safe_str(value: Any, how: Any = str) -> str:
    try:
        return how(value)
    except (RecursionError, ValueError):  # a deeply nested body, or an int too long to print
        return f"<unprintable {type(value).__name__}>"


# --- HTTP answer -> exception -----------------------------------------------------------------
def error_for_status(
    status_code: int,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> SegmindError:
    """Map a non-2xx answer to the exception the whole provider raises for it.

    ``request_id`` says the call was about an existing request (status/result), which turns a
    404 into :class:`RequestExpired` and names the 1-hour retention.
    """
    detail = failure_detail(body)
    kw: dict[str, Any] = {"status_code": status_code, "detail": detail, "request_id": request_id}
    if status_code == 400:
        return BadRequest(f"Segmind rejected the request (HTTP 400): {detail}. Fix the parameters; not retried.", **kw)
    if status_code in (401, 403):
        what = "rejected the API key" if status_code == 401 else "refused access with this API key"
        return AuthenticationError(
            f"Segmind {what} (HTTP {status_code}): {detail}. Check the password of the Segmind "
            "connection (a key from cloud.segmind.com/console/api-keys); not retried.",
            **kw,
        )
    if status_code == 404 and request_id:
        return RequestExpired(
            f"Segmind does not know request {request_id} (HTTP 404): {detail}. Requests and their results "
            "are kept for 1 hour; an older one has expired and must be submitted again.",
            **kw,
        )
    if status_code == 404:
        return ModelNotFound(f"Segmind has no such model or endpoint (HTTP 404): {detail}. Check the model slug.", **kw)
    if status_code == 406:
        return InsufficientCredits(
            f"Segmind refused the request (HTTP 406): {detail}. Usually insufficient credits or a team spend "
            "limit: top up at cloud.segmind.com/console/billing; not retried.",
            **kw,
        )
    if status_code == 422:
        where = f"request {request_id}" if request_id else "the request"
        return InferenceFailed(
            f"Segmind {where} FAILED: {detail}. A content block or an unreadable input will not pass on "
            "retry: change the input image or parameters.",
            **kw,
        )
    if status_code == 408:
        # The server gave up waiting for the request to arrive: nothing was processed.
        return TransportError(
            f"Segmind timed out receiving the request (HTTP 408): {detail}. Retried.", outcome_unknown=False, **kw
        )
    if status_code == 501:
        return BadRequest(f"Segmind does not implement this call (HTTP 501): {detail}. Not retried.", **kw)
    if status_code == 429:
        hint = f"; the server asks to wait {retry_after:.1f}s" if retry_after is not None else ""
        return RateLimited(f"Segmind rate limit reached (HTTP 429){hint}: {detail}.", retry_after=retry_after, **kw)
    if 500 <= status_code <= 599:
        # A 503 that explains itself in JSON is the service refusing work; a 500, or a gateway's
        # 502/504/bare 503, may come after the service already acted on the request.
        refused = status_code == 503 and isinstance(body, Mapping)
        return ServerError(
            f"Segmind server error (HTTP {status_code}): {detail}. Retried with backoff.",
            outcome_unknown=not refused,
            **kw,
        )
    return BadRequest(f"Segmind answered HTTP {status_code}: {detail}.", **kw)


# --- request bodies ------------------------------------------------------------------------
def validate_payload(model: str, payload: Any) -> dict[str, Any]:
    """Validate a request body for any model: a model in ``models.MODELS`` by its own rules, any
    other as a JSON object (its rules are unknown here; the service judges it)."""
    _slug(model)
    if not isinstance(payload, Mapping):
        raise InvalidParameter("payload", payload, "a JSON object (dict) of model parameters")
    known = MODELS.get(model)
    return known.validate(payload) if known else dict(payload)


# --- reading an answer ------------------------------------------------------------------------
def decode_body(raw: bytes | str) -> Any:
    """JSON when it parses, else the text: error bodies from proxies are often HTML.

    Deeply nested JSON (``[[[[...``) exhausts the parser's recursion: that is not an API answer either.
    """
    return parse_json(raw)[0]


def parse_json(raw: bytes | str) -> tuple[Any, bool]:
    """``(value, True)`` when ``raw`` is JSON, else ``(text, False)``: a JSON string and a page of text differ."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text), True
    except (ValueError, RecursionError):
        return text, False


def check_answer(
    status_code: int,
    body: Any,
    headers: Mapping[str, str],
    *,
    request_id: str | None = None,
    failed_is_answer: bool = False,
) -> Any:
    """Return the body of a successful answer, or raise the mapped exception.

    ``failed_is_answer``: the status and result endpoints serve a FAILED request as HTTP 422
    with ``status: FAILED`` in the body. For them that is an answer (the request's terminal
    state), not a transport error, so the caller's state logic sees it like any other state.
    """
    if 200 <= status_code < 300:
        return body
    if failed_is_answer and status_code == 422 and isinstance(body, Mapping) and body.get("status") == "FAILED":
        return body
    retry_after = retry_after_seconds(headers) if status_code == 429 else None
    raise error_for_status(status_code, body, request_id=request_id, retry_after=retry_after)


def require_json_object(body: Any, what: str) -> dict[str, Any]:
    """A 2xx JSON endpoint that answered something else is a broken answer, never "still pending"."""
    if isinstance(body, dict):
        return body
    raise MalformedResponse(f"Segmind answered {what} with something that is not a JSON object: {shorten(body)}")


def completed_result(body: Any, request_id: str) -> dict[str, Any]:
    """The result body of a COMPLETED request; FAILED raises its 422 mapping, anything else is malformed."""
    body = require_json_object(body, f"the result of {request_id}")
    status = RequestStatus.parse(body, request_id=request_id)
    if status is RequestStatus.FAILED:
        raise error_for_status(422, body, request_id=request_id)
    if status is not RequestStatus.COMPLETED:
        raise MalformedResponse(f"the result of {request_id} was read before completion (status {status.value})")
    return body
