"""What the emulator knows about the Segmind API, stated once, from the public documentation.

Source: the shared notes on Segmind's API page for ``muscle-surge`` and the official ``segmind``
SDK 1.3.0 (``/work/shared/segmind-api.md`` in this project). This module is the emulator's own
reading of those facts; it deliberately shares no code with any client of the API, so that a
client and the emulator written from the same page can be tested *against each other*: when they
disagree, one of them misread the page.

Where the page is silent the emulator decides, and each such choice is marked "choice" below.
Nothing here does I/O or imports anything outside the standard library.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# --- endpoints and auth ------------------------------------------------------------------------------
#: Auth header of every API call.
API_KEY_HEADER = "x-api-key"
#: The model this emulator renders for real; other slugs get a still image from their prompt.
MUSCLE_SURGE = "muscle-surge"
#: Uploads live on ``workflows-api.segmind.com`` for real; the emulator serves the same path itself.
UPLOAD_PATH = "/upload-asset"


def v1_path(model: str) -> str:
    return f"/v1/{model}"


def v2_submit_path(model: str) -> str:
    return f"/v2/{model}"


def status_path(request_id: str) -> str:
    return f"/v2/requests/{request_id}/status"


def result_path(request_id: str) -> str:
    return f"/v2/requests/{request_id}"


#: A model slug as it appears in a path (choice: lower-case letters, digits, ``.``, ``_``, ``-``).
MODEL_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


# --- request states and timing -------------------------------------------------------------------------
class RequestStatus(str, enum.Enum):
    """States of a v2 request. Content (responsible-AI) blocks are FAILED too: there is no other state."""

    QUEUED = "QUEUED"  # accepted, waiting for a worker
    PROCESSING = "PROCESSING"  # running
    COMPLETED = "COMPLETED"  # result ready
    FAILED = "FAILED"  # errored; served as HTTP 422 on the status and the result endpoint


#: How long a request record and its result are kept ("Results are kept for 1 hour, then expire").
RETENTION_SECONDS = 3600
#: Typical latency of a muscle-surge job ("about 45.5 s per job").
MUSCLE_SURGE_RENDER_SECONDS = 45.5
#: Choice: other (image) models take this long on average; the page only documents muscle-surge.
OTHER_MODEL_RENDER_SECONDS = 20.0


def typical_render_seconds(model: str) -> float:
    return MUSCLE_SURGE_RENDER_SECONDS if model == MUSCLE_SURGE else OTHER_MODEL_RENDER_SECONDS


# --- error codes ---------------------------------------------------------------------------------------
#: The documented answers and what they mean; the body always carries the detail under ``error``.
ERROR_CODES: Mapping[int, str] = {
    400: "bad parameters / format",
    401: "missing or invalid key",
    403: "insufficient permissions",
    404: "model/endpoint not found, or unknown/expired request id",
    406: "insufficient credits (also a wrong Content-Type or a team spend limit)",
    422: "(v2) request FAILED, detail in the body",
    429: "rate limited; the reset time in x-rate-limit-reset-at-utc (the emulator also sends Retry-After)",
    500: "server error",
    502: "bad gateway / temporarily unavailable",
    504: "timed out",
}


# --- parameters of muscle-surge ------------------------------------------------------------------------
#: "duration: 5 or 8 (default 5)".
DURATIONS = (5, 8)
#: "quality: 360p, 540p, 720p, 1080p (default 540p)", and the frame height each one means.
QUALITY_HEIGHT: Mapping[str, int] = {"360p": 360, "540p": 540, "720p": 720, "1080p": 1080}
#: "motion_mode: normal or fast (default normal)".
MOTION_MODES = ("normal", "fast")
#: "style: anime, 3d_animation, clay, comic, cyberpunk (default none)".
STYLES = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
#: "seed: 1 - 999999".
SEED_MIN, SEED_MAX = 1, 999_999
#: The defaults of the three parameters the page marks required-with-a-default.
DEFAULTS: Mapping[str, Any] = {"duration": 5, "quality": "540p", "motion_mode": "normal"}
PARAMETERS = ("image_url", "duration", "quality", "motion_mode", "seed", "style")

#: Choice: a base64 data URI of an image is accepted in place of a URL (the emulator renders from it).
_DATA_IMAGE = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
#: Choice: a URL containing spaces or control characters is not a URI (RFC 3986 has no room for them).
_NOT_URI_CHARS = re.compile(r"[\x00-\x20\x7f]")


class ParameterError(ValueError):
    """A body breaks a documented parameter rule: answered 400 with this text under ``error``."""

    def __init__(self, name: str, value: Any, rule: str) -> None:
        super().__init__(f"invalid {name}={_show(value)}: {rule}")
        self.name = name


def _show(value: Any) -> str:
    """The offending value for the message, cut short: a 5 MB data URI must not come back in a 400."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:200] + "..."


def _strict_int(name: str, value: Any, rule: str) -> int:
    # The page types these as int: a JSON string "5", 5.0 or true is not one (choice: no coercion).
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(name, value, rule)
    return value


def _image_url(value: Any) -> str:
    rule = "an http(s) URL of the input image, or a data:image/...;base64 URI"
    if not isinstance(value, str) or not value:
        raise ParameterError("image_url", value, rule)
    if _DATA_IMAGE.match(value):
        try:
            image = base64.b64decode(value.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise ParameterError("image_url", value, "the data URI is not valid base64") from None
        if not image:
            raise ParameterError("image_url", value, "the data URI is empty")
        return value
    if _NOT_URI_CHARS.search(value):
        raise ParameterError("image_url", value, "a URL may not contain spaces or control characters")
    try:
        url = urlsplit(value)
        port_ok = url.port is None or url.port >= 0  # .port raises ValueError when out of range
    except ValueError:
        port_ok = False
    if not port_ok or url.scheme not in ("http", "https") or not url.hostname:
        raise ParameterError("image_url", value, rule)
    return value


def check_muscle_surge(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request body with defaults filled in, or :class:`ParameterError` for the first broken rule.

    The cross-parameter rules, from the table: "only 5 is allowed with motion_mode=fast or
    quality=1080p" and "1080p does not support fast".
    """
    for name in body:
        if name not in PARAMETERS:
            raise ParameterError(name, body[name], f"not a muscle-surge parameter (one of {', '.join(PARAMETERS)})")
    checked: dict[str, Any] = {"image_url": _image_url(body.get("image_url"))}
    duration = _strict_int("duration", body.get("duration", DEFAULTS["duration"]), "5 or 8 (an integer)")
    if duration not in DURATIONS:
        raise ParameterError("duration", duration, "5 or 8 (an integer)")
    quality = body.get("quality", DEFAULTS["quality"])
    if not isinstance(quality, str) or quality not in QUALITY_HEIGHT:
        raise ParameterError("quality", quality, f"one of {', '.join(QUALITY_HEIGHT)}")
    motion = body.get("motion_mode", DEFAULTS["motion_mode"])
    if not isinstance(motion, str) or motion not in MOTION_MODES:
        raise ParameterError("motion_mode", motion, "normal or fast")
    if motion == "fast" and duration != 5:
        raise ParameterError("motion_mode", motion, "fast only with duration=5")
    if motion == "fast" and quality == "1080p":
        raise ParameterError("motion_mode", motion, "1080p does not support fast")
    if quality == "1080p" and duration != 5:
        raise ParameterError("duration", duration, "only 5 is allowed with quality=1080p")
    checked.update(duration=duration, quality=quality, motion_mode=motion)
    # Optional parameters: null is the same as leaving them out (choice).
    seed = body.get("seed")
    if seed is not None:
        rule = f"an integer from {SEED_MIN} to {SEED_MAX}"
        if not SEED_MIN <= _strict_int("seed", seed, rule) <= SEED_MAX:
            raise ParameterError("seed", seed, rule)
        checked["seed"] = seed
    style = body.get("style")
    if style is not None:
        if not isinstance(style, str) or style not in STYLES:
            raise ParameterError("style", style, f"one of {', '.join(STYLES)}, or leave it out")
        checked["style"] = style
    return checked


def check_body(model: str, body: Any) -> dict[str, Any]:
    """Any model's body: muscle-surge by its table; others need a JSON object with a non-empty ``prompt``.

    The prompt rule is a choice: the emulator draws other models' output from it.
    """
    if not isinstance(body, dict):
        raise ParameterError("body", body, "a JSON object of model parameters")
    if model == MUSCLE_SURGE:
        return check_muscle_surge(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParameterError("prompt", prompt, f"{model} needs a non-empty 'prompt' string")
    return dict(body)
