"""SegmindAsyncHook: the non-blocking client the trigger polls with.

Why not the http provider's HttpAsyncHook: it opens a new aiohttp session per call, skips
429 on purpose, and sends the connection extra as headers. A triggerer may hold thousands of
these at once, so here status and result calls go over one pooled session per key and event loop,
shared by every ``async with`` block (``hooks/shared_session.py``), while a submit gets a session
of its own; the connection is read with ``aget_connection`` (no blocking DB or secrets call on the
event loop), and retries share the sync hook's policy and error map.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
from airflow.sdk import BaseHook

from airflow_provider_muscle_surge import answers, contract
from airflow_provider_muscle_surge.answers import MAX_ANSWER_BYTES, RawAnswer
from airflow_provider_muscle_surge.exceptions import (
    CertificateError,
    InferenceTimeout,
    PollingGaveUp,
    SegmindError,
    SubmitOutcomeUnknown,
    TransportError,
)
from airflow_provider_muscle_surge.hooks import shared_session
from airflow_provider_muscle_surge.hooks.settings import DEFAULT_CONN_ID, SegmindSettings
from airflow_provider_muscle_surge.polling import PollSchedule, Step, Watch
from airflow_provider_muscle_surge.retry import MIN_ATTEMPT_SECONDS

CONNECT_TIMEOUT = 10.0
#: How long the final status call at the deadline may take: the wait ends by deadline + this.
LAST_LOOK_SECONDS = 5.0


class SegmindAsyncHook(BaseHook):
    """Use as ``async with SegmindAsyncHook(conn_id) as hook: await hook.wait_for_request(...)``."""

    conn_name_attr = "segmind_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "segmind"
    hook_name = "Segmind (async)"

    def __init__(self, segmind_conn_id: str = DEFAULT_CONN_ID, *, settings: SegmindSettings | None = None) -> None:
        super().__init__()
        self.segmind_conn_id = segmind_conn_id
        self._settings = settings
        self._pooled: aiohttp.ClientSession | None = None  # reads: the process's session for this key
        self._own: aiohttp.ClientSession | None = None  # anything else: this block's, opened on first use

    async def get_settings(self) -> SegmindSettings:
        if self._settings is None:
            conn = await self.aget_connection(self.segmind_conn_id)
            self._settings = SegmindSettings.from_connection(conn)
        return self._settings

    async def __aenter__(self) -> SegmindAsyncHook:
        settings = await self.get_settings()
        self._pooled = shared_session.acquire(settings.headers)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pooled, own, self._pooled, self._own = self._pooled, self._own, None, None
        try:
            if own is not None:
                await own.close()
        finally:
            if pooled is not None:
                await shared_session.release(pooled)

    def _session_for(self, method: str, settings: SegmindSettings) -> aiohttp.ClientSession:
        """GETs (idempotent) share the pool; a POST never rides a keep-alive connection the server may
        have just dropped, which would leave a paid submit's outcome unknown (see ``shared_session``)."""
        if self._pooled is None:
            raise RuntimeError("use SegmindAsyncHook inside 'async with': it holds its HTTP sessions per block")
        if method == "GET":
            return self._pooled
        if self._own is None:
            # Time limits are set per call (a total per attempt, see ``_call``), not per socket read.
            self._own = aiohttp.ClientSession(headers=settings.headers, timeout=aiohttp.ClientTimeout(total=None))
        return self._own

    async def _call(
        self,
        method: str,
        url: str,
        *,
        request_id: str | None = None,
        json: Any = None,
        failed_is_answer: bool = False,
        until: float | None = None,
        resend: bool = True,
        rated: bool = False,
    ) -> Any:
        """One API call, as in the sync hook: each attempt limited in total time, no redirects, capped body.

        Every attempt first waits for the key's budget (``hooks/key_budget.py``): a 429's pause, and
        a token when ``rated`` (status and result calls); the wait never passes ``until`` and is taken
        out of the attempt's time limit. A 429 with a reset time pauses every caller on the key.
        """
        settings = await self.get_settings()
        session = self._session_for(method, settings)
        budget = settings.key_budget()

        async def fetch(limit: float) -> RawAnswer:
            timeout = aiohttp.ClientTimeout(total=limit, sock_connect=min(CONNECT_TIMEOUT, limit))
            async with session.request(method, url, json=json, allow_redirects=False, timeout=timeout) as response:
                content = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    content += chunk
                    if len(content) > MAX_ANSWER_BYTES:
                        break
                complete = len(content) <= MAX_ANSWER_BYTES
                return RawAnswer(response.status, response.headers, bytes(content[:MAX_ANSWER_BYTES]), complete)

        async def attempt(limit: float) -> Any:
            waited = await budget.acquire(rated=rated, until=until)
            limit = max(MIN_ATTEMPT_SECONDS, limit - waited)
            try:
                # A deadline on top of aiohttp's own total: the bound holds whatever phase the call is
                # in. asyncio.timeout, not wait_for: it cancels this task instead of running the call
                # in a new one (a task and its scheduling per call, times thousands of triggers).
                async with asyncio.timeout(limit + 0.5):
                    answer = await fetch(limit)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
                raise transport_error(err, url) from None
            with budget.pausing_on_429(settings.retry.max_retry_after):
                return answers.interpret(
                    answer, url=url, api_key=settings.api_key, request_id=request_id, failed_is_answer=failed_is_answer
                )

        return await settings.retry.acall(attempt, per_attempt=settings.timeout, until=until, resend=resend)

    async def submit(
        self, model: str, payload: dict[str, Any], *, resubmit_on_unknown_outcome: bool | None = None
    ) -> contract.Submission:
        """v2 submit with the sync hook's rule: an unknown outcome is never posted again unless opted in."""
        settings = await self.get_settings()
        body = contract.validate_payload(model, payload)
        # At most max_concurrent_submits in flight per key in this process (pools do not bound the triggerer).
        async with settings.key_budget().submit_slot(settings.retry.max_retry_seconds):
            with SubmitOutcomeUnknown.guard(model):
                answer = await self._call(
                    "POST",
                    settings.url(contract.v2_submit_path(model)),
                    json=body,
                    resend=settings.resend(resubmit_on_unknown_outcome),
                )
        return settings.pin(contract.Submission.parse(answer))

    async def get_status(self, request_id: str, *, until: float | None = None) -> dict[str, Any]:
        settings = await self.get_settings()
        url = settings.url(contract.status_path(request_id))
        body = await self._call("GET", url, request_id=request_id, failed_is_answer=True, until=until, rated=True)
        return contract.require_json_object(body, f"the status of {request_id}")

    async def get_result(self, request_id: str, *, until: float | None = None) -> dict[str, Any]:
        settings = await self.get_settings()
        url = settings.url(contract.result_path(request_id))
        body = await self._call("GET", url, request_id=request_id, failed_is_answer=True, until=until, rated=True)
        return contract.completed_result(body, request_id)

    async def wait_for_request(
        self,
        request_id: str,
        *,
        submitted_at: float,
        deadline: float,
        schedule: PollSchedule,
        on_step: Callable[[Step, Watch], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until terminal on the shared :class:`Watch`; return the COMPLETED result body.

        The deadline holds during a call as well as between polls: every call (and its retries)
        must end by ``deadline + LAST_LOOK_SECONDS``, the time the final look at the deadline may
        take. A call still failing past the deadline ends the wait with ``InferenceTimeout``.
        """
        watch = Watch(request_id=request_id, submitted_at=submitted_at, deadline=deadline, schedule=schedule)
        until = deadline + LAST_LOOK_SECONDS
        await asyncio.sleep(watch.first_delay(time.time()))
        while True:
            try:
                step = watch.step(await self.get_status(request_id, until=until))
                if on_step:
                    on_step(step, watch)
                if step.done:
                    return await self.get_result(request_id, until=max(until, time.time() + LAST_LOOK_SECONDS))
            except SegmindError as err:
                if not err.retryable or isinstance(err, PollingGaveUp):
                    raise
                if time.time() >= deadline:
                    last = watch.last_status.value if watch.last_status else None
                    raise InferenceTimeout(request_id, time.time() - submitted_at, last) from None
                # The same class in blocking and deferrable mode: the job may be fine, a retry re-attaches.
                raise PollingGaveUp.after(request_id, err) from None
            await asyncio.sleep(step.delay or 0.0)

    async def download(self, url: str, destination: Any, *, max_bytes: int | None = None) -> Any:
        """The sync hook's :meth:`SegmindHook.download` in a worker thread: one set of download rules.

        Same limits (size cap, the rate-based time limit, retries), the same ``.part`` file renamed
        into place and the same cleanup, no key sent to the output's host. The file I/O and the
        blocking socket stay off the event loop; the thread is bounded by the download's own time
        limit. Returns the :class:`~airflow_provider_muscle_surge.hooks.segmind.SavedFile`.
        """
        settings = await self.get_settings()

        def download() -> Any:
            # Imported here, in the thread: the sync hook brings requests and the http provider.
            from airflow_provider_muscle_surge.hooks.segmind import DEFAULT_MAX_DOWNLOAD_BYTES, SegmindHook

            limit = DEFAULT_MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
            return SegmindHook(self.segmind_conn_id, settings=settings).download(url, destination, max_bytes=limit)

        return await asyncio.to_thread(download)


def transport_error(err: BaseException, url: str) -> SegmindError:
    """What an aiohttp failure means: refused before sending, cut by the time limit, lost, or bad TLS."""
    name = type(err).__name__
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return CertificateError(
            f"TLS certificate verification failed for {url}: {contract.shorten(str(err))}. Not retried: check the "
            "connection's host, or a proxy that intercepts TLS."
        )
    if isinstance(err, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return TransportError(
            f"could not connect to Segmind at {url} ({name}); nothing was sent", outcome_unknown=False
        )
    if isinstance(err, asyncio.TimeoutError):
        return TransportError(
            f"Segmind at {url} did not answer completely within the time limit of one call "
            "(a stalled or dripping answer); the request may have been received.",
            outcome_unknown=True,
        )
    return TransportError(
        f"the answer from Segmind at {url} was lost after the request was sent ({name})", outcome_unknown=True
    )
