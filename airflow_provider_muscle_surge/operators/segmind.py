"""Operators: submit a Segmind request, wait for it (blocking or deferred), save the output.

They stay thin: render and validate, call the hook, defer or wait, return a small JSON
result. Everything about the API is in the hook and the contract module. Heavy imports
(requests, aiohttp, the hooks) happen inside ``execute``: DAG files import this module at
parse time.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_muscle_surge import contract, reattach
from airflow_provider_muscle_surge.exceptions import RequestExpired
from airflow_provider_muscle_surge.links import SegmindRequestLink, SegmindVideoLink
from airflow_provider_muscle_surge.polling import PollSchedule

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
    from airflow_provider_muscle_surge.polling import Step, Watch

#: Results live 1 hour on Segmind; waiting longer than that can only end in "expired".
DEFAULT_TIMEOUT = 3600.0
#: Extra time the deferral gets over the trigger's own deadline, so the trigger reports first.
DEFER_GRACE = timedelta(minutes=5)


class SegmindSubmitOperator(BaseOperator):
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
        A path without a file suffix is a folder; the file is named after the request id.
        Templated.
    :param reattach: on a retry, re-attach to this task's previous request (same run, task,
        map index and request body) instead of submitting and paying again. Default True.
    """

    template_fields: tuple[str, ...] = ("model", "payload", "output_path")
    template_fields_renderers = {"payload": "json"}
    operator_extra_links = (SegmindVideoLink(), SegmindRequestLink())
    ui_color = "#f6d365"

    def __init__(
        self,
        *,
        model: str,
        payload: dict[str, Any] | None = None,
        segmind_conn_id: str = "segmind_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | None = None,
        poll_schedule: dict[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        output_path: str | ObjectStoragePath | None = None,
        reattach: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.payload = payload if payload is not None else {}
        self.segmind_conn_id = segmind_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.poll_schedule = dict(poll_schedule or {})
        self.timeout = float(timeout)
        self.output_path = output_path
        self.reattach = reattach
        self._request_id: str | None = None

    # --- what to send -----------------------------------------------------------------------------
    def request_body(self) -> dict[str, Any]:
        """The validated body; runs after rendering and before any HTTP call."""
        return contract.validate_payload(self.model, self.payload)

    def hook(self) -> SegmindHook:
        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

        return SegmindHook(self.segmind_conn_id)

    def schedule(self, hook: SegmindHook) -> PollSchedule:
        if self.poll_interval is not None:
            return PollSchedule.fixed(self.poll_interval)
        return PollSchedule.for_model(self.model, **{**hook.settings.poll, **self.poll_schedule})

    # --- execute ----------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        body = self.request_body()
        hook = self.hook()
        record, finished = self._reattach(context, hook, body) if self.reattach else (None, None)
        if record is None:
            fingerprint = reattach.fingerprint(self.model, body)
            try_number = getattr(context.get("ti"), "try_number", None)
            # Fails, before anything is paid, when Airflow already gave this try up (see reattach).
            reattach.claim(context, fingerprint, try_number)
            submission = hook.submit(self.model, body)
            record = reattach.RequestRecord(
                request_id=submission.request_id,
                status_url=submission.status_url,
                response_url=submission.response_url,
                model=self.model,
                fingerprint=fingerprint,
                submitted_at=time.time(),
                try_number=try_number,
            )
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
            from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

            self.defer(
                trigger=SegmindRequestTrigger(
                    request_id=record.request_id,
                    deadline=deadline,
                    submitted_at=record.submitted_at,
                    segmind_conn_id=self.segmind_conn_id,
                    schedule=self.schedule(hook).to_dict(),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=max(0.0, deadline - time.time())) + DEFER_GRACE,
            )
        result = hook.wait_for_request(
            record.request_id,
            submitted_at=record.submitted_at,
            timeout=deadline - record.submitted_at,
            schedule=self.schedule(hook),
            on_step=self._log_step,
        )
        return self._finish(context, hook, record.request_id, result)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the trigger: map its event to the same result or exception as blocking mode."""
        from airflow_provider_muscle_surge.events import result_from_event

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
        output = result.get("output")
        context["ti"].xcom_push(key="output_url", value=output if isinstance(output, str) else None)
        saved = None
        if self.output_path and isinstance(output, str):
            saved = hook.download(output, self._destination(request_id, output)).to_dict()
        where = f", saved to {saved['path']}" if saved else ""
        self.log.info("Request %s COMPLETED: output %s%s", request_id, output, where)
        return {
            "model": self.model,
            "request_id": request_id,
            "status": "COMPLETED",
            "output": output,
            "metrics": result.get("metrics"),
            "status_url": hook.settings.base_url + contract.status_path(request_id),
            "saved": saved,
        }

    def _destination(self, request_id: str, output_url: str) -> str | ObjectStoragePath:
        target = self.output_path
        name = str(target)
        if PurePosixPath(name.rstrip("/")).suffix and not name.endswith("/"):
            return target  # type: ignore[return-value]
        suffix = PurePosixPath(output_url.split("?", 1)[0]).suffix or ".bin"
        return (target if not isinstance(target, str) else _as_path(target)) / f"{request_id}{suffix}"  # type: ignore[operator]


def _as_path(location: str) -> ObjectStoragePath:
    from pathlib import Path

    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(location if "://" in location else Path(location).absolute().as_uri())


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
        super().__init__(model=contract.MUSCLE_SURGE, **kwargs)
        self.image_url = image_url
        self.duration = duration
        self.quality = quality
        self.motion_mode = motion_mode
        self.seed = seed
        self.style = style
        # Literal values are checked now, even when other fields are templated: templated ones are
        # stood in for by values every rule accepts, so only a literal value can fail here.
        params = self._params()
        contract.validate_muscle_surge(
            {
                k: _PARSE_TIME_STAND_INS[k] if _is_template(v) else v
                for k, v in params.items()
                if not _is_template(v) or k in _PARSE_TIME_STAND_INS
            }
        )

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
        return contract.validate_muscle_surge(self._params())


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
