"""The emulator's HTTP server: the application, its state, and the middleware every request passes.

Why a real server rather than mocks: the hooks, the trigger, the official ``segmind`` SDK and
curl must all meet the same behaviour over real sockets (timeouts, dropped connections, 429
headers, concurrent polls), which a mock of one HTTP library cannot give.

Request path through the server, in order (the order is part of the contract tests rely on):

1. the fault switch (``--fault-rate``, or rules set at run time with ``POST /_emulator/faults``,
   see :mod:`.faults`): a mode that answers *instead* of the server does so here, before anything
   else, so such a faulted submit created no job and charged nothing; a mode that spoils the answer
   lets the request run through 2-4 and then loses, cuts, drips or bloats the real answer;
2. auth (401), checked before any lookup, so a wrong key never learns whether an id exists;
3. rate limit per key (429 with ``Retry-After`` and ``x-rate-limit-reset-at-utc``);
4. the endpoint (:mod:`.api`): Content-Type (406), JSON (400), parameters per :mod:`.api_facts`
   (400), credits (406), then the job (:mod:`.pipeline`).

``/_emulator/`` endpoints (:mod:`.admin`) skip 1, 3 and the counters; the admin ones need step 2.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from aiohttp import web

from segmind_emulator import api_facts, faults
from segmind_emulator.admin import ADMIN_PATHS, Admin
from segmind_emulator.answers import error_response, to_response
from segmind_emulator.api import Api
from segmind_emulator.config import EmulatorConfig
from segmind_emulator.faults import FaultSwitch
from segmind_emulator.files import PublicFiles
from segmind_emulator.pipeline import Pipeline
from segmind_emulator.state import Credits, JobStore, RateLimiter, Stats, mask_key

log = logging.getLogger("segmind_emulator")

MAX_BODY_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _endpoint(request: web.Request) -> str:
    """The API endpoint a request is for, in the names of :data:`faults.FAULT_ENDPOINTS` ("other": unknown path)."""
    path = request.path
    if path == api_facts.UPLOAD_PATH:
        return "upload"
    if path.startswith("/v1/"):
        return "v1"
    if request.method == "GET" and path.startswith("/v2/requests/"):
        return "status" if path.endswith("/status") else "result"
    return "submit" if path.startswith("/v2/") else "other"


class Emulator:
    """All state of one emulator instance; the handlers live in :class:`Api` and :class:`Admin`."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.keys = frozenset(config.api_keys)
        self.files = PublicFiles(config.data_dir, config.retention_seconds)
        self.jobs = JobStore(config.retention_seconds)
        self.credits = Credits(tuple(config.api_keys), config.credits)
        self.limiter = RateLimiter(config.rate_limit)
        self.stats = Stats()
        self.faults = FaultSwitch.from_rate(config.fault_rate)
        # Its own generator: the fault pattern does not shift render times, and vice versa.
        self.fault_rng = random.Random(None if config.seed is None else config.seed + 1)
        self.pipeline = Pipeline(config, self.files, self.stats)
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def startup(self, app: web.Application) -> None:
        await self.pipeline.start()
        self.files.adopt_existing()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def cleanup(self, app: web.Application) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.pipeline.stop()
        self.files.remove_all()

    async def _sweep_forever(self) -> None:
        """Expired records and files go within a fraction of the retention, also when nobody asks."""
        interval = min(5.0, max(0.2, self.config.retention_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            self.jobs.sweep()
            self.files.sweep()

    def reset(self) -> None:
        """Forget jobs, counters, credits used and rate buckets; restore ``--fault-rate``; keep files and cache."""
        for job in self.jobs.clear():
            if job.task is not None and not job.task.done():
                job.task.cancel()
        self.stats.reset()
        self.faults = FaultSwitch.from_rate(self.config.fault_rate)
        self.credits.reset()
        self.limiter.reset()

    # --- middleware ------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator"):
            refusal = self._refuse_key(request) if request.path in ADMIN_PATHS else None
            # ``is not None``: a response is a mapping, and an empty one is falsy.
            return refusal if refusal is not None else await self._answer(request, handler)
        rule = self.faults.pick(_endpoint(request), self.fault_rng)
        if rule is not None:
            self.stats.count_fault(rule.mode)
            if not rule.processes:
                return await faults.answer_instead(request, rule, self.fault_rng, self.stats, api_facts.API_KEY_HEADER)
        response = await self._answer(request, self._guarded(handler))
        if rule is not None and isinstance(response, web.Response):
            return await faults.spoil(request, response, rule, self.stats)
        self.stats.responses[str(response.status)] += 1
        return response

    @staticmethod
    async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's answer, raised ones included (unknown paths and wrong methods answer JSON too)."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return to_response(exc, request.path)

    def _guarded(self, handler: Handler) -> Handler:
        """``handler`` behind auth (401) and the per-key rate limit (429)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self._refuse_key(request)
            if refusal is not None:
                return refusal
            key = request.headers[api_facts.API_KEY_HEADER]
            decision = self.limiter.check(key)
            if not decision.allowed:
                self.stats.rate_limited += 1
                return web.json_response(
                    {"error": f"Rate limit exceeded: {self.config.rate_limit:g} requests per second per key"},
                    status=429,
                    headers=decision.headers(),
                )
            request["api_key"] = key
            return await handler(request)

        return guarded

    def _refuse_key(self, request: web.Request) -> web.Response | None:
        """The 401 for a missing or unknown key, or ``None`` when the key is one of ours."""
        key = request.headers.get(api_facts.API_KEY_HEADER)
        if not key:
            return error_response(401, f"Missing API key: send it in the {api_facts.API_KEY_HEADER} header")
        if key not in self.keys:
            return error_response(401, f"Invalid API key {mask_key(key)}")
        return None


EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    """The aiohttp application for ``config``; the :class:`Emulator` is at ``app[EMULATOR_KEY]``."""
    emulator = Emulator(config or EmulatorConfig())
    app = web.Application(middlewares=[emulator.middleware], client_max_size=MAX_BODY_BYTES)
    app[EMULATOR_KEY] = emulator
    app.on_startup.append(emulator.startup)
    app.on_cleanup.append(emulator.cleanup)
    Admin(emulator).add_routes(app)
    Api(emulator).add_routes(app)
    return app


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(
    config: EmulatorConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server until ``stop`` is set; ``on_ready`` gets the base URL once it listens.

    The URL is reported only after the socket is bound, with the real port when ``port=0``,
    which is what lets the test helper start servers in parallel without port clashes.
    """
    app = build_app(config)
    # A short shutdown grace: a stopped emulator should be gone quickly, in-flight v1 waits included.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"http://{_display_host(config.host)}:{port}"
        if on_ready is not None:
            on_ready(url)
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
