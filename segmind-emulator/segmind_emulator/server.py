"""The emulator's HTTP server: the documented Segmind API on aiohttp.web.

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
4. the endpoint: Content-Type (406), JSON (400), parameters via :mod:`contract` (400),
   credits (406), then the job.

A v2 job's record is stored before its 200 is sent; fetching, decoding and rendering happen in
a background task and a thread pool, and every failure there becomes FAILED (422), never a 500.
Renders are cached by (image hash, duration, quality, motion_mode, seed, style), and concurrent
identical renders share one encode.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.exceptions import InvalidParameter
from segmind_emulator import faults
from segmind_emulator.config import EmulatorConfig
from segmind_emulator.faults import FaultRule, FaultSwitch
from segmind_emulator.state import (
    FAIL_AFTER_FRACTION,
    QUEUED_FRACTION,
    Credits,
    Job,
    JobStore,
    RateLimiter,
    Stats,
    draw_render_seconds,
    iso_utc,
    mask_key,
)

log = logging.getLogger("segmind_emulator")

#: Marker in an ``image_url`` (or an image model's prompt) that the responsible-AI filter blocks.
RAI_MARKER = "rai-block"
RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"
#: Emulator endpoints that change or reveal server state: they need a valid key like the API.
ADMIN_PATHS = frozenset({"/_emulator/stats", "/_emulator/reset", "/_emulator/faults", "/_emulator/health"})
MAX_BODY_BYTES = 64 * 1024 * 1024
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}\.[a-z0-9]{1,8}$")
_DATA_URL_RE = re.compile(r"^data:([a-z]+/[a-z0-9.+-]+);base64,(.*)$", re.IGNORECASE | re.DOTALL)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class JobFailure(Exception):
    """A reason for FAILED that the client should read verbatim (the 422 ``error``)."""


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _is_api_path(path: str) -> bool:
    return not path.startswith("/_emulator")


def _endpoint(request: web.Request) -> str:
    """The API endpoint a request is for, in the names of :data:`faults.FAULT_ENDPOINTS` ("other": unknown path)."""
    path = request.path
    if path == contract.UPLOAD_PATH:
        return "upload"
    if path.startswith("/v1/"):
        return "v1"
    if request.method == "GET" and path.startswith("/v2/requests/"):
        return "status" if path.endswith("/status") else "result"
    return "submit" if path.startswith("/v2/") else "other"


class Emulator:
    """All state of one emulator instance, and its request handlers."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._owns_data_dir = config.data_dir is None
        self.data_dir = Path(config.data_dir or tempfile.mkdtemp(prefix="segmind-emulator-"))
        for sub in ("renders", "outputs", "files"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.keys = frozenset(config.api_keys)
        self.jobs = JobStore(config.retention_seconds)
        self.credits = Credits(tuple(config.api_keys), config.credits)
        self.limiter = RateLimiter(config.rate_limit)
        self.stats = Stats()
        self.faults = FaultSwitch.from_rate(config.fault_rate)
        #: Public files (outputs, uploads) -> monotonic time they expire with their retention.
        self._file_deadlines: dict[Path, float] = {}
        # Separate generators: the fault pattern does not shift render times, and vice versa.
        self._job_rng = random.Random(config.seed)
        self._fault_rng = random.Random(None if config.seed is None else config.seed + 1)
        self._render_pool = ThreadPoolExecutor(config.render_workers, thread_name_prefix="emulator-render")
        # Decoding probes get their own small pool: a bad image must FAIL early, not wait behind encodes.
        self._probe_pool = ThreadPoolExecutor(2, thread_name_prefix="emulator-probe")
        self._renders: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._samples: dict[str, bytes] = {}
        self._session: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------------
    async def startup(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.fetch_timeout),
            connector=aiohttp.TCPConnector(limit=64),
        )
        self._adopt_existing_files()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def cleanup(self, app: web.Application) -> None:
        tasks = [t for t in (self._sweeper, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._probe_pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _sweep_forever(self) -> None:
        interval = min(5.0, max(0.2, self.config.retention_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            self.jobs.sweep()
            self._sweep_files()

    # --- retention of public files -----------------------------------------------------------------
    def _expire_file_at(self, path: Path, deadline: float) -> None:
        """Outputs and uploads live as long as the retention says; after that their URL is a 404."""
        self._file_deadlines[path] = deadline

    def _file_expired(self, path: Path) -> bool:
        deadline = self._file_deadlines.get(path)
        if deadline is None or time.monotonic() < deadline:
            return False
        self._delete_file(path)
        return True

    def _delete_file(self, path: Path) -> None:
        self._file_deadlines.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def _sweep_files(self) -> int:
        now = time.monotonic()
        due = [path for path, deadline in self._file_deadlines.items() if deadline <= now]
        for path in due:
            self._delete_file(path)
        return len(due)

    def _adopt_existing_files(self) -> None:
        """Files left in a reused ``--data-dir`` expire by their age, so a restart does not keep them forever."""
        wall, mono = time.time(), time.monotonic()
        for sub in ("outputs", "files"):
            for path in (self.data_dir / sub).iterdir():
                with contextlib.suppress(OSError):
                    age = wall - path.stat().st_mtime
                    self._expire_file_at(path, mono - age + self.config.retention_seconds)

    def reset(self) -> None:
        """Forget jobs, counters, credits used and rate buckets; keep the render cache and files."""
        for job in self.jobs.clear():
            if job.task is not None and not job.task.done():
                job.task.cancel()
        self.stats = Stats()
        self.faults = FaultSwitch.from_rate(self.config.fault_rate)
        self.credits.reset()
        self.limiter.reset()

    # --- middleware ------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_api_path(request.path):
            refusal = self._refuse_key(request) if request.path in ADMIN_PATHS else None
            return refusal if refusal is not None else await handler(request)
        rule = self.faults.pick(_endpoint(request), self._fault_rng)
        if rule is not None:
            self.stats.count_fault(rule.mode)
            if not rule.processes:
                return await self._fault_instead(request, rule)
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            # Unknown paths and wrong methods still answer JSON with ``error``, like every API error.
            response = _error(exc.status, exc.reason if exc.status != 404 else f"No such endpoint: {request.path}")
        if rule is not None and isinstance(response, web.Response):
            return await self._fault_after(request, response, rule)
        self.stats.responses[str(response.status)] += 1
        return response

    async def _fault_instead(self, request: web.Request, rule: FaultRule) -> web.StreamResponse:
        """A fault before processing: the request never reached auth, so no job and no charge."""
        log.info("fault %s: %s %s not processed", rule.mode, request.method, request.path)
        if rule.mode == "echo_key":
            assert isinstance(rule.status, int) and rule.size is not None
            self.stats.responses[str(rule.status)] += 1
            return await faults.echo_key(request, contract.API_KEY_HEADER, rule.status, rule.size)
        if rule.mode == "error":
            choice = rule.status if rule.status is not None else self._fault_rng.choice(faults.ERROR_CHOICES)
            if not isinstance(choice, int):
                self.stats.dropped_connections += 1
                return faults.drop(request)
            answer = faults.error_answer(choice)
        elif rule.mode == "redirect":
            answer = faults.redirect(rule)
        elif rule.mode == "gateway":
            assert isinstance(rule.status, int)
            answer = faults.gateway(rule.status)
        else:
            answer = faults.not_json()
        self.stats.responses[str(answer.status)] += 1
        return answer

    async def _fault_after(self, request: web.Request, real: web.Response, rule: FaultRule) -> web.StreamResponse:
        """A fault after processing: the job exists and is billed, but its answer is lost or spoilt."""
        log.info(
            "fault %s: %s %s processed (HTTP %s), answer spoilt", rule.mode, request.method, request.path, real.status
        )
        if rule.mode == "accept_then_drop":
            self.stats.dropped_connections += 1
            return faults.drop(request)
        if rule.mode == "oversize":
            assert rule.size is not None
            self.stats.responses["200"] += 1
            return await faults.oversize(request, real, rule.size)
        self.stats.responses[str(real.status)] += 1
        if rule.mode == "drip":
            return await faults.drip(request, real, rule.interval)
        return await faults.cut_body(request, real)

    def _refuse_key(self, request: web.Request) -> web.Response | None:
        """The 401 for a missing or unknown key, or ``None`` when the key is one of ours."""
        key = request.headers.get(contract.API_KEY_HEADER)
        if not key:
            return _error(401, f"Missing API key: send it in the {contract.API_KEY_HEADER} header")
        if key not in self.keys:
            return _error(401, f"Invalid API key {mask_key(key)}")
        return None

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refuse_key(request)
        if refusal is not None:
            return refusal
        key: str = request.headers[contract.API_KEY_HEADER]
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

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def origin(request: web.Request) -> str:
        """Base URL as the client reached us (Host header), so URLs work for any port or name."""
        return f"{request.scheme}://{request.host}"

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        ctype = request.headers.get("Content-Type", "")
        if ctype and "json" not in ctype.lower():
            raise web.HTTPNotAcceptable(reason=f"Unsupported Content-Type {ctype!r}: send application/json")
        raw = await request.read()
        if not raw.strip():
            raise web.HTTPBadRequest(reason="The request body is empty: send a JSON object of parameters")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=f"The request body is not valid JSON: {exc}") from None
        except RecursionError:  # "[[[[..." deeper than the parser's recursion limit: bad JSON, not a crash
            raise web.HTTPBadRequest(reason="The request body is not valid JSON: nested too deeply") from None

    async def _accept(self, request: web.Request, model: str) -> tuple[dict[str, Any], str] | web.Response:
        """Shared front half of v1 and v2: body, parameters, credits. Returns the normalised body."""
        try:
            body = await self._json_body(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)
        try:
            params = contract.validate_payload(model, body)
        except InvalidParameter as exc:
            return _error(400, str(exc))
        if model != contract.MUSCLE_SURGE:
            prompt = params.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                return _error(400, f"invalid prompt={prompt!r}: {model} needs a non-empty 'prompt' string")
        key: str = request["api_key"]
        if not self.credits.try_charge(key):
            return _error(
                406, f"Insufficient credits: key {mask_key(key)} has 0 credits left; each {model} job costs 1"
            )
        self.stats.credits_charged += 1
        return params, key

    async def _accept_job(self, request: web.Request) -> Job | web.Response:
        """The job a v1 run or v2 submit asks for, or the error answer that refuses it."""
        model = request.match_info["model"]
        accepted = await self._accept(request, model)
        if isinstance(accepted, web.Response):
            return accepted
        params, key = accepted
        return self._new_job(model, params, key)

    def _new_job(self, model: str, params: dict[str, Any], key: str) -> Job:
        ratio = (
            contract.TYPICAL_RENDER_SECONDS.get(model, contract.DEFAULT_TYPICAL_RENDER_SECONDS)
            / (contract.TYPICAL_RENDER_SECONDS[contract.MUSCLE_SURGE])
        )
        seconds = draw_render_seconds(self._job_rng, self.config.job_seconds * ratio, self.config.job_spread)
        job = Job(
            request_id=str(uuid.uuid4()),
            model=model,
            params=params,
            api_key=key,
            render_seconds=seconds,
            queued_seconds=seconds * self._job_rng.uniform(*QUEUED_FRACTION),
            fail_after=seconds * self._job_rng.uniform(*FAIL_AFTER_FRACTION),
        )
        job.task = asyncio.create_task(self._run_pipeline(job))
        self._tasks.add(job.task)
        job.task.add_done_callback(self._tasks.discard)
        return job

    # --- job pipeline ----------------------------------------------------------------------------
    async def _run_pipeline(self, job: Job) -> None:
        try:
            if job.model == contract.MUSCLE_SURGE:
                await self._produce_video(job)
            else:
                await self._produce_image(job)
            job.ready_at = time.monotonic()
        except JobFailure as exc:
            job.error = str(exc)
        except asyncio.CancelledError:
            job.error = "The request was cancelled (emulator reset or shutdown)"
            raise
        except Exception as exc:  # a render bug must show as FAILED, never as a lost job or a 500
            log.exception("render of %s failed", job.request_id)
            job.error = f"Internal error while rendering: {type(exc).__name__}: {exc}"
        finally:
            job.settled.set()

    async def _produce_video(self, job: Job) -> None:
        image_url: str = job.params["image_url"]
        if RAI_MARKER in image_url:
            raise JobFailure(RAI_DETAIL)
        data = await self._load_image(image_url)
        from segmind_emulator import render

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._probe_pool, render.decode_image, data)
        except render.ImageDecodeError as exc:
            raise JobFailure(f"Invalid input image at image_url: {exc}") from None
        p = job.params
        digest = hashlib.sha256(data).hexdigest()
        key_text = json.dumps([digest, p["duration"], p["quality"], p["motion_mode"], p.get("seed"), p.get("style")])
        cache_key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
        started = time.monotonic()
        info = await self._render_cached(cache_key, data, p)
        out = self.data_dir / "outputs" / f"{job.request_id}.mp4"
        _link_or_copy(Path(info["path"]), out)
        self._expire_file_at(out, job.submitted_at + self.config.retention_seconds)
        job.output_name = out.name
        job.metrics = {
            "render_seconds": round(job.render_seconds, 3),
            "queue_seconds": round(job.queued_seconds, 3),
            "encode_seconds": round(info["encode_seconds"], 3),
            "wait_for_encode_seconds": round(time.monotonic() - started, 3),
            "render_cache_hit": info["cache_hit"],
            "width": info["width"],
            "height": info["height"],
            "fps": info["fps"],
            "frames": info["frames"],
            "duration_seconds": info["duration"],
            "credits_used": 1,
        }

    async def _render_cached(self, cache_key: str, data: bytes, p: dict[str, Any]) -> dict[str, Any]:
        """Encode once per cache key; concurrent identical jobs await the same encode.

        The encode is its own task, shielded from its waiters: a job cancelled by a reset does not
        abort an encode other jobs wait on. A failed encode leaves the cache, so it is retried.
        """
        task = self._renders.get(cache_key)
        hit = task is not None
        if task is None:
            task = asyncio.ensure_future(self._encode(cache_key, data, p))
            self._renders[cache_key] = task

            def forget_failed(done: asyncio.Future[dict[str, Any]]) -> None:
                if (done.cancelled() or done.exception() is not None) and self._renders.get(cache_key) is done:
                    del self._renders[cache_key]

            task.add_done_callback(forget_failed)
        else:
            self.stats.render_cache_hits += 1
        return {**await asyncio.shield(task), "cache_hit": hit}

    async def _encode(self, cache_key: str, data: bytes, p: dict[str, Any]) -> dict[str, Any]:
        from segmind_emulator import render

        dest = self.data_dir / "renders" / f"{cache_key}.mp4"
        self.stats.renders += 1
        started = time.monotonic()
        info = await asyncio.get_running_loop().run_in_executor(
            self._render_pool,
            lambda: render.render_video(
                data,
                duration=p["duration"],
                quality=p["quality"],
                motion_mode=p["motion_mode"],
                seed=p.get("seed"),
                style=p.get("style"),
                dest=dest,
            ),
        )
        return {
            "path": str(dest),
            "encode_seconds": time.monotonic() - started,
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "frames": info.frames,
            "duration": info.duration,
        }

    async def _produce_image(self, job: Job) -> None:
        prompt: str = job.params["prompt"]
        if RAI_MARKER in prompt:
            raise JobFailure("Content blocked by the responsible-AI filter: the prompt was flagged as unsafe")
        from segmind_emulator import render

        png = await asyncio.get_running_loop().run_in_executor(self._probe_pool, render.render_prompt_image, prompt)
        out = self.data_dir / "outputs" / f"{job.request_id}.png"
        await asyncio.get_running_loop().run_in_executor(self._probe_pool, out.write_bytes, png)
        self._expire_file_at(out, job.submitted_at + self.config.retention_seconds)
        job.output_name = out.name
        job.metrics = {
            "render_seconds": round(job.render_seconds, 3),
            "queue_seconds": round(job.queued_seconds, 3),
            "width": 512,
            "height": 768,
            "credits_used": 1,
        }

    async def _load_image(self, url: str) -> bytes:
        """The input image's bytes, whole, or a :class:`JobFailure` saying why not (the cap included)."""
        limit = self.config.max_image_bytes
        too_large = f"Invalid input image: larger than the {limit}-byte limit for image_url"
        match = _DATA_URL_RE.match(url)
        if match:
            try:
                data = base64.b64decode(match.group(2), validate=True)
            except (binascii.Error, ValueError):
                raise JobFailure("Invalid input image: the data URI is not valid base64") from None
            if len(data) > limit:
                raise JobFailure(too_large)
            return data
        assert self._session is not None
        self.stats.image_fetches += 1
        body = bytearray()
        try:
            async with self._session.get(url, allow_redirects=True) as resp:
                if resp.status != 200:
                    raise JobFailure(f"Could not fetch image_url {url!r}: the server answered HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > limit:
                    raise JobFailure(f"{too_large} (Content-Length {resp.content_length})")
                # Every chunk until the end: one read() returns only what has arrived so far.
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise JobFailure(too_large)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise JobFailure(f"Could not fetch image_url {url!r}: {type(exc).__name__}: {exc}") from None
        return bytes(body)

    # --- API endpoints ---------------------------------------------------------------------------
    async def v1_run(self, request: web.Request) -> web.StreamResponse:
        """Synchronous run: the answer is the output itself, after the render time."""
        job = await self._accept_job(request)
        if isinstance(job, web.Response):
            return job
        self.stats.v1_runs[job.model] += 1
        state = await job.wait_terminal()
        if state is not contract.RequestStatus.COMPLETED or job.output_name is None:
            # The sync API has no request to poll: the failure is the answer, and 4xx is not billed.
            self.credits.refund(job.api_key)
            self.stats.credits_charged -= 1
            return web.json_response({"status": "FAILED", "error": job.error or "unknown failure"}, status=422)
        path = self.data_dir / "outputs" / job.output_name
        ctype = "video/mp4" if job.output_name.endswith(".mp4") else "image/png"
        body = await asyncio.get_running_loop().run_in_executor(self._probe_pool, path.read_bytes)
        return web.Response(body=body, content_type=ctype, headers={"x-request-id": job.request_id})

    async def v2_submit(self, request: web.Request) -> web.StreamResponse:
        job = await self._accept_job(request)
        if isinstance(job, web.Response):
            return job
        self.jobs.add(job)  # stored before the 200 leaves: an acknowledged job is never lost
        self.stats.submissions[job.model] += 1
        origin = self.origin(request)
        return web.json_response(
            {
                "request_id": job.request_id,
                "status": job.status().value,
                "status_url": origin + contract.status_path(job.request_id),
                "response_url": origin + contract.result_path(job.request_id),
                "model": job.model,
                "created_at": iso_utc(job.submitted_wall),
            }
        )

    def _lookup(self, request: web.Request) -> Job | web.Response:
        request_id = request.match_info["request_id"]
        job = self.jobs.get(request_id)
        if job is None:
            return _error(404, f"Request {request_id} not found")
        return job

    @staticmethod
    def _failed_body(job: Job) -> dict[str, Any]:
        return {"request_id": job.request_id, "status": "FAILED", "error": job.error, "model": job.model}

    def _unfailed_job(self, request: web.Request, counter: str) -> tuple[Job, contract.RequestStatus] | web.Response:
        """The job and its state, or the answer that ends the request: 404 unknown, 422 FAILED (both endpoints)."""
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        state = job.status()
        if state is contract.RequestStatus.FAILED:
            return web.json_response(self._failed_body(job), status=422)
        return job, state

    async def v2_status(self, request: web.Request) -> web.StreamResponse:
        found = self._unfailed_job(request, "status_polls")
        if isinstance(found, web.Response):
            return found
        job, state = found
        return web.json_response(
            {
                "request_id": job.request_id,
                "status": state.value,
                "model": job.model,
                "created_at": iso_utc(job.submitted_wall),
            }
        )

    async def v2_result(self, request: web.Request) -> web.StreamResponse:
        found = self._unfailed_job(request, "results")
        if isinstance(found, web.Response):
            return found
        job, state = found
        body: dict[str, Any] = {"request_id": job.request_id, "status": state.value, "model": job.model}
        if state is contract.RequestStatus.COMPLETED:
            body["output"] = f"{self.origin(request)}/_emulator/outputs/{job.output_name}"
            body["metrics"] = job.metrics
        return web.json_response(body)

    async def upload(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)
        urls = body.get("data_urls") if isinstance(body, dict) else None
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            return _error(400, "data_urls must be a non-empty list of data:<mime>;base64,... strings")
        decoded: list[tuple[str, bytes]] = []
        for index, url in enumerate(urls):
            match = _DATA_URL_RE.match(url)
            if not match:
                return _error(400, f"data_urls[{index}] is not a data:<mime>;base64,... URI")
            try:
                payload = base64.b64decode(match.group(2), validate=True)
            except (binascii.Error, ValueError):
                return _error(400, f"data_urls[{index}] is not valid base64")
            ext = (mimetypes.guess_extension(match.group(1).lower()) or ".bin").lstrip(".")
            decoded.append((ext, payload))
        origin = self.origin(request)
        file_urls = []
        for ext, payload in decoded:
            name = f"{uuid.uuid4().hex}.{ext}"
            path = self.data_dir / "files" / name
            await asyncio.get_running_loop().run_in_executor(self._probe_pool, path.write_bytes, payload)
            self._expire_file_at(path, time.monotonic() + self.config.retention_seconds)
            file_urls.append(f"{origin}/_emulator/files/{name}")
        self.stats.uploads += len(file_urls)
        self.stats.upload_requests += 1
        return web.json_response({"file_urls": file_urls, "message": f"{len(file_urls)} file(s) uploaded successfully"})

    # --- emulator-only endpoints (never faulted, not counted; the admin ones need a key) -----------
    async def serve_file(self, request: web.Request) -> web.StreamResponse:
        """Outputs and uploads, like a public CDN URL: no key needed; gone after the retention."""
        name = request.match_info["name"]
        kind = request.match_info["kind"]
        path = self.data_dir / kind / name
        if not _FILE_NAME_RE.match(name) or self._file_expired(path) or not path.is_file():
            return _error(404, f"No such file: {kind}/{name}")
        return web.FileResponse(path)

    async def sample(self, request: web.Request) -> web.StreamResponse:
        from segmind_emulator import render

        name = request.match_info["name"]
        if name not in render.SAMPLES:
            return _error(404, f"No such sample {name!r}; try one of {sorted(render.SAMPLES)}")
        if name not in self._samples:
            self._samples[name] = await asyncio.get_running_loop().run_in_executor(
                self._probe_pool, render.render_sample, name
            )
        return web.Response(body=self._samples[name], content_type="image/png")

    async def sample_index(self, request: web.Request) -> web.StreamResponse:
        from segmind_emulator import render

        origin = self.origin(request)
        return web.json_response(
            {
                name: {"url": f"{origin}/_emulator/samples/{name}.png", "width": w, "height": h}
                for name, (w, h) in render.SAMPLES.items()
            }
        )

    async def stats_view(self, request: web.Request) -> web.StreamResponse:
        body = self.stats.snapshot()
        body["jobs"] = self.jobs.counts()
        body["credits"] = self.credits.snapshot()
        body["faults"] = self.faults.to_dict()
        return web.json_response(body)

    async def faults_view(self, request: web.Request) -> web.StreamResponse:
        """``GET`` shows the rules (with ``times`` left); ``POST`` replaces them (see :class:`FaultSwitch`)."""
        if request.method == "POST":
            try:
                self.faults = FaultSwitch.parse(await self._json_body(request))
            except web.HTTPException as exc:
                return _error(exc.status, exc.reason)
            except ValueError as exc:
                return _error(400, str(exc))
            log.info("fault switch set to %s", self.faults.to_dict())
        return web.json_response(self.faults.to_dict())

    async def reset_view(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"message": "emulator state reset"})

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "jobs": len(self.jobs)})


def _link_or_copy(src: Path, dest: Path) -> None:
    """Give a request its own output URL without copying megabytes: a hard link to the cached render."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    """The aiohttp application for ``config``; the :class:`Emulator` is at ``app[EMULATOR_KEY]``."""
    emulator = Emulator(config or EmulatorConfig())
    app = web.Application(middlewares=[emulator.middleware], client_max_size=MAX_BODY_BYTES)
    app[EMULATOR_KEY] = emulator
    app.on_startup.append(emulator.startup)
    app.on_cleanup.append(emulator.cleanup)
    app.router.add_get("/_emulator/stats", emulator.stats_view)
    app.router.add_post("/_emulator/reset", emulator.reset_view)
    app.router.add_route("GET", "/_emulator/faults", emulator.faults_view)
    app.router.add_route("POST", "/_emulator/faults", emulator.faults_view)
    app.router.add_get("/_emulator/health", emulator.health)
    app.router.add_get("/_emulator/samples", emulator.sample_index)
    app.router.add_get("/_emulator/samples/{name}.png", emulator.sample)
    app.router.add_get("/_emulator/{kind:outputs|files}/{name}", emulator.serve_file)
    app.router.add_post(contract.UPLOAD_PATH, emulator.upload)
    app.router.add_get("/v2/requests/{request_id}/status", emulator.v2_status)
    app.router.add_get("/v2/requests/{request_id}", emulator.v2_result)
    app.router.add_post("/v1/{model}", emulator.v1_run)
    app.router.add_post("/v2/{model}", emulator.v2_submit)
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
