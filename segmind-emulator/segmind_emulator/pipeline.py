"""The job pipeline: from an accepted request to an output file, or to FAILED with a reason.

A job's record is created here and its work runs in a background task: fetch or decode the input,
check it, render (in a thread pool, so the event loop keeps answering polls), and publish the
output file with the job's retention. Every failure on the way becomes FAILED with a detail the
client reads verbatim (422), never a 500 and never a lost job.

Renders are cached by (image hash, duration, quality, motion_mode, seed, style), and concurrent
identical renders share one encode: 200 clients sending four images cost four encodes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp

from segmind_emulator import api_facts
from segmind_emulator.config import EmulatorConfig
from segmind_emulator.files import PublicFiles, link_or_copy
from segmind_emulator.state import FAIL_AFTER_FRACTION, QUEUED_FRACTION, Job, Stats, draw_render_seconds

log = logging.getLogger("segmind_emulator")

#: Marker in an ``image_url`` (or an image model's prompt) that the responsible-AI filter blocks.
RAI_MARKER = "rai-block"
RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"
DATA_URL_RE = re.compile(r"^data:([a-z]+/[a-z0-9.+-]+);base64,(.*)$", re.IGNORECASE | re.DOTALL)
_FETCH_CHUNK = 256 * 1024

T = TypeVar("T")


class JobFailure(Exception):
    """A reason for FAILED that the client should read verbatim (the 422 ``error``)."""


class Pipeline:
    """Creates jobs and does their work; owns the thread pools, the image fetcher and the render cache."""

    def __init__(self, config: EmulatorConfig, files: PublicFiles, stats: Stats) -> None:
        self.config = config
        self.files = files
        self.stats = stats
        self._rng = random.Random(config.seed)
        self._render_pool = ThreadPoolExecutor(config.render_workers, thread_name_prefix="emulator-render")
        # Decoding probes get their own small pool: a bad image must FAIL early, not wait behind encodes.
        self._probe_pool = ThreadPoolExecutor(2, thread_name_prefix="emulator-probe")
        self._renders: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.fetch_timeout),
            connector=aiohttp.TCPConnector(limit=64),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    async def blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run small blocking work (file I/O, a PNG) off the event loop, beside the decoding probes."""
        return await asyncio.get_running_loop().run_in_executor(self._probe_pool, func, *args)

    # --- jobs ------------------------------------------------------------------------------------
    def new_job(self, model: str, params: dict[str, Any], key: str) -> Job:
        """An accepted job with its drawn timeline; its work starts at once in the background."""
        if model == api_facts.MUSCLE_SURGE:
            mean = self.config.mean_job_seconds(params)
        else:
            mean = (
                self.config.job_seconds
                * api_facts.typical_render_seconds(model)
                / api_facts.MUSCLE_SURGE_RENDER_SECONDS
            )
        seconds = draw_render_seconds(self._rng, mean, self.config.job_spread)
        job = Job(
            request_id=str(uuid.uuid4()),
            model=model,
            params=params,
            api_key=key,
            render_seconds=seconds,
            queued_seconds=seconds * self._rng.uniform(*QUEUED_FRACTION),
            fail_after=seconds * self._rng.uniform(*FAIL_AFTER_FRACTION),
        )
        job.task = asyncio.create_task(self._run(job))
        self._tasks.add(job.task)
        job.task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job) -> None:
        try:
            if job.model == api_facts.MUSCLE_SURGE:
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

    def _publish(self, job: Job, name: str) -> None:
        """The output is public from now on, until the job's retention passes."""
        self.files.expire_at(self.files.output(name), job.submitted_at + self.config.retention_seconds)
        job.output_name = name

    async def _produce_video(self, job: Job) -> None:
        image_url: str = job.params["image_url"]
        if RAI_MARKER in image_url:
            raise JobFailure(RAI_DETAIL)
        data = await self._load_image(image_url)
        from segmind_emulator import render

        try:
            await asyncio.get_running_loop().run_in_executor(self._probe_pool, render.decode_image, data)
        except render.ImageDecodeError as exc:
            raise JobFailure(f"Invalid input image at image_url: {exc}") from None
        p = job.params
        digest = hashlib.sha256(data).hexdigest()
        key_text = json.dumps([digest, p["duration"], p["quality"], p["motion_mode"], p.get("seed"), p.get("style")])
        cache_key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
        started = time.monotonic()
        info = await self._render_cached(cache_key, data, p)
        name = f"{job.request_id}.mp4"
        link_or_copy(self.files.render(cache_key), self.files.output(name))
        self._publish(job, name)
        job.metrics = {
            **_timeline(job),
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

        dest = self.files.render(cache_key)
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

        png = await self.blocking(render.render_prompt_image, prompt)
        name = f"{job.request_id}.png"
        await self.blocking(self.files.output(name).write_bytes, png)
        self._publish(job, name)
        job.metrics = {**_timeline(job), "width": 512, "height": 768, "credits_used": 1}

    async def _load_image(self, url: str) -> bytes:
        """The input image's bytes, whole, or a :class:`JobFailure` saying why not (the size cap included)."""
        limit = self.config.max_image_bytes
        too_large = f"Invalid input image: larger than the {limit}-byte limit for image_url"
        match = DATA_URL_RE.match(url)
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
                async for chunk in resp.content.iter_chunked(_FETCH_CHUNK):
                    body += chunk
                    if len(body) > limit:
                        raise JobFailure(too_large)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise JobFailure(f"Could not fetch image_url {url!r}: {type(exc).__name__}: {exc}") from None
        return bytes(body)


def _timeline(job: Job) -> dict[str, float]:
    """The drawn render and queue times, the first metrics of every output."""
    return {"render_seconds": round(job.render_seconds, 3), "queue_seconds": round(job.queued_seconds, 3)}
