"""A schedule that learns: each render class's time, learned from the completions this process sees.

Most tests drive a real :class:`Watch` on a simulated clock (the numbers are computed, not timed);
the last ones run real jobs on the emulator, whose render time depends on the quality
(``--job-seconds-for``), and real waits through both hooks.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_muscle_surge import learning
from airflow_provider_muscle_surge.learning import MAX_SAMPLES, RENDER_TIMES, RenderTimes
from airflow_provider_muscle_surge.models import render_class
from airflow_provider_muscle_surge.models.muscle_surge import validate_muscle_surge
from airflow_provider_muscle_surge.polling import PollSchedule, Watch

CLASS = "muscle-surge duration=5 motion_mode=normal quality=720p"
OTHER = "muscle-surge duration=8 motion_mode=normal quality=360p"
CEILING = PollSchedule().max_interval


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    """Every test starts knowing nothing (the store is per process, and so shared by tests too)."""
    RENDER_TIMES.clear()
    yield
    RENDER_TIMES.clear()


@pytest.fixture(autouse=True)
def seeded_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airflow_provider_muscle_surge.polling.random", random.Random(20261130))


@dataclass
class Job:
    """One simulated wait: how many status calls it made, how late it noticed, its longest wait."""

    polls: int
    latency: float
    waits: list[float] = field(default_factory=list)


def run_job(
    schedule: PollSchedule,
    render: float,
    *,
    queued: float = 0.0,
    store: RenderTimes = RENDER_TIMES,
) -> Job:
    """Wait for a job that is QUEUED for ``queued`` s and ends ``render`` s after submit; simulated clock."""
    watch = Watch("sim", submitted_at=0.0, deadline=3600.0, schedule=schedule, store=store)
    waits = [watch.first_delay(now=0.0)]
    now = waits[0]
    while True:
        state = "QUEUED" if now < queued else "PROCESSING" if now < render else "COMPLETED"
        step = watch.step({"status": state}, now=now)
        if step.done:
            return Job(watch.polls, now - render, waits)
        waits.append(step.delay)
        now += step.delay


def learning_schedule(render_class_: str = CLASS, **fields: Any) -> PollSchedule:
    return PollSchedule(render_class=render_class_, **fields)


def stream(mean: float, count: int, seed: int = 1, spread: float = 0.06) -> list[float]:
    rng = random.Random(seed)
    return [max(1.0, rng.gauss(mean, spread * mean)) for _ in range(count)]


# --- the estimate -----------------------------------------------------------------------------------
def test_the_estimate_converges_on_the_classes_render_time_and_then_detects_it_promptly():
    renders = stream(20.0, 30)
    jobs = [run_job(learning_schedule(), render) for render in renders]
    learned = RENDER_TIMES.estimate(CLASS)
    assert learned is not None
    assert learned.centre == pytest.approx(20.0, rel=0.08)
    # The 45.5 s default looks at 15 s and 30 s: a 20 s job is noticed ~10 s late, every time.
    fixed = [run_job(PollSchedule(learn=False), render) for render in renders]
    assert statistics.median(j.latency for j in fixed) > 5.0
    # Once learned, the looks are where the jobs end: under a second late, at under a third of 1 s polling.
    warmed = jobs[5:]
    assert statistics.median(j.latency for j in warmed) < 0.9
    assert sum(j.polls for j in warmed) < sum(renders[5:]) / 3


def test_each_render_class_learns_its_own_time():
    for fast, slow in zip(stream(12.0, 8, seed=2), stream(90.0, 8, seed=3), strict=True):
        run_job(learning_schedule(CLASS), fast)
        run_job(learning_schedule(OTHER), slow)
    assert RENDER_TIMES.estimate(CLASS).centre == pytest.approx(12.0, rel=0.1)  # type: ignore[union-attr]
    assert RENDER_TIMES.estimate(OTHER).centre == pytest.approx(90.0, rel=0.1)  # type: ignore[union-attr]


def test_the_window_is_as_wide_as_the_spread_of_the_samples():
    narrow, wide = RenderTimes(), RenderTimes()
    for render in stream(40.0, MAX_SAMPLES, seed=4, spread=0.02):
        narrow.observe(CLASS, render)
    for render in stream(40.0, MAX_SAMPLES, seed=4, spread=0.2):
        wide.observe(CLASS, render)
    assert narrow.estimate(CLASS).spread < 0.06 * 40  # type: ignore[union-attr]
    assert wide.estimate(CLASS).spread > 0.2 * 40  # type: ignore[union-attr]


def test_a_shift_in_render_time_is_followed_within_a_few_jobs():
    for render in stream(30.0, 20, seed=5):
        run_job(learning_schedule(), render)
    after = [run_job(learning_schedule(), render) for render in stream(75.0, 15, seed=6)]
    assert RENDER_TIMES.estimate(CLASS).centre == pytest.approx(75.0, rel=0.08)  # type: ignore[union-attr]
    # The first jobs after the shift are late (the window was at 30 s); from the fifth on, as before it.
    assert after[0].latency > 2.0
    assert statistics.median(j.latency for j in after[5:]) < 0.9


def test_memory_is_bounded_in_classes_and_samples_per_class():
    store = RenderTimes(max_classes=8)
    for index in range(100):
        for sample in range(3 * MAX_SAMPLES):
            store.observe(f"model-{index}", 10.0 + sample % 3)
    assert len(store.classes()) == 8
    assert store.classes()[-1] == "model-99"  # the least recently used were forgotten
    assert all(store.samples(name) == MAX_SAMPLES for name in store.classes())
    store.observe("x" * 10_000, 5.0)
    assert max(len(name) for name in store.classes()) == learning.MAX_CLASS_KEY


def test_nonsense_samples_are_not_learned():
    store = RenderTimes()
    for bad in (0.0, -3.0, float("nan"), float("inf")):
        store.observe(CLASS, bad)
    assert store.estimate(CLASS) is None


# --- shared by every wait of the process --------------------------------------------------------------
def test_two_waits_in_one_process_share_what_one_of_them_learned():
    first = Watch("a", submitted_at=0.0, deadline=3600.0, schedule=learning_schedule())
    assert first.plan.expected_seconds == 45.5  # nothing known: the model's default
    now = first.first_delay(now=0.0)
    while not first.step({"status": "COMPLETED" if now >= 18.0 else "PROCESSING"}, now=now).done:
        now += first.last_delay or 0.0
    second = Watch("b", submitted_at=100.0, deadline=3700.0, schedule=learning_schedule())
    # The job ended between the last two looks (15 s and ~30 s): the middle of them is the first sample.
    assert second.plan.expected_seconds == pytest.approx((first._last_look + 15.0) / 2)  # type: ignore[operator]
    assert second.plan.expected_seconds < 25.0


def test_the_store_is_safe_to_use_from_many_threads_at_once():
    store = RenderTimes(max_classes=4)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(2000):
                name = f"class-{rng.randrange(6)}"
                store.observe(name, rng.uniform(5, 50), rng.uniform(0, 4))
                store.estimate(name)
        except BaseException as err:  # any error in a thread fails the test
            errors.append(err)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.classes()) == 4
    assert all(0 < store.samples(name) <= MAX_SAMPLES for name in store.classes())


# --- explicit settings win ------------------------------------------------------------------------------
def operator_schedule(poll_schedule: dict[str, Any] | None = None, connection_poll: dict[str, Any] | None = None, **kw):
    """The schedule ``MuscleSurgeOperator.execute`` builds for a 720p job."""
    from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

    operator = MuscleSurgeOperator(
        task_id="t", image_url="https://example.com/in.png", quality="720p", poll_schedule=poll_schedule, **kw
    )
    hook = SimpleNamespace(settings=SimpleNamespace(poll=connection_poll or {}))
    return operator.schedule(hook, operator.request_body())  # type: ignore[arg-type]


def learn_that_the_class_takes(seconds: float) -> None:
    for _ in range(5):
        RENDER_TIMES.observe(CLASS, seconds)


def test_the_operator_names_the_render_class_of_its_request():
    body = validate_muscle_surge({"image_url": "https://example.com/in.png", "quality": "720p"})
    assert render_class("muscle-surge", body) == CLASS
    assert operator_schedule().render_class == CLASS
    assert operator_schedule().learn is True


@pytest.mark.parametrize(
    ("where", "settings"),
    [
        ("poll_schedule", {"expected_seconds": 30}),
        ("poll_schedule", {"spread_seconds": 2}),
        ("poll_schedule", {"fixed_interval": 3}),
        ("poll_schedule", {"learn": False}),
        ("extra.poll", {"expected_seconds": 30}),
        ("extra.poll", {"learn": False}),
        ("poll_interval", 3.0),
    ],
    ids=repr,
)
def test_explicit_settings_win_over_what_was_learned(where: str, settings: Any):
    learn_that_the_class_takes(10.0)
    if where == "poll_schedule":
        schedule = operator_schedule(poll_schedule=settings)
    elif where == "extra.poll":
        schedule = operator_schedule(connection_poll=settings)
    else:
        schedule = operator_schedule(poll_interval=settings)
    watch = Watch("r", submitted_at=0.0, deadline=3600.0, schedule=schedule)
    assert watch.plan == schedule
    assert not watch.learns
    before = RENDER_TIMES.samples(CLASS)
    run_job(schedule, 12.0)
    assert RENDER_TIMES.samples(CLASS) == before  # nor is the pinned wait learned from


def test_learn_true_makes_an_explicit_expectation_only_the_starting_guess():
    schedule = operator_schedule(poll_schedule={"expected_seconds": 30, "learn": True})
    assert Watch("r", 0.0, 3600.0, schedule).plan.expected_seconds == 30.0
    learn_that_the_class_takes(10.0)
    assert Watch("r", 0.0, 3600.0, schedule).plan.expected_seconds == 10.0


def test_the_operator_s_own_layer_can_turn_learning_back_on_over_the_connection():
    schedule = operator_schedule(poll_schedule={"learn": True}, connection_poll={"expected_seconds": 30})
    learn_that_the_class_takes(10.0)
    assert Watch("r", 0.0, 3600.0, schedule).plan.expected_seconds == 10.0


# --- the ceiling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("render", [0.5, 3.0, 14.0, 46.0, 120.0, 600.0, 1800.0])
def test_no_wait_exceeds_the_ceiling_for_an_unknown_class(render: float):
    job = run_job(learning_schedule("muscle-surge never seen"), render)
    assert max(job.waits) <= CEILING
    assert job.latency <= CEILING


def test_no_wait_exceeds_the_ceiling_once_a_long_class_is_learned():
    learn_that_the_class_takes(300.0)
    for render in (5.0, 150.0, 300.0, 700.0):
        job = run_job(learning_schedule(), render)
        assert max(job.waits) <= CEILING
        assert job.latency <= CEILING


# --- queueing -------------------------------------------------------------------------------------------
def test_time_in_the_queue_moves_the_window_and_is_recorded_apart():
    for render in stream(20.0, 10, seed=8):
        run_job(learning_schedule(), render)
    # Queued for 30 s (the class usually queues 2 s), then renders 18 s: done at 48 s.
    job = run_job(learning_schedule(), 48.0, queued=30.0)
    assert job.latency < 1.0
    assert job.polls <= 16
    learned = RENDER_TIMES.estimate(CLASS)
    assert learned is not None
    assert learned.centre == pytest.approx(20.0, rel=0.05)  # the queue did not make the class look slower
    assert learned.queue == pytest.approx(30.0, abs=8.0)


def test_a_fixed_expectation_waits_through_the_same_queue_at_the_back_off():
    job = run_job(PollSchedule(expected_seconds=20.0, learn=False, render_class=CLASS), 48.0, queued=30.0)
    assert job.latency > 1.0


# --- triggers serialised by the previous version ------------------------------------------------------
OLD_SCHEDULE = {
    "expected_seconds": 45.5,
    "spread_seconds": None,
    "dense_interval": 0.9,
    "max_interval": 15.0,
    "first_poll_seconds": None,
    "backoff_factor": 1.5,
    "jitter": 0.1,
    "fixed_interval": None,
}


def test_a_trigger_serialised_by_the_previous_version_still_deserialises_and_does_not_learn():
    from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

    trigger = SegmindRequestTrigger(
        request_id="r-old",
        deadline=5000.0,
        submitted_at=1000.0,
        segmind_conn_id="segmind_default",
        schedule=OLD_SCHEDULE,
    )
    _, kwargs = trigger.serialize()
    schedule = PollSchedule.from_dict(kwargs["schedule"])
    assert schedule == PollSchedule(**OLD_SCHEDULE)
    assert schedule.render_class is None
    learn_that_the_class_takes(10.0)
    watch = Watch("r-old", submitted_at=0.0, deadline=3600.0, schedule=schedule)
    assert watch.plan == schedule
    run_job(schedule, 20.0)
    assert RENDER_TIMES.classes() == [CLASS]


def test_a_new_trigger_carries_the_render_class_as_a_plain_value():
    from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

    schedule = operator_schedule()
    trigger = SegmindRequestTrigger(request_id="r", deadline=5000.0, schedule=schedule.to_dict())
    _, kwargs = trigger.serialize()
    assert kwargs["schedule"]["render_class"] == CLASS
    assert kwargs["schedule"]["learn"] is True
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in kwargs["schedule"].values())
    assert PollSchedule.from_dict(kwargs["schedule"]) == schedule


# --- against the real emulator -----------------------------------------------------------------------
#: Mean render times the emulator gives each quality (real seconds): two classes, one model.
EMULATOR_SECONDS = {"360p": 1.0, "720p": 2.5}


def emulator_schedule(quality: str) -> PollSchedule:
    """A starting guess far too short (0.4 s), on the emulator's clock: the default shape, scaled."""
    body = {"image_url": "https://example.com/in.png", "quality": quality}
    return PollSchedule(
        expected_seconds=0.4,
        dense_interval=0.2,
        max_interval=1.0,
        render_class=render_class("muscle-surge", validate_muscle_surge(body)),
    )


def test_real_jobs_are_detected_with_fewer_calls_once_their_class_is_learned(
    emulator_factory: Callable[..., Any], segmind_connection: Callable[..., Any]
):
    """Two classes on one emulator; the first job of each waited by the sync hook, the rest by the
    async hook: one store serves both, and each class settles on its own time."""
    from airflow_provider_muscle_surge.hooks.segmind import SegmindHook
    from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook

    rules = [f"quality={q}={s}" for q, s in EMULATOR_SECONDS.items()]
    emu = emulator_factory(job_seconds=5.0, job_spread=0.03, job_seconds_for=rules, seed=11)
    segmind_connection(emu)
    polls: dict[str, list[int]] = {q: [] for q in EMULATOR_SECONDS}

    def count(quality: str) -> Callable[[Any, Watch], None]:
        def on_step(step: Any, watch: Watch) -> None:
            if step.done:
                polls[quality].append(watch.polls)

        return on_step

    def body(quality: str) -> dict[str, Any]:
        return {"image_url": emu.sample_url(), "quality": quality, "seed": 7}

    sync = SegmindHook()
    for quality in EMULATOR_SECONDS:  # warm the render cache: later jobs never wait for an encode
        sync.wait_for_request(sync.submit("muscle-surge", body(quality)).request_id, schedule=PollSchedule.fixed(0.2))
        request = sync.submit("muscle-surge", body(quality))
        sync.wait_for_request(
            request.request_id, schedule=emulator_schedule(quality), on_step=count(quality), timeout=60
        )

    async def later_jobs(quality: str) -> None:
        async with SegmindAsyncHook() as hook:
            for _ in range(4):
                submission = await hook.submit("muscle-surge", body(quality))
                now = time.time()
                await hook.wait_for_request(
                    submission.request_id,
                    submitted_at=now,
                    deadline=now + 60,
                    schedule=emulator_schedule(quality),
                    on_step=count(quality),
                )

    async def both() -> None:
        await asyncio.gather(*(later_jobs(q) for q in EMULATOR_SECONDS))

    asyncio.run(both())
    for quality, seconds in EMULATOR_SECONDS.items():
        learned = RENDER_TIMES.estimate(emulator_schedule(quality).render_class)  # type: ignore[arg-type]
        assert learned is not None
        assert learned.centre == pytest.approx(seconds, rel=0.35), quality
        first, warmed = polls[quality][0], polls[quality][-3:]
        assert statistics.mean(warmed) < first, (quality, polls[quality])


async def test_triggers_in_one_triggerer_share_the_estimate_and_say_so(
    segmind_conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second trigger of a class starts from what the first one saw, and its log says where it polls."""
    from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook
    from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

    schedule = PollSchedule(expected_seconds=0.4, dense_interval=0.2, max_interval=1.0, render_class=CLASS)

    async def wait_one() -> dict[str, Any]:
        async with SegmindAsyncHook() as hook:
            request = await hook.submit("muscle-surge", {"image_url": segmind_conn.sample_url(), "quality": "720p"})
        now = time.time()
        trigger = SegmindRequestTrigger(
            request_id=request.request_id, deadline=now + 60, submitted_at=now, schedule=schedule.to_dict()
        )
        (event,) = [event.payload async for event in trigger.run()]  # exactly one event
        return event

    def learned_lines() -> list[str]:
        # The trigger logs through Airflow's structlog, to stdout.
        return [line for line in capsys.readouterr().out.splitlines() if "learned from earlier" in line]

    assert (await wait_one())["status"] == "completed"
    assert RENDER_TIMES.samples(CLASS) == 1
    assert learned_lines() == []
    assert (await wait_one())["status"] == "completed"
    assert RENDER_TIMES.samples(CLASS) == 2
    (line,) = learned_lines()
    assert CLASS in line


def test_a_wait_resumed_after_the_job_ended_learns_nothing_from_it():
    """A triggerer restarted 40 s after the submit finds a 20 s job done: it ended sometime before, unknown when.
    A wait that began at the submit and finds the job done at its first look does learn: the job ended
    between the submit and that look.
    """
    resumed = Watch("r", submitted_at=0.0, deadline=3600.0, schedule=learning_schedule())
    resumed.first_delay(now=40.0)
    assert resumed.step({"status": "COMPLETED"}, now=40.0).done
    assert RENDER_TIMES.samples(CLASS) == 0
    # Resumed while the job still runs, it sees the end between two looks as usual.
    run = Watch("r", submitted_at=0.0, deadline=3600.0, schedule=learning_schedule())
    now = 40.0 + run.first_delay(now=40.0)
    while not run.step({"status": "COMPLETED" if now >= 50.0 else "PROCESSING"}, now=now).done:
        now += run.last_delay or 0.0
    assert RENDER_TIMES.samples(CLASS) == 1
    assert RENDER_TIMES.estimate(CLASS).centre == pytest.approx(50.0, abs=1.0)  # type: ignore[union-attr]
    fresh = Watch("f", submitted_at=0.0, deadline=3600.0, schedule=learning_schedule())
    assert fresh.step({"status": "COMPLETED"}, now=fresh.first_delay(now=0.0)).done
    assert RENDER_TIMES.samples(CLASS) == 2


# --- the emulator's per-parameter render time ---------------------------------------------------------
def test_the_emulator_reads_a_render_time_per_parameter_value_and_refuses_a_malformed_rule():
    from segmind_emulator.__main__ import build_parser, config_from_args

    args = ["--job-seconds", "45.5", "--job-seconds-for", "quality=360p=10", "--job-seconds-for", "duration=8=70"]
    config = config_from_args(build_parser().parse_args(args))
    assert config.mean_job_seconds({"quality": "360p", "duration": 8}) == 10.0  # the first matching rule
    assert config.mean_job_seconds({"quality": "720p", "duration": 8}) == 70.0
    assert config.mean_job_seconds({"quality": "720p", "duration": 5}) == 45.5
    for bad in ("quality=10", "quality=360p=soon", "quality=360p=-1"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--job-seconds-for", bad])
