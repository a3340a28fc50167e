"""One pooled aiohttp session per event loop and API key, shared by every wait in a process.

Why: a triggerer holds thousands of waits at once. With a session of its own, each trigger keeps a
``ClientSession``, a connector, a resolver and a TCP connection for its whole wait: some forty
long-lived objects that every full garbage collection of the triggerer walks, and one handshake
per trigger. Shared, all the waits on a key poll over at most :data:`POOL_CONNECTIONS` keep-alive
connections (which also bounds what one triggerer asks of the service at once). Measured in
``bench/RESULTS.md`` (section 2e): less CPU per job and fewer, shorter full collections.

Only idempotent reads (status and result calls) use the pool. A paid submit goes on a connection
of its own (:class:`~airflow_provider_muscle_surge.hooks.segmind_async.SegmindAsyncHook` opens a
session for it): a keep-alive connection the server has just dropped would make the outcome of
the POST unknown, and an unknown submit is never sent again.

The pool is per event loop (aiohttp sessions belong to one loop; the blocking hook's waits run
their own loop in a thread) and per set of headers, which holds the key: a session never carries
one connection's key to another's request. The last wait to leave closes it.
"""

from __future__ import annotations

import threading
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from dataclasses import dataclass

import aiohttp

#: Connections one pooled session keeps open at most (aiohttp's own default, stated here).
POOL_CONNECTIONS = 100


@dataclass
class _Pool:
    session: aiohttp.ClientSession
    users: int = 0


_HeadersKey = frozenset[tuple[str, str]]
_pools: weakref.WeakKeyDictionary[AbstractEventLoop, dict[_HeadersKey, _Pool]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def acquire(headers: dict[str, str]) -> aiohttp.ClientSession:
    """The running loop's session for these headers, opened on first use; pair with :func:`release`."""
    loop = get_running_loop()
    key = frozenset(headers.items())
    with _lock:
        pools = _pools.setdefault(loop, {})
        pool = pools.get(key)
        if pool is None or pool.session.closed:
            session = aiohttp.ClientSession(
                headers=headers,
                # Time limits are set per call (a total per attempt), not per session.
                timeout=aiohttp.ClientTimeout(total=None),
                connector=aiohttp.TCPConnector(limit=POOL_CONNECTIONS),
            )
            pool = pools[key] = _Pool(session)
        pool.users += 1
        return pool.session


async def release(session: aiohttp.ClientSession) -> None:
    """One user fewer; the last one closes the session (and its connections)."""
    loop = get_running_loop()
    with _lock:
        pools = _pools.get(loop, {})
        key = next((k for k, p in pools.items() if p.session is session), None)
        if key is not None:
            pools[key].users -= 1
            if pools[key].users > 0:
                return
            del pools[key]
    await session.close()


def open_sessions() -> int:
    """Pooled sessions open in this process, across loops (for tests and diagnostics)."""
    with _lock:
        return sum(len(p) for p in _pools.values())
