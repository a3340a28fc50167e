"""SegmindRequestTrigger: waits for one Segmind request in the triggerer.

It only polls and yields one event. It never submits, cancels or resubmits anything, so
moving it between triggerers (or running it twice during a handover) has no side effect.
Its kwargs are plain JSON: the connection *id* (the key is looked up with ``aget_connection``
inside ``run()``), the request id, absolute times and the polling schedule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_muscle_surge import contract, events
from airflow_provider_muscle_surge.exceptions import InferenceTimeout, PollingGaveUp, SegmindError, TransportError
from airflow_provider_muscle_surge.hooks.segmind_async import LAST_LOOK_SECONDS, SegmindAsyncHook
from airflow_provider_muscle_surge.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_muscle_surge.polling import PollSchedule, Step, Watch

#: Slack on top of the wait's own bound before the trigger stops it from outside.
OUTER_GRACE_SECONDS = 5.0


class SegmindRequestTrigger(BaseTrigger):
    """Poll a v2 request until COMPLETED, FAILED, expired (404), the deadline, or a persistent error.

    :param request_id: the v2 request to watch.
    :param deadline: absolute epoch seconds; a restarted triggerer keeps the same deadline.
    :param submitted_at: epoch seconds of the submit; the adaptive schedule is relative to it.
    :param schedule: ``PollSchedule.to_dict()``; default: the muscle-surge schedule.
    """

    def __init__(
        self,
        request_id: str,
        deadline: float,
        submitted_at: float | None = None,
        segmind_conn_id: str = DEFAULT_CONN_ID,
        schedule: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.deadline = float(deadline)
        self.submitted_at = float(submitted_at if submitted_at is not None else time.time())
        self.segmind_conn_id = segmind_conn_id
        self.schedule = dict(schedule) if schedule else PollSchedule().to_dict()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "deadline": self.deadline,
                "submitted_at": self.submitted_at,
                "segmind_conn_id": self.segmind_conn_id,
                "schedule": self.schedule,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Always yields exactly one event, by the deadline plus the last look at the latest.

        The wait enforces the deadline during each call; the outer bound below also covers what
        happens before the first call (reading the connection). Anything unexpected becomes an
        error event (retryable: the job may be fine, and the next try re-attaches to it), never a
        raw exception in the triggerer.
        """
        bound = max(0.0, self.deadline - time.time()) + LAST_LOOK_SECONDS + OUTER_GRACE_SECONDS
        try:
            result = await asyncio.wait_for(self._wait(), timeout=bound)
        except SegmindError as err:
            self.log.warning("Segmind request %s: %s", self.request_id, err)
            yield TriggerEvent(events.error_event(self.request_id, err))
            return
        except asyncio.TimeoutError:
            err = InferenceTimeout(self.request_id, time.time() - self.submitted_at)
            self.log.warning("Segmind request %s: %s", self.request_id, err)
            yield TriggerEvent(events.error_event(self.request_id, err))
            return
        except Exception as err:  # the triggerer must get an event, whatever broke
            self.log.exception("Segmind request %s: unexpected error while waiting", self.request_id)
            cause = TransportError(f"unexpected {type(err).__name__} while waiting: {contract.shorten(str(err))}")
            yield TriggerEvent(events.error_event(self.request_id, PollingGaveUp.after(self.request_id, cause)))
            return
        self.log.info("Segmind request %s COMPLETED after %.1fs", self.request_id, time.time() - self.submitted_at)
        yield TriggerEvent(events.completed_event(self.request_id, result))

    async def _wait(self) -> dict[str, Any]:
        # One HTTP session for the whole wait, closed when the block exits (also on cancel).
        async with SegmindAsyncHook(self.segmind_conn_id) as hook:
            return await hook.wait_for_request(
                self.request_id,
                submitted_at=self.submitted_at,
                deadline=self.deadline,
                schedule=PollSchedule.from_dict(self.schedule),
                on_step=self._log_step,
            )

    def _log_step(self, step: Step, watch: Watch) -> None:
        if watch.polls == 1 and watch.plan is not watch.schedule:
            # Say where the dense window is and why: what this triggerer learned about the class.
            self.log.info(
                "Segmind request %s: polling densely around %.1fs +- %.1fs, learned from earlier %s jobs",
                self.request_id,
                watch.plan.expected_seconds,
                watch.plan.spread_seconds or 0.0,
                watch.schedule.render_class,
            )
        if step.changed:
            self.log.info(
                "Segmind request %s is %s after %.1fs (%d status calls)",
                self.request_id,
                step.status.value,
                watch.elapsed(),
                watch.polls,
            )
