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
#: Seconds the scheduler needs, on top of the supervisor's wait, to read the deferring try's exit.
EXECUTOR_REPORT_SLACK_SECONDS = 5.0


def resume_settle_seconds() -> float:
    """How long after a deferral an event may safely resume the task.

    Airflow 3.3.2 race: when a trigger event resumes a task before the scheduler has read the
    executor's report that the deferring process ended (the supervisor waits up to ``[workers]
    min_heartbeat_interval`` before it reports), the scheduler takes that report for the resumed
    try and fails it as "state changed externally": a permanent failure costs a second try and a
    success a pointless retry. Holding an event until the report has surely been read avoids it;
    only answers in the first seconds after the deferral (failures, never a real render) wait.
    """
    from airflow.sdk import conf

    try:
        heartbeat = conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0)
    except Exception:  # a malformed setting is the deployment's problem; Airflow's default then
        heartbeat = 5.0
    # A NaN or absurd setting must not hold an event for ever: the hold is a courtesy, not a wait.
    heartbeat = min(max(heartbeat, 0.0), 60.0) if heartbeat == heartbeat else 5.0
    return heartbeat + EXECUTOR_REPORT_SLACK_SECONDS


def deferral_time() -> float | None:
    """``deferred_at`` for a trigger created now; None where no executor reports the deferral.

    ``dag.test()`` and ``airflow dags test`` run the task and its trigger in one process, one after
    the other: there is no report to wait for, so nothing is held there.
    """
    try:
        from airflow.sdk.execution_time import task_runner

        in_process = type(getattr(task_runner, "SUPERVISOR_COMMS", None)).__name__ == "InProcessSupervisorComms"
    except Exception:  # an SDK without that module: hold, the safe side
        in_process = False
    return None if in_process else time.time()


class SegmindRequestTrigger(BaseTrigger):
    """Poll a v2 request until COMPLETED, FAILED, expired (404), the deadline, or a persistent error.

    :param request_id: the v2 request to watch.
    :param deadline: absolute epoch seconds; a restarted triggerer keeps the same deadline.
    :param submitted_at: epoch seconds of the submit; the adaptive schedule is relative to it.
    :param schedule: ``PollSchedule.to_dict()``; default: the muscle-surge schedule.
    :param deferred_at: epoch seconds of the deferral; an event is held until
        :func:`resume_settle_seconds` after it. None: never held.
    """

    def __init__(
        self,
        request_id: str,
        deadline: float,
        submitted_at: float | None = None,
        segmind_conn_id: str = DEFAULT_CONN_ID,
        schedule: dict[str, Any] | None = None,
        deferred_at: float | None = None,
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.deadline = float(deadline)
        self.submitted_at = float(submitted_at if submitted_at is not None else time.time())
        self.segmind_conn_id = segmind_conn_id
        self.schedule = dict(schedule) if schedule else PollSchedule().to_dict()
        self.deferred_at = None if deferred_at is None else float(deferred_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "deadline": self.deadline,
                "submitted_at": self.submitted_at,
                "segmind_conn_id": self.segmind_conn_id,
                "schedule": self.schedule,
                "deferred_at": self.deferred_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Always yields exactly one event, by the deadline plus the last look at the latest
        (an answer in the first seconds after the deferral is held a little, see ``_settle``).

        The wait enforces the deadline during each call; the outer bound below also covers what
        happens before the first call (reading the connection). Anything unexpected becomes an
        error event (retryable: the job may be fine, and the next try re-attaches to it), never a
        raw exception in the triggerer.
        """
        event = await self._outcome()
        await self._settle()
        yield TriggerEvent(event)

    async def _outcome(self) -> dict[str, Any]:
        bound = max(0.0, self.deadline - time.time()) + LAST_LOOK_SECONDS + OUTER_GRACE_SECONDS
        try:
            # asyncio.timeout, not wait_for: wait_for runs the wait in a second task, which thousands
            # of triggers would each keep (with its future and timer) for the whole wait.
            async with asyncio.timeout(bound):
                result = await self._wait()
        except SegmindError as err:
            self.log.warning("Segmind request %s: %s", self.request_id, err)
            return events.error_event(self.request_id, err)
        except asyncio.TimeoutError:
            err = InferenceTimeout(self.request_id, time.time() - self.submitted_at)
            self.log.warning("Segmind request %s: %s", self.request_id, err)
            return events.error_event(self.request_id, err)
        except Exception as err:  # the triggerer must get an event, whatever broke
            self.log.exception("Segmind request %s: unexpected error while waiting", self.request_id)
            cause = TransportError(f"unexpected {type(err).__name__} while waiting: {contract.shorten(str(err))}")
            return events.error_event(self.request_id, PollingGaveUp.after(self.request_id, cause))
        self.log.info("Segmind request %s COMPLETED after %.1fs", self.request_id, time.time() - self.submitted_at)
        return events.completed_event(self.request_id, result)

    async def _settle(self) -> None:
        """Hold an early event until the scheduler has read the deferring try's exit (see
        :func:`resume_settle_seconds`); a cancelled trigger stops holding at once."""
        if self.deferred_at is None:
            return
        hold = self.deferred_at + resume_settle_seconds() - time.time()
        if hold > 0:
            self.log.info(
                "Segmind request %s: resuming the task in %.1fs, once Airflow has seen it defer", self.request_id, hold
            )
            await asyncio.sleep(hold)

    async def _wait(self) -> dict[str, Any]:
        # The hook holds its sessions for the whole wait (reads on the pooled one) and releases them
        # when the block exits, also on cancel.
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
