"""Reading one HTTP answer from the API safely: shared by the sync and the async hook.

The hooks differ in how bytes arrive (requests or aiohttp); what the bytes may do to us does not.
Every answer is treated as hostile: a redirect is refused (following it would send the key
wherever the answer says), the body is read only up to a cap, the key is redacted from any text
the server sends back before it can reach an exception, a log line or a trigger event, and a 2xx
that is not the API's JSON (a proxy's HTML page) is a transient glitch rather than "still pending".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.exceptions import RedirectRefused, UnreadableAnswer

#: JSON answers of the API are a few hundred bytes; a megabyte is already a broken answer.
MAX_ANSWER_BYTES = 1024 * 1024
REDACTED = "***"


@dataclass(frozen=True)
class RawAnswer:
    """Status, headers and at most ``MAX_ANSWER_BYTES`` (or the caller's cap) of the body."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    #: False when the body went on past the cap and was not read to its end.
    complete: bool = True


def redact(text: str, secret: str | None) -> str:
    """``text`` with the key removed, also in its JSON-escaped and URL-encoded spellings."""
    if not secret:
        return text
    for form in {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}:
        text = text.replace(form, REDACTED)
    return text


def interpret(
    answer: RawAnswer,
    *,
    url: str,
    api_key: str | None,
    request_id: str | None = None,
    failed_is_answer: bool = False,
    binary: bool = False,
) -> Any:
    """The answer's body when it is a success; otherwise raise the provider's exception for it."""
    status = answer.status
    if 300 <= status < 400:
        target = redact(str(answer.headers.get("Location") or answer.headers.get("location") or "?"), api_key)
        raise RedirectRefused(
            f"Segmind's API at {url.split('?')[0]} answered a redirect (HTTP {status}) to {contract.shorten(target)}. "
            "It was not followed: the API key goes only to the configured host. If the API moved, set the "
            "connection's host to the new address.",
            status_code=status,
        )
    ok = 200 <= status < 300
    if ok and not answer.complete:
        raise UnreadableAnswer(
            f"Segmind's answer from {url} is larger than {len(answer.content)} bytes, which no API answer is; "
            "it was not read (a proxy or a broken server).",
            status_code=status,
        )
    if ok and binary:
        return answer.content
    body, is_json = contract.parse_json(redact(answer.content.decode("utf-8", "replace"), api_key))
    if ok and not is_json:
        raise UnreadableAnswer(
            f"Segmind's answer from {url} (HTTP {status}) is not JSON, e.g. a proxy's page: {contract.shorten(body)}",
            status_code=status,
        )
    return contract.check_answer(status, body, answer.headers, request_id=request_id, failed_is_answer=failed_is_answer)
