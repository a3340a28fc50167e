"""MuscleSurgeOperator and SegmindSubmitOperator, run by Airflow itself.

Most tests here run a real ``dag.test()`` against the emulator: Airflow's own task runner
renders the templates, pushes XCom, keeps ``task_state_store``, defers and runs the trigger
in-process, and decides about retries. A bad parameter never reaches the network: literal ones
fail when the DAG is defined, templated ones after rendering and before any HTTP call.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.sdk._shared.module_loading import import_string
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from dags_for_tests.dagtest_support import FailureRecorder, fake_context, run_dag, task_states, try_numbers, xcom
from segmind_emulator.testing import EmulatorProcess
from support import FAST, FAST_DEFERRED

from airflow_provider_muscle_surge.exceptions import (
    InferenceFailed,
    InferenceTimeout,
    InvalidParameter,
    SubmitOutcomeUnknown,
)
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator, SegmindSubmitOperator
from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

IMAGE = "https://storage.example.com/people/athlete.png"
RAI_DETAIL = "Content blocked by the responsible-AI filter: the input image was flagged as unsafe"


def read_saved(saved: dict[str, Any]) -> bytes:
    """The bytes behind ``saved["path"]`` (a local path or a ``file://`` URL)."""
    path = saved["path"]
    return Path(urlsplit(path).path if path.startswith("file://") else path).read_bytes()


# --- parameters are checked before anything is sent ---------------------------------------------
@pytest.mark.parametrize(
    ("params", "field", "value", "rule"),
    [
        ({"duration": 7}, "duration", 7, "one of 5 or 8"),
        ({"quality": "4k"}, "quality", "4k", "one of 360p, 540p, 720p, 1080p"),
        ({"motion_mode": "fast", "duration": 8}, "motion_mode", "fast", "only allowed with duration=5"),
        ({"quality": "1080p", "duration": 8}, "duration", 8, "not available at quality=1080p"),
        ({"seed": 0}, "seed", 0, "from 1 to 999999"),
        ({"style": "noir"}, "style", "noir", "one of anime"),
        ({"image_url": "ftp://example.com/a.png"}, "image_url", "ftp://example.com/a.png", "http(s) URL"),
    ],
    ids=["duration", "quality", "fast-with-8s", "8s-at-1080p", "seed", "style", "image_url"],
)
def test_literal_bad_parameter_fails_when_the_dag_is_defined(
    params: dict[str, Any], field: str, value: Any, rule: str
) -> None:
    with pytest.raises(InvalidParameter) as info:
        MuscleSurgeOperator(task_id="surge", **{"image_url": IMAGE, **params})

    assert (info.value.field, info.value.value) == (field, value)
    assert rule in info.value.rule
    assert f"invalid {field}={value!r}" in str(info.value)
    assert rule in str(info.value)
    assert isinstance(info.value, AirflowFailException), "a retry cannot fix it"


def test_bad_parameter_in_a_dag_file_is_an_import_error_naming_field_and_rule(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "surge_dag.py").write_text(
        textwrap.dedent(
            """
            from airflow.sdk import DAG
            from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

            with DAG("bad_duration", schedule=None):
                MuscleSurgeOperator(task_id="surge", image_url="https://example.com/a.png", duration=7)
            """
        )
    )

    bag = DagBag(dag_folder=str(tmp_path))

    assert "bad_duration" not in bag.dag_ids
    (error,) = bag.import_errors.values()
    assert "invalid duration=7: one of 5 or 8 (seconds)" in error


@pytest.mark.parametrize(
    "params",
    [
        {"image_url": "{{ params.image }}", "duration": "{{ params.duration }}"},
        {"duration": "{{ params.duration }}", "quality": "1080p", "motion_mode": "normal"},
        {"motion_mode": "{% if params.quick %}fast{% else %}normal{% endif %}", "duration": 8},
        {"quality": "{{ params.quality }}", "duration": 8, "seed": "{{ params.seed }}", "style": "{{ params.style }}"},
    ],
    ids=["all-templated", "templated-duration-at-1080p", "templated-motion-at-8s", "templated-quality-at-8s"],
)
def test_templated_parameters_are_not_judged_at_definition(params: dict[str, Any]) -> None:
    op = MuscleSurgeOperator(task_id="surge", **{"image_url": IMAGE, **params})

    assert {k: getattr(op, k) for k in params} == params, "kept for rendering"


def test_literal_bad_parameter_fails_at_definition_even_when_others_are_templated() -> None:
    with pytest.raises(InvalidParameter) as info:
        MuscleSurgeOperator(task_id="surge", image_url="{{ params.image }}", duration="{{ params.d }}", quality="4k")

    assert (info.value.field, info.value.value) == ("quality", "4k")


def test_templated_bad_parameter_is_refused_after_rendering_before_any_http_call(
    new_dag: Any, segmind_conn: EmulatorProcess
) -> None:
    failures = FailureRecorder()
    with new_dag(params={"duration": 5}) as dag:
        MuscleSurgeOperator(
            task_id="surge",
            image_url=segmind_conn.sample_url(),
            duration="{{ params.duration }}",
            retries=2,
            on_failure_callback=failures,
            **FAST,
        )

    run = run_dag(dag, run_conf={"duration": 7})

    assert task_states(run) == {"surge": "failed"}
    assert try_numbers(run) == {"surge": 1}, "not retried: a retry renders the same value"
    (error,) = failures.errors
    assert isinstance(error, InvalidParameter)
    assert (error.field, error.value) == ("duration", 7)
    stats = segmind_conn.stats()
    assert stats["submissions_total"] == 0
    assert stats["responses"] == {}, "not a single HTTP request reached the API"


# --- blocking mode ------------------------------------------------------------------------------------
def test_blocking_run_returns_a_small_json_result_and_saves_the_video(
    new_dag: Any, segmind_conn: EmulatorProcess, tmp_path: Path
) -> None:
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="surge", image_url=segmind_conn.sample_url(), output_path=f"{tmp_path}/videos/", **FAST
        )

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    result = xcom(run, "surge")
    request_id = result["request_id"]
    assert result["model"] == "muscle-surge"
    assert result["status"] == "COMPLETED"
    assert result["output"] == f"{segmind_conn.url}/_emulator/outputs/{request_id}.mp4"
    assert result["metrics"]["credits_used"] == 1
    assert len(json.dumps(result)) < 2000, "a small JSON summary in XCom, not the video"
    saved = result["saved"]
    assert saved["path"].endswith(f"/videos/{request_id}.mp4")
    data = read_saved(saved)
    assert len(data) == saved["bytes"] > 0
    assert hashlib.sha256(data).hexdigest() == saved["sha256"]
    assert segmind_conn.stats()["submissions_total"] == 1


def test_blocking_run_pushes_request_status_and_output_urls_to_xcom(
    new_dag: Any, segmind_conn: EmulatorProcess
) -> None:
    with new_dag() as dag:
        MuscleSurgeOperator(task_id="surge", image_url=segmind_conn.sample_url(), **FAST)

    run = run_dag(dag)

    request_id = xcom(run, "surge", "request_id")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", request_id)
    assert xcom(run, "surge", "status_url") == f"{segmind_conn.url}/v2/requests/{request_id}/status"
    assert xcom(run, "surge", "output_url") == f"{segmind_conn.url}/_emulator/outputs/{request_id}.mp4"
    assert xcom(run, "surge")["saved"] is None, "no output_path, nothing saved"


def test_wait_for_completion_false_returns_right_after_the_submit(new_dag: Any, segmind_conn: EmulatorProcess) -> None:
    with new_dag() as dag:
        MuscleSurgeOperator(task_id="submit", image_url=segmind_conn.sample_url(), wait_for_completion=False)

    run = run_dag(dag)

    result = xcom(run, "submit")
    assert result == {
        "model": "muscle-surge",
        "request_id": xcom(run, "submit", "request_id"),
        "status": "SUBMITTED",
        "status_url": xcom(run, "submit", "status_url"),
    }
    stats = segmind_conn.stats()
    assert (stats["submissions_total"], stats["status_polls"], stats["results"]) == (1, 0, 0)


def test_timeout_fails_with_inference_timeout_naming_the_request(
    new_dag: Any, emulator_factory: Any, segmind_connection: Any
) -> None:
    slow = emulator_factory(job_seconds=30)
    segmind_connection(slow)
    failures = FailureRecorder()
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="surge", image_url=slow.sample_url(), timeout=1.0, on_failure_callback=failures, **FAST
        )

    run = run_dag(dag)

    assert task_states(run) == {"surge": "failed"}
    (error,) = failures.errors
    request_id = xcom(run, "surge", "request_id")
    assert isinstance(error, InferenceTimeout)
    assert error.request_id == request_id
    assert f"SegmindRequestSensor(request_id={request_id!r})" in str(error), "says how to pick the job up again"


# --- deferrable mode ------------------------------------------------------------------------------------
def test_deferrable_execute_defers_to_a_json_only_trigger_without_the_key(segmind_conn: EmulatorProcess) -> None:
    op = MuscleSurgeOperator(
        task_id="surge", image_url=segmind_conn.sample_url(), deferrable=True, timeout=600, **FAST_DEFERRED
    )
    context = fake_context()

    with pytest.raises(TaskDeferred) as info:
        op.execute(context)

    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert isinstance(deferred.trigger, SegmindRequestTrigger)
    classpath, kwargs = deferred.trigger.serialize()
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert segmind_conn.api_key not in json.dumps([classpath, kwargs])
    assert kwargs["request_id"] == context["ti"].xcom["request_id"]
    assert kwargs["segmind_conn_id"] == "segmind_default"
    assert deferred.timeout > timedelta(seconds=600), "the trigger's own deadline reports first"
    assert context["task_state_store"].get("segmind_request")["request_id"] == kwargs["request_id"]
    assert segmind_conn.stats()["submissions_total"] == 1


def test_deferrable_run_completes_end_to_end(new_dag: Any, segmind_conn: EmulatorProcess, tmp_path: Path) -> None:
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="surge",
            image_url=segmind_conn.sample_url(),
            deferrable=True,
            output_path=str(tmp_path / "surge.mp4"),
            **FAST_DEFERRED,
        )

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    result = xcom(run, "surge")
    assert result["status"] == "COMPLETED"
    assert result["request_id"] == xcom(run, "surge", "request_id")
    assert result["output"] == xcom(run, "surge", "output_url")
    assert result["saved"]["path"].endswith("/surge.mp4")
    assert hashlib.sha256(read_saved(result["saved"])).hexdigest() == result["saved"]["sha256"]
    assert segmind_conn.stats()["submissions_total"] == 1


# --- FAILED, in both modes -----------------------------------------------------------------------------
@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_failed_request_fails_the_task_without_retries_and_with_the_server_detail(
    new_dag: Any, segmind_conn: EmulatorProcess, deferrable: bool
) -> None:
    failures = FailureRecorder()
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="surge",
            image_url=segmind_conn.sample_url() + "?pose=rai-block",
            deferrable=deferrable,
            retries=2,
            retry_delay=timedelta(0),
            on_failure_callback=failures,
            **(FAST_DEFERRED if deferrable else FAST),
        )

    run = run_dag(dag)

    assert task_states(run) == {"surge": "failed"}
    assert try_numbers(run) == {"surge": 1}, "a content block will not pass on retry"
    (error,) = failures.errors
    assert type(error) is InferenceFailed
    assert isinstance(error, AirflowFailException)
    assert error.detail == RAI_DETAIL
    assert RAI_DETAIL in str(error)
    assert error.request_id == xcom(run, "surge", "request_id")
    assert segmind_conn.stats()["submissions_total"] == 1


# --- output_path: a file or a folder ------------------------------------------------------------------------
OUTPUT_URL = "https://cdn.example.com/outputs/req-1.mp4?signature=abc"


@pytest.mark.parametrize(
    ("output_path", "existing_folder", "saved_as"),
    [
        ("clip.mp4", None, "clip.mp4"),
        ("videos/", None, "videos/req-1.mp4"),
        ("videos", None, "videos/req-1.mp4"),
        ("videos.v2/", None, "videos.v2/req-1.mp4"),
        ("videos.v2", "videos.v2", "videos.v2/req-1.mp4"),
        ("videos.v2", None, "videos.v2"),
        ("my videos/100%/", None, "my videos/100%/req-1.mp4"),
    ],
    ids=[
        "suffix-is-a-file",
        "trailing-slash",
        "no-suffix",
        "dotted-with-slash",
        "existing-dotted-folder",
        "dotted-is-a-file-until-it-exists",
        "spaces-and-percent-kept-as-written",
    ],
)
def test_output_path_names_a_file_or_a_folder(
    tmp_path: Path, output_path: str, existing_folder: str | None, saved_as: str
) -> None:
    if existing_folder:
        (tmp_path / existing_folder).mkdir()
    op = MuscleSurgeOperator(task_id="surge", image_url=IMAGE, output_path=f"{tmp_path}/{output_path}")

    destination = op._destination("req-1", OUTPUT_URL)

    assert destination.path == f"{tmp_path}/{saved_as}"


def test_output_url_without_a_suffix_is_saved_as_bin(tmp_path: Path) -> None:
    op = MuscleSurgeOperator(task_id="surge", image_url=IMAGE, output_path=f"{tmp_path}/videos/")
    assert op._destination("req-1", "https://cdn.example.com/outputs/req-1").path == f"{tmp_path}/videos/req-1.bin"


def test_an_existing_folder_with_a_dot_in_its_name_gets_the_video_inside(
    new_dag: Any, segmind_conn: EmulatorProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "videos.v2"
    folder.mkdir()
    with new_dag() as dag:
        MuscleSurgeOperator(task_id="surge", image_url=segmind_conn.sample_url(), output_path=str(folder), **FAST)

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    result = xcom(run, "surge")
    video = folder / f"{result['request_id']}.mp4"
    assert folder.is_dir(), "the folder was not replaced by the video"
    assert list(folder.iterdir()) == [video]
    assert hashlib.sha256(video.read_bytes()).hexdigest() == result["saved"]["sha256"]


# --- a submit whose answer is lost -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operator_says", "connection_says", "submissions"),
    [(None, None, 1), (True, None, 2), (None, True, 2), (False, True, 1)],
    ids=["default-no-resubmit", "operator-opts-in", "connection-opts-in", "operator-overrides-connection"],
)
def test_resubmit_on_unknown_outcome_decides_whether_a_lost_submit_is_sent_again(
    new_dag: Any,
    segmind_conn: EmulatorProcess,
    segmind_connection: Any,
    operator_says: bool | None,
    connection_says: bool | None,
    submissions: int,
) -> None:
    if connection_says is not None:
        segmind_connection(segmind_conn, resubmit_on_unknown_outcome=connection_says)
    # Segmind accepts (and bills) the first submit, but its answer never arrives.
    segmind_conn.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["submit"], "times": 1})
    failures = FailureRecorder()
    with new_dag() as dag:
        MuscleSurgeOperator(
            task_id="surge",
            image_url=segmind_conn.sample_url(),
            resubmit_on_unknown_outcome=operator_says,
            on_failure_callback=failures,
            **FAST,
        )

    run = run_dag(dag)

    assert segmind_conn.stats()["submissions_total"] == submissions
    if submissions == 1:
        assert task_states(run) == {"surge": "failed"}
        (error,) = failures.errors
        assert isinstance(error, SubmitOutcomeUnknown)
    else:
        assert task_states(run) == {"surge": "success"}


# --- any other model -------------------------------------------------------------------------------------
def test_submit_operator_runs_another_model_and_saves_its_png(
    new_dag: Any, segmind_conn: EmulatorProcess, tmp_path: Path
) -> None:
    with new_dag() as dag:
        SegmindSubmitOperator(
            task_id="image",
            model="flux-schnell",
            payload={"prompt": "{{ params.prompt }}"},
            output_path=f"{tmp_path}/",
            params={"prompt": "a sprinter at dawn"},
            **FAST,
        )

    run = run_dag(dag)

    assert task_states(run) == {"image": "success"}
    result = xcom(run, "image")
    assert result["model"] == "flux-schnell"
    assert result["output"].endswith(f"/{result['request_id']}.png")
    assert result["saved"]["path"].endswith(f"/{result['request_id']}.png")
    assert read_saved(result["saved"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert segmind_conn.stats()["submissions"] == {"flux-schnell": 1}


# --- logs -------------------------------------------------------------------------------------------------
def test_task_log_tells_the_story_and_never_shows_the_key(
    new_dag: Any, emulator_factory: Any, segmind_connection: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = "SG_d1st1nct1ve-k3y-0f-th1s-test"
    emulator = emulator_factory(api_keys=[secret])
    segmind_connection(emulator)
    with new_dag() as dag:
        MuscleSurgeOperator(task_id="surge", image_url=emulator.sample_url(), **FAST)

    run = run_dag(dag)

    assert task_states(run) == {"surge": "success"}
    request_id = xcom(run, "surge", "request_id")
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert f"Submitted muscle-surge request {request_id}" in log
    assert re.search(rf"Request {request_id} is PROCESSING after", log)
    assert re.search(rf"Request {request_id} is COMPLETED after", log)
    assert f"Request {request_id} COMPLETED: output" in log
    assert secret not in log


def test_on_kill_says_the_remote_job_keeps_running_and_names_it(capfd: pytest.CaptureFixture[str]) -> None:
    op = MuscleSurgeOperator(task_id="surge_on_kill", image_url="https://example.com/a.png")
    op._request_id = "req-123"
    op.on_kill()
    out = capfd.readouterr().out
    assert "req-123 keeps running" in out
    assert "no cancel endpoint" in out
