"""Segmind's ``muscle-surge`` model: its parameters, their rules, and how long a job usually takes.

What a model accepts is a fact about that model, not about the API every model shares (paths,
request states, retention, the error map: those are in :mod:`airflow_provider_muscle_surge.contract`).
So each model the provider checks has a module like this one, named after it, and one line in the
registry :data:`airflow_provider_muscle_surge.models.MODELS`.

The rules are read from the parameter table in ``/work/shared/segmind-api.md``. The emulator states
them separately from the same page, and ``tests/test_rules_agree.py`` runs the two against each other.

This module does no I/O and imports nothing heavy: ``MuscleSurgeOperator`` checks literal values
with it while a DAG file is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_muscle_surge.exceptions import InvalidParameter
from airflow_provider_muscle_surge.uris import image_data_uri_bytes

MUSCLE_SURGE = "muscle-surge"
#: The model page says a job takes about 45.5 s; the polling schedule starts centred on it.
TYPICAL_RENDER_SECONDS = 45.5
#: What plausibly changes a job's render time (more pixels, more frames, a faster mode): jobs
#: alike in these form one render class, whose render time the polling schedule learns.
RENDER_CLASS_PARAMETERS = ("quality", "duration", "motion_mode")

DURATIONS = (5, 8)
QUALITIES = ("360p", "540p", "720p", "1080p")
MOTION_MODES = ("normal", "fast")
STYLES = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
SEED_RANGE = (1, 999_999)
#: What an omitted ``quality`` or ``motion_mode`` means. An omitted ``duration`` is 5 s, filled in by
#: :func:`validate_muscle_surge` itself (``MuscleSurgeOperator`` always sends one).
DEFAULTS: Mapping[str, Any] = {"quality": "540p", "motion_mode": "normal"}
PARAMETERS = ("image_url", "duration", "quality", "motion_mode", "seed", "style")
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
    try:
        data = image_data_uri_bytes(value)
    except ValueError:
        raise InvalidParameter("image_url", value[:40] + "...", "the data URI is not valid base64") from None
    if data is not None:
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
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise InvalidParameter(
            unknown[0], params[unknown[0]], f"not a muscle-surge parameter ({', '.join(PARAMETERS)})"
        )
    body: dict[str, Any] = {"image_url": _check_image_url(params.get("image_url"))}
    duration = _as_int("duration", params.get("duration", 5), "one of 5 or 8 (seconds)")
    if duration not in DURATIONS:
        raise InvalidParameter("duration", duration, "one of 5 or 8 (seconds)")
    quality = params.get("quality", DEFAULTS["quality"])
    if quality not in QUALITIES:
        raise InvalidParameter("quality", quality, f"one of {', '.join(QUALITIES)}")
    motion = params.get("motion_mode", DEFAULTS["motion_mode"])
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
