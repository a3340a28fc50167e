"""SegmindAsyncHook: the non-blocking client the trigger polls with.

Why not the http provider's HttpAsyncHook: it opens a new aiohttp session per call, skips
429 on purpose, and sends the connection extra as headers. A triggerer may hold thousands of
these at once, so here one ``aiohttp.ClientSession`` lives for the whole ``async with`` block
(one per trigger run), the connection is read with ``aget_connection`` (no blocking DB or
secrets call on the event loop), and retries share the sync hook's policy and error map.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
from airflow.sdk import BaseHook

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.exceptions import TransportError
from airflow_provider_muscle_surge.hooks.settings import DEFAULT_CONN_ID, SegmindSettings
from airflow_provider_muscle_surge.polling import PollSchedule, Step, Watch


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
        self._session: aiohttp.ClientSession | None = None

    async def get_settings(self) -> SegmindSettings:
        if self._settings is None:
            conn = await self.aget_connection(self.segmind_conn_id)
            self._settings = SegmindSettings.from_connection(conn)
        return self._settings

    async def __aenter__(self) -> SegmindAsyncHook:
        settings = await self.get_settings()
        self._session = aiohttp.ClientSession(
            headers=settings.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=settings.timeout),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, *, request_id: str | None = None, json: Any = None, failed_is_answer: bool = False
    ) -> Any:
        if self._session is None:
            raise RuntimeError("use SegmindAsyncHook inside 'async with': it owns one HTTP session per block")
        settings = await self.get_settings()
        url = path if "://" in path else settings.base_url + path
        session = self._session

        async def attempt() -> Any:
            try:
                async with session.request(method, url, json=json) as response:
                    raw = await response.read()
                    status, headers = response.status, response.headers
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                raise TransportError(f"no answer from Segmind at {url}: {type(err).__name__}") from None
            return contract.check_answer(
                status, contract.decode_body(raw), headers, request_id=request_id, failed_is_answer=failed_is_answer
            )

        return await settings.retry.acall(attempt)

    async def submit(self, model: str, payload: dict[str, Any]) -> contract.Submission:
        body = contract.validate_payload(model, payload)
        return contract.Submission.parse(await self._call("POST", contract.v2_submit_path(model), json=body))

    async def get_status(self, request_id: str) -> dict[str, Any]:
        body = await self._call("GET", contract.status_path(request_id), request_id=request_id, failed_is_answer=True)
        return contract.require_json_object(body, f"the status of {request_id}")

    async def get_result(self, request_id: str) -> dict[str, Any]:
        body = await self._call("GET", contract.result_path(request_id), request_id=request_id, failed_is_answer=True)
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
        """Poll until terminal on the shared :class:`Watch`; return the COMPLETED result body."""
        watch = Watch(request_id=request_id, submitted_at=submitted_at, deadline=deadline, schedule=schedule)
        await asyncio.sleep(watch.first_delay(time.time()))
        while True:
            step = watch.step(await self.get_status(request_id))
            if on_step:
                on_step(step, watch)
            if step.done:
                return await self.get_result(request_id)
            await asyncio.sleep(step.delay or 0.0)
