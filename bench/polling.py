"""Benchmark 1: status calls per job and detection latency of three polling schedules.

What it measures: real jobs on the real emulator over loopback, each waited for by the real
``SegmindAsyncHook.wait_for_request`` (the code path of the trigger), under three schedules
running side by side in one run against one emulator:

* ``SDK (fixed 1 s)``  -- what the official SDK's ``job.wait(interval=1.0)`` does;
* ``fixed 5 s``        -- the usual "be gentle" setting;
* ``ours (adaptive)``  -- ``PollSchedule()`` for muscle-surge, the provider's default.

Time is accelerated (``--speedup``, default x10): the emulator renders in 45.5 s / speedup with the
same relative spread and slow tail, and every schedule is ``.scaled(1 / speedup)``. All figures are
reported in real-time-equivalent seconds (measured x speedup).

Completion time comes from the emulator, not from polling: the emulator stamps each job's
submission (``created_at``) and reports its render time in the result ``metrics``; completion =
submission + render time (or ``metrics.completed_at`` when the emulator provides it). The
``created_at`` stamp has millisecond resolution; it is narrowed with the client's own send/receive
times of the submit, so the error is well under 1 ms real (10 ms equivalent at x10).

Detection latency = the moment the waiter has the COMPLETED status answer in hand, minus completion.

``--simulate`` runs the same ``Watch``/``PollSchedule`` code against the emulator's render-time
distribution without I/O (zero network latency): instant, for tuning the schedule's defaults.

``--grid`` (simulation, the same ``Watch``/``PollSchedule`` code, no I/O) compares the schedules
on streams of jobs whose render time is drawn, with the emulator's spread and slow tail, from
distributions centred at 10 to 120 s, and one stream whose centre moves from 30 s to 75 s
half-way: SDK (fixed 1 s), fixed 5 s, the fixed expectation (45.5 s, ``learn=False``) and the
learning schedule (one render class, a store of its own per stream). Jobs overlap as in a
triggerer (``--in-flight`` of them at a time), so a job learns only from jobs already detected.
Figures are after a warm-up of ``--warm-up`` jobs; the first job of each stream is shown apart.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

REAL_JOB_SECONDS = 45.5
#: Connection extras that lift the per-key budgets of a process (10 status calls a second, 8 submits in
#: flight by default): this benchmark compares schedules, and the SDK's 1 s polling of 100 jobs at x10
#: time would otherwise be stretched by the budget (bench/triggerer_capacity.py measures the budget).
UNTHROTTLED = {"max_status_calls_per_second": 10_000, "max_concurrent_submits": 1000}


@dataclass
class Variant:
    name: str
    schedule: Any  # PollSchedule, real-time
    calls: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # real-time-equivalent seconds
    render: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def variants() -> list[Variant]:
    from airflow_provider_muscle_surge.polling import PollSchedule

    return [
        Variant("SDK (fixed 1 s)", PollSchedule.fixed(1.0)),
        Variant("fixed 5 s", PollSchedule.fixed(5.0)),
        Variant("ours (adaptive)", PollSchedule()),
    ]


def _parse_created(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def submitted_wall(created_at: str, sent: float, received: float) -> float:
    """The emulator's submit instant: its ms-truncated stamp intersected with our send..receive window."""
    created = _parse_created(created_at)
    lo, hi = max(sent, created), min(received, created + 0.001)
    return (lo + hi) / 2 if lo <= hi else created + 0.0005


async def run_job(variant: Variant, hook_factory: Any, payload: dict[str, Any], speedup: float) -> None:
    from airflow_provider_muscle_surge import contract

    async with hook_factory() as hook:
        sent = time.time()
        url = (await hook.get_settings()).url(contract.v2_submit_path(contract.MUSCLE_SURGE))
        body = await hook._call("POST", url, json=payload)
        received = time.time()
        sub = contract.Submission.parse(body)
        submitted = submitted_wall(body["created_at"], sent, received)
        seen: dict[str, float] = {}

        def on_step(step: Any, watch: Any) -> None:
            if step.done:
                seen["at"] = time.time()
                seen["polls"] = watch.polls

        schedule = variant.schedule.scaled(1.0 / speedup)
        try:
            result = await hook.wait_for_request(
                sub.request_id,
                submitted_at=received,
                deadline=received + 600.0 / speedup * 10,
                schedule=schedule,
                on_step=on_step,
            )
        except Exception as err:  # recorded, reported; a benchmark run never hides a failed job
            variant.errors.append(f"{type(err).__name__}: {err}")
            return
    metrics = result.get("metrics") or {}
    if "completed_at" in metrics:
        completed = float(metrics["completed_at"])
    else:
        if not metrics.get("render_cache_hit", True) and metrics.get("wait_for_encode_seconds", 0) > 0.001:
            # The output was not ready at render end: completion is later than submit + render time.
            variant.errors.append("render cache miss: completion time unknown")
            return
        completed = submitted + float(metrics["render_seconds"])
    variant.calls.append(int(seen["polls"]))
    variant.latency.append((seen["at"] - completed) * speedup)
    variant.render.append(float(metrics["render_seconds"]) * speedup)


async def run_live(args: argparse.Namespace) -> tuple[list[Variant], dict[str, Any]]:
    from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook

    payload = common.job_payload()
    vs = variants()
    rng = random.Random(args.seed)

    def hook_factory() -> SegmindAsyncHook:
        return SegmindAsyncHook(common.CONN_ID)

    # Warm the emulator's render cache: one real encode, then every job is a cache hit.
    async with hook_factory() as hook:
        from airflow_provider_muscle_surge.polling import PollSchedule

        sub = await hook.submit("muscle-surge", payload)
        now = time.time()
        await hook.wait_for_request(
            sub.request_id, submitted_at=now, deadline=now + 120, schedule=PollSchedule.fixed(0.05)
        )

    job_real = REAL_JOB_SECONDS / args.speedup
    if not args.no_gc_freeze:
        # Airflow's import graph leaves ~160k tracked objects; a full collection then stalls the loop
        # ~100 ms, which time acceleration would inflate tenfold into every schedule's latency.
        # Freezing them measures the schedules, not the collector (bench/triggerer_capacity.py
        # keeps the collector as a triggerer has it).
        gc.collect()
        gc.freeze()

    async def slot(variant: Variant, jobs: int) -> None:
        # Staggered start so slots are not in lockstep; each slot then runs its jobs back to back.
        await asyncio.sleep(rng.uniform(0, job_real))
        for _ in range(jobs):
            await run_job(variant, hook_factory, payload, args.speedup)

    tasks = []
    for variant in vs:
        per_slot = [
            args.jobs // args.concurrency + (1 if i < args.jobs % args.concurrency else 0)
            for i in range(args.concurrency)
        ]
        tasks += [slot(variant, n) for n in per_slot if n]
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        # Loop lag of this process: any stall here is added to every schedule's detection latency.
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(0.05)
            lags.append((loop.time() - start - 0.05) * 1000)

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.time_limit)
    wall = time.monotonic() - started
    stop.set()
    await tick
    return vs, {
        "wall_seconds": wall,
        "loop_lag_ms_p50": common.percentile(lags, 50),
        "loop_lag_ms_p99": common.percentile(lags, 99),
        "loop_lag_ms_max": max(lags, default=math.nan),
    }


def run_simulation(args: argparse.Namespace) -> list[Variant]:
    """Zero-latency replay of the same Watch/PollSchedule against the emulator's distribution."""
    from segmind_emulator.state import draw_render_seconds

    from airflow_provider_muscle_surge.polling import Watch

    vs = variants()
    for variant in vs:
        rng = random.Random(args.seed)
        random.seed(args.seed + 1)  # the schedule's jitter draws from the module generator
        for index in range(args.jobs):
            render = draw_render_seconds(rng, REAL_JOB_SECONDS, args.job_spread)
            watch = Watch(f"sim-{index}", submitted_at=0.0, deadline=3600.0, schedule=variant.schedule)
            now = watch.first_delay(0.0)
            while True:
                step = watch.step({"status": "COMPLETED" if now >= render else "PROCESSING"}, now)
                if step.done:
                    break
                now += step.delay or 0.0
            variant.calls.append(watch.polls)
            variant.latency.append(now - render)
            variant.render.append(render)
    return vs


# --- the grid: distributions x schedules, simulated ----------------------------------------------------
#: Streams of the grid: name -> (centre of the first half, centre of the second half) in seconds.
GRID_STREAMS: dict[str, tuple[float, float]] = {
    "10 s": (10.0, 10.0),
    "20 s": (20.0, 20.0),
    "45.5 s": (45.5, 45.5),
    "90 s": (90.0, 90.0),
    "120 s": (120.0, 120.0),
    "30 s -> 75 s": (30.0, 75.0),
}
GRID_CLASS = "muscle-surge bench-class"


@dataclass
class GridRow:
    name: str
    calls: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    first_latency: float = math.nan
    max_wait: float = 0.0


def grid_variants() -> list[tuple[str, Any]]:
    from airflow_provider_muscle_surge.polling import PollSchedule

    return [
        ("SDK (fixed 1 s)", PollSchedule.fixed(1.0)),
        ("fixed 5 s", PollSchedule.fixed(5.0)),
        ("fixed expectation", PollSchedule(learn=False)),
        ("learning", PollSchedule(render_class=GRID_CLASS)),
        # The same, polling a little slower in the window (the default before 0.8 s): what the lower median costs.
        ("learning, dense 0.9 s", PollSchedule(render_class=GRID_CLASS, dense_interval=0.9)),
    ]


def simulate_stream(schedule: Any, renders: list[float], gap: float, warm_up: int, name: str) -> GridRow:
    """Jobs arriving every ``gap`` s, each waited by a real Watch on a simulated clock, in time order.

    A Watch takes the class's estimate when its job arrives and reports when it detects the
    completion, so overlapping jobs learn only from jobs already detected (as in a triggerer).
    """
    import heapq

    from airflow_provider_muscle_surge.learning import RenderTimes
    from airflow_provider_muscle_surge.polling import Watch

    store = RenderTimes()
    row = GridRow(name)
    # (time, order, job index, watch or None for the arrival)
    events: list[tuple[float, int, int, Any]] = [(i * gap, i, i, None) for i in range(len(renders))]
    heapq.heapify(events)
    order = len(renders)
    while events:
        now, _, index, watch = heapq.heappop(events)
        arrived = index * gap
        if watch is None:
            watch = Watch(
                f"sim-{index}", submitted_at=arrived, deadline=arrived + 3600.0, schedule=schedule, store=store
            )
            delay = watch.first_delay(now)
        else:
            done = arrived + renders[index]
            step = watch.step({"status": "COMPLETED" if now >= done else "PROCESSING"}, now)
            if step.done:
                latency = now - done
                if index == 0:
                    row.first_latency = latency
                if index >= warm_up:
                    row.calls.append(watch.polls)
                    row.latency.append(latency)
                continue
            delay = step.delay or 0.0
        row.max_wait = max(row.max_wait, delay)
        order += 1
        heapq.heappush(events, (now + delay, order, index, watch))
    return row


def run_grid(args: argparse.Namespace) -> dict[str, Any]:
    from segmind_emulator.state import draw_render_seconds

    from airflow_provider_muscle_surge.polling import PollSchedule

    headers = [
        "stream",
        "schedule",
        "jobs",
        "calls/job",
        "vs SDK",
        "detect median s",
        "detect p99 s",
        "detect max s",
        "first job s",
        "longest wait s",
    ]
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {}
    verdicts: list[str] = []
    for stream, (before, after) in GRID_STREAMS.items():
        rng = random.Random(args.seed)
        half = args.jobs // 2
        renders = [draw_render_seconds(rng, before if i < half else after, args.job_spread) for i in range(args.jobs)]
        gap = before / args.in_flight
        results = []
        for name, schedule in grid_variants():
            random.seed(args.seed + 1)  # the schedule's jitter draws from the module generator
            results.append(simulate_stream(schedule, renders, gap, args.warm_up, name))
        sdk = results[0]
        sdk_calls = common.mean(sdk.calls)
        summary[stream] = {}
        for r in results:
            calls = common.mean(r.calls)
            entry = {
                "calls_mean": calls,
                "calls_vs_sdk": calls / sdk_calls,
                "latency_median": common.percentile(r.latency, 50),
                "latency_p99": common.percentile(r.latency, 99),
                "latency_max": max(r.latency),
                "first_job_latency": r.first_latency,
                "max_wait": r.max_wait,
            }
            summary[stream][r.name] = entry
            rows.append(
                [
                    stream,
                    r.name,
                    len(r.calls),
                    calls,
                    f"{entry['calls_vs_sdk']:.2f}x",
                    entry["latency_median"],
                    entry["latency_p99"],
                    entry["latency_max"],
                    r.first_latency,
                    r.max_wait,
                ]
            )
        learn, s = summary[stream]["learning"], summary[stream][sdk.name]
        ceiling = PollSchedule().max_interval
        calls_ok = learn["calls_mean"] <= s["calls_mean"] / 4
        median_ok = learn["latency_median"] <= s["latency_median"]
        first_ok = learn["first_job_latency"] <= ceiling and learn["max_wait"] <= ceiling
        summary[stream]["goals"] = {"calls": calls_ok, "median": median_ok, "first_job_and_ceiling": first_ok}
        verdicts.append(
            f"  {stream:>13}: calls {learn['calls_mean']:.2f} vs limit {s['calls_mean'] / 4:.2f} "
            f"({learn['calls_vs_sdk']:.2f}x) {'MET' if calls_ok else 'MISSED'}; "
            f"median {learn['latency_median']:.3f} s vs SDK {s['latency_median']:.3f} s "
            f"{'MET' if median_ok else 'MISSED'}; first job {learn['first_job_latency']:.2f} s, "
            f"longest wait {learn['max_wait']:.2f} s vs ceiling {ceiling:g} s {'MET' if first_ok else 'MISSED'}"
        )
    print(common.table(headers, rows))
    print(
        f"\nGoal (after a warm-up of {args.warm_up} jobs): learning calls/job <= 1/4 of the SDK's, median detection "
        "<= the SDK's; the first job of the unknown class, and every wait, within the ceiling"
    )
    print("\n".join(verdicts))
    return summary


# --- the same comparison on the real emulator: one class per quality ------------------------------------
#: Mean render time (real-time seconds) the emulator gives each quality in ``--live-classes``.
LIVE_CLASSES: dict[str, float] = {"360p": 10.0, "540p": 45.5, "720p": 90.0, "1080p": 120.0}


async def run_live_classes(args: argparse.Namespace) -> tuple[dict[str, list[Variant]], dict[str, Any]]:
    """Every schedule on every class, side by side against one emulator whose render time depends on quality."""
    from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook
    from airflow_provider_muscle_surge.models import render_class
    from airflow_provider_muscle_surge.models.muscle_surge import validate_muscle_surge
    from airflow_provider_muscle_surge.polling import PollSchedule

    rng = random.Random(args.seed)

    def hook_factory() -> SegmindAsyncHook:
        return SegmindAsyncHook(common.CONN_ID)

    payloads = {q: {**common.job_payload(), "quality": q} for q in LIVE_CLASSES}
    # Warm the render cache once per quality: every measured job is then a cache hit.
    async with hook_factory() as hook:
        for payload in payloads.values():
            sub = await hook.submit("muscle-surge", payload)
            now = time.time()
            await hook.wait_for_request(
                sub.request_id, submitted_at=now, deadline=now + 600, schedule=PollSchedule.fixed(0.05)
            )
    if not args.no_gc_freeze:
        gc.collect()
        gc.freeze()
    grid: dict[str, list[Variant]] = {}
    for quality, payload in payloads.items():
        body = validate_muscle_surge(payload)
        grid[quality] = [
            *variants()[:2],
            Variant("fixed expectation", PollSchedule(learn=False)),
            Variant("learning", PollSchedule(render_class=render_class("muscle-surge", body))),
        ]

    async def slot(variant: Variant, payload: dict[str, Any], jobs: int, job_real: float) -> None:
        await asyncio.sleep(rng.uniform(0, job_real))
        for _ in range(jobs):
            await run_job(variant, hook_factory, payload, args.speedup)

    tasks = []
    for quality, vs in grid.items():
        job_real = LIVE_CLASSES[quality] / args.speedup
        for variant in vs:
            per_slot = [
                args.jobs // args.in_flight + (1 if i < args.jobs % args.in_flight else 0)
                for i in range(args.in_flight)
            ]
            tasks += [slot(variant, payloads[quality], n, job_real) for n in per_slot if n]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.time_limit)
    return grid, {"wall_seconds": time.monotonic() - started}


def report_live_classes(grid: dict[str, list[Variant]], args: argparse.Namespace) -> dict[str, Any]:
    headers = ["class", "schedule", "jobs", "calls/job", "vs SDK", "detect median s", "detect p99 s", "errors"]
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {}
    for quality, vs in grid.items():
        # Completion order; the first --warm-up jobs of each schedule are left out (the learner's warm-up).
        kept = {v.name: (v.calls[args.warm_up :], v.latency[args.warm_up :]) for v in vs}
        sdk_calls = common.mean(kept[vs[0].name][0])
        summary[quality] = {}
        for v in vs:
            calls, latency = kept[v.name]
            entry = {
                "calls_mean": common.mean(calls),
                "calls_vs_sdk": common.mean(calls) / sdk_calls,
                "latency_median": common.percentile(latency, 50),
                "latency_p99": common.percentile(latency, 99),
                "errors": len(v.errors),
            }
            summary[quality][v.name] = entry
            rows.append(
                [
                    f"{quality} ({LIVE_CLASSES[quality]:g} s)",
                    v.name,
                    len(calls),
                    entry["calls_mean"],
                    f"{entry['calls_vs_sdk']:.2f}x",
                    entry["latency_median"],
                    entry["latency_p99"],
                    entry["errors"],
                ]
            )
    print(common.table(headers, rows))
    for quality, vs in grid.items():
        for v in vs:
            for err in sorted(set(v.errors))[:3]:
                print(f"  {quality} {v.name} error: {err}")
    return summary


def report(vs: list[Variant], args: argparse.Namespace, server_polls: int | None = None) -> dict[str, Any]:
    sdk = vs[0]
    headers = [
        "schedule",
        "jobs",
        "status calls/job (mean)",
        "vs SDK",
        "detect median s",
        "detect p90 s",
        "detect p99 s",
        "detect max s",
        "errors",
    ]
    rows = []
    summary: dict[str, Any] = {}
    for v in vs:
        calls = common.mean(v.calls)
        ratio = calls / common.mean(sdk.calls) if sdk.calls else math.nan
        row = {
            "jobs": len(v.calls),
            "calls_mean": calls,
            "calls_vs_sdk": ratio,
            "latency_median": common.percentile(v.latency, 50),
            "latency_p90": common.percentile(v.latency, 90),
            "latency_p99": common.percentile(v.latency, 99),
            "latency_max": max(v.latency) if v.latency else math.nan,
            "errors": len(v.errors),
        }
        summary[v.name] = row
        rows.append(
            [
                v.name,
                row["jobs"],
                calls,
                f"{ratio:.2f}x",
                row["latency_median"],
                row["latency_p90"],
                row["latency_p99"],
                row["latency_max"],
                row["errors"],
            ]
        )
    print(common.table(headers, rows))
    renders = [r for v in vs for r in v.render]
    if renders:
        tail = sum(1 for r in renders if r > REAL_JOB_SECONDS * 1.15) / len(renders)
        print(
            f"\nrender times (real-time-equivalent, all jobs): median {common.percentile(renders, 50):.1f} s, "
            f"p1 {common.percentile(renders, 1):.1f} s, p99 {common.percentile(renders, 99):.1f} s, "
            f"max {max(renders):.1f} s, {tail:.1%} above 1.15x the mean"
        )
    if server_polls is not None:
        client = sum(sum(v.calls) for v in vs)
        print(f"status calls counted by the emulator: {server_polls:,} (by the waiters: {client:,}; +warm-up)")
    for v in vs:
        for err in sorted(set(v.errors))[:5]:
            print(f"  {v.name} error: {err}")

    ours, ceiling = vs[-1], vs[-1].schedule.max_interval
    o, s = summary[ours.name], summary[sdk.name]
    goal_calls = o["calls_mean"] <= s["calls_mean"] / 4
    goal_median = o["latency_median"] <= s["latency_median"]
    goal_p99 = o["latency_p99"] <= ceiling
    print("\nGoal: calls/job <= 1/4 of the SDK's, median detection <= the SDK's, p99 <= the ceiling")
    print(
        f"  calls/job {o['calls_mean']:.1f} vs SDK {s['calls_mean']:.1f} (limit {s['calls_mean'] / 4:.1f}): "
        f"{'MET' if goal_calls else 'MISSED'}"
    )
    print(
        f"  median detection {o['latency_median']:.2f} s vs SDK {s['latency_median']:.2f} s: "
        f"{'MET' if goal_median else 'MISSED'}"
    )
    print(
        f"  p99 detection {o['latency_p99']:.2f} s vs ceiling max_interval {ceiling:g} s: "
        + ("MET" if goal_p99 else "MISSED")
    )
    summary["goals"] = {"calls": goal_calls, "median": goal_median, "p99": goal_p99}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Status calls per job and detection latency: SDK fixed 1 s vs fixed 5 s vs the adaptive "
        "PollSchedule, side by side against the real emulator (accelerated time).",
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs per schedule (default %(default)s)")
    parser.add_argument("--speedup", type=float, default=10.0, help="time acceleration (default x%(default)g)")
    parser.add_argument(
        "--concurrency", type=int, default=25, help="jobs in flight per schedule at a time (default %(default)s)"
    )
    parser.add_argument("--job-spread", type=float, default=0.06, help="render-time sd / mean (emulator default 0.06)")
    parser.add_argument("--seed", type=int, default=20251124, help="seed for render times and start offsets")
    parser.add_argument("--time-limit", type=float, default=300.0, help="abort the run after this many seconds")
    parser.add_argument("--quick", action="store_true", help="60 jobs per schedule (about 20 s)")
    parser.add_argument(
        "--simulate", action="store_true", help="no I/O: replay the schedules against the render-time distribution"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="keep Airflow's import-time objects in the garbage collector's reach",
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="no I/O: streams of jobs centred at 10-120 s and one that shifts 30 -> 75 s; SDK, fixed 5 s, "
        "fixed expectation and learning side by side (--jobs per stream)",
    )
    parser.add_argument(
        "--live-classes",
        action="store_true",
        help="real emulator, one render class per quality (10, 45.5, 90, 120 s): SDK, fixed 5 s, fixed expectation "
        "and learning side by side (--jobs per class and schedule, --in-flight of each at a time)",
    )
    parser.add_argument(
        "--in-flight", type=int, default=5, help="--grid/--live-classes: jobs in flight at a time (default %(default)s)"
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=5,
        help="--grid: first jobs of a stream left out of the figures (default %(default)s)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = min(args.jobs, 60)
        args.concurrency = min(args.concurrency, 20)

    common.print_header("bench/polling.py: status calls and detection latency per schedule")
    if args.grid:
        print(
            f"grid simulation: {args.jobs:,} jobs per stream, {args.in_flight} in flight, render spread "
            f"{args.job_spread} plus the emulator's slow tail, zero network latency, real-time seconds\n"
        )
        common.write_json(args.json, run_grid(args))
        return 0
    if args.simulate:
        print(f"simulation: {args.jobs:,} jobs per schedule, zero network latency, real-time seconds\n")
        summary = report(run_simulation(args), args)
        common.write_json(args.json, summary)
        return 0

    common.isolated_airflow_home()
    if args.live_classes:
        rules = [f"quality={q}={seconds / args.speedup:g}" for q, seconds in LIVE_CLASSES.items()]
        print(
            f"{args.jobs} jobs per class and schedule, {args.in_flight} in flight each, time x{args.speedup:g} "
            f"(emulator --job-seconds-for {' '.join(rules)}, spread {args.job_spread}); figures in "
            f"real-time-equivalent seconds, the first {args.warm_up} jobs of each left out\n",
            flush=True,
        )
        with common.emulators(1, job_seconds_for=rules, job_spread=args.job_spread, seed=args.seed) as (emu,):
            common.set_connection(common.CONN_ID, emu.url, emu.api_key, UNTHROTTLED)
            grid, meta = asyncio.run(run_live_classes(args))
            stats = emu.stats()
        summary = report_live_classes(grid, args)
        print(
            f"\nwall time {meta['wall_seconds']:.1f} s; status calls seen by the emulator: {stats.get('status_polls')}"
        )
        common.write_json(args.json, {**summary, "meta": {**meta, "emulator_stats": stats, "args": vars(args)}})
        return 0
    print(
        f"{args.jobs} jobs per schedule, {args.concurrency} in flight per schedule, time x{args.speedup:g} "
        f"(emulator job {REAL_JOB_SECONDS / args.speedup:.3f} s, spread {args.job_spread}); figures in "
        "real-time-equivalent seconds\n",
        flush=True,
    )
    with common.emulators(
        1, job_seconds=REAL_JOB_SECONDS / args.speedup, job_spread=args.job_spread, seed=args.seed
    ) as (emu,):
        common.set_connection(common.CONN_ID, emu.url, emu.api_key, UNTHROTTLED)
        vs, meta = asyncio.run(run_live(args))
        stats = emu.stats()
    summary = report(vs, args, server_polls=stats.get("status_polls"))
    print(
        f"\nwall time {meta['wall_seconds']:.1f} s; emulator responses {stats.get('responses')}; loop lag of the "
        f"waiting process (real ms) p50 {meta['loop_lag_ms_p50']:.2f}, p99 {meta['loop_lag_ms_p99']:.2f}, "
        f"max {meta['loop_lag_ms_max']:.1f} (x{args.speedup:g} in the latencies above)"
    )
    summary["meta"] = {**meta, "emulator_stats": stats, "args": vars(args)}
    common.write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
