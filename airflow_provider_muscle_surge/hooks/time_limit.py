"""A total time limit for one blocking ``requests`` call, headers and body included.

Why this exists: ``timeout=(connect, read)`` in requests bounds each socket read, not the answer.
A server that sends its headers and then one byte a second never trips it, and neither does one
that drips the headers themselves. Python offers no per-call deadline for a blocking socket, so
the session built here uses urllib3 connections that report themselves to the :class:`TimeLimit`
active on the calling thread; when the limit passes, a watchdog thread shuts the socket down,
which wakes the blocked read with an error. The caller then checks :attr:`TimeLimit.expired` to
tell "the limit passed" from any other broken connection.

The limit can move forward while bytes arrive (:meth:`TimeLimit.extend_to`), which is how a
download is bounded by a minimum transfer rate rather than a fixed time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_active = threading.local()


class TimeLimit:
    """``with TimeLimit(seconds) as limit:`` every request this thread makes inside is cut at the limit."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + max(0.0, seconds)
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self._changed = threading.Condition()

    def __enter__(self) -> TimeLimit:
        self._previous = getattr(_active, "limit", None)
        _active.limit = self
        threading.Thread(target=self._watch, name="segmind-time-limit", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _active.limit = self._previous
        with self._changed:
            self._done.set()
            self._changed.notify_all()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def extend_until(self, deadline: float) -> None:
        """Move the limit to ``deadline`` (``time.monotonic()`` clock) if that is later: progress was made."""
        with self._changed:
            self.deadline = max(self.deadline, deadline)

    def attach(self, sock: socket.socket) -> None:
        """Watch ``sock``: the socket itself, since http.client drops the connection's reference to it
        once a response that closes the connection has started (the response keeps reading from it)."""
        with self._changed:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _watch(self) -> None:
        with self._changed:
            while not self._done.is_set():
                left = self.deadline - time.monotonic()
                if left <= 0:
                    self.expired = True
                    for sock in self._sockets:
                        _shut(sock)
                    return
                self._changed.wait(left)


def _shut(sock: socket.socket) -> None:
    # The plain-socket method even on an SSLSocket: it wakes the reader without touching TLS state.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watched:
    """Mixin: report the connection to the thread's time limit before each request goes out."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        # Connecting is bounded by the connect timeout; from the socket on, the limit takes over.
        super().request(*args, **kwargs)  # type: ignore[misc]
        limit = getattr(_active, "limit", None)
        sock = getattr(self, "sock", None)
        if limit is not None and sock is not None:
            limit.attach(sock)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class TimeLimitedAdapter(HTTPAdapter):
    """An adapter whose connections obey the calling thread's :class:`TimeLimit`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def time_limited_session() -> requests.Session:
    """A session whose calls obey :class:`TimeLimit` (callers pass ``allow_redirects`` themselves)."""
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, TimeLimitedAdapter())
    return session
