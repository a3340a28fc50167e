"""Test helper: run the emulator as a real subprocess and talk to it.

A subprocess, not an in-process app, because what is under test are clients that open real
sockets from their own threads and event loops (sync hook, triggerer, SDK); sharing the test's
loop would hide blocking bugs and make teardown order fragile. The process is always reaped:
on ``stop()``, on leaving the ``with`` block (also on test failure), at interpreter exit, and --
on Linux -- by the kernel if the test process dies (``PR_SET_PDEATHSIG``).

Only the standard library is used here, so any test can import it cheaply.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from segmind_emulator.__main__ import READY_PREFIX
from segmind_emulator.config import DEFAULT_API_KEY

STARTUP_TIMEOUT = 30.0


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies, or ``None``.

    Only from the main thread: the kernel fires the signal when the *thread* that forked exits,
    so a helper started from a worker thread would be killed when that thread ends. The libc
    function is looked up here, in the parent, so the child runs no import between fork and exec.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def _flag_args(flags: dict[str, Any]) -> list[str]:
    """``job_seconds=0.5`` -> ``--job-seconds 0.5``; lists repeat the flag; ``None``/``False`` are dropped."""
    args: list[str] = []
    for name, value in flags.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


class EmulatorProcess:
    """A running ``segmind-emulator`` subprocess on a free port.

    Keyword arguments map to CLI flags (``job_seconds=0.5`` -> ``--job-seconds 0.5``); ``api_keys``
    is a list (``--api-key`` repeated) and ``api_key`` a single key. ``.api_key`` is the first key,
    the one :meth:`connection_json` uses by default. Usable as a context manager or with
    :meth:`start`/:meth:`stop`.
    """

    def __init__(self, *, api_keys: Iterable[str] | None = None, api_key: str | None = None, **flags: Any) -> None:
        keys = list(api_keys or ([api_key] if api_key else [DEFAULT_API_KEY]))
        self.api_keys: list[str] = keys
        self.api_key: str = keys[0]
        self.flags = {"port": 0, **flags}
        self.url: str = ""
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> EmulatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "segmind_emulator",
            *_flag_args(self.flags),
            *_flag_args({"api_key": self.api_keys}),
        ]
        # stderr to a file, not a pipe: a chatty server must never block on a full pipe buffer.
        # Lives as long as the process, closed in _close(): a with-block cannot span that.
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="segmind-emulator-stderr-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_parent_death_signal(),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._finalizer = weakref.finalize(self, _reap, self.proc)
        try:
            self.url = self._read_url()
        except BaseException:
            self.kill()
            raise
        return self

    def _read_url(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout

        def pump() -> None:
            # Keeps draining stdout after the ready line, so the child can never block on it.
            for line in stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, name="emulator-stdout", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                tail = self._stderr_tail()
                raise RuntimeError(f"emulator did not start within {STARTUP_TIMEOUT:.0f}s{tail}") from None
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].strip()
            if line == "" or time.monotonic() > deadline:
                code = self.proc.poll()
                raise RuntimeError(f"emulator exited (code {code}) before it was ready{self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(Exception):
            self._stderr.flush()
            self._stderr.seek(0)
            text = self._stderr.read()[-3000:]
            return f"; stderr:\n{text}" if text else ""
        return ""

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (logs, tracebacks), for test diagnostics."""
        return self._stderr_tail().removeprefix("; stderr:\n")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self._close()

    def kill(self) -> int | None:
        """SIGKILL at once: a crashed server, for tests of client behaviour when the service vanishes."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        return self._close()

    def _close(self) -> int | None:
        assert self.proc is not None
        if self._finalizer is not None:
            self._finalizer.detach()
        if self.proc.stdout is not None:
            with contextlib.suppress(Exception):
                self.proc.stdout.close()
        if self._stderr is not None:
            with contextlib.suppress(Exception):
                self._stderr.close()
            self._stderr = None
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- talking to it ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port or 0

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """An admin call (``/_emulator/...``) with this emulator's key, which the admin endpoints require."""
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        headers = {"x-api-key": self.api_key}
        if body is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())  # every admin endpoint answers a JSON object
        return answer

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``: counters of what clients did (see the server docs for keys)."""
        return self._call("GET", "/_emulator/stats")

    def reset(self) -> None:
        """Forget jobs and counters, restore credits and rate limits (files and render cache stay)."""
        self._call("POST", "/_emulator/reset")

    def set_faults(self, rate: float, endpoints: Iterable[str] | None = None) -> dict[str, Any]:
        """``POST /_emulator/faults``: from now on fault ``rate`` of the requests to ``endpoints``
        (``submit``, ``status``, ``result``, ``v1``, ``upload``; ``None`` = all) with 500/502/504 or a
        dropped connection, before processing; ``rate=0`` heals. Returns the switch as the server has it."""
        body: dict[str, Any] = {"rate": rate}
        if endpoints is not None:
            body["endpoints"] = list(endpoints)
        return self._call("POST", "/_emulator/faults", body)

    def set_fault_rules(self, *rules: dict[str, Any]) -> dict[str, Any]:
        """``POST /_emulator/faults {"rules": [...]}``: replace the whole switch; no rules heals.

        A rule: ``{"mode": ..., "endpoints": [...], "rate": 1.0, "times": None, **mode_params}``, e.g.
        ``set_fault_rules({"mode": "accept_then_drop", "endpoints": ["submit"], "times": 1})``; the first
        rule that matches a request wins. Returns ``{"rules": [...]}`` as the server has it.
        """
        return self._call("POST", "/_emulator/faults", {"rules": list(rules)})

    def fault_rules(self) -> list[dict[str, Any]]:
        """``GET /_emulator/faults``: the current rules, each with the ``times`` it has left."""
        rules: list[dict[str, Any]] = self._call("GET", "/_emulator/faults")["rules"]
        return rules

    def sample_url(self, name: str = "athlete-1") -> str:
        """URL of a generated sample portrait (``athlete-1`` .. ``athlete-4``)."""
        return f"{self.url}/_emulator/samples/{name}.png"

    def connection_dict(self, key: str | None = None) -> dict[str, Any]:
        return {"conn_type": "segmind", "host": self.url, "password": key or self.api_key}

    def connection_json(self, key: str | None = None) -> str:
        """The Airflow JSON connection form, e.g. for ``AIRFLOW_CONN_SEGMIND_DEFAULT``."""
        return json.dumps(self.connection_dict(key))

    def connection_uri(self, key: str | None = None) -> str:
        """The Airflow URI form: ``segmind://:KEY@127.0.0.1:PORT/http`` (schema ``http``, loopback only)."""
        parts = urllib.parse.urlsplit(self.url)
        secret = urllib.parse.quote(key or self.api_key, safe="")
        return f"segmind://:{secret}@{parts.netloc}/{parts.scheme}"

    def __repr__(self) -> str:
        return f"EmulatorProcess(url={self.url!r}, running={self.running})"


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)


@contextlib.contextmanager
def running_together(emulators: Iterable[EmulatorProcess]) -> Iterator[None]:
    """Start several emulators in parallel (each takes seconds to boot) and stop them all on exit.

    The starting threads must outlive the emulators: a child started with ``PR_SET_PDEATHSIG`` gets
    SIGTERM when the *thread* that started it exits, so the pool is shut down only at the end.
    """
    from concurrent.futures import ThreadPoolExecutor

    procs = list(emulators)
    pool = ThreadPoolExecutor(max(1, len(procs)))
    try:
        list(pool.map(EmulatorProcess.start, procs))
        yield
    finally:
        list(pool.map(EmulatorProcess.stop, procs))
        pool.shutdown()
