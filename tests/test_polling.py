"""When to poll, and what each status answer means: :class:`PollSchedule` and :class:`Watch`.

Both are pure (time is passed in), so every test here runs on a simulated clock: the numbers
below are computed, not timed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_muscle_surge.contract import RequestStatus
from airflow_provider_muscle_surge.exceptions import (
    InferenceFailed,
    InferenceTimeout,
    InvalidParameter,
    MalformedResponse,
)
from airflow_provider_muscle_surge.polling import (
    MIN_POLL_INTERVAL,
    PollSchedule,
    Watch,
    check_interval,
    check_timeout,
    validate_overrides,
)

# Default muscle-surge schedule: expected 45.5 s, dense window 40.95-50.05 s, first poll at 15 s.
STEADY = PollSchedule(jitter=0.0)
#: The default wait between looks inside the window (0.8 s: a median detection below the SDK's 1 s polling).
DENSE = STEADY.dense_interval
WINDOW_START = 45.5 - 4.55
WINDOW_END = 45.5 + 4.55


def poll_times(schedule: PollSchedule, until: float, rng: random.Random | None = None) -> list[float]:
    """Seconds since submit at which a waiter on ``schedule`` polls, up to ``until``."""
    t = schedule.delay(0.0, None, rng)
    times, previous = [], None
    while t <= until:
        times.append(t)
        previous = schedule.delay(t, previous, rng)
        t += previous
    return times


# --- PollSchedule shape ------------------------------------------------------------------------
def test_no_poll_before_a_third_of_the_typical_render_time():
    assert PollSchedule(jitter=0.0, expected_seconds=30.0).delay(0.0) == pytest.approx(0.33 * 30.0)


def test_the_first_look_is_never_later_than_the_ceiling():
    """A third of 45.5 s is 15.015 s; a third of a 300 s job 99 s: both capped at max_interval."""
    assert STEADY.delay(0.0) == 15.0
    assert PollSchedule(jitter=0.0, expected_seconds=300.0, max_interval=20.0).delay(0.0) == 20.0


def test_an_explicit_first_look_is_kept_even_beyond_the_ceiling():
    assert PollSchedule(jitter=0.0, first_poll_seconds=60.0).delay(0.0) == 60.0


def test_jitter_never_takes_a_wait_beyond_the_ceiling():
    schedule = PollSchedule(jitter=0.5)
    rng = random.Random(3)
    assert max(schedule.delay(500.0, 15.0, rng) for _ in range(500)) <= 15.0


def test_the_first_poll_time_can_be_set():
    assert PollSchedule(jitter=0.0, first_poll_seconds=3.0).delay(0.0) == 3.0


def test_before_the_window_polls_are_sparse_and_land_exactly_on_its_start():
    before = [t for t in poll_times(STEADY, WINDOW_START) if t < WINDOW_START - 1e-9]
    assert len(before) <= 3
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(before))
    assert WINDOW_START in [pytest.approx(t) for t in poll_times(STEADY, WINDOW_START + 0.1)]


def test_sparse_steps_never_exceed_max_interval():
    schedule = PollSchedule(jitter=0.0, expected_seconds=300.0, max_interval=15.0)
    times = poll_times(schedule, 250.0)
    assert max(b - a for a, b in itertools.pairwise(times)) <= 15.0 + 1e-9


@pytest.mark.parametrize("elapsed", [WINDOW_START, 43.0, 45.5, 48.0, WINDOW_END - 0.01])
def test_inside_the_window_around_the_typical_render_time_polls_are_dense(elapsed):
    assert STEADY.delay(elapsed, previous_delay=DENSE) == DENSE


def test_after_the_window_waits_grow_geometrically_up_to_max_interval():
    waits, previous, t = [], DENSE, WINDOW_END
    for _ in range(12):
        previous = STEADY.delay(t, previous)
        waits.append(previous)
        t += previous
    assert waits[0] == pytest.approx(DENSE * 1.5)
    assert all(b == pytest.approx(min(15.0, a * 1.5)) for a, b in itertools.pairwise(waits))
    assert waits[-1] == 15.0


def test_after_the_window_a_wait_is_never_shorter_than_the_dense_interval():
    assert STEADY.delay(WINDOW_END + 1, previous_delay=0.01) == DENSE


def test_the_window_width_can_be_set():
    schedule = PollSchedule(jitter=0.0, spread_seconds=1.0)  # window 44.5-46.5 s
    assert schedule.delay(44.0, 15.0) == pytest.approx(0.5)  # approach: lands on the window start
    assert schedule.delay(45.0, DENSE) == DENSE
    assert schedule.delay(47.0, DENSE) == pytest.approx(DENSE * 1.5)


def test_jitter_stays_within_its_bounds_and_actually_varies():
    schedule = PollSchedule(jitter=0.1)
    rng = random.Random(7)
    waits = [schedule.delay(45.0, DENSE, rng) for _ in range(2000)]
    assert min(waits) >= DENSE * 0.9
    assert max(waits) <= DENSE * 1.1
    assert max(waits) - min(waits) > 0.1


def test_a_wait_is_never_below_10_ms():
    assert PollSchedule(fixed_interval=0.0, jitter=0.0).delay(3.0) == 0.01


def test_fixed_schedule_polls_at_a_constant_interval_without_jitter():
    fixed = PollSchedule.fixed(1.0)
    assert fixed.jitter == 0.0
    assert {fixed.delay(e, p) for e in (0.0, 10.0, 45.5, 100.0, 1000.0) for p in (None, 0.5, 20.0)} == {1.0}


def test_scaled_schedule_has_the_same_shape_on_a_faster_clock():
    fast = STEADY.scaled(0.1)
    assert fast.expected_seconds == pytest.approx(4.55)
    assert fast.backoff_factor == STEADY.backoff_factor
    for elapsed, previous in [(0.0, None), (20.0, 15.0), (43.0, 0.9), (60.0, 2.0), (200.0, 15.0)]:
        assert fast.delay(elapsed * 0.1, None if previous is None else previous * 0.1) == pytest.approx(
            STEADY.delay(elapsed, previous) * 0.1
        )


def test_scaled_keeps_unset_fields_unset():
    scaled = PollSchedule().scaled(0.5)
    assert scaled.spread_seconds is None
    assert scaled.fixed_interval is None
    assert PollSchedule.fixed(2.0).scaled(0.5).fixed_interval == 1.0


def test_schedule_round_trips_through_a_plain_dict():
    schedule = PollSchedule(expected_seconds=12.0, spread_seconds=2.0, max_interval=5.0, jitter=0.2)
    data = schedule.to_dict()
    assert all(isinstance(v, (int, float, type(None))) for v in data.values())
    assert PollSchedule.from_dict(data) == schedule


def test_from_dict_ignores_keys_it_does_not_know():
    assert PollSchedule.from_dict({"dense_interval": 0.5, "from_a_newer_version": 1}) == PollSchedule(
        dense_interval=0.5
    )


def test_for_model_uses_the_models_typical_render_time():
    assert PollSchedule.for_model("muscle-surge").expected_seconds == 45.5
    assert PollSchedule.for_model("some-image-model").expected_seconds == 20.0
    assert PollSchedule.for_model("muscle-surge", expected_seconds=3.0, jitter=0.0) == PollSchedule(
        expected_seconds=3.0, jitter=0.0
    )


# --- user-supplied overrides are checked (operator/sensor poll_schedule, connection extra.poll) ----------
def test_valid_overrides_come_back_as_numbers_and_build_the_schedule_they_describe():
    overrides = {"expected_seconds": "30", "dense_interval": 2, "max_interval": 20.0, "first_poll_seconds": 0}
    checked = validate_overrides(overrides)
    assert checked == {"expected_seconds": 30.0, "dense_interval": 2.0, "max_interval": 20.0, "first_poll_seconds": 0.0}
    # An explicit expected_seconds says where to poll: it turns learning off (see test_learning.py).
    assert PollSchedule.checked("muscle-surge", overrides) == PollSchedule(**checked, learn=False)


def test_none_is_allowed_where_the_field_defaults_to_none():
    checked = validate_overrides({"spread_seconds": None, "first_poll_seconds": None, "fixed_interval": None})
    assert PollSchedule(**checked) == PollSchedule()


def test_an_unknown_field_is_refused_naming_it_and_listing_the_valid_ones():
    with pytest.raises(InvalidParameter) as info:
        validate_overrides({"dense_intreval": 0.5})
    assert info.value.field == "poll_schedule.dense_intreval"
    for name in set(PollSchedule.__dataclass_fields__) - {"render_class"}:
        assert name in info.value.rule


def test_the_render_class_is_set_by_the_provider_not_by_users():
    with pytest.raises(InvalidParameter) as info:
        validate_overrides({"render_class": "muscle-surge quality=360p"})
    assert info.value.field == "poll_schedule.render_class"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"expected_seconds": 0}, "expected_seconds"),
        ({"expected_seconds": -45.5}, "expected_seconds"),
        ({"expected_seconds": float("inf")}, "expected_seconds"),
        ({"expected_seconds": "soon"}, "expected_seconds"),
        ({"expected_seconds": None}, "expected_seconds"),
        ({"spread_seconds": -1}, "spread_seconds"),
        ({"dense_interval": 0}, "dense_interval"),
        ({"dense_interval": MIN_POLL_INTERVAL / 2}, "dense_interval"),
        ({"dense_interval": float("nan")}, "dense_interval"),
        ({"dense_interval": True}, "dense_interval"),
        ({"max_interval": [15]}, "max_interval"),
        ({"first_poll_seconds": -0.1}, "first_poll_seconds"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.0}, "jitter"),
        ({"fixed_interval": 0}, "fixed_interval"),
        ({"fixed_interval": False}, "fixed_interval"),
        ({"learn": "false"}, "learn"),
        ({"learn": 0}, "learn"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else v,
)
def test_a_field_of_the_wrong_type_or_out_of_range_is_refused_by_name(overrides, field):
    with pytest.raises(InvalidParameter) as info:
        validate_overrides(overrides)
    assert info.value.field == f"poll_schedule.{field}"
    assert str(info.value).startswith(f"invalid poll_schedule.{field}={overrides[field]!r}: ")


def test_a_ceiling_below_the_dense_interval_is_refused():
    with pytest.raises(InvalidParameter) as info:
        validate_overrides({"dense_interval": 5, "max_interval": 2})
    assert info.value.field == "poll_schedule.max_interval"
    assert "must be at least dense_interval (5)" in info.value.rule


def test_a_ceiling_below_the_default_dense_interval_is_refused_too():
    """The check is on the schedule the overrides make, defaults included, not on the overrides alone."""
    with pytest.raises(InvalidParameter, match=r"max_interval \(0.5\) must be at least dense_interval \(0.8\)"):
        validate_overrides({"max_interval": 0.5})


def test_layers_that_are_fine_alone_are_refused_together():
    """A connection's dense_interval under an operator's lower max_interval: each passes, the merge does not."""
    connection = validate_overrides({"dense_interval": 5}, source="extra.poll")
    own = validate_overrides({"max_interval": 3})
    with pytest.raises(InvalidParameter, match="must be at least dense_interval"):
        PollSchedule.checked("muscle-surge", {**connection, **own})


def test_the_source_names_where_a_bad_value_came_from():
    with pytest.raises(InvalidParameter) as info:
        validate_overrides({"dense_interval": 0}, source="extra.poll")
    assert info.value.field == "extra.poll.dense_interval"
    assert str(info.value).startswith("invalid extra.poll.dense_interval=0: ")


@pytest.mark.parametrize("overrides", ["fast", ["dense_interval", 1], 5])
def test_overrides_that_are_not_a_dict_are_refused(overrides):
    with pytest.raises(InvalidParameter) as info:
        validate_overrides(overrides, source="extra.poll")
    assert info.value.field == "extra.poll"


def test_the_interval_floor_is_inclusive_and_numeric_strings_are_read():
    assert check_interval("poll_interval", MIN_POLL_INTERVAL) == MIN_POLL_INTERVAL
    assert check_interval("poll_interval", "2.5") == 2.5
    with pytest.raises(InvalidParameter, match=f"at least {MIN_POLL_INTERVAL:g}"):
        check_interval("poll_interval", MIN_POLL_INTERVAL * 0.99)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "1e999", True, "an hour", None, timedelta(0)])
def test_a_timeout_must_be_positive_and_finite(value):
    with pytest.raises(InvalidParameter) as info:
        check_timeout("timeout", value)
    assert info.value.field == "timeout"


def test_a_timeout_may_be_seconds_a_numeric_string_or_a_timedelta():
    assert [check_timeout("timeout", v) for v in (90, 0.5, "600", timedelta(minutes=2))] == [90.0, 0.5, 600.0, 120.0]


# --- the point of it all: far fewer calls than the SDK's fixed 1 s polling --------------------------
def simulate(schedule: PollSchedule, render_seconds: float) -> tuple[int, float]:
    """Drive a real Watch on a simulated clock; return (status calls, detection delay)."""
    watch = Watch("sim", submitted_at=0.0, deadline=3600.0, schedule=schedule)
    now = watch.first_delay(now=0.0)
    while True:
        state = "COMPLETED" if now >= render_seconds else "PROCESSING"
        step = watch.step({"status": state}, now=now)
        if step.done:
            return watch.polls, now - render_seconds
        now += step.delay


@pytest.fixture
def seeded_jitter(monkeypatch):
    """Make the schedule's jitter reproducible: the simulation gives the same numbers every run."""
    monkeypatch.setattr("airflow_provider_muscle_surge.polling.random", random.Random(20250601))


def test_adaptive_schedule_makes_at_most_a_quarter_of_the_calls_of_fixed_1s_polling(seeded_jitter):
    rng = random.Random(45)
    renders = [max(1.0, rng.gauss(45.5, 2.7)) for _ in range(1000)]
    adaptive = [simulate(PollSchedule.for_model("muscle-surge"), r) for r in renders]
    fixed = [simulate(PollSchedule.fixed(1.0), r) for r in renders]
    adaptive_calls = sum(calls for calls, _ in adaptive)
    fixed_calls = sum(calls for calls, _ in fixed)
    assert fixed_calls / len(renders) == pytest.approx(46, abs=1.0)  # the SDK's ~46 calls per job
    assert adaptive_calls <= fixed_calls / 4
    # ... and the answer is still noticed about as fast: under a second late on average.
    assert sum(delay for _, delay in adaptive) / len(renders) < 1.0


def test_a_very_long_job_is_noticed_within_max_interval(seeded_jitter):
    _, delay = simulate(PollSchedule.for_model("muscle-surge"), 900.0)
    assert delay <= 15.0 * 1.1


# --- Watch.step: what each status answer means ------------------------------------------------------
def watch(deadline: float = 600.0, schedule: PollSchedule = STEADY) -> Watch:
    return Watch(request_id="req-abc", submitted_at=1000.0, deadline=1000.0 + deadline, schedule=schedule)


def test_a_pending_status_says_wait_and_reports_whether_the_state_changed():
    w = watch()
    first = w.step({"status": "QUEUED"}, now=1015.0)
    again = w.step({"status": "QUEUED"}, now=1030.0)
    moved = w.step({"status": "PROCESSING"}, now=1041.0)
    assert (first.changed, again.changed, moved.changed) == (True, False, True)
    assert not moved.done
    assert moved.status is RequestStatus.PROCESSING
    assert moved.delay == STEADY.delay(41.0, again.delay)
    assert w.polls == 3


def test_completed_stops_the_wait():
    step = watch().step({"status": "COMPLETED", "output": "https://cdn/v.mp4"}, now=1046.0)
    assert step.done
    assert step.status is RequestStatus.COMPLETED


def test_failed_raises_inference_failed_with_the_servers_detail():
    w = watch()
    with pytest.raises(InferenceFailed) as excinfo:
        w.step({"status": "FAILED", "error": "responsible-AI block: nudity"}, now=1016.0)
    assert "responsible-AI block: nudity" in str(excinfo.value)
    assert excinfo.value.detail == "responsible-AI block: nudity"
    assert excinfo.value.request_id == "req-abc"
    assert w.polls == 1


@pytest.mark.parametrize("body", [{"status": "DONE"}, {}, "PROCESSING", None])
def test_an_unknown_state_is_malformed_never_still_pending(body):
    with pytest.raises(MalformedResponse, match="req-abc"):
        watch().step(body, now=1015.0)


def test_the_wait_never_sleeps_past_the_deadline():
    step = watch(deadline=20.0).step({"status": "PROCESSING"}, now=1016.0)
    assert step.delay == pytest.approx(4.0)


def drive_until_timeout(w: Watch, status: Callable[[float], str]) -> tuple[list[float], InferenceTimeout]:
    """Poll like a hook does (first_delay, then step.delay) until the Watch gives up."""
    now = w.submitted_at + w.first_delay(now=w.submitted_at)
    polls = []
    with pytest.raises(InferenceTimeout) as excinfo:
        while True:
            polls.append(now)
            now += w.step({"status": status(now)}, now=now).delay
    return polls, excinfo.value


def test_past_the_deadline_the_wait_raises_timeout_naming_the_request_id():
    w = watch(deadline=60.0)
    _, err = drive_until_timeout(w, lambda now: "PROCESSING")
    assert err.request_id == "req-abc"
    assert "req-abc" in str(err)
    assert "PROCESSING" in str(err)
    assert err.elapsed_s == pytest.approx(60.0)


@pytest.mark.parametrize("deadline", [5.0, 16.0, 44.0, 61.3, 300.0])
def test_exactly_one_poll_happens_at_the_deadline_and_none_after(deadline):
    w = watch(deadline=deadline, schedule=PollSchedule())
    polls, _ = drive_until_timeout(w, lambda now: "QUEUED")
    at_or_after = [t for t in polls if t >= w.deadline - 1e-9]
    assert at_or_after == [pytest.approx(w.deadline)]


def test_a_job_finishing_in_the_last_interval_is_completed_not_timed_out():
    w = watch(deadline=30.0)
    step = w.step({"status": "PROCESSING"}, now=1028.0)
    assert step.delay == pytest.approx(2.0)
    assert w.step({"status": "COMPLETED"}, now=1030.0).done


def test_first_delay_skips_the_time_the_job_cannot_be_done():
    assert watch(schedule=PollSchedule(jitter=0.0, expected_seconds=30.0)).first_delay(now=1000.0) == pytest.approx(
        0.33 * 30.0
    )


def test_first_delay_is_zero_when_the_deadline_already_passed():
    assert watch(deadline=10.0).first_delay(now=1020.0) == 0.0


def test_a_restarted_waiter_keeps_the_original_clock():
    """The deadline is absolute: a Watch rebuilt later (triggerer restart) does not start over."""
    rebuilt = watch(deadline=60.0)
    step: Any = rebuilt.step({"status": "PROCESSING"}, now=1059.5)
    assert step.delay == pytest.approx(0.5)
    with pytest.raises(InferenceTimeout):
        rebuilt.step({"status": "PROCESSING"}, now=1060.0)
