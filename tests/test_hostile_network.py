"""The README's promises, each tried against a real server process that behaves like a hostile network.

The emulator's runtime fault switch plays a misconfigured proxy or a flaky gateway (redirects to
another origin, answers lost after the job was accepted, bodies that drip or never end, a key
quoted back); :class:`hostile.HostileServer` covers what no API server would do. Every test asks
the server afterwards what really happened: which requests arrived, which jobs were accepted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from segmind_emulator.testing import EmulatorProcess, running_together
from support import FAST_RETRY

from airflow_provider_muscle_surge.exceptions import (
    InferenceTimeout,
    InsecureConnection,
    PollingGaveUp,
    RateLimited,
    RedirectRefused,
    SegmindError,
    ServerError,
    SubmitOutcomeUnknown,
    TransportError,
    UnreadableAnswer,
)
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
from airflow_provider_muscle_surge.hooks.segmind_async import LAST_LOOK_SECONDS
from airflow_provider_muscle_surge.polling import PollSchedule
from airflow_provider_muscle_surge.triggers.segmind import OUTER_GRACE_SECONDS, SegmindRequestTrigger

KEY = "canary-key-5f0c2e9a"
#: Small budgets on top of the fast retries, so a hostile answer is given up on in seconds: 2 s per
#: attempt, 4 s per retried call.
TIGHT = {"timeout": 2, "max_retry_seconds": 4}
#: A bound no test here may reach with the promises kept; a broken one runs for minutes.
WELL_WITHIN = 20.0


@pytest.fixture
def connect(segmind_connection: Callable[..., Any]) -> Callable[..., Any]:
    """``connect(url, **extra)``: ``segmind_default`` at ``url`` with the canary key and the tight budgets."""

    def use(url: str, **extra: Any) -> Any:
        return segmind_connection(url, key=KEY, **{**TIGHT, **extra})

    return use


def requests_seen(emu: EmulatorProcess) -> int:
    stats = emu.stats()
    return sum(stats["responses"].values()) + stats["dropped_connections"]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[EmulatorProcess, EmulatorProcess]]:
    """The API (with the fault switch) and a second origin that must never hear from the client."""
    api = EmulatorProcess(api_key=KEY, job_seconds=1.0, job_spread=0.02, seed=99)
    other = EmulatorProcess(api_key=KEY, job_seconds=1.0, seed=100)
    with running_together([api, other]):
        yield api, other


@pytest.fixture
def api(pair: tuple[EmulatorProcess, EmulatorProcess], connect: Callable[..., Any]) -> EmulatorProcess:
    emu, other = pair
    emu.reset()
    other.reset()
    connect(emu.url)
    return emu


@pytest.fixture
def other_origin(pair: tuple[EmulatorProcess, EmulatorProcess]) -> EmulatorProcess:
    return pair[1]


def submit(hook: SegmindHook, emu: EmulatorProcess, **kwargs: Any) -> Any:
    return hook.submit("muscle-surge", {"image_url": emu.sample_url()}, **kwargs)


def elapsed(fn: Callable[[], Any]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        fn()
    except BaseException as err:
        return time.monotonic() - start, err
    return time.monotonic() - start, None


# --- 1. the key goes to the configured origin and nowhere else ----------------------------------------------
@pytest.mark.parametrize("endpoint", ["submit", "status", "result"])
def test_a_redirect_to_another_origin_is_refused_and_that_origin_hears_nothing(api, other_origin, endpoint):
    request_id = submit(SegmindHook(), api).request_id if endpoint != "submit" else "r1"
    api.set_fault_rules({"mode": "redirect", "endpoints": [endpoint], "location": other_origin.url + "/v2/x"})
    hook = SegmindHook()
    call = {
        "submit": lambda: submit(hook, api),
        "status": lambda: hook.get_status(request_id),
        "result": lambda: hook.get_result(request_id),
    }[endpoint]
    with pytest.raises(RedirectRefused) as excinfo:
        call()
    assert other_origin.url in str(excinfo.value)  # the error names the target
    assert requests_seen(other_origin) == 0
    assert api.stats()["faults_by_mode"] == {"redirect": 1}  # refused at once, not retried


async def test_the_triggers_polls_do_not_follow_a_redirect_either(api, other_origin):
    request_id = submit(SegmindHook(), api).request_id
    api.set_fault_rules({"mode": "redirect", "endpoints": ["status"], "location": other_origin.url + "/x"})
    trigger = SegmindRequestTrigger(
        request_id, deadline=time.time() + 30, schedule=PollSchedule.fixed(0.5).to_dict(), submitted_at=time.time()
    )
    (event,) = [e.payload async for e in trigger.run()]
    assert event["status"] == "redirect"
    assert requests_seen(other_origin) == 0


def test_a_host_the_url_parsers_read_differently_is_refused_before_any_call(api, connect):
    connect(f"http://127.0.0.2:{api.port}\\@127.0.0.1:{api.port}")
    with pytest.raises(InsecureConnection):
        SegmindHook().get_status("r1")
    assert requests_seen(api) == 0


def test_an_upload_url_over_plain_http_to_a_remote_host_is_refused(api, connect):
    connect(api.url, upload_url="http://10.11.12.13/upload-asset")
    with pytest.raises(InsecureConnection, match="plain http"):
        SegmindHook().upload(b"\x89PNG\r\n\x1a\n")


def test_status_urls_the_server_hands_back_on_another_origin_are_replaced(hostile_server, connect):
    answer = {"request_id": "r1", "status_url": "https://evil.example/s", "response_url": "https://evil.example/r"}
    server = hostile_server(json.dumps(answer).encode())
    connect(server.url)
    submission = SegmindHook().submit("muscle-surge", {"image_url": "https://example.com/a.png"})
    assert submission.status_url == f"{server.url}/v2/requests/r1/status"
    assert submission.response_url == f"{server.url}/v2/requests/r1"


# --- 2. at most one accepted submit per task try --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["accept_then_drop", "cut_body"])
def test_a_submit_answer_lost_after_acceptance_is_not_posted_again(api, mode):
    api.set_fault_rules({"mode": mode, "endpoints": ["submit"]})
    with pytest.raises(SubmitOutcomeUnknown) as excinfo:
        submit(SegmindHook(), api)
    message = str(excinfo.value)
    assert "may have accepted and billed" in message
    assert "resubmit_on_unknown_outcome" in message
    assert excinfo.value.outcome_unknown
    assert api.stats()["submissions_total"] == 1


def test_a_gateway_error_on_a_submit_is_an_unknown_outcome_too(api):
    api.set_fault_rules({"mode": "gateway", "endpoints": ["submit"], "status": 504})
    with pytest.raises(SubmitOutcomeUnknown):
        submit(SegmindHook(), api)
    assert api.stats()["faults_by_mode"] == {"gateway": 1}  # one POST, no second


def test_with_the_opt_in_a_lost_answer_is_resubmitted_and_paid_twice_on_purpose(api, connect):
    connect(api.url, resubmit_on_unknown_outcome=True)
    api.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["submit"], "times": 1})
    submission = submit(SegmindHook(), api)
    assert SegmindHook().get_status(submission.request_id)["status"] in ("QUEUED", "PROCESSING", "COMPLETED")
    assert api.stats()["submissions_total"] == 2


def test_the_operator_argument_overrides_the_connection(api):
    api.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["submit"], "times": 1})
    submit(SegmindHook(), api, resubmit_on_unknown_outcome=True)
    assert api.stats()["submissions_total"] == 2


def test_a_v1_run_whose_answer_is_lost_is_not_run_again(api):
    api.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["v1"]})
    with pytest.raises(SubmitOutcomeUnknown):
        SegmindHook().run_sync("muscle-surge", {"image_url": api.sample_url()})
    assert api.stats()["v1_runs_total"] == 1


def test_a_status_poll_whose_answer_is_lost_is_retried_as_before(api):
    request_id = submit(SegmindHook(), api).request_id
    api.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["status"], "times": 2})
    assert SegmindHook().get_status(request_id)["request_id"] == request_id
    assert api.stats()["submissions_total"] == 1


# --- 3. every wait has a bound that holds during a call ----------------------------------------------------
def test_a_dripping_status_answer_ends_within_the_call_budget(api, either_hook):
    request_id = submit(SegmindHook(), api).request_id
    api.set_fault_rules({"mode": "drip", "endpoints": ["status"], "interval": 1.0})
    took, err = elapsed(lambda: either_hook.get_status(request_id))
    assert isinstance(err, TransportError)
    assert "time limit" in str(err)
    assert took < WELL_WITHIN  # the budget is 4 s; the drip alone would take minutes


def test_a_dripping_submit_answer_is_an_unknown_outcome_bounded_in_time(api):
    api.set_fault_rules({"mode": "drip", "endpoints": ["submit"], "interval": 1.0})
    took, err = elapsed(lambda: submit(SegmindHook(), api))
    assert isinstance(err, SubmitOutcomeUnknown)
    assert took < WELL_WITHIN
    assert api.stats()["submissions_total"] == 1


async def test_the_trigger_yields_its_event_within_the_deadline_while_the_server_drips(api, connect):
    connect(api.url, timeout=30, max_retry_seconds=120)  # generous per-call limits
    request_id = submit(SegmindHook(), api).request_id
    api.set_fault_rules({"mode": "drip", "endpoints": ["status"], "interval": 1.0})
    deadline = time.time() + 3
    trigger = SegmindRequestTrigger(
        request_id, deadline=deadline, schedule=PollSchedule.fixed(0.5).to_dict(), submitted_at=time.time()
    )
    (event,) = [e.payload async for e in trigger.run()]
    assert event["status"] == "timeout"
    assert request_id in event["message"]
    assert time.time() <= deadline + LAST_LOOK_SECONDS + OUTER_GRACE_SECONDS + 2


def test_the_blocking_wait_ends_at_its_deadline_while_the_server_drips(api, connect):
    connect(api.url, timeout=30, max_retry_seconds=120)
    hook = SegmindHook()
    request_id = submit(hook, api).request_id
    api.set_fault_rules({"mode": "drip", "endpoints": ["status"], "interval": 1.0})
    took, err = elapsed(lambda: hook.wait_for_request(request_id, timeout=3, schedule=PollSchedule.fixed(0.5)))
    assert isinstance(err, InferenceTimeout)
    assert took < 3 + LAST_LOOK_SECONDS + 2


def test_a_dripping_download_is_cut_and_leaves_no_file(api, hostile_server, tmp_path):
    server = hostile_server(b"\x00" * 4096, drip=0.5, headers={"Content-Type": "video/mp4"})
    took, err = elapsed(lambda: SegmindHook().download(server.url + "/v.mp4", tmp_path / "v.mp4"))
    assert isinstance(err, TransportError)
    assert took < WELL_WITHIN
    assert list(tmp_path.iterdir()) == []


def test_a_download_sends_no_key(api, hostile_server, tmp_path):
    server = hostile_server(b"video bytes", headers={"Content-Type": "video/mp4"})
    SegmindHook().download(server.url + "/v.mp4", tmp_path / "v.mp4")
    assert KEY.encode() not in b"".join(server.requests)


def test_a_50_mb_status_answer_is_not_read_whole(api):
    request_id = submit(SegmindHook(), api).request_id
    api.set_fault_rules({"mode": "oversize", "endpoints": ["status"], "bytes": 50_000_000})
    with pytest.raises(UnreadableAnswer, match="larger than"):
        SegmindHook().get_status(request_id)


def test_leftover_part_files_of_a_killed_download_are_removed_by_the_next(api, hostile_server, tmp_path):
    (tmp_path / ".v.mp4.0123abcd.part").write_bytes(b"half a video from a killed worker")
    server = hostile_server(b"video bytes", headers={"Content-Type": "video/mp4"})
    SegmindHook().download(server.url + "/v.mp4", tmp_path / "v.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


# --- 4. secrets stay secret when the server echoes them ------------------------------------------------------
def test_an_echoed_key_never_reaches_an_exception_or_a_log(api, caplog, capsys):
    api.set_fault_rules({"mode": "echo_key", "endpoints": ["status"], "bytes": 5_000_000})
    with pytest.raises(ServerError) as excinfo:
        SegmindHook().get_status("r1")
    text = str(excinfo.value) + repr(vars(excinfo.value))
    out, err = capsys.readouterr()
    for where in (text, caplog.text, out, err):
        assert KEY not in where
    assert len(str(excinfo.value)) < 5000  # quoted, not copied: the body was 5 MB


async def test_an_echoed_key_never_reaches_a_trigger_event(api):
    request_id = submit(SegmindHook(), api).request_id
    api.set_fault_rules({"mode": "echo_key", "endpoints": ["status"], "bytes": 5_000_000})
    trigger = SegmindRequestTrigger(
        request_id, deadline=time.time() + 30, schedule=PollSchedule.fixed(0.5).to_dict(), submitted_at=time.time()
    )
    (event,) = [e.payload async for e in trigger.run()]
    stored = json.dumps(event)
    assert event["status"] == "gave_up"
    assert KEY not in stored
    assert len(stored) < 20_000


# --- 5. no raw Python exception escapes ---------------------------------------------------------------------
def test_deeply_nested_json_is_an_answer_not_a_recursion_error(hostile_server, connect):
    server = hostile_server(b"[" * 200_000, status="500 Internal Server Error")
    connect(server.url)
    with pytest.raises(ServerError):
        SegmindHook().get_status("r1")


def test_an_absurd_rate_limit_reset_time_is_ignored_not_raised(hostile_server, connect):
    headers = {"x-rate-limit-reset-at-utc": "99999999999999"}
    server = hostile_server(b'{"error": "slow down"}', status="429 Too Many Requests", headers=headers)
    connect(server.url)
    with pytest.raises(RateLimited) as excinfo:
        SegmindHook().get_status("r1")
    assert excinfo.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "expected", "attempts"),
    [("408 Request Timeout", TransportError, FAST_RETRY["max_retries"] + 1), ("501 Not Implemented", SegmindError, 1)],
)
def test_408_is_retried_and_501_is_not(hostile_server, connect, status, expected, attempts):
    server = hostile_server(b'{"error": "x"}', status=status)
    connect(server.url)
    with pytest.raises(expected) as excinfo:
        SegmindHook().get_status("r1")
    assert excinfo.value.retryable == (attempts > 1)
    assert server.connections == attempts


def test_a_proxy_page_on_a_poll_is_a_glitch_the_wait_rides_out(api):
    hook = SegmindHook()
    request_id = submit(hook, api).request_id
    api.set_fault_rules({"mode": "not_json", "endpoints": ["status"], "times": 2})
    result = hook.wait_for_request(request_id, timeout=30, schedule=PollSchedule.fixed(0.5))
    assert result["status"] == "COMPLETED"


def test_the_blocking_wait_gives_up_with_the_same_class_as_the_trigger(api):
    hook = SegmindHook()
    request_id = submit(hook, api).request_id
    api.set_fault_rules({"mode": "error", "endpoints": ["status"], "status": 502})
    with pytest.raises(PollingGaveUp):
        hook.wait_for_request(request_id, timeout=60, schedule=PollSchedule.fixed(0.5))


def test_a_tls_certificate_error_is_permanent_with_a_clear_message(connect):
    import ssl
    import tempfile
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    _self_signed_certificate(folder / "c.pem", folder / "k.pem")
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "c.pem", folder / "k.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connect(f"https://127.0.0.1:{server.server_port}")
        with pytest.raises(SegmindError) as excinfo:
            SegmindHook().get_status("r1")
    finally:
        server.shutdown()
    assert type(excinfo.value).__name__ == "CertificateError"
    assert not excinfo.value.retryable
    assert "certificate" in str(excinfo.value).lower()


def test_a_redirect_is_refused_even_to_the_same_origin(api):
    api.set_fault_rules({"mode": "redirect", "endpoints": ["status"], "location": api.url + "/v2/requests/x/status"})
    with pytest.raises(RedirectRefused):
        SegmindHook().get_status("r1")
    assert api.stats()["faults_by_mode"] == {"redirect": 1}


def _self_signed_certificate(cert_path: Any, key_path: Any) -> None:
    """A certificate no client trusts: what a TLS-intercepting proxy or a wrong host presents."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
