"""SegmindJobTrigger: a whole Segmind job in the triggerer, for ``start_from_trigger=True``.

Airflow 3.3 can start a task in the triggerer (``StartTriggerArgs``), so no worker process is
started for it at all. This trigger then does what ``execute`` does in the classic path, with the
same pieces: it validates the rendered body, probes ``output_path``, re-attaches to this task
instance's previous request for the same body or submits (one POST; an unknown outcome is never
posted again unless opted in), waits through :meth:`SegmindAsyncHook.wait_for_request` (the one
polling loop), saves the output with the sync hook's download in a thread, pushes the same XComs
and return value as the classic path, and ends the task with ``TaskSuccessEvent``.

Why failures go back to a worker: on Airflow 3.3.2 ``TaskFailedEvent`` always retries while tries
are left (``handle_event_submit`` asks ``is_eligible_to_retry`` only), so it cannot say "fail fast"
(``AirflowFailException``), and it carries no exception for the log or ``on_failure_callback``.
A failure therefore ends with a plain event that resumes ``execute_complete`` on a worker, which
raises the exception the classic path raises: same class, same message, same retry rule. Only
failures pay for a worker start.

Why the rendered values may still go to a worker: the triggerer renders templates itself (a plain
strict environment here, see :meth:`render_template_fields`). Before anything is paid, a template
that does not render or a value that does not pass the checks hands the task to a worker
(``run_on_worker``), which renders with the DAG's own environment and checks again: a value that
is really wrong then fails there exactly as in the classic path.

Kwargs are plain values: the connection *id* (never the key), the operator's values as written,
and its settings. The request record lives in XCom (``reattach.XCOM_KEY``), because the task
state store cannot be reached from a trigger on 3.3.2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_muscle_surge import contract, events, reattach
from airflow_provider_muscle_surge.exceptions import (
    InferenceTimeout,
    PollingGaveUp,
    RequestExpired,
    SegmindError,
    TransportError,
)
from airflow_provider_muscle_surge.hooks.segmind_async import LAST_LOOK_SECONDS, SegmindAsyncHook
from airflow_provider_muscle_surge.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_muscle_surge.links import link_xcoms

# The operator module holds the one copy of each rule the trigger applies (body checks, output_path,
# the schedule, the result's shape). Imported here, when the triggerer loads the class, not on its loop.
from airflow_provider_muscle_surge.operators.segmind import (
    check_output_path,
    completed_task_result,
    muscle_surge_body,
    output_destination,
    poll_schedule_for,
    submit_body,
)
from airflow_provider_muscle_surge.triggers.segmind import OUTER_GRACE_SECONDS

if TYPE_CHECKING:
    import jinja2

    from airflow_provider_muscle_surge.polling import Step, Watch

#: The muscle-surge operator's typed parameters, under the operator's (templated) field names.
TYPED_FIELDS = ("image_url", "duration", "quality", "motion_mode", "seed", "style")


class SegmindJobTrigger(BaseTrigger):
    """Validate, submit (or re-attach), wait, save and finish one task, all in the triggerer.

    :param model: the model slug.
    :param payload: the body of a generic submit (``SegmindSubmitOperator``); None for the typed
        muscle-surge parameters (``image_url`` ... ``style``, as on ``MuscleSurgeOperator``).
    :param output_path: where to save the output (a path or URL string), or None.
    :param timeout: seconds from the submit until the wait gives up (the operator's ``timeout``).
    :param execution_timeout: the task's ``execution_timeout`` in seconds, or None.
    Other parameters are the operator's of the same name.
    """

    def __init__(
        self,
        *,
        model: str,
        payload: Any = None,
        image_url: Any = None,
        duration: Any = None,
        quality: Any = None,
        motion_mode: Any = None,
        seed: Any = None,
        style: Any = None,
        output_path: str | None = None,
        segmind_conn_id: str = DEFAULT_CONN_ID,
        timeout: float = float(contract.RETENTION_SECONDS),
        execution_timeout: float | None = None,
        poll_interval: float | None = None,
        poll_schedule: dict[str, Any] | None = None,
        reattach: bool = True,
        resubmit_on_unknown_outcome: bool | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.payload = payload
        self.image_url = image_url
        self.duration = duration
        self.quality = quality
        self.motion_mode = motion_mode
        self.seed = seed
        self.style = style
        self.output_path = output_path
        self.segmind_conn_id = segmind_conn_id
        self.timeout = float(timeout)
        self.execution_timeout = None if execution_timeout is None else float(execution_timeout)
        self.poll_interval = poll_interval
        self.poll_schedule = dict(poll_schedule or {})
        self.reattach = reattach
        self.resubmit_on_unknown_outcome = resubmit_on_unknown_outcome
        self._created = time.time()
        self._render_problem: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model": self.model,
                "payload": self.payload,
                **{name: getattr(self, name) for name in TYPED_FIELDS},
                "output_path": self.output_path,
                "segmind_conn_id": self.segmind_conn_id,
                "timeout": self.timeout,
                "execution_timeout": self.execution_timeout,
                "poll_interval": self.poll_interval,
                "poll_schedule": self.poll_schedule,
                "reattach": self.reattach,
                "resubmit_on_unknown_outcome": self.resubmit_on_unknown_outcome,
            },
        )

    # --- rendering ----------------------------------------------------------------------------------
    def render_template_fields(self, context: Any, jinja_env: jinja2.Environment | None = None) -> None:
        """Render as a DAG with default settings would (strict: an undefined name is an error, not "").

        Airflow 3.3.2 renders a start-from-trigger task's fields with a plain environment in which
        an undefined variable renders as ``""``; a missing value must not become an empty one that
        is then paid for. A render that fails is remembered, and ``run`` hands the task to a worker.
        """
        from airflow.sdk.definitions._internal.templater import create_template_env

        try:
            super().render_template_fields(context, jinja_env or create_template_env())
        except Exception as err:  # whatever the template did: the worker renders it again, properly
            self._render_problem = f"a templated field did not render in the triggerer ({type(err).__name__}: {err})"

    def body(self) -> dict[str, Any]:
        """The validated body from the rendered values; the operator's own rules (InvalidParameter)."""
        if self.payload is None and self.model == contract.MUSCLE_SURGE:
            return muscle_surge_body({name: getattr(self, name) for name in TYPED_FIELDS})
        return submit_body(self.model, self.payload)

    # --- the job ----------------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield exactly one event: ``TaskSuccessEvent``, a failure for a worker to raise, or ``run_on_worker``.

        Nothing escapes as a raw exception: a provider error becomes its event, anything else the
        retryable ``PollingGaveUp`` (after the submit: the next try re-attaches) or ``TransportError``.
        """
        ti = self.task_instance
        if self._render_problem:
            yield self._to_worker(self._render_problem)
            return
        try:
            body = self.body()
            if self.output_path:
                await asyncio.to_thread(check_output_path, self.output_path)
        except Exception as err:  # InvalidParameter above all: the worker checks again and raises it there
            yield self._to_worker(f"a rendered value did not pass the checks ({type(err).__name__}: {err})")
            return
        record: reattach.RequestRecord | None = None
        waiting = True
        try:
            async with SegmindAsyncHook(self.segmind_conn_id) as hook:
                record, result = await self._submit_or_reattach(hook, ti, body)
                self._publish(record)
                # As the classic path before it defers: the ids, and the links a worker would store then.
                published = {"request_id": record.request_id, "status_url": record.status_url}
                for key, item in {**published, **link_xcoms(published)}.items():
                    await reattach.apush(ti, key, item)
                if result is None:
                    result = await self._wait(hook, record, body)
                waiting = False
                value = await self._finish(hook, ti, record, result)
                await reattach.apush(ti, "return_value", value)
        except SegmindError as err:
            self.log.warning("Segmind %s: %s", record.request_id if record else self.model, err)
            yield TriggerEvent(events.failure_event(record.request_id if record else None, err, waiting=waiting))
            return
        except Exception as err:  # the triggerer must get an event, whatever broke
            self.log.exception("Segmind job: unexpected error")
            cause = TransportError(f"unexpected {type(err).__name__}: {contract.shorten(str(err))}")
            if record is not None and waiting:
                cause = PollingGaveUp.after(record.request_id, cause)
            yield TriggerEvent(events.failure_event(record.request_id if record else None, cause, waiting=waiting))
            return
        self.log.info("Segmind request %s done in the triggerer: task ends without a worker", record.request_id)
        yield TaskSuccessEvent()

    async def _submit_or_reattach(
        self, hook: SegmindAsyncHook, ti: Any, body: dict[str, Any]
    ) -> tuple[reattach.RequestRecord, dict[str, Any] | None]:
        """The operator's rule: re-attach only to this task instance's request for the same body."""
        fingerprint = reattach.fingerprint(self.model, body)
        previous = await reattach.aload(ti) if self.reattach else None
        if previous is not None and previous.fingerprint != fingerprint:
            self.log.info("Previous request %s was for different parameters: submitting anew", previous.request_id)
        elif previous is not None:
            try:
                # FAILED raises InferenceFailed: the same body fails the same way, it is not paid for twice.
                status = contract.live_status(await hook.get_status(previous.request_id), previous.request_id)
            except RequestExpired:
                self.log.warning("Previous request %s has expired on Segmind: submitting anew", previous.request_id)
            else:
                self.log.info(
                    "Re-attaching to request %s (submitted by try %s, now %s): no new submission, no second charge",
                    previous.request_id,
                    previous.try_number,
                    status.value,
                )
                done = status is contract.RequestStatus.COMPLETED
                return previous, (await hook.get_result(previous.request_id)) if done else None
        try_number = getattr(ti, "try_number", None)
        await reattach.aclaim(ti, fingerprint, try_number)
        submission = await hook.submit(self.model, body, resubmit_on_unknown_outcome=self.resubmit_on_unknown_outcome)
        record = reattach.RequestRecord.of(submission, self.model, fingerprint, try_number)
        # Saved before anything else can fail: from here on a retry or a new triggerer must find it.
        await reattach.asave(ti, record)
        return record, None

    def _deadline(self, record: reattach.RequestRecord) -> float:
        """As the operator's: ``timeout`` from the submit, cut by ``execution_timeout`` from the start."""
        deadline = record.submitted_at + self.timeout
        if self.execution_timeout:
            deadline = min(deadline, self._created + self.execution_timeout)
        return deadline

    async def _wait(
        self, hook: SegmindAsyncHook, record: reattach.RequestRecord, body: dict[str, Any]
    ) -> dict[str, Any]:
        settings = await hook.get_settings()
        # The body names the render class whose render time the schedule learns, as in the classic path.
        schedule = poll_schedule_for(self.model, self.poll_interval, self.poll_schedule, settings.poll, body)
        deadline = self._deadline(record)
        bound = max(0.0, deadline - time.time()) + LAST_LOOK_SECONDS + OUTER_GRACE_SECONDS
        try:
            # asyncio.timeout, not wait_for: no second task per waiting job (see SegmindRequestTrigger).
            async with asyncio.timeout(bound):
                return await hook.wait_for_request(
                    record.request_id,
                    submitted_at=record.submitted_at,
                    deadline=deadline,
                    schedule=schedule,
                    on_step=self._log_step,
                )
        except asyncio.TimeoutError:
            raise InferenceTimeout(record.request_id, time.time() - record.submitted_at) from None

    async def _finish(
        self, hook: SegmindAsyncHook, ti: Any, record: reattach.RequestRecord, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Save the output (in a thread) and build the classic path's return value, its XComs pushed here."""
        settings = await hook.get_settings()
        output = result.get("output")
        saved: dict[str, Any] | None = None
        if self.output_path and isinstance(output, str):
            # output_url first, as in the classic path: the UI's link works even if saving fails.
            await reattach.apush(ti, "output_url", output)
            target = await asyncio.to_thread(output_destination, self.output_path, record.request_id, output)
            saved = (await hook.download(output, target)).to_dict()
        pushed = _Pushes()
        value = completed_task_result(
            {"ti": pushed},  # type: ignore[arg-type]
            self.log,
            model=self.model,
            request_id=record.request_id,
            result=result,
            base_url=settings.base_url,
            save=(lambda _url: saved) if saved is not None else None,
        )
        # The operator's extra links: a worker stores them when a try ends; here no worker does.
        published = {"status_url": record.status_url, **pushed.values}
        for key, pushed_value in {**pushed.values, **link_xcoms(published)}.items():
            await reattach.apush(ti, key, pushed_value)
        return value

    def _publish(self, record: reattach.RequestRecord) -> None:
        self.log.info("Segmind request %s (%s): status at %s", record.request_id, record.model, record.status_url)

    def _to_worker(self, reason: str) -> TriggerEvent:
        self.log.warning("%s: handing the task to a worker (nothing was submitted)", reason)
        return TriggerEvent(events.run_on_worker_event(reason))

    def _log_step(self, step: Step, watch: Watch) -> None:
        if step.changed:
            self.log.info(
                "Segmind request %s is %s after %.1fs (%d status calls)",
                watch.request_id,
                step.status.value,
                watch.elapsed(),
                watch.polls,
            )


class _Pushes:
    """Stands in for ``context["ti"]`` in :func:`completed_task_result`: keeps what it pushes, so the
    trigger pushes the same keys with ``XCom.aset`` (the shape is defined once, in the operator module)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.values[key] = value
