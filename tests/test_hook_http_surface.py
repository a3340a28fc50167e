"""HttpHook's public methods on SegmindHook follow the Segmind rules, not HttpHook's.

``run``, ``run_with_advanced_retry`` and ``check_response`` are inherited from the http provider;
on SegmindHook they go through the same URL check, time limit, retry policy and error map as
every other call (against a real emulator process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from segmind_emulator.testing import EmulatorProcess

from airflow_provider_muscle_surge.exceptions import AuthenticationError, RedirectRefused, TransportError
from airflow_provider_muscle_surge.exceptions import RequestExpired as Expired
from airflow_provider_muscle_surge.hooks.segmind import SegmindHook


@pytest.fixture
def emu(fresh_emulator: EmulatorProcess, segmind_connection: Callable[..., Any]) -> EmulatorProcess:
    segmind_connection(fresh_emulator, max_retries=2)
    return fresh_emulator


def test_run_posts_to_any_model_path_and_returns_the_response(emu):
    response = SegmindHook().run("/v2/muscle-surge", data={"image_url": emu.sample_url()})
    assert isinstance(response, requests.Response)
    assert response.json()["request_id"]
    assert emu.stats()["submissions_total"] == 1


def test_run_maps_errors_like_every_other_call(emu):
    with pytest.raises(Expired):
        SegmindHook(method="GET").run("/v2/requests/no-such-id/status")


def test_a_post_through_run_is_not_repeated_when_its_answer_is_lost(emu):
    emu.set_fault_rules({"mode": "accept_then_drop", "endpoints": ["submit"]})
    with pytest.raises(TransportError) as excinfo:
        SegmindHook().run("/v2/muscle-surge", data={"image_url": emu.sample_url()})
    assert excinfo.value.outcome_unknown
    assert emu.stats()["submissions_total"] == 1


def test_run_does_not_follow_a_redirect(emu):
    emu.set_fault_rules({"mode": "redirect", "endpoints": ["status"], "location": "http://127.0.0.2:9/x"})
    with pytest.raises(RedirectRefused):
        SegmindHook(method="GET").run("/v2/requests/abc/status")


def test_run_refuses_headers_that_could_replace_the_key(emu):
    with pytest.raises(TypeError, match="headers"):
        SegmindHook(method="GET").run("/v2/requests/abc/status", headers={"x-api-key": "other"})


def test_run_with_advanced_retry_uses_the_connections_policy(emu):
    with pytest.raises(Expired):
        SegmindHook(method="GET").run_with_advanced_retry({"stop": None}, "/v2/requests/abc/status")


def test_check_response_raises_the_segmind_error(emu):
    raw = requests.get(f"{emu.url}/v2/requests/abc/status", headers={"x-api-key": "wrong"}, timeout=10)
    with pytest.raises(AuthenticationError):
        SegmindHook().check_response(raw)
