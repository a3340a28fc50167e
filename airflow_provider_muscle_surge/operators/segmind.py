"""Operators: submit a Segmind request, wait for it (blocking or deferred), save the output.

They stay thin: render and validate, call the hook, defer or wait, return a small JSON
result. Everything about the API is in the hook, the contract module and the model's module
under ``models/``. Heavy imports (requests, aiohttp, the hooks) happen inside ``execute``:
DAG files import this module at parse time.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseOperator, conf

from airflow_provider_muscle_surge import contract, reattach
from airflow_provider_muscle_surge.exceptions import InvalidParameter, RequestExpired
from airflow_provider_muscle_surge.lineage import SegmindLineageMixin
from airflow_provider_muscle_surge.links import SegmindOutputLink, SegmindRequestLink
from airflow_provider_muscle_surge.models.muscle_surge import MUSCLE_SURGE, validate_muscle_surge
from airflow_provider_muscle_surge.polling import PollSchedule, check_interval, check_timeout, validate_overrides
from airflow_provider_muscle_surge.uris import storage_path

if TYPE_CHECKING:
    from logging import Logger

    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
    from airflow_provider_muscle_surge.polling import Step, Watch

#: Results live 1 hour on Segmind; waiting longer than that can only end in "expired".
DEFAULT_TIMEOUT = float(contract.RETENTION_SECONDS)
#: Extra time a deferral (the operator's and the sensor's) gets over the trigger's own deadline, so
#: the trigger reports first: its event names the request and the state, Airflow's timeout does not.
DEFER_GRACE = timedelta(minutes=5)


class SegmindSubmitOperator(SegmindLineageMixin, BaseOperator):
    """Submit a request to any Segmind model (v2) and, by default, wait for its result.

    :param model: the model slug, e.g. ``"muscle-surge"``. Templated.
    :param payload: the model's parameters (a dict). Templated. Checked before any HTTP call.
    :param segmind_conn_id: a ``segmind`` connection (API key in the password).
    :param wait_for_completion: wait for the terminal state (default); otherwise return right
        after the submit with the request id (wait later with ``SegmindRequestSensor``).
    :param deferrable: wait in the triggerer, freeing the worker slot (default:
        ``[operators] default_deferrable``).
    :param poll_interval: a fixed status-poll interval in seconds; when unset, the adaptive
        schedule for the model is used (``poll_schedule`` overrides its fields).
    :param timeout: seconds from submit until the task gives up waiting (default 3600, the
        API's retention). The error names the request id so it can be polled again.
    :param output_path: where to save the output as soon as the job completes (results expire
        after 1 hour): a local path or any ``ObjectStoragePath`` URL (``file://``, ``s3://`` ...).
        An existing folder, a path ending in ``/`` or a path without a file suffix is a folder,
        and the file in it is named ``<request id><suffix of the output>``; otherwise the path is
        the file. Before the submit, a local folder is created and a test file written and
        removed in it, and a remote scheme must have its filesystem installed. Templated.
    :param reattach: on a retry, re-attach to this task's previous request (same run, task,
        map index and request body) instead of submitting and paying again. Default True.
    :param resubmit_on_unknown_outcome: when the answer to a submit is lost after it was sent
        (connection reset or timeout, a body cut short, 502/504 from a gateway), the job may have
        been accepted and billed. By default the task then fails with ``SubmitOutcomeUnknown``
        instead of submitting again; True resubmits (availability over cost); None takes the
        connection extra ``resubmit_on_unknown_outcome``, default False.
    :param start_from_trigger: zero-worker mode (Airflow 3.3): the task starts in the triggerer,
        which validates, submits, waits, saves the output and ends the task; no worker process is
        started for it. Where that cannot work (see ``zero_worker.py``: mapped tasks, ``airflow
        dags test``, templates that call into Airflow, outlets ...) the task runs the classic
        deferrable way and its log says why. Implies ``deferrable=True`` for that fallback.

    Every argument is checked before anything is paid: literal values when the DAG is parsed,
    templated ones after rendering, the output folder and the connection's ``extra.poll`` just
    before the submit. A bad one raises ``InvalidParameter`` (no Airflow retry: a retry would
    render the same value).
    """

    template_fields: tuple[str, ...] = ("model", "payload", "output_path")
    #: A subclass whose body comes from attributes set after this ``__init__`` plans zero-worker mode itself.
    _plans_zero_worker_itself = False
    template_fields_renderers = {"payload": "json"}
    operator_extra_links = (SegmindOutputLink(), SegmindRequestLink())
    ui_color = "#f6d365"

    def __init__(
        self,
        *,
        model: str,
        payload: dict[str, Any] | None = None,
        segmind_conn_id: str = contract.DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | None = None,
        poll_schedule: dict[str, Any] | None = None,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        output_path: str | os.PathLike[str] | ObjectStoragePath | None = None,
        reattach: bool = True,
        resubmit_on_unknown_outcome: bool | None = None,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.payload = payload if payload is not None else {}
        self.segmind_conn_id = segmind_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.poll_schedule: dict[str, Any] = {} if poll_schedule is None else poll_schedule
        self.timeout = timeout
        self.output_path = output_path
        self.reattach = reattach
        self.resubmit_on_unknown_outcome = resubmit_on_unknown_outcome
        self._request_id: str | None = None
        #: What the DAG asked for; ``start_from_trigger`` is what Airflow is told (False on a fallback).
        self.zero_worker = check_flag("start_from_trigger", start_from_trigger)
        self.zero_worker_fallback: list[str] = []
        # A DAG with a bad literal setting is an import error naming it, not a paid run that fails later.
        self._check_settings()
        if not _is_template(output_path):
            _check_output_path_type(output_path)
        if not _is_template(self.payload):
            if not isinstance(self.payload, dict):
                raise InvalidParameter("payload", _short(self.payload), "a JSON object (dict) of model parameters")
            _check_json_payload(self.payload, run_time=False)
        if self.zero_worker and not self._plans_zero_worker_itself:
            self._plan_zero_worker()

    # --- checks -----------------------------------------------------------------------------------
    def _check_settings(self) -> None:
        """Check (and normalise) the arguments that are not templated.

        Runs in ``__init__`` (parse time) and again at the start of ``execute``: a mapped task
        gets its values only at run time, and anything may have changed the attributes since.
        """
        self.timeout = check_timeout("timeout", not_templated("timeout", self.timeout))
        if self.poll_interval is not None:
            self.poll_interval = check_interval("poll_interval", not_templated("poll_interval", self.poll_interval))
        self.poll_schedule = validate_overrides(not_templated("poll_schedule", self.poll_schedule))
        self.wait_for_completion = check_flag("wait_for_completion", self.wait_for_completion)
        self.deferrable = check_flag("deferrable", self.deferrable)
        self.reattach = check_flag("reattach", self.reattach)
        self.resubmit_on_unknown_outcome = check_flag(
            "resubmit_on_unknown_outcome", self.resubmit_on_unknown_outcome, optional=True
        )

    def _plan_zero_worker(self) -> None:
        """Tell Airflow to start this task in the triggerer, unless something needs a worker.

        Runs after the other checks, when the final (literal or templated) values are known. The
        trigger is given the operator's values as written (templates unrendered): Airflow renders
        the fields listed both in ``template_fields`` and in the trigger kwargs in the triggerer.
        """
        from airflow.triggers.base import StartTriggerArgs

        from airflow_provider_muscle_surge import zero_worker

        if not self.wait_for_completion:
            raise InvalidParameter(
                "start_from_trigger",
                True,
                "only with wait_for_completion=True: zero-worker mode ends the task when the job is done",
            )
        self.deferrable = True  # the fallback is the classic deferrable path
        self.zero_worker_fallback = zero_worker.fallback_reasons(self)
        if self.zero_worker_fallback:
            self.start_from_trigger = False
            return
        output_path = self.output_path
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls="airflow_provider_muscle_surge.triggers.job.SegmindJobTrigger",
            trigger_kwargs={
                **self.trigger_body_kwargs(),
                "output_path": os.fspath(output_path) if output_path is not None else None,
                "segmind_conn_id": self.segmind_conn_id,
                "timeout": self.timeout,
                "execution_timeout": self.execution_timeout.total_seconds() if self.execution_timeout else None,
                "poll_interval": self.poll_interval,
                "poll_schedule": dict(self.poll_schedule),
                "reattach": self.reattach,
                "resubmit_on_unknown_outcome": self.resubmit_on_unknown_outcome,
            },
            next_method="execute_complete",
            # Airflow's own bound over the trigger's: its deadline (timeout from the submit) ends it first.
            timeout=timedelta(seconds=self.timeout) + DEFER_GRACE,
        )

    def trigger_body_kwargs(self) -> dict[str, Any]:
        """What the zero-worker trigger builds the body from, under the operator's field names."""
        return {"model": self.model, "payload": self.payload}

    # --- what to send -----------------------------------------------------------------------------
    def request_body(self) -> dict[str, Any]:
        """The validated body; runs after rendering and before any HTTP call."""
        return submit_body(self.model, self.payload)

    def hook(self) -> SegmindHook:
        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

        return SegmindHook(self.segmind_conn_id)

    def schedule(self, hook: SegmindHook, body: Mapping[str, Any] | None = None) -> PollSchedule:
        """The polling schedule: ``poll_interval``, else the model's with the connection's and this
        operator's overrides on top, each layer checked under its own name; ``body`` names the
        render class whose render time it learns (see :func:`poll_schedule_for`)."""
        return poll_schedule_for(self.model, self.poll_interval, self.poll_schedule, hook.settings.poll, body)

    # --- execute ----------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        if self.zero_worker:
            self._log_fallback(context)
        # Everything that can be wrong is found here, before the first HTTP call: nothing is paid for.
        self._check_settings()
        body = self.request_body()
        if self.output_path:
            _check_output_path(self.output_path)
        hook = self.hook()
        schedule = self.schedule(hook, body)
        record, finished = self._reattach(context, hook, body) if self.reattach else (None, None)
        if record is None:
            fingerprint = reattach.fingerprint(self.model, body)
            try_number = getattr(context.get("ti"), "try_number", None)
            # Fails, before anything is paid, when Airflow already gave this try up (see reattach).
            reattach.claim(context, fingerprint, try_number)
            submission = hook.submit(self.model, body, resubmit_on_unknown_outcome=self.resubmit_on_unknown_outcome)
            record = reattach.RequestRecord.of(submission, self.model, fingerprint, try_number)
            # Saved before anything else can fail: from here on a retry must find this request.
            reattach.save(context, record)
        self._publish_request(context, record)
        if finished is not None:
            return self._finish(context, hook, record.request_id, finished)
        if not self.wait_for_completion:
            return {
                "model": record.model,
                "request_id": record.request_id,
                "status": "SUBMITTED",
                "status_url": record.status_url,
            }
        deadline = self._deadline(record)
        if self.deferrable:
            from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger, deferral_time

            self.defer(
                trigger=SegmindRequestTrigger(
                    request_id=record.request_id,
                    deadline=deadline,
                    submitted_at=record.submitted_at,
                    segmind_conn_id=self.segmind_conn_id,
                    schedule=schedule.to_dict(),
                    deferred_at=deferral_time(),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=max(0.0, deadline - time.time())) + DEFER_GRACE,
            )
        result = hook.wait_for_request(
            record.request_id,
            submitted_at=record.submitted_at,
            timeout=deadline - record.submitted_at,
            schedule=schedule,
            on_step=self._log_step,
        )
        return self._finish(context, hook, record.request_id, result)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the trigger: map its event to the same result or exception as blocking mode."""
        from airflow_provider_muscle_surge.events import result_from_event, run_on_worker_reason

        reason = run_on_worker_reason(event)
        if reason is not None:
            # The zero-worker trigger found, before submitting anything, that the worker must do it.
            self.log.warning("Zero-worker mode handed this task to a worker: %s", reason)
            return self.execute(context)
        result = result_from_event(event)
        return self._finish(context, self.hook(), str(event["request_id"]), result)  # type: ignore[index]

    def on_kill(self) -> None:
        """The API has no cancel: say so, with the id, so nobody assumes the job stopped."""
        self.log.warning(
            "Task killed. Segmind has no cancel endpoint: remote request %s keeps running (and is billed). "
            "A retry of this task re-attaches to it; the id is also in this task's XCom 'request_id'.",
            self._request_id or "(none submitted yet)",
        )

    # --- helpers ----------------------------------------------------------------------------------
    def _log_fallback(self, context: Context) -> None:
        """Say why a task that asked for zero-worker mode is running in a worker."""
        if self.zero_worker_fallback:
            why = "; ".join(self.zero_worker_fallback)
        elif getattr(context.get("ti"), "map_index", -1) not in (-1, None):
            why = "a mapped task (Airflow 3.3 starts mapped tasks in a worker)"
        else:
            why = "Airflow ran execute() (airflow dags test and dag.test() do, as does a task it could not start there)"
        self.log.warning(
            "start_from_trigger=True, but this task runs in a worker: %s. Falling back to the classic deferrable path.",
            why,
        )

    def _reattach(
        self, context: Context, hook: SegmindHook, body: dict[str, Any]
    ) -> tuple[reattach.RequestRecord | None, dict[str, Any] | None]:
        """Find this task's previous request for the same body; return it and its result if done."""
        previous = reattach.load(context)
        if previous is None:
            return None, None
        if previous.fingerprint != reattach.fingerprint(self.model, body):
            self.log.info("Previous request %s was for different parameters: submitting anew", previous.request_id)
            return None, None
        try:
            # FAILED raises InferenceFailed: the same body fails the same way, so it is not paid for twice.
            # (Change the parameters, or set reattach=False, to try it again anyway.)
            status = contract.live_status(hook.get_status(previous.request_id), previous.request_id)
        except RequestExpired:
            self.log.warning("Previous request %s has expired on Segmind: submitting anew", previous.request_id)
            return None, None
        self.log.info(
            "Re-attaching to request %s (submitted by try %s, now %s): no new submission, no second charge",
            previous.request_id,
            previous.try_number,
            status.value,
        )
        if status is contract.RequestStatus.COMPLETED:
            return previous, hook.get_result(previous.request_id)
        return previous, None

    def _deadline(self, record: reattach.RequestRecord) -> float:
        deadline = record.submitted_at + self.timeout
        if self.execution_timeout:
            deadline = min(deadline, time.time() + self.execution_timeout.total_seconds())
        return deadline

    def _publish_request(self, context: Context, record: reattach.RequestRecord) -> None:
        self._request_id = record.request_id
        ti = context["ti"]
        ti.xcom_push(key="request_id", value=record.request_id)
        ti.xcom_push(key="status_url", value=record.status_url)
        self.log.info("Segmind request %s (%s): status at %s", record.request_id, record.model, record.status_url)

    def _log_step(self, step: Step, watch: Watch) -> None:
        if step.changed:
            self.log.info("Request %s is %s after %.1fs", watch.request_id, step.status.value, watch.elapsed())

    def _finish(self, context: Context, hook: SegmindHook, request_id: str, result: dict[str, Any]) -> dict[str, Any]:
        def save(output_url: str) -> dict[str, Any]:
            return hook.download(output_url, self._destination(request_id, output_url)).to_dict()

        # Kept on the operator for get_openlineage_facets_on_complete (lineage.py), which the
        # OpenLineage listener calls on this object in this process once the task succeeded.
        self._segmind_result: dict[str, Any] = completed_task_result(
            context,
            self.log,
            model=self.model,
            request_id=request_id,
            result=result,
            base_url=hook.settings.base_url,
            save=save if self.output_path else None,
        )
        return self._segmind_result

    def _destination(self, request_id: str, output_url: str) -> ObjectStoragePath:
        return output_destination(self.output_path, request_id, output_url)  # type: ignore[arg-type]


# --- shared with the zero-worker trigger --------------------------------------------------------------
def submit_body(model: str, payload: Any) -> dict[str, Any]:
    """The validated body of a generic submit (rendered values)."""
    body = contract.validate_payload(model, payload)
    _check_json_payload(body, run_time=True)
    return body


def muscle_surge_body(params: Mapping[str, Any]) -> dict[str, Any]:
    """The validated muscle-surge body from the typed parameters (unset and empty ones left out)."""
    return validate_muscle_surge({k: v for k, v in params.items() if v is not None and v != ""})


def poll_schedule_for(
    model: str,
    poll_interval: float | None,
    overrides: Mapping[str, Any],
    connection_poll: Any,
    body: Mapping[str, Any] | None = None,
) -> PollSchedule:
    """The polling schedule: ``poll_interval``, else the model's with the connection's and the
    operator's overrides on top, each layer checked under its own name.

    ``body`` (the validated request) names the render class whose render time the schedule learns
    (``models.render_class``); without it nothing is learned. An explicit ``expected_seconds``,
    ``spread_seconds`` or ``fixed_interval`` in either layer turns learning off, as does ``learn=False``."""
    from airflow_provider_muscle_surge.models import render_class

    if poll_interval is not None:
        return PollSchedule.fixed(check_interval("poll_interval", poll_interval))
    connection = validate_overrides(connection_poll, source="extra.poll")
    return PollSchedule.checked(
        model,
        {**connection, **validate_overrides(dict(overrides))},
        render_class=None if body is None else render_class(model, body),
    )


def output_destination(
    output_path: str | os.PathLike[str] | ObjectStoragePath, request_id: str, output_url: str
) -> ObjectStoragePath:
    """Where the output goes: into ``output_path`` when it names a folder (see :func:`_names_a_folder`),
    as ``<request id><suffix of the output URL>``; otherwise ``output_path`` is the file."""
    target = storage_path(output_path)
    if not _names_a_folder(_text_of(output_path), target.is_dir):
        return target
    suffix = PurePosixPath(output_url.split("?", 1)[0]).suffix or ".bin"
    return target / f"{request_id}{suffix}"


def check_output_path(location: str | os.PathLike[str] | ObjectStoragePath) -> None:
    """Refuse, before the submit, an output_path the result could not be saved to (see below)."""
    _check_output_path(location)


# --- shared with the sensor ----------------------------------------------------------------------------
def completed_task_result(
    context: Context,
    log: Logger,
    *,
    model: str | None,
    request_id: str,
    result: Mapping[str, Any],
    base_url: str,
    save: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The value a task returns (its XCom) for a COMPLETED request: one shape for the operator and
    the sensor, so a downstream task reads ``["output"]``, ``["status_url"]`` or ``["saved"]`` the
    same way whichever of them waited.

    ``model`` is None where it is unknown (the sensor watches a request by id), and ``saved`` is
    None unless ``save`` (called with the output URL) saved the output. ``output_url`` is pushed
    before anything is saved: the UI's output link works even when saving the file fails.
    """
    output = result.get("output")
    context["ti"].xcom_push(key="output_url", value=output if isinstance(output, str) else None)
    saved = save(output) if save is not None and isinstance(output, str) else None
    where = f", saved to {saved['path']}" if saved else ""
    log.info("Request %s COMPLETED: output %s%s", request_id, output, where)
    return {
        "model": model,
        "request_id": request_id,
        "status": "COMPLETED",
        "output": output,
        "metrics": result.get("metrics"),
        "status_url": contract.status_url(base_url, request_id),
        "saved": saved,
    }


def check_flag(field: str, value: Any, *, optional: bool = False) -> Any:
    """A real bool (or None when ``optional``). The string "false" is truthy: taken as a bool it
    would do the opposite of what was written, so it is refused instead of interpreted."""
    if isinstance(value, bool) or (optional and value is None):
        return value
    rule = "True or False" + (" (or None: use the connection's setting)" if optional else "")
    if _is_template(value):
        rule += "; this argument is not templated"
    elif isinstance(value, str):
        rule += ", a bool, not a string (any non-empty string is true)"
    raise InvalidParameter(field, value, rule)


def not_templated(field: str, value: Any) -> Any:
    """Refuse a template in an argument Airflow never renders: it would stay a string (or an XComArg)."""
    if _is_template(value):
        raise InvalidParameter(
            field, value, "a literal value: this argument is not templated (map it with .expand() instead)"
        )
    return value


def _check_json_payload(payload: Any, *, run_time: bool) -> None:
    """Refuse a body that cannot be sent as JSON, before the submit rather than inside it.

    ``render_template_as_native_obj`` can turn a template into a datetime or a set, and a NaN
    would go out as the non-JSON token ``NaN``: both would fail (or be refused by the server)
    only after the request was on its way. At parse time another task's output (an XComArg)
    inside the dict stands for a value known only at run time, so it is not judged yet.
    """

    def later(value: Any) -> Any:
        if not run_time and _is_template(value):
            return None
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    try:
        json.dumps(payload, allow_nan=False, sort_keys=True, default=later)
    except (TypeError, ValueError, RecursionError) as err:
        try:
            where = _first_non_json(payload, "payload", run_time)
        except RecursionError:
            where = None
        rule = f"a JSON object: {where or err}"
        raise InvalidParameter("payload", _short(payload), rule) from None


def _first_non_json(value: Any, path: str, run_time: bool) -> str | None:
    """Where in ``value`` the first thing JSON cannot carry is, for the error message."""
    if value is None or isinstance(value, (str, bool, int)) or (not run_time and _is_template(value)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot carry"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{path} has a {type(key).__name__} key {key!r}; JSON keys are strings"
            found = _first_non_json(item, f"{path}[{key!r}]", run_time)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _first_non_json(item, f"{path}[{index}]", run_time)
            if found:
                return found
        return None
    return f"{path} is a {type(value).__name__} ({_short(value)}), which JSON cannot carry; render it to a string"


def _short(value: Any, limit: int = 80) -> Any:
    """``value`` for an error message: itself when short, else the start of its repr."""
    text = repr(value)
    return value if len(text) <= limit else text[: limit - 3] + "..."


# --- output_path ---------------------------------------------------------------------------------------
#: What to install for the usual remote schemes, and how to name the Airflow connection in the URL.
_FILESYSTEM_HINTS: dict[str, str] = {
    "s3": "pip install 'apache-airflow-providers-amazon[s3fs]' and name the AWS connection in the URL: "
    "s3://<conn_id>@bucket/key",
    "gs": "pip install apache-airflow-providers-google (it brings gcsfs) and name the Google connection in the "
    "URL: gs://<conn_id>@bucket/key",
    "abfs": "pip install apache-airflow-providers-microsoft-azure (it brings adlfs) and name the Azure connection "
    "in the URL: abfs://<conn_id>@bucket/key",
}
_FILESYSTEM_HINTS.update(s3a=_FILESYSTEM_HINTS["s3"], gcs=_FILESYSTEM_HINTS["gs"])
_FILESYSTEM_HINTS.update(abfss=_FILESYSTEM_HINTS["abfs"], adl=_FILESYSTEM_HINTS["abfs"])
_LOCAL_SCHEMES = ("", "file", "local")


def _text_of(location: str | os.PathLike[str] | ObjectStoragePath) -> str:
    """``location`` as written: a trailing "/" matters (it marks a folder) and ObjectStoragePath drops it."""
    return os.fspath(location) if isinstance(location, (str, os.PathLike)) else str(location)


def _names_a_folder(text: str, is_dir: Callable[[], bool]) -> bool:
    """The output_path rule: an existing folder, a trailing "/" or no file suffix means a folder.

    The existing folder comes first so that ``/data/videos.v2`` (a folder with a dot) is saved
    into, not replaced by a file of that name.
    """
    return text.endswith("/") or is_dir() or not PurePosixPath(text).suffix


def _check_output_path_type(location: Any) -> None:
    if location is None or isinstance(location, (str, os.PathLike)) or hasattr(location, "protocol"):
        return
    raise InvalidParameter("output_path", location, "a local path, a file:// URL or an ObjectStoragePath URL")


def _check_output_path(location: str | os.PathLike[str] | ObjectStoragePath) -> None:
    """Refuse, before the submit, an output_path the result could not be saved to.

    A job's result is kept for one hour and is billed either way, so learning after the job
    that the folder is read-only or that ``s3://`` has no filesystem installed wastes the
    money. Every path is probed for real: the folder is created where that applies, a small
    file written and removed. For remote schemes that costs one write and one delete, and it is
    what catches a bucket the worker has no credentials for (``s3://bucket/`` without the
    connection id) before the job is paid for, not after.
    """
    _check_output_path_type(location)
    text = _text_of(location)
    if isinstance(location, (str, os.PathLike)):
        scheme = urlsplit(text).scheme.lower() if "://" in text else ""
        local = Path(urlsplit(text).path if scheme else text) if scheme in _LOCAL_SCHEMES else None
    else:
        scheme = (getattr(location, "protocol", "") or "").lower()
        local = Path(location.path) if scheme in _LOCAL_SCHEMES else None
    if local is None:
        problem = _missing_filesystem(scheme)
        if problem:
            hint = _FILESYSTEM_HINTS.get(scheme, "install the Airflow provider that handles this storage")
            raise InvalidParameter(
                "output_path", text, f"no filesystem for {scheme}:// is installed ({problem}): {hint}"
            )
        _probe_remote_folder(text, scheme)
        return
    _probe_local_folder(text, local.absolute())


def _probe_remote_folder(text: str, scheme: str) -> None:
    """Write and delete an empty object where the output will go: credentials, bucket and permission at once."""
    import uuid

    target = storage_path(text)
    try:
        folder = target if _names_a_folder(text, target.is_dir) else target.parent
        probe = folder / f".muscle-surge-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except Exception as err:  # any storage error (credentials, missing bucket, denied) means "cannot save here"
        hint = _FILESYSTEM_HINTS.get(scheme, "check the storage's connection and permissions")
        raise InvalidParameter(
            "output_path", text, f"cannot write there ({type(err).__name__}: {str(err)[:200]}); {hint}"
        ) from None


def _missing_filesystem(scheme: str) -> str | None:
    """Why ``scheme`` cannot be written here (None when it can): Airflow must know the scheme
    (a provider registers it) and fsspec must import its implementation (s3fs, gcsfs ...)."""
    import fsspec
    from airflow.sdk.io.fs import has_fs

    try:
        if not has_fs(scheme):
            return f"Airflow has no filesystem registered for {scheme}"
        if scheme in fsspec.available_protocols():
            fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as err:
        return str(err)
    return None


def _probe_local_folder(text: str, path: Path) -> None:
    import tempfile

    folder = path if _names_a_folder(text, path.is_dir) else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".muscle-surge-probe-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InvalidParameter("output_path", text, f"a folder this worker can write to; {folder}: {reason}") from None


class MuscleSurgeOperator(SegmindSubmitOperator):
    """Turn one still image into a Muscle Surge video (5 or 8 s) and save it.

    Every parameter is templated. Literal values are checked when the DAG is parsed (a bad
    one is an import error naming the field and the rule); rendered values are checked again
    before any HTTP call.

    :param image_url: the input image: an http(s) URL or a ``data:image/...;base64`` URI.
    :param duration: 5 or 8 seconds (8 not at 1080p, not with motion_mode="fast").
    :param quality: "360p", "540p", "720p" or "1080p".
    :param motion_mode: "normal" or "fast" (fast: duration 5 only, not at 1080p).
    :param seed: 1 to 999999, for reproducible output.
    :param style: "anime", "3d_animation", "clay", "comic" or "cyberpunk".

    Other parameters: see :class:`SegmindSubmitOperator`.
    """

    _plans_zero_worker_itself = True
    template_fields: tuple[str, ...] = (
        "image_url",
        "duration",
        "quality",
        "motion_mode",
        "seed",
        "style",
        "output_path",
    )

    def __init__(
        self,
        *,
        image_url: str,
        duration: int | str = 5,
        quality: str = "540p",
        motion_mode: str = "normal",
        seed: int | str | None = None,
        style: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "payload" in kwargs:
            # The body is built from the typed parameters; a payload would be silently ignored.
            raise InvalidParameter(
                "payload",
                _short(kwargs["payload"]),
                "MuscleSurgeOperator takes typed parameters: use image_url=, duration=, quality=, motion_mode=, "
                "seed=, style= (or SegmindSubmitOperator(model='muscle-surge', payload=...))",
            )
        # Zero-worker planning needs the typed parameters, which are set below: it happens at the end
        # (the base class may also have it from default_args, which Airflow applies there).
        start_from_trigger = kwargs.pop("start_from_trigger", None)
        super().__init__(model=MUSCLE_SURGE, **kwargs)
        self.image_url = image_url
        self.duration = duration
        self.quality = quality
        self.motion_mode = motion_mode
        self.seed = seed
        self.style = style
        # Literal values are checked now, even when other fields are templated: templated ones are
        # stood in for by values every rule accepts, so only a literal value can fail here.
        params = self._params()
        validate_muscle_surge(
            {
                k: _PARSE_TIME_STAND_INS[k] if _is_template(v) else v
                for k, v in params.items()
                if not _is_template(v) or k in _PARSE_TIME_STAND_INS
            }
        )
        if start_from_trigger is not None:
            self.zero_worker = check_flag("start_from_trigger", start_from_trigger)
        if self.zero_worker:
            self._plan_zero_worker()

    def _params(self) -> dict[str, Any]:
        params = {
            "image_url": self.image_url,
            "duration": self.duration,
            "quality": self.quality,
            "motion_mode": self.motion_mode,
            "seed": self.seed,
            "style": self.style,
        }
        return {k: v for k, v in params.items() if v is not None and v != ""}

    def request_body(self) -> dict[str, Any]:
        return muscle_surge_body(self._params())

    def trigger_body_kwargs(self) -> dict[str, Any]:
        fields = ("image_url", "duration", "quality", "motion_mode", "seed", "style")
        return {"model": self.model, "payload": None, **{name: getattr(self, name) for name in fields}}


#: Stand-ins for templated parameters at parse time, each compatible with every other value.
_PARSE_TIME_STAND_INS: dict[str, Any] = {
    "image_url": "https://parse-time.invalid/image.png",
    "duration": 5,
    "quality": "540p",
    "motion_mode": "normal",
}


def _is_template(value: Any) -> bool:
    """A value known only at run time: a Jinja string, or another task's output (an XComArg or a
    mapped argument, both of which ``resolve`` at run time); checking it at parse time would fail."""
    if hasattr(value, "resolve") and hasattr(value, "iter_references"):
        return True
    return isinstance(value, str) and ("{{" in value or "{%" in value)
