"""The emulator's runtime fault switch (``POST /_emulator/faults``), over real HTTP.

Why it exists: "the status endpoint was down for a while, then came back" is the scenario that
separates *polling gave up* from *the job failed*. ``--fault-rate`` is fixed for the server's life
and hits every endpoint, so a test could not heal the API without restarting the server and
losing its jobs; the switch changes which endpoints fail, and how often, while jobs keep running.
"""

from __future__ import annotations

import urllib.error
from typing import Any

import pytest
import requests

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.emulator.testing import EmulatorProcess

KEY = "test-key"


def _get_status(emu: EmulatorProcess, request_id: str) -> str:
    """The status answer code as a string, or ``"dropped"`` when the connection was cut."""
    try:
        resp = requests.get(
            emu.url + contract.status_path(request_id),
            headers={contract.API_KEY_HEADER: KEY, "Connection": "close"},
            timeout=10,
        )
    except requests.ConnectionError:
        return "dropped"
    return str(resp.status_code)


def test_fault_switch_targets_endpoints_at_run_time_and_heals(emulator_factory: Any) -> None:
    emu = emulator_factory(job_seconds=0.3, seed=7)
    headers = {contract.API_KEY_HEADER: KEY}
    assert requests.get(emu.url + "/_emulator/faults", timeout=10).json() == {"rate": 0.0, "endpoints": None}

    assert emu.set_faults(1.0, ["status"]) == {"rate": 1.0, "endpoints": ["status"]}
    # Submits and results still work while every status call fails.
    sub = requests.post(
        emu.url + contract.v2_submit_path(contract.MUSCLE_SURGE),
        json={"image_url": emu.sample_url()},
        headers=headers,
        timeout=10,
    )
    assert sub.status_code == 200, sub.text
    request_id = sub.json()["request_id"]
    outcomes = [_get_status(emu, request_id) for _ in range(12)]
    assert set(outcomes) <= {"500", "502", "504", "dropped"} and len(outcomes) == 12
    assert requests.get(emu.url + contract.result_path(request_id), headers=headers, timeout=10).status_code == 200

    stats = emu.stats()
    assert stats["faults_injected"] == 12 and stats["status_polls"] == 0  # a faulted call never reached the job
    assert stats["submissions_total"] == 1 and stats["faults"] == {"rate": 1.0, "endpoints": ["status"]}

    # Healed: the same job answers again, and it kept running meanwhile.
    assert emu.set_faults(0) == {"rate": 0.0, "endpoints": None}
    status = requests.get(emu.url + contract.status_path(request_id), headers=headers, timeout=10)
    assert status.status_code == 200 and status.json()["status"] in {"PROCESSING", "COMPLETED"}
    assert emu.stats()["faults_injected"] == 12

    # Invalid settings are refused and leave the switch alone; reset restores the start-up setting.
    for bad in ({"rate": 2}, {"rate": "1"}, {"rate": 1, "endpoints": ["nope"]}, {"rate": 1, "endpoints": []}, [1]):
        with pytest.raises(urllib.error.HTTPError) as err:
            emu._call("POST", "/_emulator/faults", bad)
        assert err.value.code == 400
    emu.set_faults(0.5)
    assert emu.stats()["faults"] == {"rate": 0.5, "endpoints": None}
    emu.reset()
    assert emu.stats()["faults"] == {"rate": 0.0, "endpoints": None}
