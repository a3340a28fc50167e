"""Benchmark 3: worker-slot time per job, deferrable vs blocking, in a real Airflow deployment.

Uses the real-deployment harness of the end-to-end tests (``tests/realairflow/harness.py``):
PostgreSQL, scheduler, dag-processor, triggerer and api-server with the LocalExecutor, as separate
processes on loopback. One DAG run (``bench/dags/bench_worker_slot.py``) runs the same muscle-surge
job ``--tasks`` times deferrable and ``--tasks`` times blocking, side by side, against the real
emulator at real speed (45.5 s per job).

Worker time = how long a task process exists on a worker. Every Airflow 3 task process sets its title
to ``airflow worker -- <TI uuid>``; a sampler thread scans the process table every 50 ms and records,
for each TI, each process's start (``create_time``) and last sighting. A deferrable task has two such
processes (submit and defer; then ``execute_complete``), the deferred wait in between holds no slot;
a blocking task has one, for the whole job. The job's own duration is its render time from the
emulator (result ``metrics.render_seconds``). The task logs give the provider's own share (the time
between the first and last log line of each segment).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Worker-slot time per muscle-surge job, deferrable vs blocking, in a real Airflow deployment "
        "(tests/realairflow/harness.py) against the real emulator at real speed.",
    )
    parser.add_argument("--tasks", type=int, default=2, help="tasks of each kind in the run (default %(default)s)")
    parser.add_argument("--job-seconds", type=float, default=JOB_SECONDS, help="emulator mean render time")
    parser.add_argument("--timeout", type=float, default=400.0, help="seconds the DAG run may take")
    parser.add_argument("--quick", action="store_true", help="one task of each kind")
    parser.add_argument("--budget", type=float, default=0.02, help="goal: worker time / job time (default 2 %%)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = 1

    common.print_header("bench/worker_slot.py: worker-slot time per job, deferrable vs blocking")
    sys.path.insert(0, str(common.REPO_ROOT))
    try:
        from tests.realairflow.harness import AirflowDeployment, DeploymentSettings
    except Exception as err:  # the harness is another engineer's work in progress
        print(f"real-deployment harness not available ({type(err).__name__}: {err}): skipped")
        return 0

    started = time.monotonic()
    with common.emulators(1, job_seconds=args.job_seconds, seed=7) as (emu,):
        conn = {"conn_type": "segmind", "host": emu.url, "password": emu.api_key}
        settings = DeploymentSettings(
            dags_folder=common.BENCH_DIR / "dags",
            env={
                "AIRFLOW_CONN_SEGMIND_BENCH": json.dumps(conn),
                "BENCH_WORKER_SLOT_TASKS": str(args.tasks),
                "BENCH_WORKER_SLOT_DEFER": str(args.job_seconds),
            },
            parallelism=max(8, 2 * args.tasks + 2),
        )
        sampler = ProcessSampler()
        with AirflowDeployment(settings) as deployment:
            startup = time.monotonic() - started
            print(f"deployment up in {startup:.1f} s ({deployment.base_url}); emulator {emu.url}", flush=True)
            sampler.start()
            try:
                run = deployment.run_dag(DAG_ID, timeout=args.timeout)
            finally:
                sampler.stop()
            run_id = run["dag_run_id"]
            tis = deployment.client.task_instances(DAG_ID, run_id)
            rows, results = [], []
            for ti in sorted(tis, key=lambda t: (t["task_id"].split("_")[0], t["task_id"])):
                task_id = ti["task_id"]
                mode = task_id.rsplit("_", 1)[0]
                segments = sampler.segments(ti["id"])
                worker = sum(last - start for start, last in segments)
                xcom = deployment.client.xcoms(DAG_ID, run_id, task_id).get("return_value") or {}
                job = float((xcom.get("metrics") or {}).get("render_seconds") or float("nan"))
                if mode.startswith("floor"):
                    job = float("nan")
                logs = deployment.client.logs(DAG_ID, run_id, task_id)
                log_text = logs.get(max(logs)) if logs else ""
                spans = _execute_seconds(log_text or "")
                result = {
                    "task_id": task_id,
                    "mode": mode,
                    "state": ti["state"],
                    "try_number": ti["try_number"],
                    "segments": len(segments),
                    "worker_seconds": worker,
                    "segment_seconds": [last - start for start, last in segments],
                    "job_seconds": job,
                    "ti_duration": ti.get("duration"),
                    "log_span_seconds": spans,
                }
                results.append(result)
                rows.append(
                    [
                        task_id,
                        ti["state"],
                        len(segments),
                        " + ".join(f"{s:.2f}" for s in result["segment_seconds"]) or "n/a",
                        worker,
                        job,
                        f"{worker / job:.1%}" if job == job and job else "n/a",
                        " + ".join(f"{s:.2f}" for s in spans) or "n/a",
                        ti.get("duration"),
                    ]
                )
    print(
        f"\nDAG run {run_id}: {run['state']} "
        f"(deployment start {startup:.0f} s, total {time.monotonic() - started:.0f} s)\n"
    )
    print(
        common.table(
            [
                "task",
                "state",
                "worker segments",
                "segment s",
                "worker s (total)",
                "job s (emulator)",
                "worker / job",
                "in execute() s (operator code)",
                "TI duration s (REST)",
            ],
            rows,
        )
    )
    deferrable = [r for r in results if r["mode"] == "deferrable" and r["job_seconds"] == r["job_seconds"]]
    blocking = [r for r in results if r["mode"] == "blocking" and r["job_seconds"] == r["job_seconds"]]
    summary: dict[str, Any] = {"run_state": run["state"], "results": results}
    if deferrable and blocking:
        d_share = sum(r["worker_seconds"] for r in deferrable) / sum(r["job_seconds"] for r in deferrable)
        b_share = sum(r["worker_seconds"] for r in blocking) / sum(r["job_seconds"] for r in blocking)
        d_mean = common.mean([r["worker_seconds"] for r in deferrable])
        b_mean = common.mean([r["worker_seconds"] for r in blocking])
        print(
            f"\nworker time per job: deferrable {d_mean:.2f} s ({d_share:.1%} of the job), blocking {b_mean:.2f} s "
            f"({b_share:.1%}); deferrable frees {1 - d_mean / b_mean:.1%} of the slot time"
        )
        ok = d_share <= args.budget
        print(
            f"Goal: deferrable worker time <= {args.budget:.0%} of the job: {d_share:.1%} "
            f"({d_mean:.2f} s of {common.mean([r['job_seconds'] for r in deferrable]):.1f} s): "
            + (
                "MET"
                if ok
                else f"MISSED by {d_mean - args.budget * common.mean([r['job_seconds'] for r in deferrable]):.2f} s"
            )
        )
        summary.update({"deferrable_share": d_share, "blocking_share": b_share, "goal_met": ok})
        floors = {r["task_id"]: r for r in results if r["mode"] == "floor"}
        ours = common.mean([sum(r["log_span_seconds"]) for r in deferrable])
        job_mean = common.mean([r["job_seconds"] for r in deferrable])
        if "floor_defer" in floors:
            floor = floors["floor_defer"]["worker_seconds"]
            print(
                f"Airflow's own floor on this machine: an empty task holds a slot "
                f"{floors.get('floor_empty', {}).get('worker_seconds', float('nan')):.2f} s, a task that only defers "
                f"and resumes {floor:.2f} s. Above that floor the provider adds {d_mean - floor:.2f} s "
                f"({(d_mean - floor) / job_mean:.1%} of the job); its execute()/execute_complete() code runs "
                f"{ours:.2f} s ({ours / job_mean:.1%} of the job)."
            )
            summary.update({"floor_defer": floor, "provider_above_floor": d_mean - floor, "operator_code": ours})
    common.write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
