"""SegmindHook, the blocking client of workers, against the real emulator over loopback HTTP.

What the emulator cannot do (a 403, a 503, a truncated body, a wrong Content-Length) is served
by ``responses`` or by a ten-line socket server; everything else is a real HTTP exchange, and the
emulator's ``/_emulator/stats`` counters say how many calls the hook really made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from segmind_emulator.testing import EmulatorProcess, running_together

from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    BadRequest,
    InferenceFailed,
    InsecureConnection,
    InsufficientCredits,
    InvalidParameter,
    MalformedResponse,
    ModelNotFound,
    RateLimited,
    RequestExpired,
    SegmindError,
    ServerError,
    TransportError,
)
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
from airflow_provider_muscle_surge.polling import PollSchedule

KEY = "test-key"
#: Retries that take milliseconds, so a test that exhausts them stays fast (4 attempts in all).
FAST_RETRY = {"max_retries": 3, "max_retry_seconds": 5, "initial_backoff": 0.01, "max_backoff": 0.05}
#: The muscle-surge schedule on the emulator's clock (~1 s jobs instead of ~45 s).
FAST_POLL = PollSchedule.for_model("muscle-surge").scaled(1 / 45.5).to_dict()
MOCK_HOST = "https://api.segmind.test"


def use_connection(monkeypatch: pytest.MonkeyPatch, host: str, key: str | None = KEY, **extra: Any) -> None:
    """Point ``segmind_default`` at ``host`` (no database: the env-var connection form)."""
    conn = {"conn_type": "segmind", "host": host, "extra": {**FAST_RETRY, "poll": FAST_POLL, **extra}}
    if key is not None:
        conn["password"] = key
    monkeypatch.setenv("AIRFLOW_CONN_SEGMIND_DEFAULT", json.dumps(conn))


def calls(emu: EmulatorProcess) -> int:
    """API calls the emulator saw: answered ones plus connections it dropped on purpose."""
    stats = emu.stats()
    return sum(stats["responses"].values()) + stats["dropped_connections"]


@pytest.fixture
def hook(fresh_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> SegmindHook:
    use_connection(monkeypatch, fresh_emulator.url)
    return SegmindHook()


# --- emulators with special flags -------------------------------------------------------------------
SPECIAL_FLAGS: dict[str, dict[str, Any]] = {
    "one_credit": {"credits": 1},
    "rate_limited": {"rate_limit": 1},
    "down": {"fault_rate": 1.0},
    "flaky": {"fault_rate": 0.3},
}


@pytest.fixture(scope="module")
def special_emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator per special flag set, started in parallel once for this module (startup is slow)."""
    procs = {
        name: EmulatorProcess(api_key=KEY, job_seconds=1.0, job_spread=0.02, seed=1234, **flags)
        for name, flags in SPECIAL_FLAGS.items()
    }
    with running_together(procs.values()):
        yield procs


@pytest.fixture
def special(special_emulators: dict[str, EmulatorProcess]) -> Callable[[str], EmulatorProcess]:
    def get(name: str) -> EmulatorProcess:
        emu = special_emulators[name]
        emu.reset()
        return emu

    return get


# --- the v2 cycle -------------------------------------------------------------------------------------
def test_submit_wait_and_result_give_the_output_video(hook, fresh_emulator):
    submission = hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()})
    result = hook.wait_for_request(submission.request_id, timeout=30)

    assert result["status"] == "COMPLETED"
    assert result["request_id"] == submission.request_id
    assert result["output"].endswith(".mp4")
    assert result["metrics"]["duration_seconds"] == 5.0
    assert hook.get_result(submission.request_id) == result
    stats = fresh_emulator.stats()
    assert stats["submissions"] == {"muscle-surge": 1}
    assert stats["status_polls"] >= 1


def test_submission_points_at_the_status_and_result_urls(hook, fresh_emulator):
    submission = hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()})
    assert submission.status_url == f"{fresh_emulator.url}/v2/requests/{submission.request_id}/status"
    assert submission.response_url == f"{fresh_emulator.url}/v2/requests/{submission.request_id}"


def test_get_status_of_a_running_request_is_queued_or_processing(hook, fresh_emulator):
    submission = hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()})
    assert hook.get_status(submission.request_id)["status"] in ("QUEUED", "PROCESSING")


def test_wait_reports_each_step_to_the_callback(hook, fresh_emulator):
    submission = hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()})
    seen: list[str] = []
    hook.wait_for_request(submission.request_id, timeout=30, on_step=lambda step, watch: seen.append(step.status))
    assert seen[-1] == "COMPLETED"
    assert len(seen) == fresh_emulator.stats()["status_polls"]


def blocked_submission(hook: SegmindHook, emu: EmulatorProcess) -> str:
    """A request the emulator's responsible-AI filter fails (its image_url carries ``rai-block``)."""
    return hook.submit("muscle-surge", {"image_url": emu.sample_url() + "?rai-block"}).request_id


def wait_until_failed(hook: SegmindHook, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (body := hook.get_status(request_id))["status"] != "FAILED":
        assert time.monotonic() < deadline, f"request never failed: {body}"
        time.sleep(0.05)
    return body


def test_status_of_a_failed_request_is_returned_as_an_answer_not_raised(hook, fresh_emulator):
    request_id = blocked_submission(hook, fresh_emulator)
    body = wait_until_failed(hook, request_id)
    assert "responsible-AI" in body["error"]
    # The server said 422, and the hook still handed the body back.
    assert fresh_emulator.stats()["responses"]["422"] == 1


def test_waiting_on_a_failed_request_raises_inference_failed_with_the_detail(hook, fresh_emulator):
    request_id = blocked_submission(hook, fresh_emulator)
    with pytest.raises(InferenceFailed) as excinfo:
        hook.wait_for_request(request_id, timeout=30)
    assert isinstance(excinfo.value, AirflowFailException)
    assert excinfo.value.request_id == request_id
    assert "responsible-AI" in excinfo.value.detail
    assert request_id in str(excinfo.value)


def test_result_of_a_failed_request_raises_inference_failed(hook, fresh_emulator):
    request_id = blocked_submission(hook, fresh_emulator)
    wait_until_failed(hook, request_id)
    with pytest.raises(InferenceFailed, match="responsible-AI"):
        hook.get_result(request_id)


# --- permanent errors: raised at once, one call ----------------------------------------------------------
def test_a_wrong_key_raises_authentication_error_after_exactly_one_call(fresh_emulator, monkeypatch):
    use_connection(monkeypatch, fresh_emulator.url, key="not-the-right-key")
    with pytest.raises(AuthenticationError) as excinfo:
        SegmindHook().submit("muscle-surge", {"image_url": fresh_emulator.sample_url()})
    assert excinfo.value.status_code == 401
    assert isinstance(excinfo.value, AirflowFailException)
    assert fresh_emulator.stats()["responses"] == {"401": 1}


def test_an_unknown_request_id_raises_request_expired_mentioning_the_1_hour_retention(hook, fresh_emulator):
    with pytest.raises(RequestExpired) as excinfo:
        hook.get_status("no-such-request")
    assert "no-such-request" in str(excinfo.value)
    assert "1 hour" in str(excinfo.value)
    assert fresh_emulator.stats()["responses"] == {"404": 1}


def test_out_of_credits_raises_insufficient_credits_after_the_first_job(special, monkeypatch):
    emu = special("one_credit")
    use_connection(monkeypatch, emu.url)
    hook = SegmindHook()
    hook.submit("muscle-surge", {"image_url": emu.sample_url()})
    with pytest.raises(InsufficientCredits) as excinfo:
        hook.submit("muscle-surge", {"image_url": emu.sample_url()})
    assert "Insufficient credits" in str(excinfo.value)  # the server's own words are shown
    assert "top up" in str(excinfo.value)
    assert emu.stats()["responses"] == {"200": 1, "406": 1}


def test_a_connection_without_a_key_is_refused_before_any_call(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST, key=None)
    with responses.RequestsMock() as rsps, pytest.raises(AuthenticationError, match="no API key"):
        SegmindHook().get_status("abc")
    assert len(rsps.calls) == 0


def test_a_bad_parameter_raises_invalid_parameter_without_any_http_call(hook, fresh_emulator):
    with pytest.raises(InvalidParameter, match="quality=1080p"):
        hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url(), "duration": 8, "quality": "1080p"})
    stats = fresh_emulator.stats()
    assert stats["responses"] == {}
    assert stats["submissions_total"] == 0


def test_run_sync_validates_before_calling_too(hook, fresh_emulator):
    with pytest.raises(InvalidParameter, match="seed"):
        hook.run_sync("muscle-surge", {"image_url": fresh_emulator.sample_url(), "seed": 0})
    assert fresh_emulator.stats()["responses"] == {}


@pytest.mark.parametrize("host", ["http://api.segmind.com", "http://192.168.1.20:8080"])
def test_plain_http_to_a_remote_host_is_refused_before_any_call(monkeypatch, host):
    use_connection(monkeypatch, host)
    with responses.RequestsMock() as rsps, pytest.raises(InsecureConnection, match="plain http://"):
        SegmindHook().submit("muscle-surge", {"image_url": "https://example.com/a.png"})
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, BadRequest),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, ModelNotFound),
        (406, InsufficientCredits),
        (422, InferenceFailed),
    ],
)
def test_permanent_http_errors_are_never_retried(monkeypatch, status, exception):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{MOCK_HOST}/v2/muscle-surge", status=status, json={"error": f"server says {status}"})
        with pytest.raises(exception) as excinfo:
            SegmindHook().submit("muscle-surge", {"image_url": "https://example.com/a.png"})
        assert len(rsps.calls) == 1
    assert excinfo.value.status_code == status
    assert f"server says {status}" in str(excinfo.value)
    assert isinstance(excinfo.value, AirflowFailException)


def first_retry_wait(caplog: pytest.LogCaptureFixture) -> float:
    """The wait of the first retry, as the retry policy logged it ("... retrying in 0.9s")."""
    messages = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert messages, "no retry was logged"
    return float(re.search(r"retrying in ([0-9.]+)s", messages[0]).group(1))


# --- transient errors: retried, bounded ----------------------------------------------------------------------
def test_a_rate_limited_call_waits_what_the_server_asks_then_succeeds(special, monkeypatch, caplog):
    emu = special("rate_limited")  # 1 request per second per key
    use_connection(monkeypatch, emu.url)
    hook = SegmindHook()
    request_id = hook.submit("muscle-surge", {"image_url": emu.sample_url()}).request_id

    started = time.monotonic()
    body = hook.get_status(request_id)  # the bucket is empty: 429, wait ~1 s, then 200
    waited = time.monotonic() - started

    assert body["request_id"] == request_id
    slept = first_retry_wait(caplog)
    assert slept > FAST_RETRY["max_backoff"] + 0.2  # the server's ~1 s, not the 10-50 ms backoff
    assert waited >= slept - 0.05
    stats = emu.stats()
    assert 1 <= stats["rate_limited"] <= 2
    assert stats["status_polls"] == 1


def test_a_rate_limit_wait_beyond_the_retry_budget_is_raised_at_once(special, monkeypatch):
    emu = special("rate_limited")
    use_connection(monkeypatch, emu.url, max_retry_seconds=0.05)
    hook = SegmindHook()
    request_id = hook.submit("muscle-surge", {"image_url": emu.sample_url()}).request_id
    with pytest.raises(RateLimited) as excinfo:
        hook.get_status(request_id)
    assert 0.05 < excinfo.value.retry_after <= 1.0  # the server's hint, read from its headers
    assert excinfo.value.retryable
    assert not isinstance(excinfo.value, AirflowFailException)
    assert emu.stats()["rate_limited"] == 1


def test_a_server_that_keeps_failing_is_tried_exactly_max_retries_plus_one_times(special, monkeypatch):
    emu = special("down")  # every API call: 500, 502, 504 or a dropped connection
    use_connection(monkeypatch, emu.url)
    with pytest.raises((ServerError, TransportError)) as excinfo:
        SegmindHook().get_status("some-request")
    assert excinfo.value.retryable
    assert not isinstance(excinfo.value, AirflowFailException)  # Airflow's own retries may take over
    assert emu.stats()["faults_injected"] == FAST_RETRY["max_retries"] + 1
    assert calls(emu) == FAST_RETRY["max_retries"] + 1


def test_a_whole_job_survives_a_flaky_api(special, monkeypatch):
    emu = special("flaky")  # 30 % of API calls fail with 5xx or a dropped connection
    # The emulator injects its faults before processing, so resubmitting is safe here; a client cannot
    # know that, so without the opt-in a lost submit answer raises SubmitOutcomeUnknown instead.
    use_connection(monkeypatch, emu.url, max_retries=10, resubmit_on_unknown_outcome=True)
    hook = SegmindHook()
    submission = hook.submit("muscle-surge", {"image_url": emu.sample_url()})
    result = hook.wait_for_request(submission.request_id, timeout=30)
    assert result["status"] == "COMPLETED"
    stats = emu.stats()
    assert stats["faults_injected"] > 0
    assert stats["submissions_total"] == 1  # a faulted submit created no job, the retry created one


def test_a_503_is_retried_and_the_next_answer_is_used(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    url = f"{MOCK_HOST}/v2/requests/r1/status"
    with responses.RequestsMock() as rsps:
        rsps.get(url, status=503, body="<html>Service Unavailable</html>")
        rsps.get(url, json={"status": "PROCESSING"})
        assert SegmindHook().get_status("r1") == {"status": "PROCESSING"}
        assert len(rsps.calls) == 2


def test_a_429_without_hints_is_retried_with_backoff(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    url = f"{MOCK_HOST}/v2/requests/r1/status"
    with responses.RequestsMock() as rsps:
        rsps.get(url, status=429, json={"error": "slow down"})
        rsps.get(url, json={"status": "QUEUED"})
        assert SegmindHook().get_status("r1") == {"status": "QUEUED"}
        assert len(rsps.calls) == 2


def test_a_persistent_5xx_ends_in_server_error_with_status_and_detail(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.get(f"{MOCK_HOST}/v2/requests/r1/status", status=503, json={"error": "maintenance"})
        with pytest.raises(ServerError) as excinfo:
            SegmindHook().get_status("r1")
        assert len(rsps.calls) == FAST_RETRY["max_retries"] + 1
    assert "HTTP 503" in str(excinfo.value)
    assert "maintenance" in str(excinfo.value)


def test_a_truncated_answer_is_a_retried_transport_error(hostile_server, monkeypatch):
    server = hostile_server(b'{"status": "QUEU', length=1000)
    use_connection(monkeypatch, server.url)
    with pytest.raises(TransportError, match="ChunkedEncodingError"):
        SegmindHook().get_status("r1")
    assert server.connections == FAST_RETRY["max_retries"] + 1


# --- what goes over the wire --------------------------------------------------------------------------------
def test_the_key_travels_in_x_api_key_and_the_extra_is_not_sent_as_headers(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.get(f"{MOCK_HOST}/v2/requests/r1/status", json={"status": "QUEUED"})
        SegmindHook().get_status("r1")
        sent = rsps.calls[0].request.headers
    assert sent["x-api-key"] == KEY
    assert "Authorization" not in sent
    assert not {"max_retries", "poll", "initial_backoff"} & {h.lower() for h in sent}
    assert sent["User-Agent"].startswith("airflow-provider-muscle-surge/")


def test_the_body_sent_is_the_validated_body_with_defaults(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{MOCK_HOST}/v2/muscle-surge",
            json={"request_id": "r1", "status_url": f"{MOCK_HOST}/s", "response_url": f"{MOCK_HOST}/r"},
        )
        SegmindHook().submit("muscle-surge", {"image_url": "https://example.com/a.png", "seed": "12"})
        sent = json.loads(rsps.calls[0].request.body)
    assert sent == {
        "image_url": "https://example.com/a.png",
        "duration": 5,
        "quality": "540p",
        "motion_mode": "normal",
        "seed": 12,
    }


def test_a_submit_answer_without_a_request_id_is_malformed(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{MOCK_HOST}/v2/muscle-surge", json={"status": "QUEUED"})
        with pytest.raises(MalformedResponse, match="billed"):
            SegmindHook().submit("muscle-surge", {"image_url": "https://example.com/a.png"})
        assert len(rsps.calls) == 1


def test_a_status_answer_that_is_a_json_list_is_malformed(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.get(f"{MOCK_HOST}/v2/requests/r1/status", json=["QUEUED"])
        with pytest.raises(MalformedResponse, match="not a JSON object"):
            SegmindHook().get_status("r1")


def test_a_proxy_page_on_a_status_poll_is_a_bounded_transient_glitch(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        page = rsps.get(f"{MOCK_HOST}/v2/requests/r1/status", body="<html>maintenance page</html>")
        ok = rsps.get(f"{MOCK_HOST}/v2/requests/r1/status", json={"status": "QUEUED"})
        assert SegmindHook().get_status("r1") == {"status": "QUEUED"}
        assert (page.call_count, ok.call_count) == (1, 1)


# --- v1 and uploads -----------------------------------------------------------------------------------------
def test_run_sync_returns_the_mp4_bytes(hook, fresh_emulator):
    video = hook.run_sync("muscle-surge", {"image_url": fresh_emulator.sample_url("athlete-2")})
    assert video[4:8] == b"ftyp"  # an ISO-BMFF (MP4) file starts with its ftyp box
    assert len(video) > 10_000
    assert fresh_emulator.stats()["v1_runs"] == {"muscle-surge": 1}


def test_upload_of_bytes_returns_a_url_serving_those_bytes(hook, fresh_emulator):
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
    url = hook.upload(data)
    assert requests.get(url, timeout=10).content == data
    assert fresh_emulator.stats()["uploads"] == 1


def test_upload_of_a_file_returns_a_url_serving_its_content(hook, fresh_emulator, tmp_path):
    image = tmp_path / "portrait.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(4096))
    url = hook.upload(image)
    assert url.endswith(".jpg")  # the content type was guessed from the file name
    assert requests.get(url, timeout=10).content == image.read_bytes()


def test_an_uploaded_image_can_be_submitted_and_rendered(hook, fresh_emulator):
    sample = requests.get(fresh_emulator.sample_url("athlete-3"), timeout=10).content
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


def test_download_of_a_real_output_is_an_mp4(hook, fresh_emulator, tmp_path):
    result = hook.wait_for_request(
        hook.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()}).request_id, timeout=30
    )
    saved = hook.download(result["output"], tmp_path / "muscles.mp4")
    assert (tmp_path / "muscles.mp4").read_bytes()[4:8] == b"ftyp"
    assert saved.bytes == (tmp_path / "muscles.mp4").stat().st_size


def test_download_over_the_size_cap_leaves_no_file_and_no_part_file(hook, blob, tmp_path):
    url, _ = blob
    with pytest.raises(MalformedResponse, match="larger than"):
        hook.download(url, tmp_path / "video.mp4", max_bytes=1024 * 1024)
    assert leftovers(tmp_path) == []


def test_download_broken_off_mid_stream_leaves_no_file_and_no_part_file(hook, hostile_server, tmp_path):
    server = hostile_server(os.urandom(1536 * 1024), length=8 * 1024 * 1024, headers={"Content-Type": "video/mp4"})
    url = server.url + "/video.mp4"
    with pytest.raises(TransportError, match="broke off"):
        hook.download(url, tmp_path / "video.mp4")
    assert leftovers(tmp_path) == []


def test_a_failed_download_keeps_the_previous_file_intact(hook, blob, tmp_path):
    url, _ = blob
    (tmp_path / "video.mp4").write_bytes(b"the video from yesterday")
    with pytest.raises(MalformedResponse):
        hook.download(url, tmp_path / "video.mp4", max_bytes=1024)
    assert (tmp_path / "video.mp4").read_bytes() == b"the video from yesterday"
    assert leftovers(tmp_path) == ["video.mp4"]


def test_download_of_a_missing_file_raises_and_writes_nothing(hook, fresh_emulator, tmp_path):
    with pytest.raises(SegmindError) as excinfo:
        hook.download(f"{fresh_emulator.url}/_emulator/outputs/gone.mp4", tmp_path / "video.mp4")
    assert excinfo.value.status_code == 404
    assert leftovers(tmp_path) == []


# --- test_connection ------------------------------------------------------------------------------------------
def test_test_connection_accepts_a_good_key_without_submitting_a_job(hook, fresh_emulator):
    ok, message = hook.test_connection()
    assert ok is True
    assert fresh_emulator.url in message
    stats = fresh_emulator.stats()
    assert stats["submissions_total"] == 0
    assert stats["v1_runs_total"] == 0
    assert stats["credits_charged"] == 0


def test_test_connection_reports_a_rejected_key(fresh_emulator, monkeypatch):
    use_connection(monkeypatch, fresh_emulator.url, key="sk-wrong-0123456789")
    ok, message = SegmindHook().test_connection()
    assert ok is False
    assert "rejected" in message
    assert "sk-wrong-0123456789" not in message
    assert fresh_emulator.stats()["submissions_total"] == 0


# --- the key stays secret ---------------------------------------------------------------------------------------
def test_the_api_key_never_appears_in_exception_text_or_logs(fresh_emulator, special, monkeypatch, caplog, capsys):
    """Neither a rejected nor an accepted key shows up: not in errors, not in stdlib logs, not in task output."""
    caplog.set_level(logging.DEBUG)
    wrong_key = "SG_live_DO_NOT_LEAK_5f0c1e9a7b"
    texts: list[str] = []

    def failure_text(call: Callable[[], Any]) -> None:
        with pytest.raises(SegmindError) as excinfo:
            call()
        texts.extend([str(excinfo.value), repr(excinfo.value), excinfo.exconly()])

    use_connection(monkeypatch, fresh_emulator.url, key=wrong_key)
    bad = SegmindHook()
    failure_text(lambda: bad.submit("muscle-surge", {"image_url": fresh_emulator.sample_url()}))
    texts.append(bad.test_connection()[1])
    texts.append(repr(bad.settings))

    use_connection(monkeypatch, fresh_emulator.url)
    good = SegmindHook()
    failure_text(lambda: good.get_status("no-such-request"))
    failure_text(lambda: good.submit("muscle-surge", {"image_url": fresh_emulator.sample_url(), "seed": -1}))
    request_id = blocked_submission(good, fresh_emulator)
    failure_text(lambda: good.wait_for_request(request_id, timeout=30))
    texts.append(repr(good.settings))

    use_connection(monkeypatch, special("down").url)
    failure_text(lambda: SegmindHook().get_status("some-request"))  # retried, each retry logged

    out, err = capsys.readouterr()  # Airflow's structlog output (the hook's own log lines) lands here
    logged = caplog.text + out + err
    assert "Submitted muscle-surge request" in logged  # the hook's logs were captured at all
    assert "Segmind call failed (attempt 1)" in logged  # retry warnings, which quote the error
    assert "/v2/muscle-surge" in caplog.text  # ... and urllib3's debug lines too
    for secret in (wrong_key, KEY):
        assert secret not in logged
        assert not [t for t in texts if secret in t]


# --- upload on the wire -----------------------------------------------------------------------------------------
def test_upload_sends_a_base64_data_url(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{MOCK_HOST}/upload-asset", json={"file_urls": ["https://cdn/x.png"], "message": "ok"})
        assert SegmindHook().upload(b"abc", content_type="image/webp") == "https://cdn/x.png"
        sent = json.loads(rsps.calls[0].request.body)
    assert sent == {"data_urls": ["data:image/webp;base64," + base64.b64encode(b"abc").decode()]}


def test_an_upload_answer_without_file_urls_is_malformed(monkeypatch):
    use_connection(monkeypatch, MOCK_HOST)
    with responses.RequestsMock() as rsps:
        rsps.post(f"{MOCK_HOST}/upload-asset", json={"message": "ok"})
        with pytest.raises(MalformedResponse, match="file_urls"):
            SegmindHook().upload(b"abc")
