"""The Segmind API contract, in one place.

Everything that is a fact about the remote API lives here and nowhere else: URLs and paths,
the request states, the parameter rules of ``muscle-surge``, and the map from an HTTP answer
to an exception. The sync hook, the async hook, the operators, the sensor, the trigger and
the emulator all import it, so a rule changes in one line and every side agrees.

This module does no I/O and imports nothing heavy: DAG files reach it at parse time.
"""

from __future__ import annotations

import base64
import binascii
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
from airflow_provider_muscle_surge.retry import retry_after_seconds

# --- endpoints --------------------------------------------------------------------------------
DEFAULT_HOST = "https://api.segmind.com"
#: The real service takes uploads on a separate host; the emulator serves the same path itself.
REAL_UPLOAD_URL = "https://workflows-api.segmind.com/upload-asset"
UPLOAD_PATH = "/upload-asset"
MUSCLE_SURGE = "muscle-surge"
API_KEY_HEADER = "x-api-key"
#: How long the service keeps a v2 request record and its result.
RETENTION_SECONDS = 3600
#: Typical render time of a muscle-surge job (the model page says ~45.5 s).
TYPICAL_RENDER_SECONDS: Mapping[str, float] = {MUSCLE_SURGE: 45.5}
DEFAULT_TYPICAL_RENDER_SECONDS = 20.0


def v1_path(model: str) -> str:
    return f"/v1/{_slug(model)}"


def v2_submit_path(model: str) -> str:
    return f"/v2/{_slug(model)}"


def status_path(request_id: str) -> str:
    return f"/v2/requests/{_request_id(request_id)}/status"


def result_path(request_id: str) -> str:
    return f"/v2/requests/{_request_id(request_id)}"


def upload_url_for(host: str) -> str:
    """Where uploads go: Segmind's storage host for the real API, the same host otherwise."""
    if urlsplit(host).hostname == "api.segmind.com":
        return REAL_UPLOAD_URL
    return host.rstrip("/") + UPLOAD_PATH


_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _slug(model: str) -> str:
    if not isinstance(model, str) or not _SLUG_RE.match(model):
        raise InvalidParameter("model", model, "a Segmind model slug such as 'muscle-surge'")
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


# --- parameters of muscle-surge ---------------------------------------------------------------
DURATIONS = (5, 8)
QUALITIES = ("360p", "540p", "720p", "1080p")
MOTION_MODES = ("normal", "fast")
STYLES = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
SEED_RANGE = (1, 999_999)
QUALITY_HEIGHT: Mapping[str, int] = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080}
MUSCLE_SURGE_DEFAULTS: Mapping[str, Any] = {"duration": 5, "quality": "540p", "motion_mode": "normal"}
_DATA_URI_RE = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
#: Whitespace and control characters are never part of a URL (urlsplit silently strips or keeps them).
_NOT_IN_URL_RE = re.compile(r"[\x00-\x20\x7f]")


def _as_int(field: str, value: Any, rule: str) -> int:
    # bool is an int in Python, and "5" arrives from templates: accept digits, refuse True.
    if isinstance(value, bool):
        raise InvalidParameter(field, value, rule)
    if isinstance(value, int):
        return value
    # ASCII digits only: "²".isdigit() is True but int("²") raises a bare ValueError.
    # At most 18 digits: int() refuses a 5,000-digit string with a bare ValueError (Python's
    # int_max_str_digits), and no rule here accepts a number that long anyway.
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    raise InvalidParameter(field, value, rule)


def _check_image_url(value: Any) -> str:
    rule = "an http(s) URL or a data:image/...;base64 URI"
    if not isinstance(value, str) or not value:
        raise InvalidParameter("image_url", value, rule)
    if _DATA_URI_RE.match(value):
        try:
            data = base64.b64decode(value.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameter("image_url", value[:40] + "...", "the data URI is not valid base64") from None
        if not data:
            raise InvalidParameter("image_url", value[:40], "the data URI holds no image data")
        return value
    if _NOT_IN_URL_RE.search(value):
        raise InvalidParameter("image_url", value, "a URL without spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:  # e.g. "http://[oops/x.png" (an unclosed IPv6 literal)
        raise InvalidParameter("image_url", value, rule) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter("image_url", value, rule)
    return value


def validate_muscle_surge(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check every documented rule and return the normalised body (defaults filled in).

    Raises :class:`InvalidParameter` naming the field, the value and the rule. Nothing is
    sent before this passes: a 400 would cost a round trip, and some media models accept a
    bad body and fail later as a billed FAILED.
    """
    unknown = set(params) - {"image_url", "duration", "quality", "motion_mode", "seed", "style"}
    if unknown:
        raise InvalidParameter(
            sorted(unknown)[0],
            params[sorted(unknown)[0]],
            "not a muscle-surge parameter (image_url, duration, quality, motion_mode, seed, style)",
        )
    body: dict[str, Any] = {"image_url": _check_image_url(params.get("image_url"))}
    duration = _as_int("duration", params.get("duration", 5), "one of 5 or 8 (seconds)")
    if duration not in DURATIONS:
        raise InvalidParameter("duration", duration, "one of 5 or 8 (seconds)")
    quality = params.get("quality", MUSCLE_SURGE_DEFAULTS["quality"])
    if quality not in QUALITIES:
        raise InvalidParameter("quality", quality, f"one of {', '.join(QUALITIES)}")
    motion = params.get("motion_mode", MUSCLE_SURGE_DEFAULTS["motion_mode"])
    if motion not in MOTION_MODES:
        raise InvalidParameter("motion_mode", motion, "one of normal, fast")
    if motion == "fast" and duration != 5:
        raise InvalidParameter("motion_mode", motion, "fast is only allowed with duration=5")
    if motion == "fast" and quality == "1080p":
        raise InvalidParameter("motion_mode", motion, "fast is not supported at quality=1080p")
    if duration == 8 and quality == "1080p":
        raise InvalidParameter("duration", duration, "8 s is not available at quality=1080p (use 5)")
    body.update(duration=duration, quality=quality, motion_mode=motion)
    seed = params.get("seed")
    if seed is not None:
        seed = _as_int("seed", seed, f"an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}")
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise InvalidParameter("seed", seed, f"an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}")
        body["seed"] = seed
    style = params.get("style")
    if style is not None:
        if style not in STYLES:
            raise InvalidParameter("style", style, f"one of {', '.join(STYLES)} (or omit it)")
        body["style"] = style
    return body


def validate_payload(model: str, payload: Any) -> dict[str, Any]:
    """Validate a request body for any model: muscle-surge by its rules, others as a JSON object."""
    _slug(model)
    if not isinstance(payload, Mapping):
        raise InvalidParameter("payload", payload, "a JSON object (dict) of model parameters")
    if model == MUSCLE_SURGE:
        return validate_muscle_surge(payload)
    return dict(payload)


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
