"""Zero-worker mode (``start_from_trigger=True``): what the operator tells Airflow, and when it falls back.

The whole run (no worker process, re-attach after a triggerer SIGKILL, retry rules) needs a real
deployment: tests/realairflow/test_zero_worker.py. These tests cover what is decided before that:

* the trigger's arguments are plain values (the connection id, never the key) that survive
  Airflow's own serialization, and the trigger renders every templated field of the operator;
* the fallback decision: which DAGs start in the triggerer and which run the classic way, and why;
* a template that does not render, or renders to a refused value, hands the task to a worker
  before anything is paid;
* ``dag.test()`` ignores ``start_from_trigger`` (it calls ``execute``): the task runs the classic
  deferrable path, logs that it did, and pays once.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG, ObjectStoragePath
from airflow.serialization.serialized_objects import DagSerialization
from dags_for_tests.dagtest_support import run_dag, task_states, xcom
from segmind_emulator.testing import EmulatorProcess
from support import FAST_DEFERRED

from airflow_provider_muscle_surge import events
from airflow_provider_muscle_surge.exceptions import (
    InvalidParameter,
    PollingGaveUp,
    SubmitOutcomeUnknown,
    TransportError,
)
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator, SegmindSubmitOperator
from airflow_provider_muscle_surge.triggers.job import SegmindJobTrigger

IMAGE = "https://example.com/athlete.png"
TRIGGER = "airflow_provider_muscle_surge.triggers.job.SegmindJobTrigger"


def a_dag(**kwargs: Any) -> DAG:
    return DAG("zero_worker_unit", schedule=None, start_date=datetime(2024, 1, 1), **kwargs)


def serialized_task(dag: DAG, task_id: str) -> dict[str, Any]:
    """The task as the dag-processor stores it (what the scheduler and triggerer read)."""
    for task in DagSerialization.to_dict(dag)["dag"]["tasks"]:
        encoded = task.get("__var", task)
        if encoded["task_id"] == task_id:
            return dict(encoded)
    raise KeyError(task_id)


def running_trigger(op: Any) -> SegmindJobTrigger:
    """The trigger as the triggerer builds it from the operator's ``start_trigger_args``."""
    trigger = SegmindJobTrigger(**op.start_trigger_args.trigger_kwargs)
    trigger.task_instance = SimpleNamespace(task=op, task_id=op.task_id)  # what the triggerer sets
    return trigger


def first_event(trigger: SegmindJobTrigger) -> Any:
    async def first() -> Any:
        async for event in trigger.run():
            return event

    return asyncio.run(first())


# --- what Airflow is told -------------------------------------------------------------------------------
def test_the_trigger_gets_plain_values_and_the_connection_id_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_SECRET", json.dumps({"conn_type": "segmind", "password": "sk-SECRET"}))
    with a_dag() as dag:
        MuscleSurgeOperator(
            task_id="zero",
            image_url="{{ dag_run.conf['image'] }}",
            output_path="/data/videos/",
            segmind_conn_id="segmind_secret",
            poll_schedule={"expected_seconds": 20},
            execution_timeout=timedelta(minutes=30),
            start_from_trigger=True,
        )

    stored = serialized_task(dag, "zero")
    assert stored["start_from_trigger"] is True
    args = stored["start_trigger_args"]
    assert (args["trigger_cls"], args["next_method"]) == (TRIGGER, "execute_complete")
    text = json.dumps(args)
    assert "sk-SECRET" not in text and '"segmind_secret"' in text
    kwargs = dag.get_task("zero").start_trigger_args.trigger_kwargs
    assert json.loads(json.dumps(kwargs)) == kwargs, "plain JSON values only"
    assert kwargs["image_url"] == "{{ dag_run.conf['image'] }}", "rendered in the triggerer, not at parse time"
    assert kwargs["execution_timeout"] == 1800.0


def test_the_trigger_serializes_to_the_arguments_it_was_built_from() -> None:
    op = SegmindSubmitOperator(
        task_id="zero", model="muscle-surge", payload={"image_url": IMAGE}, start_from_trigger=True
    )
    kwargs = op.start_trigger_args.trigger_kwargs

    classpath, again = SegmindJobTrigger(**kwargs).serialize()

    assert classpath == TRIGGER
    assert SegmindJobTrigger(**again).serialize() == (classpath, again)
    assert {k: v for k, v in again.items() if k in kwargs} == kwargs


@pytest.mark.parametrize("operator", ["muscle_surge", "submit"])
def test_the_triggerer_renders_every_templated_field_of_the_operator(operator: str) -> None:
    if operator == "muscle_surge":
        op: Any = MuscleSurgeOperator(task_id="zero", image_url=IMAGE, start_from_trigger=True)
    else:
        op = SegmindSubmitOperator(task_id="zero", model="muscle-surge", payload={}, start_from_trigger=True)

    # Airflow keeps the operator's template fields that are trigger kwargs and trigger attributes.
    assert running_trigger(op).template_fields == op.template_fields


# --- the fallback decision -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image_url", "starts_in_triggerer"),
    [
        (IMAGE, True),
        ("{{ dag_run.conf['image'] }}", True),
        ("{{ params.image }}", True),
        ("https://example.com/{{ ds_nodash }}/a.png", True),
        ("{{ ti.xcom_pull(task_ids='upload') }}", False),  # hangs in the triggerer on 3.3.2
        ("{{ task_instance.xcom_pull(task_ids='upload') }}", False),
        ("{{ var.value.image }}", False),  # a blocking lookup on the triggerer's loop
        ("{{ conn.cdn.host }}/a.png", False),
        ("{{ dag_run.conf['image'] ", False),  # a template that does not parse: the worker reports it
    ],
)
def test_which_templates_start_in_the_triggerer(image_url: str, starts_in_triggerer: bool) -> None:
    with a_dag():
        op = MuscleSurgeOperator(task_id="zero", image_url=image_url, start_from_trigger=True)

    assert op.start_from_trigger is starts_in_triggerer
    assert (op.start_trigger_args is not None) is starts_in_triggerer
    assert bool(op.zero_worker_fallback) is not starts_in_triggerer
    assert op.deferrable, "the fallback is the classic deferrable path"


@pytest.mark.parametrize(
    "dag_kwargs",
    [
        {"render_template_as_native_obj": True},
        {"user_defined_macros": {"cdn": "https://cdn.example.com"}},
        {"user_defined_filters": {"up": str.upper}},
        {"template_searchpath": ["/opt/templates"]},
    ],
    ids=lambda kwargs: next(iter(kwargs)),
)
def test_a_dag_that_changes_rendering_falls_back_only_when_a_field_is_templated(dag_kwargs: dict[str, Any]) -> None:
    with a_dag(**dag_kwargs):
        templated = MuscleSurgeOperator(task_id="templated", image_url="{{ params.image }}", start_from_trigger=True)
        literal = MuscleSurgeOperator(task_id="literal", image_url=IMAGE, start_from_trigger=True)

    assert not templated.start_from_trigger
    assert next(iter(dag_kwargs)) in templated.zero_worker_fallback[0]
    assert literal.start_from_trigger and not literal.zero_worker_fallback


def test_another_tasks_output_as_a_value_falls_back() -> None:
    from airflow.sdk import task

    with a_dag():

        @task
        def image() -> str:
            return IMAGE

        op = MuscleSurgeOperator(task_id="zero", image_url=image(), start_from_trigger=True)

    assert not op.start_from_trigger
    assert "image_url is another task's output" in op.zero_worker_fallback[0]


def test_outlets_an_object_storage_path_and_execute_hooks_fall_back() -> None:
    from airflow.sdk import Asset

    class WithPreExecute(MuscleSurgeOperator):
        def pre_execute(self, context: Any) -> None:
            pass

    with a_dag():
        outlets = MuscleSurgeOperator(
            task_id="outlets", image_url=IMAGE, outlets=[Asset("s3://bucket/videos")], start_from_trigger=True
        )
        storage = MuscleSurgeOperator(
            task_id="storage", image_url=IMAGE, output_path=ObjectStoragePath("file:///tmp/v/"), start_from_trigger=True
        )
        hooked = WithPreExecute(task_id="hooked", image_url=IMAGE, start_from_trigger=True)

    assert "outlets" in " ".join(outlets.zero_worker_fallback)
    assert "ObjectStoragePath" in " ".join(storage.zero_worker_fallback)
    assert "pre_execute" in " ".join(hooked.zero_worker_fallback)
    assert not any(op.start_from_trigger for op in (outlets, storage, hooked))


def test_a_mapped_task_gets_no_start_trigger_args_so_airflow_runs_it_in_a_worker() -> None:
    with a_dag() as dag:
        MuscleSurgeOperator.partial(task_id="mapped", start_from_trigger=True).expand(image_url=[IMAGE, IMAGE])

    stored = serialized_task(dag, "mapped")
    assert "start_trigger_args" not in stored, "Airflow 3.3.2 drops them for .partial().expand()"


def test_zero_worker_mode_needs_wait_for_completion() -> None:
    with pytest.raises(InvalidParameter, match="start_from_trigger"):
        MuscleSurgeOperator(task_id="zero", image_url=IMAGE, wait_for_completion=False, start_from_trigger=True)


def test_start_from_trigger_must_be_a_real_bool() -> None:
    with pytest.raises(InvalidParameter, match="start_from_trigger"):
        MuscleSurgeOperator(task_id="zero", image_url=IMAGE, start_from_trigger="false")


# --- rendered in the triggerer: refused values go to a worker, before anything is paid --------------------
def test_an_undefined_template_variable_hands_the_task_to_a_worker_instead_of_rendering_empty() -> None:
    with a_dag():
        op = MuscleSurgeOperator(task_id="zero", image_url="{{ dag_run.conf['image'] }}", start_from_trigger=True)
    trigger = running_trigger(op)

    trigger.render_template_fields({"dag_run": SimpleNamespace(conf={})})
    event = first_event(trigger)

    assert trigger.image_url == "{{ dag_run.conf['image'] }}", "not rendered to an empty string"
    reason = events.run_on_worker_reason(event.payload)
    assert reason is not None and "did not render" in reason


def test_a_rendered_value_the_checks_refuse_hands_the_task_to_a_worker() -> None:
    with a_dag():
        op = MuscleSurgeOperator(task_id="zero", image_url="{{ dag_run.conf['image'] }}", start_from_trigger=True)
    trigger = running_trigger(op)

    trigger.render_template_fields({"dag_run": SimpleNamespace(conf={"image": "ftp://example.com/a.png"})})
    event = first_event(trigger)

    assert trigger.image_url == "ftp://example.com/a.png"
    reason = events.run_on_worker_reason(event.payload)
    assert reason is not None and "image_url" in reason


def test_execute_complete_runs_the_classic_path_when_the_trigger_hands_over() -> None:
    class Recording(MuscleSurgeOperator):
        def execute(self, context: Any) -> Any:
            return {"ran": "execute"}

    op = Recording(task_id="zero", image_url=IMAGE, start_from_trigger=True)

    assert op.execute_complete({}, events.run_on_worker_event("a template did not render")) == {"ran": "execute"}


# --- failures travel as the classic path raises them -----------------------------------------------------
def over_the_wire(event: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(event))


def raised_by(event: dict[str, Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        events.result_from_event(over_the_wire(event))
    return info.value


def test_a_lost_submit_answer_in_the_triggerer_is_raised_as_submit_outcome_unknown_no_retry() -> None:
    err = SubmitOutcomeUnknown("muscle-surge", TransportError("reset after sending", outcome_unknown=True))

    raised = raised_by(events.failure_event(None, err))

    assert type(raised) is SubmitOutcomeUnknown and str(raised) == str(err)
    assert not raised.retryable  # fails fast: a retry could pay twice


def test_a_broken_download_is_raised_as_it_is_and_is_retryable() -> None:
    err = TransportError("download of https://cdn/x.mp4 broke off after 10 bytes")

    raised = raised_by(events.failure_event("req-1", err, waiting=False))

    assert type(raised) is TransportError and raised.retryable


def test_a_failure_while_waiting_becomes_polling_gave_up_as_in_the_classic_trigger() -> None:
    raised = raised_by(events.failure_event("req-1", TransportError("status endpoint unreachable")))

    assert type(raised) is PollingGaveUp and raised.retryable and "req-1" in str(raised)


# --- dag.test() ignores start_from_trigger ----------------------------------------------------------------
def test_dag_test_runs_the_classic_deferrable_path_and_logs_the_fallback(
    new_dag: Any, segmind_conn: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="zero", image_url=segmind_conn.sample_url(), start_from_trigger=True, **FAST_DEFERRED
        )

    run = run_dag(dag)

    assert task_states(run) == {"zero": "success"}
    assert xcom(run, "zero")["status"] == "COMPLETED"
    assert segmind_conn.stats()["submissions_total"] == 1
    out, err = capsys.readouterr()  # Airflow's structlog output (the task's log lines) lands here
    assert "start_from_trigger=True, but this task runs in a worker: Airflow ran execute()" in out + err


# --- the UI's extra links -----------------------------------------------------------------------------------
def test_the_trigger_stores_the_links_under_the_keys_a_worker_would_use() -> None:
    from airflow_provider_muscle_surge.links import SegmindOutputLink, SegmindRequestLink, link_xcoms

    values = {"status_url": "https://api.segmind.com/v2/requests/r1/status", "output_url": "javascript:alert(1)"}

    stored = link_xcoms(values)

    assert stored == {
        SegmindRequestLink().xcom_key: values["status_url"],
        SegmindOutputLink().xcom_key: "",  # the same rule as get_link: only http(s) URLs are links
    }
    assert set(stored) == {"_link_SegmindRequestLink", "_link_SegmindOutputLink"}


# --- saving in the triggerer: the hook's download, in a thread ------------------------------------------------
def test_the_async_download_applies_the_sync_hooks_rules(segmind_conn: EmulatorProcess, tmp_path: Any) -> None:
    import hashlib
    import os

    from airflow_provider_muscle_surge.exceptions import MalformedResponse
    from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
    from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook

    data = os.urandom(2 * 1024 * 1024)
    url = SegmindHook().upload(data, content_type="image/png")

    async def download(dest: Any, **kwargs: Any) -> Any:
        async with SegmindAsyncHook() as hook:
            return await hook.download(url, dest, **kwargs)

    saved = asyncio.run(download(tmp_path / "out" / "video.mp4"))
    assert (tmp_path / "out" / "video.mp4").read_bytes() == data
    assert (saved.bytes, saved.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    # The size cap and the cleanup are the sync hook's: nothing is left behind, not even a .part file.
    with pytest.raises(MalformedResponse, match="larger than"):
        asyncio.run(download(tmp_path / "capped" / "video.mp4", max_bytes=1024 * 1024))
    assert list((tmp_path / "capped").iterdir()) == []


def test_start_from_trigger_from_default_args_plans_like_the_argument() -> None:
    with a_dag(default_args={"start_from_trigger": True}):
        inherited = MuscleSurgeOperator(task_id="inherited", image_url=IMAGE)
        opted_out = MuscleSurgeOperator(task_id="opted_out", image_url=IMAGE, start_from_trigger=False)

    assert inherited.start_from_trigger and inherited.start_trigger_args.trigger_kwargs["image_url"] == IMAGE
    assert not opted_out.start_from_trigger and opted_out.start_trigger_args is None
