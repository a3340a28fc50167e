"""SegmindRequestSensor: wait for a request submitted elsewhere (another task, another system).

Poke, reschedule and deferrable modes. COMPLETED succeeds and returns the result; FAILED and
expired (404) raise ``AirflowFailException`` subclasses, so the task ends without retries and
the server's detail is in the message.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.links import SegmindOutputLink, SegmindRequestLink
from airflow_provider_muscle_surge.operators.segmind import (
    DEFAULT_TIMEOUT,
    DEFER_GRACE,
    check_flag,
    completed_task_result,
    not_templated,
)
from airflow_provider_muscle_surge.polling import PollSchedule, check_timeout, validate_overrides

if TYPE_CHECKING:
    from airflow.sdk import Context


class SegmindRequestSensor(BaseSensorOperator):
    """Wait until a Segmind v2 request is COMPLETED and return its result.

    The result has the operator's shape (``model``, ``request_id``, ``status``, ``output``,
    ``metrics``, ``status_url``, ``saved``), with ``model`` and ``saved`` None: the sensor knows
    the request only by id and saves nothing.

    :param request_id: the request to watch. Templated, e.g.
        ``"{{ ti.xcom_pull(task_ids='submit', key='request_id') }}"``.
    :param segmind_conn_id: a ``segmind`` connection.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_schedule: ``PollSchedule`` fields for deferrable mode; poke modes use ``poke_interval``.
    :param timeout: seconds to wait (default 3600, the API's retention): positive and finite.

    ``timeout``, ``deferrable`` and ``poll_schedule`` are checked when the DAG is parsed and again
    (with the connection's ``extra.poll``) before the first status call; a bad one raises
    ``InvalidParameter`` instead of a sensor that never looks, or looks 75 times a second.
    """

    template_fields: tuple[str, ...] = ("request_id",)
    operator_extra_links = (SegmindOutputLink(), SegmindRequestLink())
    ui_color = "#fda085"

    def __init__(
        self,
        *,
        request_id: str,
        segmind_conn_id: str = contract.DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_schedule: dict[str, Any] | None = None,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        poke_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        # Checked before Airflow's own coercion, which takes True for 1 s and raises a bare ValueError on NaN.
        super().__init__(
            timeout=check_timeout("timeout", not_templated("timeout", timeout)), poke_interval=poke_interval, **kwargs
        )
        self.request_id = request_id
        self.segmind_conn_id = segmind_conn_id
        self.deferrable = deferrable
        self.poll_schedule: dict[str, Any] = {} if poll_schedule is None else poll_schedule
        self._check_settings()

    def _check_settings(self) -> None:
        """Check the arguments that are not templated: at parse time, and again in ``execute``."""
        self.timeout = check_timeout("timeout", not_templated("timeout", self.timeout))
        self.deferrable = check_flag("deferrable", self.deferrable)
        self.poll_schedule = validate_overrides(not_templated("poll_schedule", self.poll_schedule))

    def _hook(self) -> Any:
        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

        return SegmindHook(self.segmind_conn_id)

    def execute(self, context: Context) -> Any:
        self._check_settings()
        hook = self._hook()
        schedule = self._schedule(hook)
        status_url = contract.status_url(hook.settings.base_url, self.request_id)
        context["ti"].xcom_push(key="request_id", value=self.request_id)
        context["ti"].xcom_push(key="status_url", value=status_url)
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger, deferral_time

        now = time.time()
        self.defer(
            trigger=SegmindRequestTrigger(
                request_id=self.request_id,
                deadline=now + float(self.timeout),
                submitted_at=now,
                segmind_conn_id=self.segmind_conn_id,
                schedule=schedule.to_dict(),
                deferred_at=deferral_time(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) + DEFER_GRACE,
        )

    def _schedule(self, hook: Any) -> PollSchedule:
        """The deferred schedule, each layer checked under its own name before the first call.

        Built in every mode: a connection whose ``extra.poll`` is wrong is refused the same way
        whichever way a task waits on it.
        """
        connection = validate_overrides(hook.settings.poll, source="extra.poll")
        # The submit time is unknown here: look at once, then follow the schedule from now (unless told otherwise).
        overrides = {"first_poll_seconds": 0.0, **connection, **validate_overrides(self.poll_schedule)}
        return PollSchedule.checked(contract.MUSCLE_SURGE, overrides)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        hook = self._hook()
        status = contract.live_status(hook.get_status(self.request_id), self.request_id)
        self.log.info("Segmind request %s is %s", self.request_id, status.value)
        if status is not contract.RequestStatus.COMPLETED:
            return False
        result = hook.get_result(self.request_id)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, hook, result))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_provider_muscle_surge.events import result_from_event

        result = result_from_event(event)
        return self._finish(context, self._hook(), result)

    def _finish(self, context: Context, hook: Any, result: dict[str, Any]) -> dict[str, Any]:
        """The operator's result shape; the model is not known here, and nothing is saved."""
        return completed_task_result(
            context, self.log, model=None, request_id=self.request_id, result=result, base_url=hook.settings.base_url
        )
