"""Benchmark 2: how many concurrent SegmindRequestTriggers one triggerer event loop carries.

Like a triggerer: N real ``SegmindRequestTrigger`` objects, each consumed by its own task with
``async for event in trigger.run()``, all in one asyncio event loop in one process, talking to the
real emulator over loopback through the real ``SegmindAsyncHook``. The N jobs are submitted first
(through the async hook, 64 at a time), then all N triggers start together. Side by side, in the
same run, the same N jobs are waited for by a baseline trigger built the way dbt-cloud's is
(``bench/_naive.py``: a new aiohttp session per status call, fixed 1 s interval).

Each (variant, N) runs in a fresh subprocess (so peak RSS and CPU belong to that trigger process
alone); the emulator runs in separate processes (``--emulators``). Measured in the trigger process:

* CPU seconds per job: ``time.process_time()`` over the trigger phase (submits excluded) / N;
* peak RSS (``ru_maxrss``) and the RSS growth while the N triggers run;
* event-loop lag: a ticker task sleeps 50 ms and records the overshoot; p99 and max;
* detection latency: event received minus the job's completion on the emulator (its submit stamp
  plus the render time from the result ``metrics``), p50/p99;
* CPU utilisation of the trigger process and of the emulator processes (busiest 1 s window), to tell
  which side is the bottleneck; status calls counted by the emulator.

With ``--rate-limit R`` the emulator refuses more than R requests per second per key (429), the
triggers' connection gets the per-key status budget ``--budget B`` (``max_status_calls_per_second``,
default 0.8 R), and jobs are submitted with keys of their own so that only the polling draws on the
polling key. The emulator's own counters, sampled each second from a thread, give the status calls
per second it answered (mean and busiest second) and the 429s it sent during the trigger phase.

The trigger process imports ``airflow.jobs.triggerer_job_runner`` so that its heap (and so the
garbage collector's work) resembles a triggerer's; the collector is left as Airflow leaves it.
Time can be accelerated with ``--speedup`` (emulator and both schedules alike); default real time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

REAL_JOB_SECONDS = 45.5
TICK = 0.05
VARIANTS = {"ours": "SegmindRequestTrigger (adaptive)", "naive": "dbt-cloud style (session/poll, 1 s)"}


# ===================================================================================================
# worker: one (variant, N) in a fresh process
# ===================================================================================================
def _emu_cpu(pids: list[int]) -> float:
    return sum(common.process_cpu_seconds(p) for p in pids)


def _emulator_stats(urls: list[str]) -> dict[str, int]:
    total: dict[str, int] = {"status_polls": 0, "results": 0, "submissions_total": 0, "rate_limited": 0}
    from segmind_emulator.config import DEFAULT_API_KEY  # common.emulators() starts them so

    for url in urls:
        stats_request = urllib.request.Request(url + "/_emulator/stats", headers={"x-api-key": DEFAULT_API_KEY})
        with urllib.request.urlopen(stats_request, timeout=30) as resp:
            stats = json.loads(resp.read())
        for key in total:
            total[key] += int(stats.get(key, 0))
        for code, count in (stats.get("responses") or {}).items():
            total[f"http_{code}"] = total.get(f"http_{code}", 0) + int(count)
    return total


def _submit_plan(conn_ids: list[str], submit_conns: str) -> list[tuple[str, str]]:
    """(connection that submits, connection that polls) pairs, used round-robin.

    ``submit_conns`` (``"sub=poll,..."``) gives submits keys of their own, so that with an emulator
    rate limit the submit burst does not spend the polling key's budget (only the polling is measured).
    """
    if not submit_conns:
        return [(c, c) for c in conn_ids]
    return [(sub, poll) for sub, _, poll in (pair.partition("=") for pair in submit_conns.split(","))]


async def _submit_jobs(plan: list[tuple[str, str]], n: int, spread: float, on_job: Any) -> None:
    """Submit ``n`` jobs round-robin over the plan's connections through the async hook, 64 in flight at
    most; with ``spread`` > 0, job ``i`` is sent at ``i * spread / n`` seconds (a steady arrival rate)."""
    from polling import submitted_wall

    from airflow_provider_muscle_surge import contract
    from airflow_provider_muscle_surge.hooks.segmind_async import SegmindAsyncHook

    payload = common.job_payload()
    sem = asyncio.Semaphore(64)
    t0 = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        hooks = [await stack.enter_async_context(SegmindAsyncHook(sub)) for sub, _ in plan]
        urls = [(await hook.get_settings()).url(contract.v2_submit_path(contract.MUSCLE_SURGE)) for hook in hooks]

        async def one(index: int) -> None:
            if spread > 0:
                await asyncio.sleep(max(0.0, t0 + index * spread / n - time.monotonic()))
            hook, url, conn_id = hooks[index % len(hooks)], urls[index % len(urls)], plan[index % len(plan)][1]
            async with sem:
                sent = time.time()
                body = await hook._call("POST", url, json=payload)
                received = time.time()
            on_job(
                {
                    "conn_id": conn_id,
                    "request_id": body["request_id"],
                    "submitted_wall": submitted_wall(body["created_at"], sent, received),
                    "submitted_at": received,
                }
            )

        await asyncio.gather(*(one(i) for i in range(n)))


def submitter(args: argparse.Namespace) -> int:
    """The ``--arrival spread`` job source: its own process, so its CPU is not the trigger process's."""
    import airflow.sdk  # noqa: F401

    def emit(job: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(job) + "\n")
        sys.stdout.flush()

    plan = _submit_plan(args.conn_ids.split(","), args.submit_conns)
    asyncio.run(_submit_jobs(plan, args.n, args.spread_seconds / args.speedup, emit))
    return 0


async def _worker_main(args: argparse.Namespace) -> dict[str, Any]:
    from _naive import NaiveFixedIntervalTrigger

    from airflow_provider_muscle_surge.polling import PollSchedule
    from airflow_provider_muscle_surge.triggers.segmind import SegmindRequestTrigger

    conn_ids = args.conn_ids.split(",")
    emu_pids = [int(p) for p in args.emu_pids.split(",")]
    emu_urls = args.emu_urls.split(",")
    n, speedup = args.n, args.speedup

    # --- burst: submit all N jobs through the async hook first (not measured) ------------------------------
    jobs: list[dict[str, Any]] = []
    t_submit = time.monotonic()
    if args.arrival == "burst":
        await _submit_jobs(_submit_plan(conn_ids, args.submit_conns), n, 0.0, jobs.append)
    submit_seconds = time.monotonic() - t_submit

    # --- the triggers -------------------------------------------------------------------------------------
    schedule = PollSchedule().scaled(1.0 / speedup).to_dict()

    def make_trigger(job: dict[str, Any]) -> Any:
        if args.variant == "ours":
            return SegmindRequestTrigger(
                request_id=job["request_id"],
                deadline=job["submitted_at"] + 3600.0 / speedup,
                submitted_at=job["submitted_at"],
                segmind_conn_id=job["conn_id"],
                schedule=schedule,
            )
        return NaiveFixedIntervalTrigger(
            request_id=job["request_id"],
            conn_id=job["conn_id"],
            end_time=job["submitted_at"] + 3600.0 / speedup,
            poll_interval=1.0 / speedup,
        )

    lags: list[float] = []
    windows: list[tuple[float, float]] = []  # (client util, emulator util) per ~1 s
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    rss_peak = [common.current_rss_mib()]

    async def ticker() -> None:
        last_t, last_cpu, last_emu = time.monotonic(), time.process_time(), _emu_cpu(emu_pids)
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(TICK)
            lags.append(loop.time() - start - TICK)
            now = time.monotonic()
            if now - last_t >= 1.0:
                cpu, emu = time.process_time(), _emu_cpu(emu_pids)
                windows.append(((cpu - last_cpu) / (now - last_t), (emu - last_emu) / (now - last_t)))
                last_t, last_cpu, last_emu = now, cpu, emu
                rss_peak[0] = max(rss_peak[0], common.current_rss_mib())

    detected: dict[int, tuple[float, dict[str, Any]]] = {}
    active = [0, 0]  # running triggers, peak

    async def consume(index: int, trig: Any) -> None:
        active[0] += 1
        active[1] = max(active[1], active[0])
        try:
            async for event in trig.run():
                detected[index] = (time.time(), event.payload)
                break
        finally:
            active[0] -= 1

    tasks: list[asyncio.Task[None]] = []

    gc_pauses: list[tuple[int, float]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_started[0]))

    # The emulator's own counters each second (a thread: a blocking HTTP call must not run on the loop).
    samples: list[tuple[float, int, int]] = []  # (monotonic, status+result calls answered, 429s)
    sampling = threading.Event()

    def sample_emulator() -> None:
        while not sampling.wait(1.0):
            with contextlib.suppress(OSError):
                stats = _emulator_stats(emu_urls)
                samples.append((time.monotonic(), stats["status_polls"] + stats["results"], stats["rate_limited"]))

    stats_before = await asyncio.to_thread(_emulator_stats, emu_urls)
    sampler = threading.Thread(target=sample_emulator, daemon=True)
    sampler.start()

    if args.gc_freeze:
        # Diagnostic only: what the loop does when Airflow's import-time heap is out of the collector's reach.
        gc.collect()
        gc.freeze()
    if args.gc_threshold:
        # Diagnostic only: a deployment can raise the collector's thresholds (airflow_local_settings.py).
        gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
    gc.callbacks.append(on_gc)
    rss_before = common.current_rss_mib()
    cpu_before, emu_before, wall_before = time.process_time(), _emu_cpu(emu_pids), time.monotonic()
    tick_task = asyncio.create_task(ticker())
    if args.arrival == "burst":
        for index in range(len(jobs)):
            tasks.append(asyncio.create_task(consume(index, make_trigger(jobs[index]))))
    else:
        # Jobs arrive from a separate submitter process, as deferred tasks reach a triggerer over time.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--submitter",
            "--n",
            str(n),
            "--speedup",
            str(speedup),
            "--spread-seconds",
            str(args.spread_seconds),
            "--conn-ids",
            args.conn_ids,
            *(["--submit-conns", args.submit_conns] if args.submit_conns else []),
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            jobs.append(json.loads(line))
            tasks.append(asyncio.create_task(consume(len(jobs) - 1, make_trigger(jobs[-1]))))
        await proc.wait()
    _done, pending = await asyncio.wait(tasks, timeout=max(1.0, args.run_limit - (time.monotonic() - wall_before)))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    wall = time.monotonic() - wall_before
    cpu = time.process_time() - cpu_before
    emu_cpu = _emu_cpu(emu_pids) - emu_before
    stop.set()
    await tick_task
    gc.callbacks.remove(on_gc)

    latencies, kinds = [], {}
    for index, (at, payload_) in detected.items():
        kinds[payload_.get("status")] = kinds.get(payload_.get("status"), 0) + 1
        result = payload_.get("result") or {}
        metrics = result.get("metrics") or {}
        if payload_.get("status") == "completed" and "render_seconds" in metrics:
            completion = float(metrics.get("completed_at") or jobs[index]["submitted_wall"] + metrics["render_seconds"])
            latencies.append((at - completion) * speedup)
    sampling.set()
    sampler.join(10)
    stats = await asyncio.to_thread(_emulator_stats, emu_urls)
    calls = stats["status_polls"] + stats["results"] - stats_before["status_polls"] - stats_before["results"]
    rates = [(c2 - c1) / (t2 - t1) for (t1, c1, _), (t2, c2, _) in itertools.pairwise(samples) if t2 > t1]
    return {
        "variant": args.variant,
        "n": n,
        "arrival": args.arrival,
        "peak_concurrent": active[1],
        "speedup": speedup,
        "submit_seconds": submit_seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "cpu_per_job_ms": cpu / n * 1000,
        "client_util_mean": cpu / wall,
        "client_util_peak": max((w[0] for w in windows), default=math.nan),
        "emulator_util_mean": emu_cpu / wall,
        "emulator_util_peak": max((w[1] for w in windows), default=math.nan),
        "peak_rss_mib": common.peak_rss_mib(),
        "rss_growth_mib": rss_peak[0] - rss_before,
        "lag_p50_ms": common.percentile(lags, 50) * 1000,
        "lag_p99_ms": common.percentile(lags, 99) * 1000,
        "lag_max_ms": max(lags, default=math.nan) * 1000,
        "lag_samples": len(lags),
        "gc_seconds": sum(p for _, p in gc_pauses),
        "gc_gen2_count": sum(1 for g, _ in gc_pauses if g == 2),
        "gc_max_pause_ms": max((p for _, p in gc_pauses), default=0.0) * 1000,
        "util_windows": windows,
        "detect_p50_s": common.percentile(latencies, 50),
        "detect_p99_s": common.percentile(latencies, 99),
        "detect_max_s": max(latencies, default=math.nan),
        "events": kinds,
        "completed": len(latencies),
        "unfinished": len(pending),
        "status_calls_per_job": stats["status_polls"] / n,
        "emulator": stats,
        "budget": args.budget,
        "rate_limit": args.rate_limit,
        "calls_per_s_mean": calls / wall,
        "calls_per_s_peak": max(rates, default=math.nan),
        "refused_429": stats["rate_limited"] - stats_before["rate_limited"],
        "refused_429_submit_phase": stats_before["rate_limited"],
        "open_files_limit": common.raise_open_files_limit(0),
    }


def worker(args: argparse.Namespace) -> int:
    common.raise_open_files_limit(args.nofile)
    import logging

    # Airflow's import configures logging; trigger INFO lines go to this process's stderr (a file).
    import airflow.sdk

    if not args.lean:
        import airflow.jobs.triggerer_job_runner  # noqa: F401  -- a triggerer's heap, for the GC
    logging.getLogger("airflow_provider_muscle_surge").setLevel(logging.INFO)
    result = asyncio.run(_worker_main(args))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ===================================================================================================
# driver
# ===================================================================================================
def _warm_up(emu: Any) -> None:
    """One job per emulator before measuring: the one real encode, and the render module's import."""
    req = urllib.request.Request(
        emu.url + "/v2/muscle-surge",
        data=json.dumps(common.job_payload()).encode(),
        headers={"x-api-key": emu.api_key, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        request_id = json.loads(resp.read())["request_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status_req = urllib.request.Request(
            emu.url + f"/v2/requests/{request_id}/status", headers={"x-api-key": emu.api_key}
        )
        with urllib.request.urlopen(status_req, timeout=30) as resp:
            if json.loads(resp.read())["status"] == "COMPLETED":
                return
        time.sleep(0.1)
    raise RuntimeError("warm-up job did not complete")


def run_one(args: argparse.Namespace, emus: list[Any], variant: str, n: int, log_dir: Path) -> dict[str, Any]:
    for emu in emus:
        emu.reset()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--variant",
        variant,
        "--n",
        str(n),
        "--speedup",
        str(args.speedup),
        "--run-limit",
        str(args.run_limit),
        "--nofile",
        str(args.nofile),
        "--arrival",
        args.arrival,
        "--spread-seconds",
        str(args.spread_seconds),
        "--conn-ids",
        ",".join(f"{common.CONN_ID}_{i}" for i in range(len(emus))),
        "--emu-pids",
        ",".join(str(e.proc.pid) for e in emus),
        "--emu-urls",
        ",".join(e.url for e in emus),
    ]
    cmd += ["--submit-conns", args.submit_conns] if args.submit_conns else []
    cmd += ["--budget", str(args.budget), "--rate-limit", str(args.rate_limit or 0)]
    cmd += ["--lean"] if args.lean else []
    cmd += ["--gc-freeze"] if args.gc_freeze else []
    cmd += ["--gc-threshold", args.gc_threshold] if args.gc_threshold else []
    log_path = log_dir / f"worker-{variant}-{n}.log"
    with open(log_path, "w") as log:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=args.run_limit + 600, check=False
        )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"worker {variant} N={n} failed (exit {proc.returncode}):\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="N concurrent SegmindRequestTriggers in one event loop vs a dbt-cloud style trigger: CPU/job, "
        "peak RSS, loop lag, detection latency, against the real emulator over loopback.",
    )
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated N (default %(default)s)")
    parser.add_argument("--variants", default="ours,naive", help="ours,naive (default %(default)s)")
    parser.add_argument("--speedup", type=float, default=1.0, help="time acceleration, both sides (default x1)")
    parser.add_argument("--emulators", type=int, default=1, help="emulator processes (default %(default)s)")
    parser.add_argument("--run-limit", type=float, default=150.0, help="seconds one run may take (default 150)")
    parser.add_argument(
        "--arrival",
        choices=("burst", "spread"),
        default="burst",
        help="burst: submit all N, then start all N triggers (worst case); spread: jobs arrive evenly over "
        "--spread-seconds from a separate submitter process, triggers start as they arrive (default %(default)s)",
    )
    parser.add_argument(
        "--spread-seconds",
        type=float,
        default=36.0,
        help="arrival window of --arrival spread, real-time seconds; below the shortest render time, so all N "
        "are in flight at once (default %(default)s)",
    )
    parser.add_argument("--nofile", type=int, default=65536, help="open-files limit to ask for (soft rlimit)")
    parser.add_argument("--lean", action="store_true", help="do not import the triggerer job runner (smaller heap)")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="diagnostic: gc.freeze() the imported heap before the triggers start (a triggerer does not)",
    )
    parser.add_argument(
        "--gc-threshold",
        default="",
        help="diagnostic: gc.set_threshold(A,B,C) in the trigger process, e.g. 50000,20,100 (default: Python's)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="the emulator's limit of requests per second per key (default: none). Jobs are then submitted "
        "with keys of their own, so that only the triggers' polling draws on the polling key's limit",
    )
    parser.add_argument(
        "--budget",
        default=None,
        help="the polling connection's max_status_calls_per_second, the per-key budget shared by all triggers "
        "(default: 80%% of --rate-limit, else 10000, i.e. no budget, as before the budget existed); a comma "
        "list runs each budget in turn, side by side in one table (e.g. 400,10000)",
    )
    parser.add_argument("--seed", type=int, default=20251124)
    parser.add_argument("--quick", action="store_true", help="N=100,1000 at x2 speed (about 3 minutes)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    # internal: the per-run subprocess
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--submitter", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--conn-ids", default="", help=argparse.SUPPRESS)
    parser.add_argument("--emu-pids", default="", help=argparse.SUPPRESS)
    parser.add_argument("--emu-urls", default="", help=argparse.SUPPRESS)
    parser.add_argument("--submit-conns", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rate_limit == 0:
        args.rate_limit = None
    if args.budget is None:
        args.budget = str(0.8 * args.rate_limit if args.rate_limit else 10_000.0)
    budgets = [float(b) for b in str(args.budget).split(",") if b]
    args.budget = budgets[0]
    if args.worker:
        return worker(args)
    if args.submitter:
        common.isolated_airflow_home()
        return submitter(args)
    if args.quick:
        args.sizes, args.speedup = "100,1000", max(args.speedup, 2.0)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    common.print_header("bench/triggerer_capacity.py: concurrent triggers in one event loop")
    limit = common.raise_open_files_limit(args.nofile)
    common.isolated_airflow_home()
    print(
        f"sizes {sizes}, time x{args.speedup:g} (emulator job {REAL_JOB_SECONDS / args.speedup:.2f} s), "
        f"{args.emulators} emulator process(es), open-files limit {limit}, run limit {args.run_limit:g} s\n",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    log_dir = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    # With a rate limit, each emulator also accepts submit-only keys: enough that the submit burst (64 in
    # flight) fits in their buckets, so nothing in the submit phase is refused or draws on the polling key.
    submit_keys = math.ceil(max(sizes) / args.rate_limit) + 1 if args.rate_limit else 0
    from segmind_emulator.config import DEFAULT_API_KEY  # the polling key (and the stats' key)

    keys = [DEFAULT_API_KEY] + [f"bench-submit-key-{k:04d}" for k in range(submit_keys)]
    flags: dict[str, Any] = {"job_seconds": REAL_JOB_SECONDS / args.speedup, "seed": args.seed}
    if args.rate_limit:
        flags |= {"rate_limit": args.rate_limit, "api_keys": keys}
    with common.emulators(args.emulators, **flags) as emus:
        pairs = []
        for i, emu in enumerate(emus):
            poll_conn = f"{common.CONN_ID}_{i}"
            common.set_connection(poll_conn, emu.url, emu.api_key, extra={"timeout": 60})
            for k, key in enumerate(keys[1:]):
                common.set_connection(f"{poll_conn}_submit_{k}", emu.url, key, extra={"timeout": 60})
                pairs.append(f"{poll_conn}_submit_{k}={poll_conn}")
            _warm_up(emu)
        args.submit_conns = ",".join(pairs)
        if args.rate_limit:
            print(
                f"emulator rate limit {args.rate_limit:g} requests/s per key; status budget(s) "
                f"{', '.join(f'{b:g}' for b in budgets)} calls/s per key; {submit_keys} submit-only key(s) "
                "per emulator\n",
                flush=True,
            )
        for n, budget, variant in itertools.product(sizes, budgets, variants):
            args.budget = budget
            for i, emu in enumerate(emus):
                extra = {"timeout": 60, "max_status_calls_per_second": budget}
                common.set_connection(f"{common.CONN_ID}_{i}", emu.url, emu.api_key, extra=extra)
            started = time.monotonic()
            res = run_one(args, emus, variant, n, log_dir)
            results.append(res)
            print(
                f"  {variant:5} N={n:>5}: {time.monotonic() - started:5.1f} s, "
                f"cpu/job {res['cpu_per_job_ms']:.1f} ms, "
                f"lag p99 {res['lag_p99_ms']:.1f} ms, detect p99 {res['detect_p99_s']:.2f} s, "
                f"completed {res['completed']}/{n}",
                flush=True,
            )
    print()
    headers = [
        "trigger",
        "N",
        "CPU ms/job",
        "status calls/job",
        "peak RSS MiB",
        "RSS growth MiB",
        "loop lag p50 ms",
        "loop lag p99 ms",
        "loop lag max ms",
        "detect p50 s",
        "detect p99 s",
        "completed",
        "trigger CPU util (peak 1 s)",
        "emulator CPU util (peak 1 s)",
        "budget calls/s",
        "status calls/s at emulator (peak 1 s)",
        "429s",
    ]
    rows = [
        [
            VARIANTS.get(r["variant"], r["variant"]),
            r["n"],
            r["cpu_per_job_ms"],
            r["status_calls_per_job"],
            r["peak_rss_mib"],
            r["rss_growth_mib"],
            r["lag_p50_ms"],
            r["lag_p99_ms"],
            r["lag_max_ms"],
            r["detect_p50_s"],
            r["detect_p99_s"],
            f"{r['completed']}/{r['n']}",
            f"{r['client_util_mean']:.0%} ({r['client_util_peak']:.0%})",
            f"{r['emulator_util_mean']:.0%} ({r['emulator_util_peak']:.0%})",
            f"{r['budget']:g}" + (f" (limit {r['rate_limit']:g})" if r.get("rate_limit") else ""),
            f"{r['calls_per_s_mean']:.0f} ({r['calls_per_s_peak']:.0f})",
            r["refused_429"],
        ]
        for r in results
    ]
    print(common.table(headers, rows))
    print(
        "\nCPU ms/job: trigger process only, trigger phase only (submits excluded). Detection latency in "
        f"real-time-equivalent seconds (x{args.speedup:g}). Utilisation: share of one core, mean over the run "
        "(busiest 1 s window); the bottleneck is the side near 100 %."
    )
    for r in results:
        if r["n"] >= 5000 and r["variant"] == "ours":
            ok = r["lag_p99_ms"] < 100 and r["completed"] == r["n"]
            print(
                f"\nGoal: 5,000 concurrent jobs with loop lag p99 < 100 ms: lag p99 {r['lag_p99_ms']:.1f} ms, "
                f"{r['completed']}/{r['n']} completed: {'MET' if ok else 'MISSED'}"
            )
        if r["variant"] == "ours" and r.get("rate_limit") and r["budget"] < r["rate_limit"]:
            print(
                f"Goal: zero 429 answers with the budget ({r['budget']:g}/s) below the limit "
                f"({r['rate_limit']:g}/s): {r['refused_429']} 429s, status calls {r['calls_per_s_mean']:.0f}/s "
                f"mean, {r['calls_per_s_peak']:.0f}/s in the busiest second: "
                f"{'MET' if r['refused_429'] == 0 else 'MISSED'}"
            )
    common.write_json(args.json, {"args": vars(args), "results": results})
    with contextlib.suppress(OSError):
        for path in log_dir.iterdir():
            path.unlink()
        log_dir.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
