"""A small hostile HTTP server on loopback, for what the emulator cannot be made to do.

Raw sockets rather than a framework, because the point is to break HTTP on purpose: promise a
body and cut it short, drip it one byte at a time, answer JSON nested beyond any parser's depth,
or send headers no sane server sends. It also records each request head it received, so a test
can prove what reached it (the API key, or nothing at all).
"""

from __future__ import annotations

import socket
import threading
import time


class HostileServer:
    """Answers every request with ``status``, ``headers`` and ``body``, misbehaving as told.

    :param length: the Content-Length to announce (default: the real length); more than ``body``
        is a body cut short.
    :param drip: seconds between single bytes of the body (``None``: send at once).
    """

    def __init__(
        self,
        body: bytes = b"",
        *,
        status: str = "200 OK",
        headers: dict[str, str] | None = None,
        length: int | None = None,
        drip: float | None = None,
    ) -> None:
        fields = {"Content-Type": "application/json", **(headers or {})}
        fields["Content-Length"] = str(len(body) if length is None else length)
        head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.head = f"HTTP/1.1 {status}\r\n{head}\r\n".encode()
        self.body = body
        self.drip = drip
        self.requests: list[bytes] = []
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def connections(self) -> int:
        return len(self.requests)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.requests.append(conn.recv(65536))
                conn.sendall(self.head)
                if self.drip is None:
                    conn.sendall(self.body)
                    return
                for i in range(len(self.body)):
                    conn.sendall(self.body[i : i + 1])
                    time.sleep(self.drip)
            except OSError:  # the client gave up: that is what a drip is for
                return

    def close(self) -> None:
        self.socket.close()
