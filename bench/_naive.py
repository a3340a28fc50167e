"""The baseline trigger for bench/triggerer_capacity.py: built the way dbt-cloud's trigger is.

``DbtCloudRunJobTrigger`` (apache-airflow-providers-dbt-cloud 4.11.1) polls at a fixed
``poll_interval`` and its hook opens a new ``aiohttp.ClientSession`` for every status call
(``async with aiohttp.ClientSession(...)`` inside ``get_job_details``), each call wrapped in a
tenacity ``AsyncRetrying``; the connection is resolved once per hook. This class does the same
against the Segmind API, with the SDK's 1 s interval. It checks the status first and then sleeps,
as dbt-cloud does. It leaves out dbt-cloud's per-poll INFO log line, which would only add to its cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential


class NaiveFixedIntervalTrigger(BaseTrigger):
    def __init__(
        self, request_id: str, conn_id: str, end_time: float, poll_interval: float = 1.0, timeout: float = 30.0
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.conn_id = conn_id
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "conn_id": self.conn_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
            },
        )

    async def _get(self, url: str, headers: dict[str, str]) -> Any:
        # A new session (and so a new connection pool and TCP connection) for every call.
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(3),
                wait=wait_exponential(multiplier=1, max=10),
                retry=retry_if_exception_type(aiohttp.ClientError),
                reraise=True,
            ):
                with attempt:
                    async with session.get(url) as response:
                        if response.status not in (200, 422):
                            response.raise_for_status()
                        return await response.json()
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        conn = await BaseHook.aget_connection(self.conn_id)
        base = conn.host.rstrip("/")
        headers = {"x-api-key": conn.password or ""}
        status_url = f"{base}/v2/requests/{self.request_id}/status"
        try:
            while True:
                now = time.time()
                body = await self._get(status_url, headers)
                status = body.get("status")
                if status == "COMPLETED":
                    result = await self._get(f"{base}/v2/requests/{self.request_id}", headers)
                    yield TriggerEvent({"status": "completed", "request_id": self.request_id, "result": result})
                    return
                if status == "FAILED":
                    yield TriggerEvent(
                        {"status": "failed", "request_id": self.request_id, "message": body.get("error")}
                    )
                    return
                if self.end_time <= now:
                    yield TriggerEvent({"status": "timeout", "request_id": self.request_id})
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as err:
            yield TriggerEvent({"status": "error", "request_id": self.request_id, "message": str(err)})
