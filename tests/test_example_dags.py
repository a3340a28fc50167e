"""The example DAGs: they parse, they are light to parse, and each one runs end to end.

Every run is a real ``dag.test()`` against the emulator, in a worker subprocess with its own
``AIRFLOW_HOME`` (SQLite, migrated once per session), so the Airflow configuration of the test
process never leaks into it. Deferrable tasks defer for real: ``dag.test()`` runs their trigger
in-process. Each test passes its own connection, output folder and Variables as environment.

This file is also the worker: ``python tests/test_example_dags.py --serve`` (what the fixture
starts), or ``python tests/test_example_dags.py DAG_ID [CONF_JSON [ANSWERS_JSON]]`` to run one DAG by
hand; both print one ``EXAMPLE-DAG-RESULT {...}`` line per run (state, task states, return values,
asset events, human-in-the-loop requests). ``dag.test()`` leaves a human-in-the-loop task waiting
in ``awaiting_input`` until someone answers; a run's ``answers`` (``{"review": "Approve"}``) are
given by a reviewer thread through the very function behind the REST API's ``PATCH .../hitlDetails``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
RESULT_PREFIX = "EXAMPLE-DAG-RESULT "
#: Who answers human-in-the-loop requests in ``dag.test()`` runs (a simple-auth-manager user).
REVIEWER = "marketing-reviewer"
#: Fast polling for ~1 s emulator jobs (``SegmindSettings.poll`` overrides ``PollSchedule`` fields).
FAST_POLL = {"expected_seconds": 1, "dense_interval": 0.2, "max_interval": 1}

EXPECTED_DAGS = {
    "example_muscle_surge_daily": {"resolve_inputs", "render", "write_index"},
    "example_muscle_surge_marketing": {"validate", "render", "report", "review", "publish"},
    "example_muscle_surge_chain": {"produce_image", "render_video"},
    "example_muscle_surge_publish": {"publish"},
}


# --- parsing -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(EXAMPLE_DAGS))


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_dagbag_has_the_expected_dags_and_tasks(dagbag):
    assert set(dagbag.dag_ids) == set(EXPECTED_DAGS)
    for dag_id, tasks in EXPECTED_DAGS.items():
        assert set(dagbag.dags[dag_id].task_dict) == tasks, dag_id


def test_daily_dag_is_scheduled_mapped_pooled_and_retried(dagbag):
    dag = dagbag.dags["example_muscle_surge_daily"]
    render = dag.get_task("render")
    assert dag.schedule == "@daily"
    assert render.partial_kwargs["pool"] == "segmind_api"
    assert render.partial_kwargs["retries"] == 2
    assert "/daily/{{ ds if ds is defined" in render.partial_kwargs["output_path"]
    assert set(render.expand_input.value) == {"image_url"}


def test_marketing_dag_offers_a_typed_form(dagbag):
    dag = dagbag.dags["example_muscle_surge_marketing"]
    schemas = {name: param.schema for name, param in dag.params.items()}
    assert dag.schedule is None
    assert {"image_url", "quality", "duration", "style", "seed"} <= set(schemas)
    assert schemas["quality"]["enum"] == ["360p", "540p", "720p", "1080p"]
    assert schemas["duration"]["enum"] == [5, 8]
    assert None in schemas["style"]["enum"] and "anime" in schemas["style"]["enum"]
    assert (schemas["seed"]["minimum"], schemas["seed"]["maximum"]) == (1, 999_999)
    assert dag.params["review_minutes"] == 24 * 60 and schemas["review_minutes"]["exclusiveMinimum"] == 0


def test_marketing_dag_publishes_only_after_a_review_that_defaults_to_reject(dagbag):
    from airflow.providers.standard.operators.hitl import HITLOperator

    dag = dagbag.dags["example_muscle_surge_marketing"]
    review, publish = dag.get_task("review"), dag.get_task("publish")
    assert isinstance(review, HITLOperator)
    assert (review.options, review.defaults, review.multiple) == (["Approve", "Reject"], ["Reject"], False)
    assert review.upstream_task_ids == {"report"} and "review" in publish.upstream_task_ids
    assert dict(review.params) == {}, "the DAG's Params are not a form for the reviewer"
    assert [a.name for a in publish.outlets] == ["muscle_surge_video"]  # what the publish DAG is scheduled on


def test_chain_updates_the_asset_the_publish_dag_is_scheduled_on(dagbag):
    chain = dagbag.dags["example_muscle_surge_chain"]
    publish = dagbag.dags["example_muscle_surge_publish"]
    render = chain.get_task("render_video")
    assert render.deferrable is True
    assert [a.name for a in render.outlets] == ["muscle_surge_video"]
    assert [a.name for a in publish.timetable.asset_condition.objects] == ["muscle_surge_video"]
    assert [a.name for a in publish.get_task("publish").inlets] == ["muscle_surge_video"]


def test_dag_files_are_light_to_parse(tmp_path):
    """No HTTP client, hook, trigger or video library is imported when a DAG file is parsed."""
    heavy = [
        "requests",
        "aiohttp",
        "av",
        "airflow_provider_muscle_surge.hooks.segmind",
        "airflow_provider_muscle_surge.hooks.segmind_async",
        "airflow_provider_muscle_surge.triggers.segmind",
        "segmind_emulator",
    ]
    files = [str(p) for p in sorted(EXAMPLE_DAGS.glob("*.py"))]
    # ``airflow.sdk`` is imported first: what it pulls in by itself is not the DAG files' doing.
    code = (
        "import json, runpy, sys, time\n"
        "import airflow.sdk, airflow.sdk.io.path\n"
        "report = {}\n"
        f"for path in {files!r}:\n"
        "    before = set(sys.modules)\n"
        "    t = time.perf_counter()\n"
        "    runpy.run_path(path)\n"
        "    took = time.perf_counter() - t\n"
        f"    new = sorted(m for m in {heavy!r} if m in sys.modules and m not in before)\n"
        "    report[path.rsplit('/', 1)[-1]] = {'loaded': new, 'seconds': round(took, 3)}\n"
        "print(json.dumps(report))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_hermetic_env(tmp_path)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(report) == {Path(f).name for f in files}
    assert all(r["loaded"] == [] for r in report.values()), report
    assert all(r["seconds"] < 2.0 for r in report.values()), report


# --- running -------------------------------------------------------------------------------------
def _hermetic_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MUSCLE_SURGE"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class DagTestWorker:
    """One long-lived subprocess that runs ``dag.test()`` on request (this file's ``--serve`` mode).

    Airflow's first ``dag.test()`` in a process costs ~8 s (it builds the in-process execution
    API); later ones reuse it and take about the time of the tasks. Each request carries its own
    environment (connection, output folder, Variables) and gets back the run's result and log.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            env=_hermetic_env(self.home),
            cwd=self.home,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        lines, stdout = self.lines, proc.stdout

        def pump() -> None:
            for line in stdout:  # type: ignore[union-attr]
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="dag-test-worker", daemon=True).start()
        return proc

    def run(
        self, dag_id: str, conf: dict[str, Any], env: dict[str, str], timeout: float, answers: dict[str, str]
    ) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None
        request = {"dag_id": dag_id, "conf": conf, "env": env, "answers": answers}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        log: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                raise AssertionError(f"{dag_id} did not finish within {timeout}s:\n{''.join(log)[-6000:]}") from None
            if line is None:
                self.proc = None
                raise AssertionError(f"the dag.test() worker exited while running {dag_id}:\n{''.join(log)[-6000:]}")
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
                result["log"] = "".join(log)
                assert "error" not in result, f"{result['error']}\n{result['log'][-6000:]}"
                return result
            log.append(line)

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def dag_test_worker(tmp_path_factory) -> Iterator[DagTestWorker]:
    """A migrated SQLite ``AIRFLOW_HOME`` (one ``airflow db migrate``, ~5 s) and the worker on it."""
    home = tmp_path_factory.mktemp("airflow-home")
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=_hermetic_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    worker = DagTestWorker(home)
    yield worker
    worker.close()


class DagRunner:
    """Runs an example DAG with ``dag.test()`` against the emulator, outputs under ``workdir``."""

    def __init__(self, worker: DagTestWorker, workdir: Path, emulator: Any) -> None:
        self.worker = worker
        self.workdir = workdir
        self.emulator = emulator
        self.output = workdir / "output"
        self.variables: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        conn = {**self.emulator.connection_dict(), "extra": {"poll": FAST_POLL}}
        return {
            "AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(conn),
            "MUSCLE_SURGE_OUTPUT": str(self.output),
            **{f"AIRFLOW_VAR_{k.upper()}": v for k, v in self.variables.items()},
        }

    def run(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        timeout: float = 120,
        *,
        answers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``answers``: the option a reviewer picks for each human-in-the-loop task (``{"review": "Reject"}``)."""
        result = self.worker.run(dag_id, conf or {}, self.env(), timeout, answers or {})
        (self.workdir / f"{dag_id}.log").write_text(result["log"])
        return result


@pytest.fixture
def dag_runner(dag_test_worker, tmp_path, segmind_conn) -> DagRunner:
    return DagRunner(dag_test_worker, tmp_path, segmind_conn)


def _states(result: dict[str, Any]) -> dict[tuple[str, int], str]:
    return {(t["task_id"], t["map_index"]): t["state"] for t in result["tis"]}


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def _probe_video(path: Path) -> tuple[float, int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return float(container.duration / av.time_base), stream.height, frames


def test_chain_then_publish_produces_a_playable_mp4_and_a_manifest(dag_runner):
    chain = dag_runner.run("example_muscle_surge_chain", {"quality": "360p"})
    assert chain["state"] == "success", chain["log"][-4000:]
    assert set(_states(chain).values()) == {"success"}
    assert "[DAG TEST] running trigger in line" in chain["log"]  # deferred for real

    video = chain["xcom"]["render_video"]
    saved = video["saved"]
    path = _local(saved["path"])
    assert path.is_file() and path.suffix == ".mp4"
    assert path.is_relative_to(dag_runner.output / "videos")
    duration, height, frames = _probe_video(path)
    assert 4.5 <= duration <= 5.5 and height == 360 and frames > 0
    stats = dag_runner.emulator.stats()
    assert stats["submissions"] == {"muscle-surge": 1}
    assert stats["upload_requests"] == 1

    [event] = chain["asset_events"]
    assert event["asset"] == "muscle_surge_video"
    assert event["extra"]["sha256"] == saved["sha256"]
    assert event["extra"]["request_id"] == video["request_id"]
    assert event["extra"]["source_image"] == chain["xcom"]["produce_image"]

    publish = dag_runner.run("example_muscle_surge_publish")
    assert publish["state"] == "success", publish["log"][-4000:]
    manifest_info = publish["xcom"]["publish"]
    manifest = json.loads(_local(manifest_info["manifest"]).read_text())
    published = _local(manifest["video"])
    assert published.parent == dag_runner.output / "published"
    assert published.read_bytes() == path.read_bytes()
    assert manifest["sha256"] == saved["sha256"]
    assert manifest["request_id"] == video["request_id"]
    assert manifest["source_image"] == chain["xcom"]["produce_image"]
    assert dag_runner.emulator.stats()["submissions"] == {"muscle-surge": 1}  # publishing calls no API


def test_marketing_approved_video_is_published_from_storage(dag_runner):
    """Render, save, ask the reviewer (showing the stored copy), and on Approve hand it to the publish DAG."""
    conf = {
        "image_url": dag_runner.emulator.sample_url("athlete-2"),
        "quality": "360p",
        "duration": 5,
        "style": "comic",
        "seed": 4242,
    }
    result = dag_runner.run("example_muscle_surge_marketing", conf, answers={"review": "Approve"})
    assert result["state"] == "success", result["log"][-4000:]
    assert set(_states(result).values()) == {"success"}
    report = result["xcom"]["report"]
    assert report["video_url"].startswith(dag_runner.emulator.url)
    path = _local(report["saved_path"])
    assert path.is_file() and path.parent.parent == dag_runner.output / "marketing"
    assert _probe_video(path)[1] == 360
    assert "Muscle Surge video ready:" in result["log"]
    assert dag_runner.emulator.stats()["submissions"] == {"muscle-surge": 1}

    # What the reviewer was shown: the stored copy (not Segmind's expiring URL), the request id, the settings.
    review = result["hitl"]["review"]
    assert review["subject"] == f"Publish Muscle Surge video {report['request_id']}?"
    assert report["saved_path"] in review["body"] and report["sha256"] in review["body"]
    assert report["video_url"] not in review["body"]
    assert "quality 360p" in review["body"] and "style comic" in review["body"] and "seed 4242" in review["body"]
    assert (review["chosen_options"], review["responded_by"]["name"]) == (["Approve"], REVIEWER)
    assert result["xcom"]["review"]["chosen_options"] == ["Approve"]

    [event] = result["asset_events"]
    assert event["asset"] == "muscle_surge_video"
    assert {k: event["extra"][k] for k in ("path", "sha256", "request_id")} == {
        "path": report["saved_path"],
        "sha256": report["sha256"],
        "request_id": report["request_id"],
    }
    assert event["extra"]["approval"]["by"] == REVIEWER

    publish = dag_runner.run("example_muscle_surge_publish")
    assert publish["state"] == "success", publish["log"][-4000:]
    manifest = json.loads(_local(publish["xcom"]["publish"]["manifest"]).read_text())
    assert manifest["request_id"] == report["request_id"] and manifest["sha256"] == report["sha256"]
    assert _local(manifest["video"]).read_bytes() == path.read_bytes()
    assert manifest["approval"]["by"] == REVIEWER


def test_marketing_rejected_video_is_kept_but_not_published(dag_runner):
    result = dag_runner.run("example_muscle_surge_marketing", {"quality": "360p"}, answers={"review": "Reject"})
    assert result["state"] == "success", result["log"][-4000:]
    states = _states(result)
    assert states[("review", -1)] == "success" and states[("publish", -1)] == "skipped"
    assert result["asset_events"] == []  # nothing for the publish DAG
    assert "publish" not in result["xcom"]
    report = result["xcom"]["report"]
    assert _local(report["saved_path"]).is_file()  # kept in storage all the same
    assert f"Not published: Reject by {REVIEWER} at " in result["log"]
    assert f"The video stays at {report['saved_path']} (request {report['request_id']})" in result["log"]
    assert dag_runner.emulator.stats()["submissions"] == {"muscle-surge": 1}


def test_marketing_defaults_use_the_emulator_sample_and_omit_seed_and_style(dag_runner):
    result = dag_runner.run("example_muscle_surge_marketing", {"quality": "360p"}, answers={"review": "Approve"})
    assert result["state"] == "success", result["log"][-4000:]
    assert result["xcom"]["validate"]["image_url"] == dag_runner.emulator.sample_url("athlete-1")
    assert result["xcom"]["validate"]["seed"] is None and result["xcom"]["validate"]["style"] is None
    assert "seed" not in result["xcom"]["report"]["parameters"]
    assert _local(result["xcom"]["report"]["saved_path"]).is_file()


def test_marketing_refuses_a_bad_combination_before_any_http_call(dag_runner):
    conf = {"image_url": dag_runner.emulator.sample_url("athlete-1"), "quality": "1080p", "duration": 8}
    result = dag_runner.run("example_muscle_surge_marketing", conf)
    assert result["state"] == "failed"
    states = _states(result)
    assert states[("validate", -1)] == "failed"
    assert states[("render", -1)] == "upstream_failed"
    assert states[("review", -1)] == states[("publish", -1)] == "upstream_failed"  # nobody is asked
    assert result["tries"]["validate"] == 1  # a refused parameter is not retried
    assert "8 s is not available at quality=1080p" in result["log"]
    stats = dag_runner.emulator.stats()
    assert sum(stats["submissions"].values()) == 0 and stats["status_polls"] == 0


def test_daily_renders_every_input_into_the_dated_folder(dag_runner):
    result = dag_runner.run("example_muscle_surge_daily", timeout=180)
    assert result["state"] == "success", result["log"][-4000:]
    states = _states(result)
    mapped = {k: v for k, v in states.items() if k[0] == "render"}
    assert sorted(i for _, i in mapped) == [0, 1, 2, 3]
    assert set(mapped.values()) == {"success"}

    dated = dag_runner.output / "daily" / result["ds"]
    videos = sorted(dated.glob("*.mp4"))
    assert len(videos) == 4
    index = json.loads((dated / "index.json").read_text())
    assert index["ds"] == result["ds"]
    assert sorted(v["image_url"].rsplit("/", 1)[-1] for v in index["videos"]) == [
        f"athlete-{n}.png" for n in range(1, 5)
    ]
    assert sorted(_local(v["path"]) for v in index["videos"]) == videos
    assert dag_runner.emulator.stats()["submissions"] == {"muscle-surge": 4}


def test_daily_takes_its_inputs_from_the_variable(dag_runner):
    images = [dag_runner.emulator.sample_url("athlete-3"), dag_runner.emulator.sample_url("athlete-3")]
    dag_runner.variables["muscle_surge_inputs"] = json.dumps(images)
    result = dag_runner.run("example_muscle_surge_daily")
    assert result["state"] == "success", result["log"][-4000:]
    assert result["xcom"]["resolve_inputs"] == images[:1]  # duplicates rendered once
    assert dag_runner.emulator.stats()["submissions"] == {"muscle-surge": 1}


# --- a real deployment ---------------------------------------------------------------------------
@pytest.mark.realairflow
def test_examples_in_a_real_deployment(tmp_path, fresh_emulator):
    """Scheduler, dag-processor, triggerer and api-server on PostgreSQL (``tests/realairflow``).

    What ``dag.test()`` cannot show: the publish DAG is started by the scheduler from the chain's
    Asset event (``triggering_asset_events``); the daily DAG is scheduled by the scheduler and its
    mapped renders defer to the real triggerer through a 2-slot pool that counts deferred tasks.
    """
    from realairflow.harness import AirflowDeployment, DeploymentSettings, wait_until

    output = tmp_path / "output"
    conn = {**fresh_emulator.connection_dict(), "extra": {"poll": FAST_POLL}}
    env = {"AIRFLOW_CONN_SEGMIND_DEFAULT": json.dumps(conn), "MUSCLE_SURGE_OUTPUT": str(output)}
    deployment = AirflowDeployment(DeploymentSettings(dags_folder=EXAMPLE_DAGS, env=env))
    try:
        deployment.start()
        client = deployment.client
        client.create_pool("segmind_api", 2, include_deferred=True, description="Segmind concurrency")
        for dag_id in EXPECTED_DAGS:
            deployment.wait_for_dag(dag_id)
        assert client.import_errors() == []

        client.unpause("example_muscle_surge_publish")
        chain = deployment.run_dag("example_muscle_surge_chain", {"quality": "360p"}, timeout=120)
        assert chain["state"] == "success", deployment.task_instances("example_muscle_surge_chain", chain["dag_run_id"])
        video = client.xcoms("example_muscle_surge_chain", chain["dag_run_id"], "render_video")["return_value"]

        def published() -> dict[str, Any] | None:
            runs = client.dag_runs("example_muscle_surge_publish")
            done = [r for r in runs if r["run_type"] == "asset_triggered" and r["state"] in ("success", "failed")]
            return done[0] if done else None

        publish = wait_until(published, timeout=90, interval=1.0, what="the asset-triggered publish run")
        assert publish["state"] == "success", deployment.logs(
            "example_muscle_surge_publish", publish["dag_run_id"], "publish"
        )
        info = client.xcoms("example_muscle_surge_publish", publish["dag_run_id"], "publish")["return_value"]
        manifest = json.loads(_local(info["manifest"]).read_text())
        assert manifest["request_id"] == video["request_id"] and manifest["sha256"] == video["saved"]["sha256"]
        assert _local(manifest["video"]).read_bytes() == _local(video["saved"]["path"]).read_bytes()

        client.unpause("example_muscle_surge_daily")  # catchup=False: one scheduled run, the latest interval

        def daily_done() -> dict[str, Any] | None:
            runs = [r for r in client.dag_runs("example_muscle_surge_daily") if r["run_type"] == "scheduled"]
            return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

        daily = wait_until(daily_done, timeout=150, interval=1.0, what="the scheduled daily run")
        tis = client.task_instances("example_muscle_surge_daily", daily["dag_run_id"])
        renders = [t for t in tis if t["task_id"] == "render"]
        assert daily["state"] == "success", tis
        assert sorted(int(t["map_index"]) for t in renders) == [0, 1, 2, 3]
        assert {t["pool"] for t in renders} == {"segmind_api"}
        ds = daily["logical_date"][:10]
        assert len(list((output / "daily" / ds).glob("*.mp4"))) == 4
        assert fresh_emulator.stats()["submissions"] == {"muscle-surge": 5}
    finally:
        deployment.stop()


# --- make demo -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_script_end_to_end(tmp_path):
    """``scripts/demo.py`` (what ``make demo`` runs) with this interpreter: emulator, migrate, dags test."""
    start = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MUSCLE_SURGE"))}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--json", "--output", str(tmp_path / "demo-output")],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
    )
    took = time.monotonic() - start
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    video = Path(summary["video"])
    assert video.is_file() and video.is_relative_to(tmp_path / "demo-output")
    assert _probe_video(video)[:2] == (pytest.approx(5.0, abs=0.5), 540)
    assert Path(summary["manifest"]).is_file()
    assert took < 120, took


# --- the subprocess runner -----------------------------------------------------------------------
class Reviewer(threading.Thread):
    """Answers the human-in-the-loop requests of a ``dag.test()`` run, as a person in the UI would.

    ``dag.test()`` keeps a run alive while a task waits in ``awaiting_input`` and resumes it once a
    response is in the database. The answer goes through ``update_hitl_detail``, the function behind
    ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails``
    (option checks, the response record, the resume of the parked task), called without HTTP.
    """

    def __init__(self, dag_id: str, answers: dict[str, str]) -> None:
        super().__init__(name="hitl-reviewer", daemon=True)
        self.dag_id = dag_id
        self.pending = dict(answers)
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while self.pending and not self.done.wait(0.2):
            try:
                self._answer_waiting_tasks()
            except Exception as exc:  # a locked SQLite file, a review not recorded yet: ask again
                # Said at once (the run waits on the answer, so it would otherwise only time out),
                # and reported by the runner if the task is still unanswered when the run ends.
                sys.stderr.write(f"hitl-reviewer: answering failed, asking again: {exc!r}\n")
                self.error = exc
            else:
                self.error = None

    def _answer_waiting_tasks(self) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        answered: list[str] = []
        with create_session() as session:
            waiting = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.task_id.in_(list(self.pending)),
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
            ).all()
            for ti in waiting:
                update_hitl_detail(
                    dag_id=ti.dag_id,
                    dag_run_id=ti.run_id,
                    task_id=ti.task_id,
                    update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[self.pending[ti.task_id]]),
                    user=SimpleAuthManagerUser(username=REVIEWER, role="admin"),
                    session=session,
                    map_index=ti.map_index,
                )
                answered.append(ti.task_id)
        # Only once the answers are committed: a failed attempt leaves them pending, to be given again.
        for task_id in answered:
            self.pending.pop(task_id, None)


def _run_dag(dag_id: str, conf: dict[str, Any], answers: dict[str, str] | None = None) -> dict[str, Any]:
    """Parse the examples, ``dag.test()`` one DAG (answering its reviews), and read back what it left."""
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    reviewer = Reviewer(dag_id, answers or {})
    reviewer.start()
    try:
        dr = dag.test(run_conf=conf or None)
    finally:
        reviewer.done.set()
        reviewer.join(30)
    if reviewer.error is not None and reviewer.pending:
        raise reviewer.error
    if reviewer.pending:
        raise AssertionError(f"never asked, so never answered: {reviewer.pending}")
    session = settings.Session()
    tis = dr.get_task_instances(session=session)
    xcom: dict[str, Any] = {}
    for row in session.scalars(
        select(XComModel).where(
            XComModel.run_id == dr.run_id, XComModel.dag_id == dag_id, XComModel.key == "return_value"
        )
    ):
        value = XComModel.deserialize_value(row)
        if row.map_index >= 0:
            xcom.setdefault(row.task_id, {})[row.map_index] = value
        else:
            xcom[row.task_id] = value
    events = session.execute(
        select(AssetModel.name, AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == dr.run_id)
    ).all()
    hitl = session.execute(
        select(TaskInstance.task_id, HITLDetail)
        .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == dr.run_id)
    ).all()
    return {
        "state": str(dr.state),
        "ds": dr.logical_date.strftime("%Y-%m-%d") if dr.logical_date else None,
        "tis": [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state)} for ti in tis],
        "tries": {ti.task_id: ti.try_number for ti in tis},
        "xcom": xcom,
        "asset_events": [{"asset": name, "extra": extra} for name, extra in events],
        "hitl": {
            task_id: {
                "subject": detail.subject,
                "body": detail.body,
                "options": detail.options,
                "defaults": detail.defaults,
                "chosen_options": detail.chosen_options,
                "responded_by": detail.responded_by,
            }
            for task_id, detail in hitl
        },
    }


def _serve() -> None:
    """``--serve``: one JSON request per stdin line; each answered by one result line on stdout."""
    managed: set[str] = set()
    for line in sys.stdin:
        request = json.loads(line)
        for key in managed - set(request["env"]):
            os.environ.pop(key, None)
        os.environ.update(request["env"])
        managed = set(request["env"])
        try:
            result = _run_dag(request["dag_id"], request["conf"], request.get("answers"))
        except BaseException:
            result = {"error": traceback.format_exc()}
        sys.stderr.flush()
        print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        _args = [json.loads(a) for a in sys.argv[2:4]]
        _result = _run_dag(sys.argv[1], *_args)
        print(RESULT_PREFIX + json.dumps(_result, default=str), flush=True)
