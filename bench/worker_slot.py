"""Benchmark 3: worker-slot time per job, deferrable vs blocking vs zero-worker, in a real Airflow deployment.

Uses the real-deployment harness of the end-to-end tests (``tests/realairflow/harness.py``):
PostgreSQL, scheduler, dag-processor, triggerer and api-server with the LocalExecutor, as separate
processes on loopback. One DAG run (``bench/dags/bench_worker_slot.py``) runs the same muscle-surge
job ``--tasks`` times deferrable, blocking and zero-worker (``start_from_trigger=True``), side by
side, against the real emulator at real speed (45.5 s per job); then a second deployment with
``[workers] min_heartbeat_interval=1`` runs the deferrable and zero-worker tasks again
(``--heartbeat-intervals``), since the setting is read by every worker of a deployment.

Worker time = how long a task process exists on a worker. Every Airflow 3 task process sets its title
to ``airflow worker -- <TI uuid>``; a sampler thread scans the process table every 50 ms and records,
for each TI, each process's start (``create_time``) and last sighting. A deferrable task has two such
processes (submit and defer; then ``execute_complete``), the deferred wait in between holds no slot;
a blocking task has one, for the whole job; a zero-worker task should have none. The job's own
duration is its render time from the emulator (result ``metrics.render_seconds``). Slot time = what
the executor's supervisor reports per workload (``Workload finished ... duration=`` in the scheduler's
log, :func:`slot_seconds`): the process's lifetime plus the supervisor's start-up and its wait after
the process exits, which ``[workers] min_heartbeat_interval`` bounds; the goals are judged on it. The task logs give
the provider's own share (the time between the first and last log line of each segment).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

DAG_ID = "bench_worker_slot"
JOB_SECONDS = 45.5
TITLE = "airflow worker -- "


class ProcessSampler(threading.Thread):
    """Every ``interval`` s: which task processes exist, since when (create_time), last seen when."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(name="task-process-sampler", daemon=True)
        self.interval = interval
        self.seen: dict[tuple[str, int], list[float]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            now = time.time()
            for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
                cmdline = " ".join(proc.info.get("cmdline") or []).strip()
                if cmdline.startswith(TITLE):
                    key = (cmdline[len(TITLE) :], proc.info["pid"])
                    entry = self.seen.setdefault(key, [proc.info["create_time"], now])
                    entry[1] = now
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def segments(self, ti_uuid: str) -> list[tuple[float, float]]:
        return sorted((start, last) for (uuid, _), (start, last) in self.seen.items() if uuid == ti_uuid)


_WORKLOAD = re.compile(r"Workload finished .*?duration=([0-9.]+).*?workload_id=([0-9a-f-]+)")


def slot_seconds(scheduler_log: str) -> dict[str, list[float]]:
    """Per TI uuid, how long the executor's supervisor held the slot for each of its workloads.

    The LocalExecutor's worker runs ``supervise()`` for each workload and logs ``Workload finished
    ... duration=`` when it returns: from taking the workload to reporting its end, including the
    task process's start and the supervisor's wait after it exits (``[workers] min_heartbeat_interval``),
    which the process lifetime alone does not show.
    """
    found: dict[str, list[float]] = {}
    for match in _WORKLOAD.finditer(scheduler_log):
        found.setdefault(match.group(2), []).append(float(match.group(1)))
    return found


def _stamp(line: str) -> float | None:
    token = line.split(" ", 1)[0]
    try:
        return dt.datetime.fromisoformat(token.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _execute_seconds(text: str) -> list[float]:
    """Per task-process segment of a log: the time inside execute()/execute_complete(), i.e. from the end of
    Airflow's "Pre Execute" group to the start of its "Post Execute" group (the operator's own code)."""
    spans, start, in_pre = [], None, False
    for line in text.splitlines():
        stamp = _stamp(line)
        if stamp is None:
            continue
        if "::group::Pre Execute" in line:
            in_pre, start = True, None
        elif in_pre and "::endgroup::" in line:
            in_pre, start = False, stamp
        elif "::group::Post Execute" in line and start is not None:
            spans.append(stamp - start)
            start = None
    return spans


#: ``[workers] min_heartbeat_interval``: how long the task supervisor may wait after its task process ends.
HEARTBEAT_ENV = "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"


def measure(
    common_env: dict[str, str], label: str, heartbeat: str, modes: list[str], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], str]:
    """One deployment (``[workers] min_heartbeat_interval`` = ``heartbeat``), one DAG run of ``modes``."""
    from tests.realairflow.harness import AirflowDeployment, DeploymentSettings

    env = {**common_env, "BENCH_WORKER_SLOT_MODES": ",".join(modes)}
    # Always set: the test harness's own value is 1 s, and "default" means Airflow's 5 s.
    env[HEARTBEAT_ENV] = "5" if heartbeat == "default" else heartbeat
    settings = DeploymentSettings(
        dags_folder=common.BENCH_DIR / "dags", env=env, parallelism=max(8, len(modes) * args.tasks + 2)
    )
    sampler = ProcessSampler()
    started = time.monotonic()
    with AirflowDeployment(settings) as deployment:
        print(f"[{label}] deployment up in {time.monotonic() - started:.1f} s ({deployment.base_url})", flush=True)
        load_before = os.getloadavg()
        sampler.start()
        try:
            run = deployment.run_dag(DAG_ID, timeout=args.timeout)
        finally:
            sampler.stop()
        load = {"before": load_before, "after": os.getloadavg()}
        print(f"[{label}] load average (1, 5, 15 min) before {_load(load_before)}, after {_load(load['after'])}")
        run_id = run["dag_run_id"]
        tis = deployment.client.task_instances(DAG_ID, run_id)
        # A supervisor logs "Workload finished" after it has reported the end, so the run can be over
        # before the last lines are written: wait (bounded) until every sampled process has its line.
        settle = time.monotonic() + 30
        while True:
            slots = slot_seconds((deployment.logs_dir / "scheduler.log").read_text(errors="replace"))
            missing = [t for t in tis if len(slots.get(t["id"], [])) < len(sampler.segments(t["id"]))]
            if not missing or time.monotonic() > settle:
                break
            time.sleep(0.5)
        results = []
        for ti in tis:
            task_id = ti["task_id"]
            segments = sampler.segments(ti["id"])
            xcom = deployment.client.xcoms(DAG_ID, run_id, task_id).get("return_value") or {}
            job = float((xcom.get("metrics") or {}).get("render_seconds") or float("nan"))
            logs = deployment.client.logs(DAG_ID, run_id, task_id)
            results.append(
                {
                    "setting": label,
                    "load_average": load,
                    "task_id": task_id,
                    "mode": "floor" if task_id.startswith("floor") else task_id.rsplit("_", 1)[0],
                    "state": ti["state"],
                    "try_number": ti["try_number"],
                    "segments": len(segments),
                    "worker_seconds": sum(last - start for start, last in segments),
                    "segment_seconds": [last - start for start, last in segments],
                    "slot_seconds": slots.get(ti["id"], []),
                    "job_seconds": float("nan") if task_id.startswith("floor") else job,
                    "ti_duration": ti.get("duration"),
                    "log_span_seconds": _execute_seconds((logs.get(max(logs)) if logs else "") or ""),
                }
            )
    return results, str(run["state"])


def _load(values: tuple[float, ...]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Worker-slot time per muscle-surge job in a real Airflow deployment (tests/realairflow/harness.py) "
        "against the real emulator at real speed: classic deferrable at the default and other "
        "[workers] min_heartbeat_interval settings, blocking, and zero-worker mode (start_from_trigger=True).",
    )
    parser.add_argument("--tasks", type=int, default=2, help="tasks of each kind in the run (default %(default)s)")
    parser.add_argument("--job-seconds", type=float, default=JOB_SECONDS, help="emulator mean render time")
    parser.add_argument("--timeout", type=float, default=400.0, help="seconds the DAG run may take")
    parser.add_argument("--quick", action="store_true", help="one task of each kind")
    parser.add_argument("--budget", type=float, default=0.02, help="goal: worker time / job time (default 2 %%)")
    parser.add_argument(
        "--heartbeat-intervals",
        default="default,1",
        help="[workers] min_heartbeat_interval of each deployment, in order; 'default' leaves Airflow's (5 s). "
        "The first deployment also runs the blocking tasks (default %(default)s)",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = 1

    common.print_header("bench/worker_slot.py: worker-slot time per job: deferrable, blocking, zero-worker")
    sys.path.insert(0, str(common.REPO_ROOT))
    try:
        import tests.realairflow.harness  # noqa: F401
    except Exception as err:  # the harness is another engineer's work in progress
        print(f"real-deployment harness not available ({type(err).__name__}: {err}): skipped")
        return 0

    started = time.monotonic()
    results: list[dict[str, Any]] = []
    states: dict[str, str] = {}
    with common.emulators(1, job_seconds=args.job_seconds, seed=7) as (emu,):
        conn = {"conn_type": "segmind", "host": emu.url, "password": emu.api_key}
        env = {
            "AIRFLOW_CONN_SEGMIND_BENCH": json.dumps(conn),
            # A fresh API server can take tens of seconds over its first task start on a loaded machine;
            # with the default 5 s the task fails before its process starts, and there is nothing to measure.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            "BENCH_WORKER_SLOT_TASKS": str(args.tasks),
            "BENCH_WORKER_SLOT_DEFER": str(args.job_seconds),
        }
        for index, heartbeat in enumerate(h.strip() for h in args.heartbeat_intervals.split(",")):
            label = f"min_heartbeat_interval={'5 (default)' if heartbeat == 'default' else heartbeat}"
            modes = ["deferrable", "blocking", "zero"] if index == 0 else ["deferrable", "zero"]
            found, states[label] = measure(env, label, heartbeat, modes, args)
            results.extend(found)
    print(f"\nDAG runs: {states} (total {time.monotonic() - started:.0f} s)\n")
    rows = []
    for r in sorted(results, key=lambda r: (r["setting"], r["mode"], r["task_id"])):
        job = r["job_seconds"]
        rows.append(
            [
                r["setting"],
                r["task_id"],
                r["state"],
                r["segments"],
                " + ".join(f"{s:.2f}" for s in r["segment_seconds"]) or "none",
                r["worker_seconds"],
                " + ".join(f"{s:.2f}" for s in r["slot_seconds"]) or "none",
                sum(r["slot_seconds"]),
                job,
                f"{sum(r['slot_seconds']) / job:.1%}" if job == job and job else "n/a",
                " + ".join(f"{s:.2f}" for s in r["log_span_seconds"]) or "n/a",
            ]
        )
    print(
        common.table(
            [
                "setting",
                "task",
                "state",
                "worker processes",
                "segment s",
                "process s (total)",
                "slot s (supervisor)",
                "slot s (total)",
                "job s (emulator)",
                "slot / job",
                "in execute() s (operator code)",
            ],
            rows,
        )
    )
    summary: dict[str, Any] = {"run_states": states, "results": results, "per_setting": {}}
    print()
    for label in states:
        mine = [r for r in results if r["setting"] == label]
        line = []
        for mode in ("deferrable", "zero", "blocking"):
            jobs = [r for r in mine if r["mode"] == mode and r["state"] == "success" and r["job_seconds"] > 0]
            if not jobs:
                continue
            share = sum(sum(r["slot_seconds"]) for r in jobs) / sum(r["job_seconds"] for r in jobs)
            processes = sum(r["segments"] for r in jobs) / len(jobs)
            per_job = common.mean([sum(r["slot_seconds"]) for r in jobs])
            summary["per_setting"].setdefault(label, {})[mode] = {
                "worker_processes_per_job": processes,
                "worker_seconds_per_job": per_job,
                "share_of_job": share,
            }
            line.append(f"{mode} {processes:.0f} worker processes and {per_job:.2f} slot s per job ({share:.1%})")
            if mode == "deferrable":
                # The second workload resumes the task: what ending it from the trigger would save.
                resume = common.mean([r["slot_seconds"][-1] for r in jobs if len(r["slot_seconds"]) >= 2])
                summary["per_setting"][label][mode]["resume_seconds"] = resume
                line.append(f"of which the resume {resume:.2f} s")
        floor = next((r for r in mine if r["task_id"] == "floor_defer" and r["state"] == "success"), None)
        if floor:
            line.append(f"floor (defer+resume, nothing else) {sum(floor['slot_seconds']):.2f} slot s")
        print(f"{label}: " + "; ".join(line))
    per = summary["per_setting"]
    zero_processes = [v["zero"]["worker_processes_per_job"] for v in per.values() if "zero" in v]
    best = min(((v["deferrable"]["share_of_job"], k) for k, v in per.items() if "deferrable" in v), default=None)
    zero_ok = bool(zero_processes) and max(zero_processes) == 0
    classic_ok = best is not None and best[0] <= args.budget
    classic = f"{best[0]:.1%} at {best[1]}" if best else "no successful deferrable task"
    print(
        f"\nGoal: zero-worker = 0 worker processes: {'MET' if zero_ok else 'MISSED'} ({zero_processes}); "
        f"classic deferrable at the best setting <= {args.budget:.0%} of the job: {classic}: "
        f"{'MET' if classic_ok else 'MISSED'}"
    )
    summary.update({"zero_worker_goal_met": zero_ok, "classic_goal_met": classic_ok, "best_classic": best})
    common.write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
