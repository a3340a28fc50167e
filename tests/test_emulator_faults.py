"""The emulator's runtime fault switch (``POST /_emulator/faults``), over real HTTP and raw sockets.

Why it exists: the provider is hardened against a hostile network, and each hostile behaviour must
be reproducible on demand, while jobs keep running. Two families are checked differently:

- faults *before* processing (``error``, ``redirect``, ``echo_key``, ``not_json``, ``gateway``) must
  leave no trace: no job, no credit spent;
- faults *after* processing (``accept_then_drop``, ``cut_body``, ``drip``, ``oversize``) must leave
  the job accepted and billed in ``/_emulator/stats`` although the client never got a usable
  answer -- that is what lets provider tests prove whether a client paid twice.

Raw sockets are used where an HTTP library would hide what was on the wire (half a body, one byte
at a time).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from segmind_emulator.testing import EmulatorProcess
from support import TEST_KEY as KEY

from airflow_provider_muscle_surge import contract

CREDITS = 50
HEADERS = {contract.API_KEY_HEADER: KEY}


@pytest.fixture(scope="module")
def faulty() -> Iterator[EmulatorProcess]:
    """One emulator for this module, so a fault left behind by a failing test cannot reach other modules."""
    with EmulatorProcess(api_key=KEY, job_seconds=0.3, job_spread=0.02, credits=CREDITS, seed=5) as emu:
        yield emu


@pytest.fixture
def emu(faulty: EmulatorProcess) -> EmulatorProcess:
    faulty.reset()  # no rules, zero counters, full credits
    return faulty


def _submit(emu: EmulatorProcess, **kw: Any) -> requests.Response:
    return requests.post(
        emu.url + contract.v2_submit_path(contract.MUSCLE_SURGE),
        json={"image_url": emu.sample_url(), "quality": "360p"},
        headers={**HEADERS, "Connection": "close"},
        timeout=30,
        **kw,
    )


def _get_status(emu: EmulatorProcess, request_id: str) -> str:
    """The status answer code as a string, or ``"dropped"`` when the connection was cut."""
    try:
        resp = requests.get(
            emu.url + contract.status_path(request_id), headers={**HEADERS, "Connection": "close"}, timeout=10
        )
    except requests.ConnectionError:
        return "dropped"
    return str(resp.status_code)


def _raw_request(emu: EmulatorProcess, method: str, path: str, body: bytes = b"") -> socket.socket:
    """Send one HTTP/1.1 request on a fresh socket and return the socket, before reading anything."""
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=30)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{emu.port}\r\n{contract.API_KEY_HEADER}: {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and whatever body bytes came along with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the headers ended: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
    return int(lines[0].split()[1]), headers, rest


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _submit_body() -> bytes:
    return json.dumps({"image_url": "https://images.example.com/athlete.png", "quality": "360p"}).encode()


def _nothing_accepted(stats: dict[str, Any]) -> bool:
    return stats["submissions_total"] == 0 and stats["credits_charged"] == 0 and stats["credits"] == {"te…ey": CREDITS}


# --- the switch itself ---------------------------------------------------------------------------
def test_rate_form_targets_endpoints_at_run_time_and_heals(emu: EmulatorProcess) -> None:
    """The original body ``{"rate", "endpoints"}`` still works: one ``error`` rule, errors or drops."""
    assert requests.get(emu.url + "/_emulator/faults", headers=HEADERS, timeout=10).json() == {"rules": []}
    status_only = {"mode": "error", "endpoints": ["status"], "rate": 1.0, "times": None, "status": None}
    assert emu.set_faults(1.0, ["status"]) == {"rules": [status_only]}
    # Submits and results still work while every status call fails.
    sub = _submit(emu)
    assert sub.status_code == 200, sub.text
    request_id = sub.json()["request_id"]
    outcomes = [_get_status(emu, request_id) for _ in range(12)]
    assert set(outcomes) <= {"500", "502", "504", "dropped"} and len(outcomes) == 12
    assert requests.get(emu.url + contract.result_path(request_id), headers=HEADERS, timeout=10).status_code == 200

    stats = emu.stats()
    assert stats["faults_injected"] == 12 and stats["status_polls"] == 0  # a faulted call never reached the job
    assert stats["faults_by_mode"] == {"error": 12} and stats["dropped_connections"] == outcomes.count("dropped")
    assert stats["submissions_total"] == 1 and stats["faults"] == {"rules": [status_only]}

    # Healed: the same job answers again, and it kept running meanwhile.
    assert emu.set_faults(0) == {"rules": []}
    status = requests.get(emu.url + contract.status_path(request_id), headers=HEADERS, timeout=10)
    assert status.status_code == 200 and status.json()["status"] in {"PROCESSING", "COMPLETED"}
    assert emu.stats()["faults_injected"] == 12


@pytest.mark.parametrize(
    "bad",
    [
        {"rate": 2},
        {"rate": "1"},
        {"rate": 1, "endpoints": ["nope"]},
        {"rate": 1, "endpoints": []},
        [1],
        {"mode": "explode"},
        {"mode": "error", "status": 404},
        {"mode": "error", "times": 0},
        {"mode": "error", "rate": True},
        {"mode": "redirect"},  # location is required
        {"mode": "redirect", "location": "/relative/path"},
        {"mode": "redirect", "location": "http://127.0.0.2:1/x", "status": 200},
        {"mode": "gateway", "status": 500},
        {"mode": "drip", "interval": 0},
        {"mode": "oversize", "bytes": -1},
        {"mode": "not_json", "bytes": 10},  # a parameter of another mode: a typo must not pass silently
        {"rules": [{"mode": "error"}], "rate": 1},
        {"rules": {"mode": "error"}},
    ],
)
def test_invalid_settings_are_refused_and_leave_the_switch_alone(emu: EmulatorProcess, bad: Any) -> None:
    before = emu.set_fault_rules({"mode": "gateway", "endpoints": ["upload"]})
    with pytest.raises(urllib.error.HTTPError) as err:
        emu._call("POST", "/_emulator/faults", bad)
    assert err.value.code == 400 and json.loads(err.value.read())["error"]
    assert emu._call("GET", "/_emulator/faults") == before


def test_reset_restores_the_start_up_fault_rate(emulator_factory: Any) -> None:
    emu = emulator_factory(fault_rate=0.25)
    start_up = {"rules": [{"mode": "error", "endpoints": None, "rate": 0.25, "times": None, "status": None}]}
    assert emu.stats()["faults"] == start_up
    emu.set_fault_rules({"mode": "not_json"})
    assert emu.stats()["faults"]["rules"][0]["mode"] == "not_json"
    emu.reset()
    assert emu.stats()["faults"] == start_up


def test_first_matching_rule_wins_and_times_spends_a_rule(emu: EmulatorProcess) -> None:
    shown = emu.set_fault_rules(
        {"mode": "gateway", "endpoints": ["status"], "times": 2},
        {"mode": "error", "status": 502, "endpoints": ["status", "submit"]},
    )
    assert [(r["mode"], r["times"]) for r in shown["rules"]] == [("gateway", 2), ("error", None)]
    answers = [requests.get(emu.url + contract.status_path("x"), headers=HEADERS, timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [502, 502, 502]
    assert [a.headers["Content-Type"].split(";")[0] for a in answers] == ["text/html", "text/html", "application/json"]
    assert [(r["mode"], r["times"]) for r in emu.fault_rules()] == [("gateway", 0), ("error", None)]
    # Endpoints outside every rule are untouched.
    assert requests.get(emu.url + contract.result_path("x"), headers=HEADERS, timeout=10).status_code == 404
    stats = emu.stats()
    assert stats["faults_by_mode"] == {"gateway": 2, "error": 1} and stats["faults_injected"] == 3
    assert stats["responses"] == {"502": 3, "404": 1}
    # One rule posted directly is the same as a list of one; {"rules": []} and {"rate": 0} turn all off.
    one = {"mode": "not_json", "endpoints": ["result"], "times": 3}
    assert emu._call("POST", "/_emulator/faults", one) == emu.set_fault_rules(one)
    assert emu._call("POST", "/_emulator/faults", {"rules": []}) == {"rules": []}
    emu.set_fault_rules(one)
    assert emu._call("POST", "/_emulator/faults", {"rate": 0}) == {"rules": []}


# --- faults before processing: nothing accepted, nothing billed -----------------------------------
def test_error_mode_can_force_one_status_or_a_drop(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "error", "status": 504, "endpoints": ["submit"], "times": 1})
    forced = _submit(emu)
    assert forced.status_code == 504 and "Gateway timeout" in forced.json()["error"]
    emu.set_fault_rules({"mode": "error", "status": "drop", "endpoints": ["submit"]})
    with pytest.raises(requests.ConnectionError):
        _submit(emu)
    stats = emu.stats()
    assert _nothing_accepted(stats) and stats["dropped_connections"] == 1 and stats["responses"] == {"504": 1}


def test_redirect_answers_the_location_before_processing(emu: EmulatorProcess) -> None:
    elsewhere = f"http://127.0.0.2:{emu.port}/v2/muscle-surge"
    emu.set_fault_rules({"mode": "redirect", "location": elsewhere, "endpoints": ["submit"]})
    moved = _submit(emu, allow_redirects=False)
    assert moved.status_code == 307 and moved.headers["Location"] == elsewhere
    emu.set_fault_rules({"mode": "redirect", "location": elsewhere, "status": 308})
    assert requests.get(emu.url + contract.status_path("x"), headers=HEADERS, allow_redirects=False).status_code == 308
    stats = emu.stats()
    assert _nothing_accepted(stats) and stats["status_polls"] == 0
    assert stats["faults_by_mode"] == {"redirect": 2} and stats["responses"] == {"307": 1, "308": 1}


def test_echo_key_quotes_the_sent_key_in_a_huge_error(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "echo_key", "endpoints": ["submit"]})
    resp = _submit(emu)
    assert resp.status_code == 500 and resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert f"invalid key {KEY} for POST /v2/muscle-surge" in body["error"]
    assert 4_900_000 <= len(resp.content) <= 5_100_000 and len(body["detail"]) > 4_000_000
    # Any key is echoed, also one the server would refuse: the proxy answers before auth.
    emu.set_fault_rules({"mode": "echo_key", "status": 403, "bytes": 20_000})
    canary = "sk-canary-0123456789"
    other = requests.get(emu.url + contract.status_path("x"), headers={contract.API_KEY_HEADER: canary}, timeout=10)
    assert other.status_code == 403 and canary in other.json()["error"] and 19_000 <= len(other.content) <= 21_000
    assert _nothing_accepted(emu.stats())


def test_not_json_is_a_proxy_page_on_a_2xx(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "not_json", "endpoints": ["submit", "status"]})
    for resp in (_submit(emu), requests.get(emu.url + contract.status_path("x"), headers=HEADERS, timeout=10)):
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
        assert resp.text == "<html>proxy error</html>"
    stats = emu.stats()
    assert _nothing_accepted(stats) and stats["status_polls"] == 0 and stats["faults_by_mode"] == {"not_json": 2}


@pytest.mark.parametrize(("rule", "status"), [({}, 502), ({"status": 504}, 504)])
def test_gateway_is_an_html_5xx_page(emu: EmulatorProcess, rule: dict[str, Any], status: int) -> None:
    emu.set_fault_rules({"mode": "gateway", **rule})
    resp = _submit(emu)
    assert resp.status_code == status and resp.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{status} " in resp.text
    assert _nothing_accepted(emu.stats())


# --- faults after processing: accepted and billed, the answer lost --------------------------------
def test_accept_then_drop_bills_a_job_the_client_never_hears_of(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["submit"], "times": 1})
    with pytest.raises(requests.ConnectionError):
        _submit(emu)
    stats = emu.stats()
    assert stats["submissions_total"] == 1 and stats["credits_charged"] == 1 and stats["credits"] == {"te…ey": 49}
    assert stats["faults_by_mode"] == {"accept_then_drop": 1} and stats["dropped_connections"] == 1
    assert stats["responses"] == {}  # no status line was ever sent
    assert sum(stats["jobs"].values()) == 1  # the job lives and renders
    # times=1: the rule is spent, the next submit is answered normally and billed too.
    assert emu.fault_rules()[0]["times"] == 0
    again = _submit(emu)
    assert again.status_code == 200 and contract.Submission.parse(again.json())
    assert emu.stats()["submissions_total"] == 2 and emu.stats()["credits"] == {"te…ey": 48}


def test_accept_then_drop_on_v1_runs_the_job_then_drops(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["v1"]})
    with pytest.raises(requests.ConnectionError):
        requests.post(
            emu.url + contract.v1_path(contract.MUSCLE_SURGE),
            json={"image_url": emu.sample_url(), "quality": "360p"},
            headers=HEADERS,
            timeout=30,
        )
    stats = emu.stats()
    assert stats["v1_runs_total"] == 1 and stats["credits_charged"] == 1 and stats["credits"] == {"te…ey": 49}


def test_cut_body_sends_the_real_length_then_half_the_body(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "cut_body", "endpoints": ["submit"]})
    sock = _raw_request(emu, "POST", contract.v2_submit_path(contract.MUSCLE_SURGE), _submit_body())
    with sock:
        status, headers, rest = _read_head(sock)
        body = rest + _read_to_eof(sock)
    length = int(headers["content-length"])
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert len(body) == length // 2 and body.startswith(b'{"request_id": "')
    # An HTTP client sees a broken body, and the job is accepted and billed all the same.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _submit(emu)
    stats = emu.stats()
    assert stats["submissions_total"] == 2 and stats["credits"] == {"te…ey": 48}
    assert stats["faults_by_mode"] == {"cut_body": 2} and stats["responses"] == {"200": 2}


def test_drip_sends_headers_then_one_byte_per_interval(emu: EmulatorProcess) -> None:
    interval, wanted = 0.25, 4
    emu.set_fault_rules({"mode": "drip", "interval": interval, "endpoints": ["submit"]})
    started = time.monotonic()
    sock = _raw_request(emu, "POST", contract.v2_submit_path(contract.MUSCLE_SURGE), _submit_body())
    with sock:
        status, headers, received = _read_head(sock)
        assert status == 200 and int(headers["content-length"]) > 100 and received == b""
        reads = 0
        while len(received) < wanted:
            received += sock.recv(65536)
            reads += 1
        elapsed = time.monotonic() - started
    # The real answer's first bytes, in order, one per interval: N bytes take at least N intervals.
    assert received == b'{"re' and reads >= 2
    assert elapsed >= wanted * interval * 0.999
    # The client hung up: the server notices on its next byte, without a traceback, and serves on.
    time.sleep(3 * interval)
    assert "Traceback" not in emu.stderr()
    stats = emu.stats()
    assert stats["submissions_total"] == 1 and stats["credits"] == {"te…ey": 49}
    assert stats["faults_by_mode"] == {"drip": 1} and stats["responses"] == {"200": 1}


def test_oversize_streams_a_huge_valid_json_answer(emu: EmulatorProcess) -> None:
    request_id = _submit(emu).json()["request_id"]
    emu.set_fault_rules({"mode": "oversize", "endpoints": ["status"], "bytes": 2_000_000, "times": 1})
    resp = requests.get(emu.url + contract.status_path(request_id), headers=HEADERS, timeout=30)
    assert resp.status_code == 200 and len(resp.content) == 2_000_000
    body = resp.json()
    assert body["request_id"] == request_id and body["status"] in {"QUEUED", "PROCESSING", "COMPLETED"}
    assert set(body) == {"request_id", "status", "model", "created_at", "padding"}
    # The default is about 50 MB, streamed; a real 404 answer keeps its keys but is served as 200.
    emu.set_fault_rules({"mode": "oversize", "endpoints": ["result"]})
    with requests.get(emu.url + contract.result_path("unknown"), headers=HEADERS, stream=True, timeout=60) as big:
        assert big.status_code == 200 and big.headers["Content-Length"] == "50000000"
        first = next(big.iter_content(64))
        total = len(first) + sum(len(chunk) for chunk in big.iter_content(1 << 20))
    assert first.startswith(b'{"error": "Request unknown not found", "padding": "') and total == 50_000_000
    stats = emu.stats()
    assert stats["faults_by_mode"] == {"oversize": 2} and stats["status_polls"] == 1 and stats["results"] == 1


def test_admin_endpoints_are_never_faulted(emu: EmulatorProcess) -> None:
    emu.set_fault_rules({"mode": "error", "status": "drop"})
    assert emu.stats()["faults_injected"] == 0
    emu.reset()
    assert requests.get(emu.sample_url(), timeout=10).status_code == 200
