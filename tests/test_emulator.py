"""End-to-end tests of the Segmind emulator: real HTTP against a real emulator subprocess.

Each test states one documented behaviour of the API (see ``/work/shared/segmind-api.md`` and
:mod:`airflow_provider_muscle_surge.contract`) and checks it the way a client would observe it,
plus the emulator's own counters where they prove what the client did.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
import requests
from hostile import Answer, HostileServer
from PIL import Image
from segmind_emulator.testing import EmulatorProcess
from support import TEST_KEY as KEY

from airflow_provider_muscle_surge import contract

TERMINAL = {"COMPLETED", "FAILED"}


# --- helpers ---------------------------------------------------------------------------------------
def call(
    emu: EmulatorProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    hdrs = {contract.API_KEY_HEADER: key} if key is not None else {}
    hdrs.update(headers or {})
    if raw is not None:
        return requests.request(method, emu.url + path, data=raw, headers=hdrs, timeout=30)
    return requests.request(method, emu.url + path, json=body, headers=hdrs, timeout=30)


def submit(emu: EmulatorProcess, params: dict[str, Any], model: str = contract.MUSCLE_SURGE) -> str:
    resp = call(emu, "POST", contract.v2_submit_path(model), params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    sub = contract.Submission.parse(body)
    assert sub.status_url == emu.url + contract.status_path(sub.request_id)
    assert sub.response_url == emu.url + contract.result_path(sub.request_id)
    return sub.request_id


def wait_states(emu: EmulatorProcess, request_id: str, timeout: float = 20.0, interval: float = 0.05) -> list[str]:
    """Poll the status endpoint until a terminal state; returns every state seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = call(emu, "GET", contract.status_path(request_id))
        state = resp.json()["status"]
        assert resp.status_code == (422 if state == "FAILED" else 200), resp.text
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in TERMINAL:
            return seen
        time.sleep(interval)
    raise AssertionError(f"{request_id} not terminal after {timeout}s; states {seen}")


def run_to_result(emu: EmulatorProcess, params: dict[str, Any], model: str = contract.MUSCLE_SURGE) -> dict[str, Any]:
    request_id = submit(emu, params, model)
    states = wait_states(emu, request_id)
    assert states[-1] == "COMPLETED", states
    resp = call(emu, "GET", contract.result_path(request_id))
    assert resp.status_code == 200
    return resp.json()


def read_video(data: bytes) -> tuple[float, int, int, list[np.ndarray]]:
    """(duration in s, width, height, decoded RGB frames) of an MP4."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        duration = float(container.duration / av.time_base)
        return duration, stream.width, stream.height, frames


def png_data_url(img: Image.Image) -> str:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


# --- states, result, video -------------------------------------------------------------------------
def test_v2_request_goes_queued_processing_completed(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    resp = call(emu, "POST", "/v2/muscle-surge", {"image_url": emu.sample_url("athlete-1")})
    assert resp.json()["status"] == "QUEUED"  # QUEUED for the first 5-10 % of the render time
    request_id = resp.json()["request_id"]
    states = wait_states(emu, request_id, interval=0.02)
    assert states in (["QUEUED", "PROCESSING", "COMPLETED"], ["PROCESSING", "COMPLETED"])
    body = call(emu, "GET", contract.result_path(request_id)).json()
    assert contract.completed_result(body, request_id)["output"].endswith(".mp4")
    assert body["request_id"] == request_id
    metrics = body["metrics"]
    assert 0.5 < metrics["render_seconds"] < 2.5
    assert metrics["height"] == 540 and metrics["duration_seconds"] == 5.0
    stats = emu.stats()
    assert stats["submissions"] == {"muscle-surge": 1} and stats["submissions_total"] == 1
    assert stats["results"] == 1 and stats["status_polls"] >= 2
    assert stats["jobs"]["COMPLETED"] == 1


def test_result_before_completion_has_state_but_no_output(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    request_id = submit(emu, {"image_url": emu.sample_url("athlete-1")})
    resp = call(emu, "GET", contract.result_path(request_id))
    assert resp.status_code == 200
    assert resp.json()["status"] in ("QUEUED", "PROCESSING") and "output" not in resp.json()


#: name -> (sample image, parameters, expected frame size). Rendered together once per module:
#: the emulator renders them concurrently, which keeps this file fast.
VIDEO_CASES: dict[str, tuple[str, dict[str, Any], tuple[int, int]]] = {
    "portrait-540p": ("athlete-1", {"duration": 5, "quality": "540p"}, (360, 540)),
    "landscape-8s-360p": ("athlete-2", {"duration": 8, "quality": "360p", "seed": 42}, (540, 360)),
    "square-720p-fast-comic": (
        "athlete-3",
        {"duration": 5, "quality": "720p", "motion_mode": "fast", "style": "comic"},
        (720, 720),
    ),
    "tall-1080p-cyberpunk": ("athlete-4", {"duration": 5, "quality": "1080p", "style": "cyberpunk"}, (608, 1080)),
    "normal-360p": ("athlete-3", {"quality": "360p", "motion_mode": "normal", "seed": 7}, (360, 360)),
    "fast-360p": ("athlete-3", {"quality": "360p", "motion_mode": "fast", "seed": 7}, (360, 360)),
}


@pytest.fixture(scope="module")
def rendered(emulator: EmulatorProcess) -> dict[str, tuple[dict[str, Any], bytes]]:
    """Every VIDEO_CASES job, submitted at once: name -> (result body, MP4 bytes)."""
    ids = {
        name: submit(emulator, {"image_url": emulator.sample_url(sample), **params})
        for name, (sample, params, _) in VIDEO_CASES.items()
    }
    out = {}
    for name, request_id in ids.items():
        assert wait_states(emulator, request_id)[-1] == "COMPLETED"
        body = call(emulator, "GET", contract.result_path(request_id)).json()
        video = requests.get(body["output"], timeout=30)  # no key: output URLs are public like a CDN's
        assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"
        out[name] = (body, video.content)
    return out


@pytest.mark.parametrize("case", sorted(VIDEO_CASES))
def test_output_is_a_playable_mp4_with_the_surge_effect(
    rendered: dict[str, tuple[dict[str, Any], bytes]], case: str
) -> None:
    _, params, size = VIDEO_CASES[case]
    body, data = rendered[case]
    expected_seconds = params.get("duration", 5)
    duration, width, height, frames = read_video(data)
    assert abs(duration - expected_seconds) <= 1 / 24 + 1e-6
    assert len(frames) == expected_seconds * 24
    assert (width, height) == size and width % 2 == 0
    assert f"{height}p" == params["quality"]  # the quality names the frame height
    assert (body["metrics"]["width"], body["metrics"]["height"]) == size
    # The effect: frames differ over time, clearly more than encoder noise.
    first = frames[0].astype(np.int16)
    diffs = [float(np.abs(f.astype(np.int16) - first).mean()) for f in frames[::6]]
    assert max(diffs) > 8.0, diffs


def test_fast_motion_pumps_more_often_than_normal(rendered: dict[str, tuple[dict[str, Any], bytes]]) -> None:
    """motion_mode=fast beats twice as often: more brightness peaks over the same 5 s."""

    def peaks(case: str) -> int:
        _, _, _, frames = read_video(rendered[case][1])
        level = np.array([f.mean() for f in frames])
        smooth = np.convolve(level, np.ones(3) / 3, mode="same")
        top = smooth[1:-1]
        return int(np.sum((top > smooth[:-2]) & (top >= smooth[2:]) & (top > level.mean())))

    assert peaks("fast-360p") > peaks("normal-360p") >= 3


def test_render_is_deterministic_per_seed(tmp_path: Path) -> None:
    """Same bytes for the same input and seed (what makes the render cache sound); another seed differs."""
    from segmind_emulator import render

    image = render.render_sample("athlete-3")
    kw: dict[str, Any] = {"duration": 5, "quality": "360p", "motion_mode": "normal", "style": None}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        render.render_video(image, seed=seed, dest=tmp_path / f"{name}.mp4", **kw)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert (tmp_path / "a.mp4").read_bytes() != (tmp_path / "c.mp4").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]  # no temp files left


def test_render_times_spread_realistically() -> None:
    import random

    from segmind_emulator.state import draw_render_seconds

    rng = random.Random(3)
    draws = np.array([draw_render_seconds(rng, 45.5, 0.06) for _ in range(20_000)])
    assert 45.0 < draws.mean() < 46.8 and 2.5 < draws.std() < 5.5
    tail = np.mean(draws > 45.5 * 1.3)
    assert 0.005 < tail < 0.04  # the ~3 % slow tail
    assert min(draw_render_seconds(rng, 0.01, 0.5) for _ in range(100)) >= 0.05


# --- client errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"image_url": "SAMPLE", "duration": 7}, "duration"),
        ({"image_url": "SAMPLE", "quality": "4k"}, "quality"),
        ({"image_url": "SAMPLE", "duration": 8, "motion_mode": "fast"}, "motion_mode"),
        ({"image_url": "SAMPLE", "seed": 0}, "seed"),
        ({"duration": 5}, "image_url"),
        ({"image_url": "ftp://example.com/a.png"}, "image_url"),
    ],
)
def test_bad_parameters_answer_400_naming_the_field(
    fresh_emulator: EmulatorProcess, params: dict[str, Any], field: str
) -> None:
    """The emulator refuses what the provider's contract refuses (tests/test_rules_agree.py checks that
    at large), with its own detail naming the field, and the 400 maps to the provider's BadRequest."""
    emu = fresh_emulator
    params = {k: emu.sample_url() if v == "SAMPLE" else v for k, v in params.items()}
    with pytest.raises(contract.InvalidParameter, match=f"invalid {field}="):
        contract.validate_payload(contract.MUSCLE_SURGE, params)
    for path in (contract.v2_submit_path(contract.MUSCLE_SURGE), contract.v1_path(contract.MUSCLE_SURGE)):
        resp = call(emu, "POST", path, params)
        assert resp.status_code == 400 and list(resp.json()) == ["error"]
        assert resp.json()["error"].startswith(f"invalid {field}="), resp.json()
        with pytest.raises(contract.BadRequest, match=f"invalid {field}="):
            contract.check_answer(resp.status_code, resp.json(), resp.headers)
    stats = emu.stats()
    assert stats["submissions_total"] == 0 and stats["v1_runs"] == {} and stats["credits_charged"] == 0
    assert stats["responses"] == {"400": 2}


def test_malformed_bodies_answer_400_and_wrong_content_type_406(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    path = contract.v2_submit_path(contract.MUSCLE_SURGE)
    bad_json = call(emu, "POST", path, raw=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    empty = call(emu, "POST", path, raw=b"", headers={"Content-Type": "application/json"})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    not_object = call(emu, "POST", path, [1, 2])
    assert not_object.status_code == 400 and "JSON object" in not_object.json()["error"]
    form = call(emu, "POST", path, raw=b"image_url=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 406 and "Content-Type" in form.json()["error"]
    assert emu.stats()["submissions_total"] == 0


def test_missing_or_wrong_key_is_401_before_anything_else(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    sub_path = contract.v2_submit_path(contract.MUSCLE_SURGE)
    for key in (None, "wrong-key-123"):
        for method, path, body in [
            ("POST", sub_path, {"image_url": emu.sample_url()}),
            ("POST", sub_path, {"duration": 99}),  # invalid too: auth is checked first
            ("GET", contract.status_path("no-such-id"), None),  # unknown id: 401, not 404
            ("GET", contract.result_path("no-such-id"), None),
            ("POST", contract.UPLOAD_PATH, {"data_urls": []}),
            ("POST", contract.v1_path(contract.MUSCLE_SURGE), {"image_url": emu.sample_url()}),
        ]:
            resp = call(emu, method, path, body, key=key)
            assert resp.status_code == 401, (key, path, resp.text)
            assert resp.json()["error"]
            assert "wrong-key-123" not in resp.text  # keys are never echoed in full
    assert emu.stats()["submissions_total"] == 0


def test_unknown_request_id_and_unknown_endpoint_are_404(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    for path in (contract.status_path("nope"), contract.result_path("nope")):
        resp = call(emu, "GET", path)
        assert resp.status_code == 404
        assert resp.json() == {"error": "Request nope not found"}
    other = call(emu, "GET", "/v3/whatever")
    assert other.status_code == 404 and "error" in other.json()


# --- FAILED ---------------------------------------------------------------------------------------
def _failing_inputs(emu: EmulatorProcess) -> list[tuple[str, str]]:
    not_an_image = "data:image/png;base64," + base64.b64encode(b"this is not a png at all" * 10).decode()
    return [
        ("https://images.example.com/rai-block/person.png", "responsible-AI"),
        (not_an_image, "could not be decoded"),
        (emu.url + "/_emulator/files/missing-file.png", "HTTP 404"),
        ("http://127.0.0.1:9/unreachable.png", "Could not fetch"),
    ]


def test_blocked_or_unreadable_input_fails_with_422_on_status_and_result(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    ids = [(submit(emu, {"image_url": url}), detail) for url, detail in _failing_inputs(emu)]
    for request_id, detail in ids:
        states = wait_states(emu, request_id)
        assert states[-1] == "FAILED" and "COMPLETED" not in states
        for path in (contract.status_path(request_id), contract.result_path(request_id)):
            resp = call(emu, "GET", path)
            assert resp.status_code == 422
            body = resp.json()
            assert body["status"] == "FAILED" and detail in body["error"], body
            assert contract.check_answer(422, body, resp.headers, failed_is_answer=True) == body
    stats = emu.stats()
    assert stats["jobs"]["FAILED"] == len(ids)
    assert stats["credits_charged"] == len(ids)  # an accepted v2 submit is billed even if it fails


def test_failures_become_visible_early(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    request_id = submit(emu, {"image_url": "https://example.com/rai-block.png"})
    running = submit(emu, {"image_url": emu.sample_url(), "quality": "360p"})  # submitted after it
    assert wait_states(emu, request_id, interval=0.02)[-1] == "FAILED"
    # 10-20 % of a ~1 s render, not the full render: a job submitted after it is still running.
    assert call(emu, "GET", contract.status_path(running)).json()["status"] in ("QUEUED", "PROCESSING")
    assert emu.stats()["jobs"]["COMPLETED"] == 0


def test_v1_failure_is_422_and_not_billed(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    before = emu.stats()["credits"]["te…ey"]
    resp = call(emu, "POST", contract.v1_path(contract.MUSCLE_SURGE), {"image_url": "https://x.test/rai-block.jpg"})
    assert resp.status_code == 422 and "responsible-AI" in resp.json()["error"]
    assert emu.stats()["credits"]["te…ey"] == before


# --- retention, credits, rate limit, faults -------------------------------------------------------
def test_records_outputs_and_uploads_expire_after_retention(emulator_factory: Any, tmp_path: Path) -> None:
    """A request record, its output file and the uploads all go when the retention passes: the
    record answers 404, the URLs 404, and the files are deleted from disk without anyone asking."""
    retention = 6.0  # room for a slow encode on a busy machine: the output must exist before it expires
    stale = tmp_path / "outputs" / "left-from-a-previous-run.mp4"  # a reused --data-dir
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old video")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    emu = emulator_factory(job_seconds=0.2, retention_seconds=retention, data_dir=tmp_path)
    upload = call(emu, "POST", contract.UPLOAD_PATH, {"data_urls": [png_data_url(Image.new("RGB", (64, 96), "red"))]})
    uploaded = upload.json()["file_urls"][0]
    request_id = submit(emu, {"image_url": uploaded, "quality": "360p"})
    submitted = time.monotonic()
    assert wait_states(emu, request_id)[-1] == "COMPLETED"
    output = call(emu, "GET", contract.result_path(request_id)).json()["output"]
    on_disk = [tmp_path / "outputs" / f"{request_id}.mp4", tmp_path / "files" / uploaded.rsplit("/", 1)[1]]
    assert time.monotonic() - submitted < retention, "the render took longer than the retention; raise it"
    assert all(path.is_file() for path in on_disk)
    assert requests.get(output, timeout=10).status_code == 200 and requests.get(uploaded, timeout=10).status_code == 200
    assert requests.get(emu.url + "/_emulator/outputs/" + stale.name, timeout=10).status_code == 404
    assert not stale.exists()

    # The periodic sweep deletes them; nobody requests the URLs meanwhile.
    while any(path.exists() for path in on_disk) and time.monotonic() - submitted < retention + 10:
        time.sleep(0.1)
    assert not any(path.exists() for path in on_disk)
    assert time.monotonic() - submitted >= retention  # and not before their time
    for path in (contract.status_path(request_id), contract.result_path(request_id)):
        resp = call(emu, "GET", path)
        assert resp.status_code == 404 and resp.json()["error"] == f"Request {request_id} not found"
        with pytest.raises(contract.RequestExpired, match="1 hour"):
            contract.check_answer(resp.status_code, resp.json(), resp.headers, request_id=request_id)
    for url in (output, uploaded):
        gone = requests.get(url, timeout=10)
        assert gone.status_code == 404 and "No such file" in gone.json()["error"]
    assert call(emu, "GET", contract.status_path(request_id), key="bad-key-000").status_code == 401
    assert len(list((tmp_path / "renders").glob("*.mp4"))) == 1  # the internal render cache is not a public file


def test_credits_run_out_with_406_and_4xx_is_not_billed(emulator_factory: Any) -> None:
    emu = emulator_factory(credits=2, api_keys=["key-one-111", "key-two-222"])
    good = {"image_url": emu.sample_url(), "quality": "360p"}
    assert call(emu, "POST", "/v2/muscle-surge", {"duration": 6}, key="key-one-111").status_code == 400
    assert call(emu, "POST", "/v2/muscle-surge", good, key="key-one-111").status_code == 200
    assert call(emu, "POST", "/v1/muscle-surge", good, key="key-one-111").status_code == 200
    refused = call(emu, "POST", "/v2/muscle-surge", good, key="key-one-111")
    assert refused.status_code == 406 and refused.json()["error"].startswith("Insufficient credits")
    assert "key-one-111" not in refused.text
    assert call(emu, "POST", "/v2/muscle-surge", good, key="key-two-222").status_code == 200  # per key
    stats = emu.stats()
    assert stats["credits"] == {"ke…11": 0, "ke…22": 1}
    assert stats["submissions_total"] == 2 and stats["v1_runs"] == {"muscle-surge": 1}
    assert stats["responses"] == {"200": 3, "400": 1, "406": 1}
    emu.reset()
    assert emu.stats()["credits"] == {"ke…11": 2, "ke…22": 2}


def test_rate_limit_answers_429_with_both_reset_headers(emulator_factory: Any) -> None:
    emu = emulator_factory(rate_limit=2)
    answers = [call(emu, "GET", contract.status_path("any-id")) for _ in range(6)]
    codes = [a.status_code for a in answers]
    assert codes[0] == 404 and 429 in codes
    limited = next(a for a in answers if a.status_code == 429)
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    reset_at = limited.headers["x-rate-limit-reset-at-utc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", reset_at), reset_at
    reset = datetime.strptime(reset_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    wait = (reset - datetime.now(timezone.utc)).total_seconds()
    assert -0.5 < wait <= 0.6  # a token every 0.5 s at 2 requests/s
    err = contract.error_for_status(429, limited.json(), retry_after=float(retry_after))
    assert isinstance(err, contract.RateLimited) and err.retryable
    time.sleep(max(0.0, wait) + 0.05)
    assert call(emu, "GET", contract.status_path("any-id")).status_code == 404  # honouring the hint works
    stats = emu.stats()
    assert stats["rate_limited"] == codes.count(429) and stats["responses"]["429"] == codes.count(429)
    assert emu.stop() == 0  # SIGTERM is a clean exit


def test_fault_injection_happens_before_processing(emulator_factory: Any) -> None:
    emu = emulator_factory(fault_rate=1.0, seed=99)
    outcomes: list[str] = []
    for _ in range(24):
        try:
            resp = requests.post(
                emu.url + "/v2/muscle-surge",
                json={"image_url": emu.sample_url()},
                headers={contract.API_KEY_HEADER: KEY, "Connection": "close"},
                timeout=10,
            )
            assert resp.status_code in (500, 502, 504) and resp.json()["error"]
            outcomes.append(str(resp.status_code))
        except requests.ConnectionError:
            outcomes.append("dropped")
    stats = emu.stats()  # the /_emulator endpoints are never faulted
    assert stats["faults_injected"] == 24
    assert stats["dropped_connections"] == outcomes.count("dropped") > 0
    assert {o for o in outcomes if o != "dropped"} <= {"500", "502", "504"} and len(set(outcomes)) >= 3
    assert stats["submissions_total"] == 0 and stats["credits_charged"] == 0 and sum(stats["jobs"].values()) == 0
    assert sum(stats["responses"].values()) == 24 - stats["dropped_connections"]
    # A sample image is still fetchable: faults hit API endpoints only.
    assert requests.get(emu.sample_url(), timeout=10).status_code == 200


# --- input images over loopback -------------------------------------------------------------------
@pytest.fixture(scope="module")
def noise_png_server() -> Iterator[tuple[str, bytes]]:
    """A loopback HTTP server with a ~1.7 MB PNG of noise (it cannot compress): ``/sized.png`` sends a
    Content-Length, ``/streamed.png`` none (the body ends when the connection closes)."""
    pixels = np.random.default_rng(0).integers(0, 256, (700, 800, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    png = out.getvalue()
    assert len(png) > 1_600_000

    server = HostileServer().route("sized", r"GET /sized\.png", Answer(png, content_type="image/png"))
    server.route("streamed", r"GET /streamed\.png", Answer(png, content_type="image/png", until_close=True))
    yield server.url, png
    server.close()


def test_a_large_image_is_read_whole(fresh_emulator: EmulatorProcess, noise_png_server: tuple[str, bytes]) -> None:
    base = noise_png_server[0]
    ids = [
        submit(fresh_emulator, {"image_url": f"{base}/{name}", "quality": "360p"})
        for name in ("sized.png", "streamed.png")
    ]
    for request_id in ids:
        assert wait_states(fresh_emulator, request_id, timeout=90)[-1] == "COMPLETED"
        metrics = call(fresh_emulator, "GET", contract.result_path(request_id)).json()["metrics"]
        assert (metrics["width"], metrics["height"]) == (412, 360)  # 800x700 at 360p
    assert fresh_emulator.stats()["image_fetches"] == 2


def test_an_image_over_the_cap_fails_the_job(emulator_factory: Any, noise_png_server: tuple[str, bytes]) -> None:
    base, png = noise_png_server
    emu = emulator_factory(max_image_bytes=1_000_000)
    over = [f"{base}/sized.png", f"{base}/streamed.png", "data:image/png;base64," + base64.b64encode(png).decode()]
    ids = [submit(emu, {"image_url": url, "quality": "360p"}) for url in over]
    under = submit(emu, {"image_url": emu.sample_url(), "quality": "360p"})
    for request_id in ids:
        assert wait_states(emu, request_id)[-1] == "FAILED"
        error = call(emu, "GET", contract.result_path(request_id)).json()["error"]
        assert "larger than the 1000000-byte limit" in error, error
    assert wait_states(emu, under)[-1] == "COMPLETED"
    assert emu.stats()["jobs"] == {"QUEUED": 0, "PROCESSING": 0, "COMPLETED": 1, "FAILED": 3}


def test_deeply_nested_json_is_a_400_like_any_bad_json(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    json_type = {"Content-Type": "application/json"}
    bodies = [
        b"[" * 100_000,
        b'{"image_url": ' + b"[" * 100_000 + b"}",
        b'{"image_url": ' + b"[" * 990 + b"]" * 990 + b"}",
    ]
    paths = [
        contract.v2_submit_path(contract.MUSCLE_SURGE),
        contract.v1_path(contract.MUSCLE_SURGE),
        "/v2/sdxl1.0-txt2img",
        contract.UPLOAD_PATH,
    ]
    for path in paths:
        for raw in bodies:
            resp = call(emu, "POST", path, raw=raw, headers=json_type)
            assert resp.status_code == 400 and resp.headers["Content-Type"].startswith("application/json"), resp.text
            assert resp.json()["error"], (path, raw[:20])
    faults = call(emu, "POST", "/_emulator/faults", raw=bodies[0], headers=json_type)
    assert faults.status_code == 400 and "nested too deeply" in faults.json()["error"]
    stats = emu.stats()
    assert stats["responses"] == {"400": len(paths) * len(bodies)} and stats["submissions_total"] == 0


def test_admin_endpoints_need_a_valid_key(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    hostile = {"rules": [{"mode": "error", "status": "drop"}]}
    for method, path, body in [
        ("GET", "/_emulator/stats", None),
        ("POST", "/_emulator/reset", None),
        ("GET", "/_emulator/faults", None),
        ("POST", "/_emulator/faults", hostile),
        ("GET", "/_emulator/health", None),
    ]:
        for key in (None, "wrong-key-123"):
            refused = call(emu, method, path, body, key=key)
            assert refused.status_code == 401 and refused.json()["error"], (path, key)
            assert "wrong-key-123" not in refused.text
        allowed = call(emu, method, path, {"rules": []} if body else None)
        assert allowed.status_code == 200, (path, allowed.text)
    assert emu.stats()["faults"] == {"rules": []}  # the refused POST changed nothing
    # Public URLs stay keyless, like a CDN's: samples and the files clients are handed.
    assert requests.get(emu.url + "/_emulator/samples", timeout=10).status_code == 200
    assert requests.get(emu.sample_url(), timeout=10).status_code == 200


# --- uploads, v1, other models --------------------------------------------------------------------
def test_upload_returns_urls_serving_the_same_bytes(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    img = Image.new("RGB", (320, 480), (200, 120, 90))
    raw = base64.b64decode(png_data_url(img).split(",", 1)[1])
    jpeg = io.BytesIO()
    img.save(jpeg, format="JPEG")
    urls = [png_data_url(img), "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode()]
    resp = call(emu, "POST", contract.UPLOAD_PATH, {"data_urls": urls})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["message"] and len(body["file_urls"]) == 2
    assert requests.get(body["file_urls"][0], timeout=10).content == raw
    assert requests.get(body["file_urls"][1], timeout=10).content == jpeg.getvalue()
    result = run_to_result(emu, {"image_url": body["file_urls"][0], "quality": "360p"})
    assert result["metrics"]["width"] == 240
    bad = call(emu, "POST", contract.UPLOAD_PATH, {"data_urls": ["not-a-data-url"]})
    assert bad.status_code == 400
    assert emu.stats()["uploads"] == 2 and emu.stats()["upload_requests"] == 1


def test_v1_muscle_surge_answers_the_mp4_itself(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    started = time.monotonic()
    resp = call(
        emu,
        "POST",
        contract.v1_path(contract.MUSCLE_SURGE),
        {"image_url": emu.sample_url("athlete-2"), "duration": 8, "quality": "360p"},
    )
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "video/mp4"
    assert time.monotonic() - started >= 0.8  # it waited for the render time
    duration, width, height, _ = read_video(resp.content)
    assert abs(duration - 8) <= 1 / 24 and (width, height) == (540, 360)
    assert emu.stats()["v1_runs"] == {"muscle-surge": 1} and emu.stats()["submissions_total"] == 0


def test_other_models_produce_a_png_from_the_prompt(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    prompt = {"prompt": "a bodybuilder flexing on a beach", "negative_prompt": "blur"}
    first = call(emu, "POST", "/v1/sdxl1.0-txt2img", prompt)
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(first.content)).size == (512, 768)
    assert call(emu, "POST", "/v1/sdxl1.0-txt2img", prompt).content == first.content  # deterministic
    assert call(emu, "POST", "/v1/sdxl1.0-txt2img", {"prompt": "other"}).content != first.content
    assert call(emu, "POST", "/v1/sdxl1.0-txt2img", {"steps": 20}).status_code == 400
    # v2 works for them too, and the PNG chains into muscle-surge.
    body = run_to_result(emu, prompt, model="sdxl1.0-txt2img")
    assert body["output"].endswith(".png")
    assert requests.get(body["output"], timeout=10).content == first.content
    video = run_to_result(emu, {"image_url": body["output"], "quality": "360p"})
    assert video["metrics"]["width"] == 240
    stats = emu.stats()
    assert stats["v1_runs"] == {"sdxl1.0-txt2img": 3}
    assert stats["submissions"] == {"sdxl1.0-txt2img": 1, "muscle-surge": 1}


def test_samples_are_served_in_several_aspect_ratios(emulator: EmulatorProcess) -> None:
    index = requests.get(emulator.url + "/_emulator/samples", timeout=10).json()
    sizes = set()
    for name, info in index.items():
        img = Image.open(io.BytesIO(requests.get(info["url"], timeout=10).content))
        assert img.size == (info["width"], info["height"]), name
        sizes.add(img.size)
    assert {(512, 768), (768, 512), (600, 600)} <= sizes
    assert requests.get(emulator.url + "/_emulator/samples/nope.png", timeout=10).status_code == 404


# --- the official SDK, unchanged -------------------------------------------------------------------
def test_official_segmind_sdk_works_unchanged(fresh_emulator: EmulatorProcess) -> None:
    from segmind import SegmindClient
    from segmind.v2 import InferenceFailed

    emu = fresh_emulator
    client = SegmindClient(api_key=KEY, base_url=emu.url + "/v1")
    job = client.submit_async("muscle-surge", image_url=emu.sample_url("athlete-3"), quality="360p", seed=5)
    result = job.wait(timeout=30, interval=0.2)
    assert result["status"] == "COMPLETED" and result["output"].endswith(".mp4") and "metrics" in result
    sync = client.run_sync("muscle-surge", image_url=emu.sample_url("athlete-3"), quality="360p", seed=5)
    assert sync.headers["content-type"] == "video/mp4" and sync.content[4:8] == b"ftyp"
    with pytest.raises(InferenceFailed) as failed:
        client.submit_async("muscle-surge", image_url="https://x.test/rai-block.png").wait(timeout=30, interval=0.1)
    assert "responsible-AI" in failed.value.detail
    from segmind.exceptions import SegmindError

    with pytest.raises(SegmindError) as bad:
        client.submit_async("muscle-surge", image_url=emu.sample_url(), duration=9)
    assert bad.value.status == 400 and "duration" in bad.value.detail
    stats = emu.stats()
    assert stats["submissions_total"] == 2 and stats["v1_runs"] == {"muscle-surge": 1}
    assert stats["render_cache_hits"] >= 1  # the v1 run reused the v2 render of the same input


# --- load -----------------------------------------------------------------------------------------
def test_two_hundred_concurrent_clients_are_served_without_blocking(fresh_emulator: EmulatorProcess) -> None:
    emu = fresh_emulator
    images = [emu.sample_url(f"athlete-{i}") for i in range(1, 5)]

    async def one(session: aiohttp.ClientSession, index: int, latencies: list[float]) -> str:
        params = {"image_url": images[index % 4], "quality": "360p"}
        async with session.post(emu.url + "/v2/muscle-surge", json=params) as resp:
            assert resp.status == 200
            sub = contract.Submission.parse(await resp.json())
        while True:
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            async with session.get(sub.status_url) as resp:
                state = (await resp.json())["status"]
            latencies.append(time.monotonic() - t0)
            if state in TERMINAL:
                break
        async with session.get(sub.response_url) as resp:
            body = await resp.json()
        return body["status"]

    async def main() -> tuple[list[str], list[float], float]:
        latencies: list[float] = []
        started = time.monotonic()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers={contract.API_KEY_HEADER: KEY}, connector=connector) as session:
            states = await asyncio.gather(*(one(session, i, latencies) for i in range(200)))
        return states, latencies, time.monotonic() - started

    states, latencies, elapsed = asyncio.run(main())
    assert states == ["COMPLETED"] * 200
    assert elapsed < 15, elapsed
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.25 and latencies[-1] < 3.0, (
        latencies[len(latencies) // 2],
        latencies[-1],
    )
    stats = emu.stats()
    assert stats["submissions_total"] == 200 and stats["jobs"]["COMPLETED"] == 200
    assert stats["renders"] <= 4  # cached by (image, parameters): four images, four encodes at most
    assert stats["responses"]["200"] == 200 + stats["status_polls"] + stats["results"]


# --- process, CLI and helper ----------------------------------------------------------------------
def test_helper_connection_forms_and_lifecycle(emulator_factory: Any) -> None:
    emu = emulator_factory(api_keys=["first-key-1", "second-key-2"])
    assert json.loads(emu.connection_json()) == {"conn_type": "segmind", "host": emu.url, "password": "first-key-1"}
    assert json.loads(emu.connection_json("second-key-2"))["password"] == "second-key-2"
    assert emu.connection_uri() == f"segmind://:first-key-1@127.0.0.1:{emu.port}/http"
    assert call(emu, "GET", contract.status_path("x"), key="second-key-2").status_code == 404
    assert call(emu, "GET", "/_emulator/stats", key="second-key-2").status_code == 200  # any configured key
    emu.kill()
    assert not emu.running
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.url + "/_emulator/health", timeout=5)


def test_segmind_conn_sets_the_airflow_connection(segmind_conn: EmulatorProcess) -> None:
    import os

    assert json.loads(os.environ["AIRFLOW_CONN_SEGMIND_DEFAULT"])["host"] == segmind_conn.url


def test_package_import_is_light() -> None:
    """Importing the package (and the test helper) must not pull in the renderer or the server."""
    code = (
        "import sys, segmind_emulator as e, segmind_emulator.testing;"
        "heavy = {'av', 'PIL', 'numpy', 'aiohttp'} & set(sys.modules); assert not heavy, heavy;"
        "print(e.EmulatorConfig().port)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "8765", out.stderr


def test_the_emulator_shares_no_code_with_the_provider_or_airflow(tmp_path: Path) -> None:
    """Every module of ``segmind_emulator`` (and serving one request) imports nothing from Airflow or the
    provider, and neither distribution depends on the other: the emulator checks clients from outside."""
    code = """
import asyncio, importlib, pkgutil, sys
import segmind_emulator
for info in pkgutil.walk_packages(segmind_emulator.__path__, "segmind_emulator."):
    importlib.import_module(info.name)
from aiohttp.test_utils import TestClient, TestServer
from segmind_emulator import EmulatorConfig, build_app

async def one_request():
    async with TestClient(TestServer(build_app(EmulatorConfig(job_seconds=0.05)))) as client:
        image = str(client.make_url("/_emulator/samples/athlete-1.png"))
        body = {"image_url": image, "quality": "360p"}
        resp = await client.post("/v1/muscle-surge", json=body, headers={"x-api-key": "emulator-key"})
        assert resp.status == 200 and (await resp.read())[4:8] == b"ftyp", resp.status

asyncio.run(one_request())
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("airflow", "airflow_provider_muscle_surge"))
assert not bad, bad
print("clean", len([m for m in sys.modules if m.startswith("segmind_emulator")]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("clean"), out.stdout + out.stderr
    assert int(out.stdout.split()[1]) >= 12  # every module was really imported

    from importlib.metadata import requires

    emulator_needs = {re.split(r"[<>=!~; \[]", r)[0].lower() for r in requires("segmind-emulator") or []}
    assert emulator_needs == {"aiohttp", "av", "pillow", "numpy"}
    provider_needs = {re.split(r"[<>=!~; \[]", r)[0].lower() for r in requires("airflow-provider-muscle-surge") or []}
    assert not provider_needs & {"av", "pillow", "numpy", "segmind-emulator"}, provider_needs


def test_cli_flags_map_to_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    from segmind_emulator.__main__ import build_parser, config_from_args
    from segmind_emulator.config import EmulatorConfig

    helptext = build_parser().format_help()
    for flag in (
        "--host",
        "--port",
        "--job-seconds",
        "--retention-seconds",
        "--api-key",
        "--credits",
        "--rate-limit",
        "--fault-rate",
        "--data-dir",
        "--job-spread",
        "--seed",
        "--max-image-bytes",
    ):
        assert flag in helptext
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults == EmulatorConfig() and defaults.api_keys == ("emulator-key",) and defaults.port == 8765
    assert defaults.job_seconds == 45.5 and defaults.retention_seconds == contract.RETENTION_SECONDS
    argv = [
        "--port",
        "0",
        "--api-key",
        "a-key-1",
        "--api-key",
        "b-key-2",
        "--credits",
        "3",
        "--rate-limit",
        "5",
        "--fault-rate",
        "0.25",
        "--job-seconds",
        "0.5",
        "--job-spread",
        "0.1",
        "--seed",
        "9",
        "--max-image-bytes",
        "1000",
    ]
    config = config_from_args(build_parser().parse_args(argv))
    assert config.api_keys == ("a-key-1", "b-key-2") and config.credits == 3 and config.rate_limit == 5
    assert config.max_image_bytes == 1000
    assert (config.port, config.fault_rate, config.job_seconds, config.job_spread, config.seed) == (
        0,
        0.25,
        0.5,
        0.1,
        9,
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--fault-rate", "1.5"])
    assert "fault-rate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rate_limit"):
        EmulatorConfig(rate_limit=0)
