"""A small programmable HTTP server on loopback, for what the emulator cannot be made to do.

Raw sockets rather than a framework, because the point is to break HTTP on purpose: promise a
body and cut it short, drip it one byte at a time, answer JSON nested beyond any parser's depth,
or send headers no sane server sends. It also serves canned answers per endpoint (a status in an
unknown state, a 503 then a 200) and logs every request it received, so a test can prove what
reached it (the API key, or nothing at all) and how often each endpoint was called.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus

#: Route patterns of the Segmind API, matched against ``"METHOD /path"`` (no query string).
SUBMIT = r"POST /v2/muscle-surge"
STATUS = r"GET /v2/requests/[\w-]+/status"
RESULT = r"GET /v2/requests/[\w-]+"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, misbehaving as told.

    :param status: a code (``503``) or a whole status line (``"501 Not Implemented"``).
    :param length: the Content-Length to announce (default: the real length); more than ``body``
        is a body cut short.
    :param drip: seconds between single bytes of the body (``None``: send at once).
    :param until_close: no Content-Length: the body ends when the connection closes.
    """

    body: bytes = b""
    status: int | str = 200
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None
    drip: float | None = None
    content_type: str = "application/json"
    until_close: bool = False

    def head(self) -> bytes:
        status = self.status if isinstance(self.status, str) else f"{self.status} {HTTPStatus(self.status).phrase}"
        fields = {"Content-Type": self.content_type, "Connection": "close", **self.headers}
        if not self.until_close:
            fields["Content-Length"] = str(len(self.body) if self.length is None else self.length)
        lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode()


def html(status: int | str, page: bytes) -> Answer:
    """A proxy's or gateway's HTML page."""
    return Answer(page, status, content_type="text/html")


@dataclass
class _Route:
    name: str
    pattern: re.Pattern[str]
    answers: tuple[Answer, ...]
    served: int = 0

    def next_answer(self) -> Answer:
        """The answers in turn; the last one repeats."""
        self.served += 1
        return self.answers[min(self.served, len(self.answers)) - 1]


class HostileServer:
    """Answers each request with the answer of the first route that matches it, else the default.

    The default answer is built from the constructor's arguments (see :class:`Answer`); routes
    are added with :meth:`route`. Every connection is closed after one answer (and says so).
    """

    def __init__(
        self,
        body: bytes = b"",
        *,
        status: int | str = "200 OK",
        headers: dict[str, str] | None = None,
        length: int | None = None,
        drip: float | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.default = Answer(body, status, dict(headers or {}), length, drip, content_type)
        self.routes: list[_Route] = []
        #: Each request as received (head and body), in order.
        self.requests: list[bytes] = []
        #: ``(route name, "METHOD /path")`` of each request, in order; ``"other"`` for the default answer.
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def route(self, name: str, pattern: str, *answers: Answer) -> HostileServer:
        """Answer requests whose ``"METHOD /path"`` fully matches ``pattern`` with ``answers`` in turn."""
        self.routes.append(_Route(name, re.compile(pattern), answers))
        return self

    @property
    def connections(self) -> int:
        return len(self.requests)

    @property
    def calls(self) -> Counter[str]:
        """Requests per route name (``"other"``: answered by the default)."""
        return Counter(name for name, _ in self.log)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _choose(self, request: bytes) -> Answer:
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        target = f"{method} {rest.split(' ', 1)[0].split('?', 1)[0]}"
        with self._lock:
            self.requests.append(request)
            route = next((r for r in self.routes if r.pattern.fullmatch(target)), None)
            self.log.append((route.name if route else "other", target))
            return route.next_answer() if route else self.default

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                answer = self._choose(_read_request(conn))
                conn.sendall(answer.head())
                if answer.drip is None:
                    conn.sendall(answer.body)
                    return
                for i in range(len(answer.body)):
                    conn.sendall(answer.body[i : i + 1])
                    time.sleep(answer.drip)
            except OSError:  # the client gave up: that is what a drip is for
                return

    def close(self) -> None:
        self.socket.close()


def _read_request(conn: socket.socket) -> bytes:
    """The request head and as much of its body as Content-Length announces (bounded)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    wanted = min(int(match.group(1)), 1 << 20) if match else 0
    while len(body) < wanted:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def header_fields(raw: bytes) -> dict[str, str]:
    """The header fields of a logged request, names in lower case."""
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


def body_of(raw: bytes) -> bytes:
    """The body of a logged request."""
    return raw.partition(b"\r\n\r\n")[2]
