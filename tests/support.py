"""What the test modules share: the test key, fast retries, the ``segmind`` connection, both hooks behind one interface.

The connection is set with the ``segmind_connection`` fixture (``conftest.py``), which builds it
with :func:`connection`. :class:`Client` lets one test state what the sync and the async hook both
promise, parametrised over :data:`HOOKS` (fixture ``either_hook``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_muscle_surge.polling import PollSchedule

if TYPE_CHECKING:
    from segmind_emulator.testing import EmulatorProcess

    from airflow_provider_muscle_surge.contract import Submission

#: The key of the test emulators (and of connections to the hostile server).
TEST_KEY = "test-key"
#: Retries that take milliseconds, so a test that exhausts them stays fast (4 attempts in all).
FAST_RETRY: dict[str, Any] = {"max_retries": 3, "max_retry_seconds": 5, "initial_backoff": 0.01, "max_backoff": 0.05}
#: The muscle-surge schedule on the emulator's clock (~1 s jobs instead of ~45 s).
FAST_SCHEDULE = PollSchedule.for_model("muscle-surge").scaled(1 / 45.5)
#: Operator arguments for ~1 s emulator jobs: blocking (fixed 0.2 s polls) and deferrable.
FAST = {"poll_interval": 0.2}
FAST_DEFERRED = {"poll_schedule": {"expected_seconds": 1, "dense_interval": 0.2, "first_poll_seconds": 0.3}}
#: The two hooks :class:`Client` drives.
HOOKS = ("sync", "async")


class _Unset:
    def __repr__(self) -> str:
        return "<the emulator's key>"


#: ``key`` default of :func:`connection`: the emulator's own key, or :data:`TEST_KEY` for a URL.
EMULATOR_KEY: Any = _Unset()


def connection(target: str | EmulatorProcess, *, key: str | None = EMULATOR_KEY, **extra: Any) -> dict[str, Any]:
    """The JSON form of a ``segmind`` connection to ``target`` (a URL or an emulator), fast retries in its extra.

    ``key=None`` leaves the password out; ``extra`` adds to (or overrides) :data:`FAST_RETRY`.
    """
    host = target if isinstance(target, str) else target.url
    if key is EMULATOR_KEY:
        key = TEST_KEY if isinstance(target, str) else target.api_key
    conn: dict[str, Any] = {"conn_type": "segmind", "host": host, "extra": {**FAST_RETRY, **extra}}
    if key is not None:
        conn["password"] = key
    return conn


class Client:
    """``SegmindHook`` or ``SegmindAsyncHook`` behind one blocking interface.

    Every call builds a new hook from ``segmind_default`` (the async one inside its own ``async with``
    on a new event loop), so a test written once runs each entry point the same way.
    """

    def __init__(self, kind: str) -> None:
        assert kind in HOOKS, kind
        self.kind = kind

    def __repr__(self) -> str:
        return f"Client({self.kind!r})"

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
        from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook

        if self.kind == "sync":
            return getattr(SegmindHook(), method)(*args, **kwargs)

        async def in_a_block() -> Any:
            async with SegmindAsyncHook() as hook:
                return await getattr(hook, method)(*args, **kwargs)

        return asyncio.run(in_a_block())

    def submit(self, payload: dict[str, Any], model: str = "muscle-surge", **kwargs: Any) -> Submission:
        return self.call("submit", model, payload, **kwargs)

    def get_status(self, request_id: str) -> dict[str, Any]:
        return self.call("get_status", request_id)

    def get_result(self, request_id: str) -> dict[str, Any]:
        return self.call("get_result", request_id)

    def wait(
        self, request_id: str, timeout: float = 30.0, schedule: PollSchedule = FAST_SCHEDULE, **kwargs: Any
    ) -> dict[str, Any]:
        """``wait_for_request`` with the deadline ``timeout`` seconds from now (``kwargs``: ``on_step``)."""
        if self.kind == "sync":
            return self.call("wait_for_request", request_id, timeout=timeout, schedule=schedule, **kwargs)
        now = time.time()
        times = {"submitted_at": now, "deadline": now + timeout}
        return self.call("wait_for_request", request_id, **times, schedule=schedule, **kwargs)


def file_sha256(path: str) -> str:
    """The sha256 of a saved file, read in 1 MiB chunks (outputs are videos): what an output's record must match."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
