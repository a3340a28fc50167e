"""OpenLineage: the operators report the input image, the saved video and the Segmind request.

Two layers:

- the naming rules of ``lineage.py`` (pure functions: which URL is which dataset, what a ``data:``
  URI or an ``s3://<conn_id>@bucket/key`` path becomes), and that importing the operators still
  imports nothing of OpenLineage (DAG files import them at parse time);
- the real thing: a DAG run with ``dag.test()`` against the emulator, in a subprocess whose
  Airflow is configured with the OpenLineage provider's file transport from the start (the
  provider decides once per process whether it is enabled, and registers its listener when
  plugins load, so the test process itself cannot switch it on). The provider's own listener
  calls the operators' ``get_openlineage_facets_on_complete`` and writes the events; the test
  reads the COMPLETE events back from the file.

This file is also that subprocess: ``python tests/test_lineage.py --run CONFIG_JSON``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_muscle_surge.lineage import (
    EXTERNAL_SOURCE,
    FACET_NAME,
    FACET_SCHEMA_URL,
    data_uri_dataset,
    input_urls,
    operator_lineage,
    storage_dataset,
    url_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "LINEAGE-RUN-RESULT "
DAG_ID = "lineage_surge"
OL_NAMESPACE = "muscle-surge-tests"


# --- naming ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.example.com/people/a.png", ("https://cdn.example.com", "/people/a.png")),
        ("https://CDN.Example.com:443/a.png", ("https://cdn.example.com", "/a.png")),
        (
            "http://127.0.0.1:8765/_emulator/samples/athlete-1.png",
            ("http://127.0.0.1:8765", "/_emulator/samples/athlete-1.png"),
        ),
        ("https://b.s3.amazonaws.com/a.png?X-Amz-Signature=secret#frag", ("https://b.s3.amazonaws.com", "/a.png")),
        ("https://user:pw@example.com/a.png", ("https://example.com", "/a.png")),
        ("https://example.com", ("https://example.com", "/")),
        ("https://[::1]:9000/a.png", ("https://[::1]:9000", "/a.png")),
    ],
    ids=["https", "case-and-default-port", "loopback-port", "presigned", "userinfo", "no-path", "ipv6"],
)
def test_an_http_url_is_its_origin_and_path_without_query_or_credentials(url: str, expected: tuple[str, str]) -> None:
    assert url_dataset(url) == expected


@pytest.mark.parametrize("value", ["a prompt", "ftp://example.com/a.png", "https://", "http://[bad", 42, None])
def test_anything_else_is_not_a_dataset(value: Any) -> None:
    assert url_dataset(value) is None


def test_a_data_uri_is_named_by_media_type_and_the_digest_of_its_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\n not really"
    uri = "data:image/png;base64," + base64.b64encode(png).decode()

    assert data_uri_dataset(uri) == ("data", f"image/png;sha256={hashlib.sha256(png).hexdigest()}")
    assert url_dataset(uri) == data_uri_dataset(uri)
    assert data_uri_dataset("data:,hello%20there") == (
        "data",
        f"text/plain;sha256={hashlib.sha256(b'hello there').hexdigest()}",
    )
    assert data_uri_dataset("data:image/png;base64") is None, "no comma: not a data URI"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("file:///data/videos/r1.mp4", ("file", "/data/videos/r1.mp4", "file:///data/videos/r1.mp4")),
        ("/data/videos/r1.mp4", ("file", "/data/videos/r1.mp4", "file:///data/videos/r1.mp4")),
        ("s3://aws_prod@bucket/videos/r1.mp4", ("s3://bucket", "videos/r1.mp4", "s3://bucket/videos/r1.mp4")),
        ("s3://bucket/videos/r1.mp4", ("s3://bucket", "videos/r1.mp4", "s3://bucket/videos/r1.mp4")),
        ("gs://google_cloud_default@b/v/r1.mp4", ("gs://b", "v/r1.mp4", "gs://b/v/r1.mp4")),
    ],
    ids=["file-url", "plain-path", "s3-with-conn-id", "s3", "gs"],
)
def test_a_saved_file_is_a_storage_dataset_without_the_connection_id(path: str, expected: tuple[str, str, str]) -> None:
    assert storage_dataset(path) == expected


def test_inputs_are_the_bodys_url_fields_once_each() -> None:
    body = {
        "image_url": "https://example.com/a.png",
        "prompt": "see https://example.com/b.png",
        "duration": 5,
        "images": ["https://example.com/c.png", "https://example.com/a.png", 3],
    }

    assert input_urls(body) == ["https://example.com/a.png", "https://example.com/c.png"]


def test_operator_lineage_before_a_result_reports_the_input_and_the_submitted_request() -> None:
    lineage = operator_lineage(model="muscle-surge", body={"image_url": "https://e.com/a.png"}, request_id="r-1")

    assert [(d.namespace, d.name) for d in lineage.inputs] == [("https://e.com", "/a.png")]
    assert lineage.outputs == []
    assert lineage.run_facets["externalQuery"].externalQueryId == "r-1"
    facet = lineage.run_facets[FACET_NAME]
    assert (facet.model, facet.requestId, facet.status, facet.saved) == ("muscle-surge", "r-1", "SUBMITTED", None)


def test_without_output_path_the_output_is_segminds_url_without_its_query() -> None:
    result = {"request_id": "r-2", "status": "COMPLETED", "output": "https://cdn.segmind.com/o/r-2.mp4?token=t"}

    lineage = operator_lineage(model="muscle-surge", body={}, result=result)

    assert [(d.namespace, d.name) for d in lineage.outputs] == [("https://cdn.segmind.com", "/o/r-2.mp4")]
    assert lineage.run_facets[FACET_NAME].outputUrl == "https://cdn.segmind.com/o/r-2.mp4"


def test_importing_the_operators_imports_no_openlineage(tmp_path: Path) -> None:
    """DAG files import the operators at parse time; the lineage code must cost them nothing."""
    code = (
        "import sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_muscle_surge.operators.segmind\n"
        "print(sorted(m for m in set(sys.modules) - before if 'openlineage' in m or m.startswith('attr')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "AIRFLOW_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- a real run with the OpenLineage provider's listener ----------------------------------------------------
def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _complete(events: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    found = [e for e in events if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"{DAG_ID}.{task_id}"]
    assert len(found) == 1, [(e.get("eventType"), e["job"]["name"]) for e in events]
    return found[0]


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory: pytest.TempPathFactory, emulator: Any) -> dict[str, Any]:
    """One ``dag.test()`` of :func:`_build_dag` with the file transport; its result and its events."""
    emulator.reset()
    work = tmp_path_factory.mktemp("lineage")
    events_file = work / "ol.jsonl"
    with urllib.request.urlopen(emulator.sample_url("athlete-3"), timeout=30) as answer:
        image = answer.read()
    config = {
        "segmind_url": emulator.url,
        "image_url": emulator.sample_url("athlete-2"),
        "data_uri": "data:image/png;base64," + base64.b64encode(image).decode(),
        "output": str(work / "videos"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    conn = {**emulator.connection_dict(), "extra": {"poll": {"expected_seconds": 1, "dense_interval": 0.2}}}
    env.update(
        AIRFLOW_HOME=str(work / "airflow-home"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_SEGMIND_DEFAULT=json.dumps(conn),
        AIRFLOW__OPENLINEAGE__NAMESPACE=OL_NAMESPACE,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--run", json.dumps(config)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = proc.stdout + proc.stderr
    (work / "run.log").write_text(log)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert proc.returncode == 0 and lines, log[-6000:]
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    assert events_file.exists(), f"no OpenLineage event was written:\n{log[-6000:]}"
    return {**result, "config": config, "events": _events(events_file), "log": log, "image": image}


def test_dag_run_emits_a_complete_event_per_task(lineage_run: dict[str, Any]) -> None:
    assert lineage_run["state"] == "success", lineage_run["log"][-4000:]
    assert set(lineage_run["tis"].values()) == {"success"}
    for task_id in lineage_run["tis"]:
        event = _complete(lineage_run["events"], task_id)
        assert event["job"]["namespace"] == OL_NAMESPACE
        assert event["run"]["facets"]["parent"]["job"]["name"] == DAG_ID


def test_saved_video_is_the_output_of_the_image_that_went_in(lineage_run: dict[str, Any]) -> None:
    result = lineage_run["xcom"]["surge_saved"]
    event = _complete(lineage_run["events"], "surge_saved")
    image_url = lineage_run["config"]["image_url"]
    video = Path(result["saved"]["path"].removeprefix("file://"))

    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [url_dataset(image_url)]
    [output] = event["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(video))
    assert output["outputFacets"]["outputStatistics"]["size"] == result["saved"]["bytes"] == video.stat().st_size
    assert output["outputFacets"]["outputStatistics"]["fileCount"] == 1

    facets = event["run"]["facets"]
    assert facets["externalQuery"]["externalQueryId"] == result["request_id"]
    assert facets["externalQuery"]["source"] == EXTERNAL_SOURCE
    segmind = facets[FACET_NAME]
    assert segmind["_schemaURL"] == FACET_SCHEMA_URL
    assert (segmind["model"], segmind["requestId"], segmind["status"]) == (
        "muscle-surge",
        result["request_id"],
        "COMPLETED",
    )
    assert segmind["outputUrl"] == result["output"]
    assert segmind["metrics"] == result["metrics"]
    assert segmind["metrics"]["frames"] > 0 and segmind["metrics"]["height"] == 360
    assert segmind["saved"] == {
        "uri": video.as_uri(),
        "bytes": result["saved"]["bytes"],
        "sha256": result["saved"]["sha256"],
    }
    assert segmind["saved"]["sha256"] == _sha256_file(video)


def test_deferred_task_reports_the_same_after_resuming(lineage_run: dict[str, Any]) -> None:
    """After the trigger fires, ``execute_complete`` builds the result (a new task run: in a deployment,
    a new process and operator object), and that result is what the COMPLETE event reports."""
    assert "[DAG TEST] running trigger in line" in lineage_run["log"]
    result = lineage_run["xcom"]["surge_saved"]
    segmind = _complete(lineage_run["events"], "surge_saved")["run"]["facets"][FACET_NAME]
    assert segmind["requestId"] == result["request_id"]


def test_start_events_already_name_the_input(lineage_run: dict[str, Any]) -> None:
    starts = [e for e in lineage_run["events"] if e.get("eventType") == "START" and e["job"]["name"].endswith("_saved")]
    assert starts, "a START event for the deferred task"
    for event in starts:
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
            url_dataset(lineage_run["config"]["image_url"])
        ]
        assert event["outputs"] == []


def test_data_uri_input_and_unsaved_output(lineage_run: dict[str, Any]) -> None:
    result = lineage_run["xcom"]["surge_inline"]
    event = _complete(lineage_run["events"], "surge_inline")
    digest = hashlib.sha256(lineage_run["image"]).hexdigest()

    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [("data", f"image/png;sha256={digest}")]
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [url_dataset(result["output"])]
    assert "saved" not in event["run"]["facets"][FACET_NAME], "nothing saved (the serializer leaves None out)"
    assert "base64" not in json.dumps(event), "the image itself stays out of the lineage event"


def test_submit_without_waiting_reports_the_request(lineage_run: dict[str, Any]) -> None:
    result = lineage_run["xcom"]["submit_only"]
    event = _complete(lineage_run["events"], "submit_only")

    assert event["outputs"] == []
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [url_dataset(lineage_run["config"]["image_url"])]
    segmind = event["run"]["facets"][FACET_NAME]
    assert (segmind["requestId"], segmind["status"]) == (result["request_id"], "SUBMITTED")


def test_the_key_is_nowhere_in_the_events(lineage_run: dict[str, Any], emulator: Any) -> None:
    text = json.dumps(lineage_run["events"])
    assert emulator.api_key not in text


# --- the subprocess ----------------------------------------------------------------------------------------
def _build_dag(config: dict[str, Any]) -> Any:
    from airflow.sdk import DAG

    from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator, SegmindSubmitOperator

    with DAG(DAG_ID, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        MuscleSurgeOperator(
            task_id="surge_saved",
            image_url=config["image_url"],
            quality="360p",
            output_path=config["output"] + "/",
            deferrable=True,
            poll_schedule={"expected_seconds": 1, "dense_interval": 0.2, "first_poll_seconds": 0.3},
        )
        MuscleSurgeOperator(task_id="surge_inline", image_url=config["data_uri"], quality="360p", poll_interval=0.2)
        SegmindSubmitOperator(
            task_id="submit_only",
            model="muscle-surge",
            payload={"image_url": config["image_url"], "duration": 5, "quality": "360p"},
            wait_for_completion=False,
        )
    return dag


def _run(config: dict[str, Any]) -> dict[str, Any]:
    from dags_for_tests.dagtest_support import run_dag, task_states, use_private_airflow_db, xcom

    with use_private_airflow_db():
        dag = _build_dag(config)
        run = run_dag(dag)
        tis = task_states(run)
        return {"state": str(run.state), "tis": tis, "xcom": {task_id: xcom(run, task_id) for task_id in tis}}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        print(RESULT_PREFIX + json.dumps(_run(json.loads(sys.argv[2])), default=str), flush=True)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} --run CONFIG_JSON")
