"""SegmindHook (workers) and SegmindAsyncHook (triggers) against real servers over loopback HTTP.

Both hooks share the connection settings, the retry policy and the error map, so what both promise
is written once and run with each (fixture ``either_hook``, see :class:`support.Client`). The
emulator's ``/_emulator/stats`` counters say how many calls a hook really made, and its fault switch
makes it fail on demand; what no API server does (an unknown state, a 503 then a 200, a body cut
short) is served by :class:`hostile.HostileServer`, whose request log says what reached it. The sync
hook's own calls (v1, uploads, downloads, the connection test) follow.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from hostile import STATUS, SUBMIT, Answer, body_of, header_fields, html
from segmind_emulator.testing import EmulatorProcess, running_together
from support import FAST_RETRY, FAST_SCHEDULE, TEST_KEY, Client

from airflow_provider_muscle_surge import exceptions as errors
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

#: The muscle-surge schedule on the emulator's clock, as the connection's ``poll`` extra.
FAST_POLL = FAST_SCHEDULE.to_dict()
ATTEMPTS = FAST_RETRY["max_retries"] + 1
IMAGE = {"image_url": "https://example.com/a.png"}


def calls(emu: EmulatorProcess) -> int:
    """API calls the emulator saw: answered ones plus connections it dropped on purpose."""
    stats = emu.stats()
    return sum(stats["responses"].values()) + stats["dropped_connections"]


def json_answer(obj: Any, status: int = 200) -> Answer:
    return Answer(json.dumps(obj).encode(), status)


@pytest.fixture
def emu(fresh_emulator: EmulatorProcess, segmind_connection: Callable[..., Any]) -> EmulatorProcess:
    """The (reset) session emulator as ``segmind_default``, polled on its fast clock."""
    segmind_connection(fresh_emulator, poll=FAST_POLL)
    return fresh_emulator


@pytest.fixture
def hook(emu: EmulatorProcess) -> SegmindHook:
    return SegmindHook()


# --- emulators with special flags -------------------------------------------------------------------
SPECIAL_FLAGS: dict[str, dict[str, Any]] = {
    "one_credit": {"credits": 1},
    #: One request per two seconds per key: a poll right after the submit meets an empty bucket.
    "rate_limited": {"rate_limit": 0.5},
}


@pytest.fixture(scope="module")
def special_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator per special flag set, started in parallel once for this module (startup is slow)."""
    procs = {
        name: EmulatorProcess(api_key=TEST_KEY, job_seconds=1.0, job_spread=0.02, seed=1234, **flags)
        for name, flags in SPECIAL_FLAGS.items()
    }
    with running_together(procs.values()):
        yield procs


@pytest.fixture
def special(
    special_emulators: dict[str, EmulatorProcess], segmind_connection: Callable[..., Any]
) -> Callable[..., EmulatorProcess]:
    """``special(name, **extra)``: that emulator, reset, as ``segmind_default``."""

    def get(name: str, **extra: Any) -> EmulatorProcess:
        emu = special_emulators[name]
        emu.reset()
        segmind_connection(emu, **extra)
        return emu

    return get


# --- the v2 cycle (either hook) -------------------------------------------------------------------------
def test_submit_wait_and_result_give_the_output_video(either_hook, emu):
    submission = either_hook.submit({"image_url": emu.sample_url()})
    result = either_hook.wait(submission.request_id)

    assert result["status"] == "COMPLETED"
    assert result["request_id"] == submission.request_id
    assert result["output"].endswith(".mp4")
    assert result["metrics"]["duration_seconds"] == 5.0
    assert either_hook.get_result(submission.request_id) == result
    stats = emu.stats()
    assert stats["submissions"] == {"muscle-surge": 1}
    assert stats["status_polls"] >= 1


def test_submission_points_at_the_status_and_result_urls(either_hook, emu):
    submission = either_hook.submit({"image_url": emu.sample_url()})
    assert submission.status_url == f"{emu.url}/v2/requests/{submission.request_id}/status"
    assert submission.response_url == f"{emu.url}/v2/requests/{submission.request_id}"


def test_get_status_of_a_running_request_is_queued_or_processing(either_hook, emu):
    submission = either_hook.submit({"image_url": emu.sample_url()})
    assert either_hook.get_status(submission.request_id)["status"] in ("QUEUED", "PROCESSING")


def test_wait_reports_each_step_to_the_callback(either_hook, emu):
    submission = either_hook.submit({"image_url": emu.sample_url()})
    seen: list[str] = []
    either_hook.wait(submission.request_id, on_step=lambda step, watch: seen.append(step.status))
    assert seen[-1] == "COMPLETED"
    assert len(seen) == emu.stats()["status_polls"]


def blocked_submission(client: Client, emu: EmulatorProcess) -> str:
    """A request the emulator's responsible-AI filter fails (its image_url carries ``rai-block``)."""
    return client.submit({"image_url": emu.sample_url() + "?rai-block"}).request_id


def until_failed(emu: EmulatorProcess) -> None:
    """Until the emulator has one FAILED job, watched on its admin counters (no API call)."""
    for _ in range(200):
        if emu.stats()["jobs"]["FAILED"] == 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"the request never failed: {emu.stats()['jobs']}")


def test_status_of_a_failed_request_is_returned_as_an_answer_not_raised(either_hook, emu):
    request_id = blocked_submission(either_hook, emu)
    until_failed(emu)

    body = either_hook.get_status(request_id)

    assert body["status"] == "FAILED"
    assert "responsible-AI" in body["error"]
    stats = emu.stats()  # the server said 422, and the hook still handed the body back
    assert (stats["responses"]["422"], stats["status_polls"]) == (1, 1)


def test_waiting_on_a_failed_request_raises_inference_failed_with_the_detail(either_hook, emu):
    request_id = blocked_submission(either_hook, emu)
    with pytest.raises(errors.InferenceFailed) as excinfo:
        either_hook.wait(request_id)
    assert isinstance(excinfo.value, AirflowFailException)
    assert excinfo.value.request_id == request_id
    assert "responsible-AI" in excinfo.value.detail
    assert request_id in str(excinfo.value)


def test_result_of_a_failed_request_raises_inference_failed(either_hook, emu):
    request_id = blocked_submission(either_hook, emu)
    until_failed(emu)
    with pytest.raises(errors.InferenceFailed, match="responsible-AI"):
        either_hook.get_result(request_id)


# --- permanent errors: raised at once, one call (either hook) --------------------------------------------
def test_a_wrong_key_raises_authentication_error_after_exactly_one_call(
    either_hook, fresh_emulator, segmind_connection
):
    segmind_connection(fresh_emulator, key="not-the-right-key")
    with pytest.raises(errors.AuthenticationError) as excinfo:
        either_hook.submit({"image_url": fresh_emulator.sample_url()})
    assert excinfo.value.status_code == 401
    assert isinstance(excinfo.value, AirflowFailException)
    assert fresh_emulator.stats()["responses"] == {"401": 1}


@pytest.mark.parametrize("endpoint", ["get_status", "get_result"])
def test_an_unknown_request_id_raises_request_expired_mentioning_the_1_hour_retention(either_hook, emu, endpoint):
    with pytest.raises(errors.RequestExpired) as excinfo:
        either_hook.call(endpoint, "no-such-request")
    assert "no-such-request" in str(excinfo.value)
    assert "1 hour" in str(excinfo.value)
    assert emu.stats()["responses"] == {"404": 1}


def test_out_of_credits_raises_insufficient_credits_after_the_first_job(either_hook, special):
    emu = special("one_credit")
    either_hook.submit({"image_url": emu.sample_url()})
    with pytest.raises(errors.InsufficientCredits) as excinfo:
        either_hook.submit({"image_url": emu.sample_url()})
    assert "Insufficient credits" in str(excinfo.value)  # the server's own words are shown
    assert "top up" in str(excinfo.value)
    assert emu.stats()["responses"] == {"200": 1, "406": 1}


def test_a_connection_without_a_key_is_refused_before_any_call(either_hook, hostile_server, segmind_connection):
    server = hostile_server(b'{"status": "QUEUED"}')
    segmind_connection(server.url, key=None)
    with pytest.raises(errors.AuthenticationError, match="no API key"):
        either_hook.get_status("abc")
    assert server.connections == 0


@pytest.mark.parametrize(
    ("params", "named"),
    [({"duration": 8, "quality": "1080p"}, "quality=1080p"), ({"duration": 8, "motion_mode": "fast"}, "motion_mode")],
    ids=["8s-at-1080p", "fast-with-8s"],
)
def test_a_bad_parameter_raises_invalid_parameter_without_any_http_call(either_hook, emu, params, named):
    with pytest.raises(errors.InvalidParameter, match=named):
        either_hook.submit({"image_url": emu.sample_url(), **params})
    stats = emu.stats()
    assert stats["responses"] == {}
    assert stats["submissions_total"] == 0


def test_run_sync_validates_before_calling_too(hook, emu):
    with pytest.raises(errors.InvalidParameter, match="seed"):
        hook.run_sync("muscle-surge", {"image_url": emu.sample_url(), "seed": 0})
    assert emu.stats()["responses"] == {}


@pytest.mark.parametrize("host", ["http://api.segmind.com", "http://192.168.1.20:8080"])
def test_plain_http_to_a_remote_host_is_refused_before_any_call(either_hook, segmind_connection, host):
    segmind_connection(host)
    # The mock answers nothing: a request the sync hook sent would fail it; the async hook would meet no server.
    with responses.RequestsMock() as rsps, pytest.raises(errors.InsecureConnection, match="plain http://"):
        either_hook.submit(IMAGE)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, errors.BadRequest),
        (401, errors.AuthenticationError),
        (403, errors.AuthenticationError),
        (404, errors.ModelNotFound),
        (406, errors.InsufficientCredits),
        (422, errors.InferenceFailed),
    ],
)
def test_permanent_http_errors_are_never_retried(either_hook, hostile_server, segmind_connection, status, exception):
    server = hostile_server().route("submit", SUBMIT, json_answer({"error": f"server says {status}"}, status))
    segmind_connection(server.url)
    with pytest.raises(exception) as excinfo:
        either_hook.submit(IMAGE)
    assert server.calls == {"submit": 1}
    assert excinfo.value.status_code == status
    assert f"server says {status}" in str(excinfo.value)
    assert isinstance(excinfo.value, AirflowFailException)


# --- transient errors: retried, bounded (either hook) --------------------------------------------------------
def test_a_rate_limited_call_waits_what_the_server_asks_then_succeeds(either_hook, special):
    emu = special("rate_limited")
    request_id = either_hook.submit({"image_url": emu.sample_url()}).request_id  # takes the only token

    body = either_hook.get_status(request_id)  # the bucket is empty: 429 "wait ~2 s", then 200

    assert body["request_id"] == request_id
    # The emulator lets a request through only once its bucket has refilled. Had the hook retried on its own
    # 10-50 ms backoff, all four attempts would have met an empty bucket and ended in errors.RateLimited.
    stats = emu.stats()
    assert 1 <= stats["rate_limited"] <= 2
    assert stats["status_polls"] == 1


def test_a_rate_limit_wait_beyond_the_retry_budget_is_raised_at_once(either_hook, special):
    emu = special("rate_limited", max_retry_seconds=0.05)
    request_id = either_hook.submit({"image_url": emu.sample_url()}).request_id
    with pytest.raises(errors.RateLimited) as excinfo:
        either_hook.get_status(request_id)
    assert 0.05 < excinfo.value.retry_after <= 2.0  # the server's hint, read from its headers
    assert excinfo.value.retryable
    assert not isinstance(excinfo.value, AirflowFailException)
    assert emu.stats()["rate_limited"] == 1


def test_a_server_that_keeps_failing_is_tried_exactly_max_retries_plus_one_times(either_hook, emu, caplog):
    emu.set_fault_rules({"mode": "error"})  # every API call: 500, 502, 504 or a dropped connection
    with pytest.raises((errors.ServerError, errors.TransportError)) as excinfo:
        either_hook.get_status("some-request")
    assert excinfo.value.retryable
    assert not isinstance(excinfo.value, AirflowFailException)  # Airflow's own retries may take over
    retries = [r for r in caplog.records if r.getMessage().startswith("Segmind call failed")]
    assert len(retries) == FAST_RETRY["max_retries"]  # the policy made max_retries + 1 attempts
    stats = emu.stats()
    if either_hook.kind == "sync":
        assert stats["faults_injected"] == calls(emu) == ATTEMPTS
    else:  # aiohttp itself re-sends an idempotent GET once when a reused keep-alive connection was dropped
        assert ATTEMPTS <= stats["faults_injected"] <= ATTEMPTS + stats["dropped_connections"]


def test_a_whole_job_survives_a_flaky_api(either_hook, emu, segmind_connection):
    # The emulator injects these faults before processing, so resubmitting is safe here; a client cannot
    # know that, so without the opt-in a lost submit answer raises SubmitOutcomeUnknown instead.
    segmind_connection(emu, poll=FAST_POLL, resubmit_on_unknown_outcome=True)
    emu.set_fault_rules(
        {"mode": "error", "endpoints": ["submit"], "status": 500, "times": 1},
        {"mode": "error", "endpoints": ["status"], "status": "drop", "times": 2},
        {"mode": "error", "endpoints": ["result"], "status": 504, "times": 1},
    )
    submission = either_hook.submit({"image_url": emu.sample_url()})
    result = either_hook.wait(submission.request_id)
    assert result["status"] == "COMPLETED"
    stats = emu.stats()
    assert stats["faults_injected"] == 4
    assert stats["submissions_total"] == 1  # a faulted submit created no job, the retry created one


def test_a_503_is_retried_and_the_next_answer_is_used(either_hook, hostile_server, segmind_connection):
    page = html(503, b"<html>Service Unavailable</html>")
    server = hostile_server().route("status", STATUS, page, json_answer({"status": "PROCESSING"}))
    segmind_connection(server.url)
    assert either_hook.get_status("r1") == {"status": "PROCESSING"}
    assert server.log == [("status", "GET /v2/requests/r1/status")] * 2


def test_a_429_without_hints_is_retried_with_backoff(either_hook, hostile_server, segmind_connection):
    answers = json_answer({"error": "slow down"}, 429), json_answer({"status": "QUEUED"})
    server = hostile_server().route("status", STATUS, *answers)
    segmind_connection(server.url)
    assert either_hook.get_status("r1") == {"status": "QUEUED"}
    assert server.calls == {"status": 2}


def test_a_persistent_5xx_ends_in_server_error_with_status_and_detail(either_hook, hostile_server, segmind_connection):
    server = hostile_server().route("status", STATUS, json_answer({"error": "maintenance"}, 503))
    segmind_connection(server.url)
    with pytest.raises(errors.ServerError) as excinfo:
        either_hook.get_status("r1")
    assert server.calls == {"status": ATTEMPTS}
    assert "HTTP 503" in str(excinfo.value)
    assert "maintenance" in str(excinfo.value)


#: How each HTTP client names a body that ended before its Content-Length.
CUT_SHORT = {"sync": "ChunkedEncodingError", "async": "ClientPayloadError"}


def test_a_truncated_answer_is_a_retried_transport_error(either_hook, hostile_server, segmind_connection):
    server = hostile_server(b'{"status": "QUEU', length=1000)
    segmind_connection(server.url)
    with pytest.raises(errors.TransportError, match=CUT_SHORT[either_hook.kind]):
        either_hook.get_status("r1")
    assert server.connections == ATTEMPTS


# --- what goes over the wire (either hook) ------------------------------------------------------------------
def test_the_key_travels_in_x_api_key_and_the_extra_is_not_sent_as_headers(
    either_hook, hostile_server, segmind_connection
):
    server = hostile_server().route("status", STATUS, json_answer({"status": "QUEUED"}))
    segmind_connection(server.url, poll=FAST_POLL)
    either_hook.get_status("r1")
    (sent,) = [header_fields(raw) for raw in server.requests]
    assert sent["x-api-key"] == TEST_KEY
    assert "authorization" not in sent
    assert not {"max_retries", "poll", "initial_backoff"} & set(sent)
    assert sent["user-agent"].startswith("airflow-provider-muscle-surge/")


def test_the_body_sent_is_the_validated_body_with_defaults(either_hook, hostile_server, segmind_connection):
    answer = {"request_id": "r1", "status_url": "https://x.test/s", "response_url": "https://x.test/r"}
    server = hostile_server().route("submit", SUBMIT, json_answer(answer))
    segmind_connection(server.url)
    either_hook.submit({**IMAGE, "seed": "12"})
    (sent,) = [json.loads(body_of(raw)) for raw in server.requests]
    assert sent == {**IMAGE, "duration": 5, "quality": "540p", "motion_mode": "normal", "seed": 12}


def test_a_submit_answer_without_a_request_id_is_malformed(either_hook, hostile_server, segmind_connection):
    server = hostile_server().route("submit", SUBMIT, json_answer({"status": "QUEUED"}))
    segmind_connection(server.url)
    with pytest.raises(errors.MalformedResponse, match="billed"):
        either_hook.submit(IMAGE)
    assert server.calls == {"submit": 1}


def test_a_status_answer_that_is_a_json_list_is_malformed(either_hook, hostile_server, segmind_connection):
    server = hostile_server().route("status", STATUS, json_answer(["QUEUED"]))
    segmind_connection(server.url)
    with pytest.raises(errors.MalformedResponse, match="not a JSON object"):
        either_hook.get_status("r1")
    assert server.calls == {"status": 1}


def test_a_proxy_page_on_a_status_poll_is_a_bounded_transient_glitch(either_hook, hostile_server, segmind_connection):
    page = html(200, b"<html>maintenance page</html>")
    server = hostile_server().route("status", STATUS, page, json_answer({"status": "QUEUED"}))
    segmind_connection(server.url)
    assert either_hook.get_status("r1") == {"status": "QUEUED"}
    assert server.calls == {"status": 2}


def test_a_proxy_page_that_stays_is_reported_after_the_retries(either_hook, hostile_server, segmind_connection):
    server = hostile_server().route("status", STATUS, html(200, b"<html>maintenance</html>"))
    segmind_connection(server.url)
    with pytest.raises(errors.UnreadableAnswer, match="not JSON"):
        either_hook.get_status("r1")
    assert server.calls == {"status": ATTEMPTS}


# --- the sync hook only: v1 and uploads ---------------------------------------------------------------------
def test_run_sync_returns_the_mp4_bytes(hook, emu):
    video = hook.run_sync("muscle-surge", {"image_url": emu.sample_url("athlete-2")})
    assert video[4:8] == b"ftyp"  # an ISO-BMFF (MP4) file starts with its ftyp box
    assert len(video) > 10_000
    assert emu.stats()["v1_runs"] == {"muscle-surge": 1}


def test_upload_of_bytes_returns_a_url_serving_those_bytes(hook, emu):
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
    url = hook.upload(data)
    assert requests.get(url, timeout=10).content == data
    assert emu.stats()["uploads"] == 1


def test_upload_of_a_file_returns_a_url_serving_its_content(hook, emu, tmp_path):
    image = tmp_path / "portrait.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(4096))
    url = hook.upload(image)
    assert url.endswith(".jpg")  # the content type was guessed from the file name
    assert requests.get(url, timeout=10).content == image.read_bytes()


def test_an_uploaded_image_can_be_submitted_and_rendered(hook, emu):
    sample = requests.get(emu.sample_url("athlete-3"), timeout=10).content
    url = hook.upload(sample)
    result = hook.wait_for_request(hook.submit("muscle-surge", {"image_url": url}).request_id, timeout=30)
    assert result["status"] == "COMPLETED"


# --- download -------------------------------------------------------------------------------------------------
@pytest.fixture
def blob(hook: SegmindHook) -> tuple[str, bytes]:
    """3 MiB of random bytes served by the emulator (via upload), to download back."""
    data = os.urandom(3 * 1024 * 1024)
    return hook.upload(data, content_type="image/png"), data


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_download_streams_to_a_local_path_with_correct_size_and_sha256(hook, blob, tmp_path):
    url, data = blob
    dest = tmp_path / "out" / "nested" / "video.mp4"
    saved = hook.download(url, dest)
    assert dest.read_bytes() == data
    assert saved.bytes == len(data)
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    assert Path(saved.path.removeprefix("file://")) == dest
    assert leftovers(dest.parent) == ["video.mp4"]


def test_download_to_an_object_storage_path(hook, blob, tmp_path):
    url, data = blob
    dest = ObjectStoragePath(f"file://{tmp_path}/video.mp4")
    saved = hook.download(url, dest)
    assert (tmp_path / "video.mp4").read_bytes() == data
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    assert leftovers(tmp_path) == ["video.mp4"]


def test_download_of_a_real_output_is_an_mp4(hook, emu, tmp_path):
    result = hook.wait_for_request(hook.submit("muscle-surge", {"image_url": emu.sample_url()}).request_id, timeout=30)
    saved = hook.download(result["output"], tmp_path / "muscles.mp4")
    assert (tmp_path / "muscles.mp4").read_bytes()[4:8] == b"ftyp"
    assert saved.bytes == (tmp_path / "muscles.mp4").stat().st_size


def test_download_over_the_size_cap_leaves_no_file_and_no_part_file(hook, blob, tmp_path):
    url, _ = blob
    with pytest.raises(errors.MalformedResponse, match="larger than"):
        hook.download(url, tmp_path / "video.mp4", max_bytes=1024 * 1024)
    assert leftovers(tmp_path) == []


def test_download_broken_off_mid_stream_leaves_no_file_and_no_part_file(hook, hostile_server, tmp_path):
    server = hostile_server(os.urandom(1536 * 1024), length=8 * 1024 * 1024, headers={"Content-Type": "video/mp4"})
    url = server.url + "/video.mp4"
    with pytest.raises(errors.TransportError, match="broke off"):
        hook.download(url, tmp_path / "video.mp4")
    assert leftovers(tmp_path) == []


def test_a_failed_download_keeps_the_previous_file_intact(hook, blob, tmp_path):
    url, _ = blob
    (tmp_path / "video.mp4").write_bytes(b"the video from yesterday")
    with pytest.raises(errors.MalformedResponse):
        hook.download(url, tmp_path / "video.mp4", max_bytes=1024)
    assert (tmp_path / "video.mp4").read_bytes() == b"the video from yesterday"
    assert leftovers(tmp_path) == ["video.mp4"]


def test_download_of_a_missing_file_raises_and_writes_nothing(hook, emu, tmp_path):
    with pytest.raises(errors.SegmindError) as excinfo:
        hook.download(f"{emu.url}/_emulator/outputs/gone.mp4", tmp_path / "video.mp4")
    assert excinfo.value.status_code == 404
    assert leftovers(tmp_path) == []


# --- test_connection ------------------------------------------------------------------------------------------
def test_test_connection_accepts_a_good_key_without_submitting_a_job(hook, emu):
    ok, message = hook.test_connection()
    assert ok is True
    assert emu.url in message
    stats = emu.stats()
    assert stats["submissions_total"] == 0
    assert stats["v1_runs_total"] == 0
    assert stats["credits_charged"] == 0


def test_test_connection_reports_a_rejected_key(fresh_emulator, segmind_connection):
    segmind_connection(fresh_emulator, key="sk-wrong-0123456789")
    ok, message = SegmindHook().test_connection()
    assert ok is False
    assert "rejected" in message
    assert "sk-wrong-0123456789" not in message
    assert fresh_emulator.stats()["submissions_total"] == 0


# --- the key stays secret ---------------------------------------------------------------------------------------
def test_the_api_key_never_appears_in_exception_text_or_logs(fresh_emulator, segmind_connection, caplog, capsys):
    """Neither a rejected nor an accepted key shows up: not in errors, not in stdlib logs, not in task output."""
    caplog.set_level(logging.DEBUG)
    wrong_key = "SG_live_DO_NOT_LEAK_5f0c1e9a7b"
    texts: list[str] = []

    def failure_text(call: Callable[[], Any]) -> None:
        with pytest.raises(errors.SegmindError) as excinfo:
            call()
        texts.extend([str(excinfo.value), repr(excinfo.value), excinfo.exconly()])

    segmind_connection(fresh_emulator, key=wrong_key)
    bad = SegmindHook()
    failure_text(lambda: bad.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()}))
    texts.append(bad.test_connection()[1])
    texts.append(repr(bad.settings))

    segmind_connection(fresh_emulator, poll=FAST_POLL)
    good = SegmindHook()
    failure_text(lambda: good.get_status("no-such-request"))
    failure_text(lambda: good.submit("muscle-surge", {"image_url": fresh_emulator.sample_url(), "seed": -1}))
    request_id = blocked_submission(Client("sync"), fresh_emulator)
    failure_text(lambda: good.wait_for_request(request_id, timeout=30))
    texts.append(repr(good.settings))

    fresh_emulator.set_fault_rules({"mode": "error"})  # every call fails: retried, each retry logged
    failure_text(lambda: SegmindHook().get_status("some-request"))

    out, err = capsys.readouterr()  # Airflow's structlog output (the hook's own log lines) lands here
    logged = caplog.text + out + err
    assert "Submitted muscle-surge request" in logged  # the hook's logs were captured at all
    assert "Segmind call failed (attempt 1)" in logged  # retry warnings, which quote the error
    assert "/v2/muscle-surge" in caplog.text  # ... and urllib3's debug lines too
    for secret in (wrong_key, TEST_KEY):
        assert secret not in logged
        assert not [t for t in texts if secret in t]


# --- upload on the wire -----------------------------------------------------------------------------------------
UPLOAD = r"POST /upload-asset"


def test_upload_sends_a_base64_data_url(hostile_server, segmind_connection):
    answer = json_answer({"file_urls": ["https://cdn/x.png"], "message": "ok"})
    server = hostile_server().route("upload", UPLOAD, answer)
    segmind_connection(server.url)
    assert SegmindHook().upload(b"abc", content_type="image/webp") == "https://cdn/x.png"
    (sent,) = [json.loads(body_of(raw)) for raw in server.requests]
    assert sent == {"data_urls": ["data:image/webp;base64," + base64.b64encode(b"abc").decode()]}


def test_an_upload_answer_without_file_urls_is_malformed(hostile_server, segmind_connection):
    server = hostile_server().route("upload", UPLOAD, json_answer({"message": "ok"}))
    segmind_connection(server.url)
    with pytest.raises(errors.MalformedResponse, match="file_urls"):
        SegmindHook().upload(b"abc")
    assert server.calls == {"upload": 1}
