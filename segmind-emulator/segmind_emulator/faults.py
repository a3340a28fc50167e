"""The runtime fault switch: which API requests meet a hostile network, and how.

Why a list of rules with modes rather than one error rate: a client hardened against a hostile
network must be shown each way the network can lie to it, one at a time and reproducibly. The
ways differ in *when* they strike, and that decides what the client may safely do next:

- before processing (``error``, ``redirect``, ``echo_key``, ``not_json``, ``gateway``): nothing was
  accepted and nothing was billed, so a retry is harmless;
- after processing (``accept_then_drop``, ``cut_body``, ``drip``, ``oversize``): the job exists and
  the credit is spent, but the client never gets a usable answer. A blind retry of a submit pays
  twice; only the server's counters tell the truth, so the test can prove what the client did.

A rule is ``{"mode", "endpoints", "rate", "times"}`` plus mode parameters; the first rule that
matches a request (endpoint, not spent, and its ``rate`` roll) wins. ``times`` makes one-shot
faults ("drop the answer of the first submit only") possible without timing games.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from segmind_emulator.state import Stats

log = logging.getLogger("segmind_emulator")

#: Endpoint names of the switch (see ``server._endpoint``): v2 submit, v2 status, v2 result,
#: any v1 run, and the upload endpoint. A rule without ``endpoints`` hits every API request.
FAULT_ENDPOINTS = ("submit", "status", "result", "v1", "upload")
#: Modes that answer instead of the server: no job, no charge.
MODES_BEFORE = ("error", "redirect", "echo_key", "not_json", "gateway")
#: Modes that let the server process the request (job accepted, credit charged), then spoil the answer.
MODES_AFTER = ("accept_then_drop", "cut_body", "drip", "oversize")
FAULT_MODES = MODES_BEFORE + MODES_AFTER

#: ``error`` without a ``status`` draws one of these; ``None`` is a dropped connection.
ERROR_CHOICES: tuple[int | None, ...] = (500, 502, 504, None)
ERROR_BODIES = {
    500: "Internal server error (injected by the emulator)",
    502: "Bad gateway: upstream temporarily unavailable (injected by the emulator)",
    504: "Gateway timeout (injected by the emulator)",
}
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
GATEWAY_STATUSES = (502, 503, 504)
DEFAULT_OVERSIZE_BYTES = 50_000_000
DEFAULT_ECHO_BYTES = 5_000_000
#: Upper bound of ``bytes``: enough to exhaust any sane client, small enough to stream in seconds.
MAX_PAD_BYTES = 1 << 31
_PAD_CHUNK = 1 << 20
_FILLER = b"upstream trace: connection reset by peer while reading response header; "

_COMMON_KEYS = {"mode", "endpoints", "rate", "times"}
#: Mode -> the extra parameters it takes.
_MODE_PARAMS: dict[str, frozenset[str]] = {
    "error": frozenset({"status"}),
    "redirect": frozenset({"status", "location"}),
    "echo_key": frozenset({"status", "bytes"}),
    "not_json": frozenset(),
    "gateway": frozenset({"status"}),
    "accept_then_drop": frozenset(),
    "cut_body": frozenset(),
    "drip": frozenset({"interval"}),
    "oversize": frozenset({"bytes"}),
}


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


@dataclass
class FaultRule:
    """One rule of the switch; ``times`` counts down as the rule is applied (``None`` = unlimited)."""

    mode: str
    endpoints: frozenset[str] | None = None
    rate: float = 1.0
    times: int | None = None
    #: ``error``: 5xx or ``"drop"``; ``redirect``: 3xx; ``echo_key``: any 4xx/5xx; ``gateway``: 502/503/504.
    status: int | str | None = None
    location: str | None = None
    interval: float = 1.0
    size: int | None = None

    @property
    def processes(self) -> bool:
        """Whether the server handles the request before the fault spoils the answer."""
        return self.mode in MODES_AFTER

    def applies_to(self, endpoint: str) -> bool:
        spent = self.times is not None and self.times <= 0
        return not spent and self.rate > 0 and (self.endpoints is None or endpoint in self.endpoints)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "endpoints": None if self.endpoints is None else sorted(self.endpoints),
            "rate": self.rate,
            "times": self.times,
        }
        params = _MODE_PARAMS[self.mode]
        if "status" in params:
            out["status"] = self.status
        if "location" in params:
            out["location"] = self.location
        if "interval" in params:
            out["interval"] = self.interval
        if "bytes" in params:
            out["bytes"] = self.size
        return out

    @classmethod
    def parse(cls, body: Any) -> FaultRule:
        """A rule from its JSON form; ``ValueError`` names what is wrong (the switch then stays as it was)."""
        if not isinstance(body, dict):
            raise ValueError(f"a fault rule must be a JSON object, got {body!r}")
        mode = body.get("mode")
        if mode not in _MODE_PARAMS:
            raise ValueError(f"mode must be one of {list(FAULT_MODES)}, got {mode!r}")
        unknown = set(body) - _COMMON_KEYS - _MODE_PARAMS[mode]
        if unknown:
            allowed = sorted(_COMMON_KEYS | _MODE_PARAMS[mode])
            raise ValueError(f"unknown key(s) {sorted(unknown)} for mode {mode!r}; allowed: {allowed}")
        rate = body.get("rate", 1.0)
        if not _number(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be a number within 0..1, got {rate!r}")
        times = body.get("times")
        if times is not None and (not _integer(times) or times < 1):
            raise ValueError(f"times must be a positive integer or null, got {times!r}")
        rule = cls(mode, _parse_endpoints(body.get("endpoints")), float(rate), times)
        rule.status = _parse_status(mode, body.get("status"))
        if mode == "redirect":
            rule.location = _parse_location(body.get("location"))
        interval = body.get("interval", 1.0)
        if not _number(interval) or not 0.0 < interval <= 3600.0:
            raise ValueError(f"interval must be a number of seconds within (0, 3600], got {interval!r}")
        rule.interval = float(interval)
        if "bytes" in _MODE_PARAMS[mode]:
            size = body.get("bytes", DEFAULT_OVERSIZE_BYTES if mode == "oversize" else DEFAULT_ECHO_BYTES)
            if not _integer(size) or not 1 <= size <= MAX_PAD_BYTES:
                raise ValueError(f"bytes must be an integer within 1..{MAX_PAD_BYTES}, got {size!r}")
            rule.size = size
        return rule


def _parse_endpoints(endpoints: Any) -> frozenset[str] | None:
    if endpoints is None:
        return None
    if not isinstance(endpoints, list) or not endpoints or not set(endpoints) <= set(FAULT_ENDPOINTS):
        raise ValueError(f"endpoints must be a non-empty list of {list(FAULT_ENDPOINTS)}, got {endpoints!r}")
    return frozenset(endpoints)


def _parse_status(mode: str, status: Any) -> int | str | None:
    """The status a mode answers with, its default filled in; ``error`` keeps ``None`` (= drawn per request)."""
    if mode == "error":
        if status is None or status == "drop":
            return None if status is None else "drop"
        if _integer(status) and 500 <= status <= 599:
            return int(status)
        raise ValueError(f'error status must be a 5xx code or "drop", got {status!r}')
    if mode == "redirect":
        status = 307 if status is None else status
        allowed: tuple[int, ...] = REDIRECT_STATUSES
    elif mode == "gateway":
        status = 502 if status is None else status
        allowed = GATEWAY_STATUSES
    elif mode == "echo_key":
        status = 500 if status is None else status
        allowed = tuple(range(400, 600))
    else:
        return None
    if not _integer(status) or status not in allowed:
        raise ValueError(f"{mode} status must be one of {_describe(allowed)}, got {status!r}")
    return int(status)


def _describe(codes: tuple[int, ...]) -> str:
    return f"{codes[0]}..{codes[-1]}" if len(codes) > 10 else ", ".join(map(str, codes))


def _parse_location(location: Any) -> str:
    if not isinstance(location, str) or any(c in location for c in "\r\n"):
        raise ValueError(f"redirect needs location, an absolute http(s) URL, got {location!r}")
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"redirect needs location, an absolute http(s) URL, got {location!r}")
    return location


class FaultSwitch:
    """The ordered rules behind ``POST /_emulator/faults``; replaced as a whole on every POST.

    Accepted bodies: ``{"rules": [RULE, ...]}``; one ``RULE`` (it has a ``"mode"``); or the
    original ``{"rate": r, "endpoints": [...]}`` (= one ``error`` rule at that rate). ``{"rate": 0}``
    and ``{"rules": []}`` turn everything off.
    """

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self.rules = list(rules or [])

    @classmethod
    def from_rate(cls, rate: float, endpoints: frozenset[str] | None = None) -> FaultSwitch:
        """What ``--fault-rate`` sets: errors and drops on ``rate`` of all API requests."""
        return cls([FaultRule("error", endpoints, rate)] if rate > 0 else [])

    @classmethod
    def parse(cls, body: Any) -> FaultSwitch:
        if isinstance(body, dict) and "rules" in body:
            if set(body) != {"rules"} or not isinstance(body["rules"], list):
                raise ValueError('send {"rules": [RULE, ...]} with nothing else beside "rules"')
            return cls([FaultRule.parse(rule) for rule in body["rules"]])
        if isinstance(body, dict) and "mode" in body:
            return cls([FaultRule.parse(body)])
        if not isinstance(body, dict) or "rate" not in body or set(body) - {"rate", "endpoints"}:
            raise ValueError('send {"rules": [RULE, ...]}, one RULE, or {"rate": 0..1, "endpoints": [...]}')
        rate = body["rate"]
        if not _number(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be a number within 0..1, got {rate!r}")
        return cls.from_rate(float(rate), _parse_endpoints(body.get("endpoints")))

    def pick(self, endpoint: str, rng: random.Random) -> FaultRule | None:
        """The rule to apply to a request for ``endpoint``, already counted against its ``times``.

        Every rule that could apply rolls its ``rate`` in order, so one seed gives one fault pattern.
        """
        for rule in self.rules:
            if rule.applies_to(endpoint) and rng.random() < rule.rate:
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [rule.to_dict() for rule in self.rules]}


# --- delivering a fault ------------------------------------------------------------------------------
def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer; the returned response never reaches the wire."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


def _filler(size: int) -> Iterator[bytes]:
    """``size`` bytes of JSON-safe text in chunks of at most 1 MiB, so 50 MB never sit in memory at once."""
    unit = (_FILLER * (_PAD_CHUNK // len(_FILLER) + 1))[:_PAD_CHUNK]
    while size > 0:
        yield unit[: min(size, _PAD_CHUNK)]
        size -= _PAD_CHUNK


async def padded_json(
    request: web.Request, status: int, obj: dict[str, Any], pad_key: str, size: int
) -> web.StreamResponse:
    """Stream ``obj`` plus ``pad_key: "<filler>"`` as one valid JSON object of about ``size`` bytes.

    A client hanging up midway is an expected end of a hostile answer: logged at INFO, no traceback.
    """
    head = json.dumps(obj)[:-1] + (", " if obj else "") + json.dumps(pad_key) + ': "'
    tail = '"}'
    pad = max(0, size - len(head.encode()) - len(tail))
    resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    resp.content_length = len(head.encode()) + pad + len(tail)
    try:
        await resp.prepare(request)
        await resp.write(head.encode())
        for chunk in _filler(pad):
            await resp.write(chunk)
        await resp.write(tail.encode())
        await resp.write_eof()
    except ConnectionError:
        log.info("fault: client left during a padded answer to %s %s", request.method, request.path)
    return resp


async def cut_body(request: web.Request, real: web.Response) -> web.StreamResponse:
    """The real status and headers with the real Content-Length, then half of the body, then close."""
    body = _body_of(real)
    resp = _stream_like(real, len(body))
    try:
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
    except ConnectionError:
        return resp
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes: the rest never comes
    return resp


async def drip(request: web.Request, real: web.Response, interval: float) -> web.StreamResponse:
    """The real status and headers at once, then the body one byte per ``interval`` until done or the client leaves."""
    body = _body_of(real)
    resp = _stream_like(real, len(body))
    try:
        await resp.prepare(request)
        for index in range(len(body)):
            await asyncio.sleep(interval)
            await resp.write(body[index : index + 1])
        await resp.write_eof()
    except ConnectionError:
        log.info("fault: client gave up on a dripped answer to %s %s", request.method, request.path)
    return resp


async def oversize(request: web.Request, real: web.Response, size: int) -> web.StreamResponse:
    """A 200 JSON object of about ``size`` bytes: the real answer's keys plus one huge ``padding`` string."""
    obj: Any = json.loads(_body_of(real)) if real.content_type == "application/json" else None
    return await padded_json(request, 200, obj if isinstance(obj, dict) else {}, "padding", size)


def _body_of(real: web.Response) -> bytes:
    """The answer's bytes: every API answer here is built from bytes or text, never a streamed payload."""
    body = real.body
    if not isinstance(body, bytes):
        raise TypeError(f"cannot spoil a {type(body).__name__} body")
    return body


def _stream_like(real: web.Response, length: int) -> web.StreamResponse:
    headers = {k: v for k, v in real.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
    resp = web.StreamResponse(status=real.status, reason=real.reason, headers=headers)
    resp.content_length = length
    return resp


async def echo_key(request: web.Request, key_header: str, status: int, size: int) -> web.StreamResponse:
    """An error that quotes the caller's key, padded to ``size`` bytes.

    A client that puts server text into its exceptions and logs unbounded leaks the key and
    writes megabytes per failure; this is the answer that shows it.
    """
    key = request.headers.get(key_header)
    said = f"invalid key {key} for {request.method} {request.path}" if key else f"no key for {request.path}"
    obj = {"error": f"{said}: the upstream auth service rejected the request (echoed by a hostile proxy)"}
    return await padded_json(request, status, obj, "detail", size)


def redirect(rule: FaultRule) -> web.Response:
    assert rule.location is not None and isinstance(rule.status, int)
    return web.Response(
        status=rule.status,
        headers={"Location": rule.location},
        text=f"Moved to {rule.location}",
        content_type="text/plain",
    )


def not_json() -> web.Response:
    """A proxy's error page on a 2xx: what a client that trusts the status code would try to parse."""
    return web.Response(status=200, text="<html>proxy error</html>", content_type="text/html")


def gateway(status: int) -> web.Response:
    title = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}[status]
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


def error_answer(status: int) -> web.Response:
    return web.json_response(
        {"error": ERROR_BODIES.get(status, f"HTTP {status} (injected by the emulator)")}, status=status
    )


async def answer_instead(
    request: web.Request, rule: FaultRule, rng: random.Random, stats: Stats, key_header: str
) -> web.StreamResponse:
    """A fault before processing: the request never reached auth, so no job and no charge."""
    log.info("fault %s: %s %s not processed", rule.mode, request.method, request.path)
    if rule.mode == "echo_key":
        assert isinstance(rule.status, int) and rule.size is not None
        stats.responses[str(rule.status)] += 1
        return await echo_key(request, key_header, rule.status, rule.size)
    if rule.mode == "error":
        choice = rule.status if rule.status is not None else rng.choice(ERROR_CHOICES)
        if not isinstance(choice, int):
            stats.dropped_connections += 1
            return drop(request)
        answer = error_answer(choice)
    elif rule.mode == "redirect":
        answer = redirect(rule)
    elif rule.mode == "gateway":
        assert isinstance(rule.status, int)
        answer = gateway(rule.status)
    else:
        answer = not_json()
    stats.responses[str(answer.status)] += 1
    return answer


async def spoil(request: web.Request, real: web.Response, rule: FaultRule, stats: Stats) -> web.StreamResponse:
    """A fault after processing: the job exists and is billed, but its answer is lost, cut, dripped or bloated."""
    log.info("fault %s: %s %s processed (HTTP %s), answer spoilt", rule.mode, request.method, request.path, real.status)
    if rule.mode == "accept_then_drop":
        stats.dropped_connections += 1
        return drop(request)
    if rule.mode == "oversize":
        assert rule.size is not None
        stats.responses["200"] += 1
        return await oversize(request, real, rule.size)
    stats.responses[str(real.status)] += 1
    if rule.mode == "drip":
        return await drip(request, real, rule.interval)
    return await cut_body(request, real)
