"""``make demo``: the chain example DAG end to end against the local Segmind emulator.

1. starts the emulator on a free loopback port (``--port 0``; jobs take ``--job-seconds``, the
   video is really rendered and encoded),
2. creates a throw-away ``AIRFLOW_HOME`` with a SQLite database (``airflow db migrate``),
3. points the ``segmind_default`` connection at the emulator (``AIRFLOW_CONN_SEGMIND_DEFAULT``),
4. runs ``airflow dags test example_muscle_surge_chain``: text-to-image (v1), upload, then the
   Muscle Surge video in deferrable mode (the trigger runs in-process), saved to object storage
   and announced on the Asset ``muscle_surge_video``,
5. runs ``airflow dags test example_muscle_surge_publish`` (scheduled on that Asset): copy + manifest,
6. stops the emulator and prints the MP4's path, duration and size read back with PyAV.

No API key, no network. Everything is cleaned up on the way out (also on errors and Ctrl-C),
except the outputs under ``--output`` (default ``demo-output/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAGS = ROOT / "example_dags"
CHAIN_DAG = "example_muscle_surge_chain"
PUBLISH_DAG = "example_muscle_surge_publish"
DEMO_KEY = "demo-key"
#: Log lines worth showing while ``airflow dags test`` runs (the full log is kept in a file).
HIGHLIGHTS = re.compile(
    r"\[DAG TEST\] (starting task_id|running trigger in line)"
    r"|Submitted muscle-surge|Segmind request \S+ is |Saved file:|made a \d+-byte|Published |DagRun Finished"
    r"|Task failed|Traceback|Error|ERROR"
)
DAGRUN_FINISHED = re.compile(
    r"DagRun Finished: dag_id=(?P<dag_id>[\w.-]+),.*run_duration=(?P<took>[\d.]+), state=(?P<state>\w+)"
)
STRUCTLOG_LINE = re.compile(r"^\S+Z \[(?P<level>\w+)\s*\] (?P<msg>.*?)(?: \[[\w.]+\](?: \S+=.*)?)?$")


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.output = Path(args.output).absolute()
        self.logs = self.output / "logs"
        self.home = Path(tempfile.mkdtemp(prefix="muscle-surge-demo-airflow-"))
        self.started = time.monotonic()
        self.children: list[subprocess.Popen[str]] = []
        self.emulator: Any = None

    # --- output ------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    # --- steps ---------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MUSCLE_SURGE"))}
        connection = {
            "conn_type": "segmind",
            "host": self.emulator.url if self.emulator else "",
            "password": DEMO_KEY,
            # The emulator's jobs take seconds, not Segmind's ~45 s: tell the adaptive poller.
            "extra": {"poll": {"expected_seconds": self.args.job_seconds}},
        }
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW_CONN_SEGMIND_DEFAULT=json.dumps(connection),
            MUSCLE_SURGE_OUTPUT=str(self.output),
            PYTHONUNBUFFERED="1",
        )
        return env

    def airflow(self, *args: str, log_name: str, show: bool) -> int:
        """``python -m airflow ARGS`` with the demo's environment; full log to a file."""
        log_path = self.logs / log_name
        cmd = [sys.executable, "-m", "airflow", *args]
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                cmd,
                env=self.env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            self.children.append(proc)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if show and HIGHLIGHTS.search(line):
                    print(f"         | {_short(line)}", flush=True)
            code = proc.wait()
        if code != 0:
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
            print(tail, file=sys.stderr)
            self.say(f"`airflow {' '.join(args)}` failed (exit {code}); full log: {log_path}")
        return code

    def start_emulator(self) -> None:
        from segmind_emulator.testing import EmulatorProcess

        self.emulator = EmulatorProcess(
            api_key=DEMO_KEY, job_seconds=self.args.job_seconds, data_dir=str(self.home / "emulator")
        ).start()
        self.say(f"Segmind emulator listening on {self.emulator.url} (jobs take ~{self.args.job_seconds:g} s)")

    def run(self) -> dict[str, Any]:
        self.output.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.say(f"Temporary AIRFLOW_HOME {self.home} (SQLite); outputs under {self.output}")

        # The database migration (~5 s) and the emulator start overlap.
        migrate_code: list[int] = []
        migrate = threading.Thread(
            target=lambda: migrate_code.append(self.airflow("db", "migrate", log_name="db-migrate.log", show=False))
        )
        migrate.start()
        self.start_emulator()
        migrate.join()
        if migrate_code != [0]:
            raise SystemExit(1)
        self.say("Airflow database migrated")

        begun = time.time()
        self.say(f"airflow dags test {CHAIN_DAG}  (image -> upload -> Muscle Surge video, deferrable)")
        if self.airflow("dags", "test", CHAIN_DAG, log_name=f"{CHAIN_DAG}.log", show=True) != 0:
            raise SystemExit(1)
        video = self.newest(self.output / "videos", "*.mp4", begun)

        manifest = None
        if not self.args.no_publish:
            self.say(f"airflow dags test {PUBLISH_DAG}  (scheduled on the Asset muscle_surge_video)")
            if self.airflow("dags", "test", PUBLISH_DAG, log_name=f"{PUBLISH_DAG}.log", show=True) != 0:
                raise SystemExit(1)
            manifest = self.newest(self.output / "published", "*.json", begun)

        stats = self.emulator.stats()
        self.emulator.stop()
        self.say("Emulator stopped")
        return {"video": str(video), "manifest": str(manifest) if manifest else None, "emulator_stats": stats}

    @staticmethod
    def newest(folder: Path, pattern: str, since: float) -> Path:
        found = [p for p in folder.rglob(pattern) if p.stat().st_mtime >= since - 1]
        if not found:
            raise SystemExit(f"the run succeeded but no {pattern} appeared under {folder}")
        return max(found, key=lambda p: p.stat().st_mtime)

    def cleanup(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if self.emulator is not None and self.emulator.running:
            self.emulator.stop()
        if self.args.keep_airflow_home:
            self.say(f"Kept AIRFLOW_HOME {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)


def _short(line: str) -> str:
    """The message of a structlog line, without timestamp, logger and key=value noise."""
    match = STRUCTLOG_LINE.match(line.rstrip())
    text = match.group("msg") if match else line.rstrip()
    finished = DAGRUN_FINISHED.search(text)
    if finished:
        return f"DagRun {finished['dag_id']} finished: {finished['state']} in {float(finished['took']):.1f} s"
    return text[:200]


def describe_video(path: Path) -> dict[str, Any]:
    """Read the MP4 back with PyAV: proof that it is a real, decodable video."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = (
            float(container.duration / av.time_base) if container.duration else frames / float(stream.average_rate)
        )
        info = {
            "duration_s": round(duration, 2),
            "width": stream.width,
            "height": stream.height,
            "frames": frames,
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "codec": stream.codec_context.name,
        }
    info["bytes"] = path.stat().st_size
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return info


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-seconds", type=float, default=3.0, help="emulated render time (default 3)")
    parser.add_argument("--output", default=str(ROOT / "demo-output"), help="where videos go (default demo-output/)")
    parser.add_argument("--no-publish", action="store_true", help="skip the Asset-scheduled publish DAG")
    parser.add_argument("--keep-airflow-home", action="store_true", help="keep the temporary AIRFLOW_HOME")
    parser.add_argument("--json", action="store_true", help="end with one JSON line (for scripts and tests)")
    args = parser.parse_args(argv)

    # SIGTERM (CI cancel, `kill`) runs the same cleanup as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    demo = Demo(args)
    try:
        result = demo.run()
    except KeyboardInterrupt:
        demo.say("Interrupted")
        return 130
    finally:
        demo.cleanup()

    video = Path(result["video"])
    info = describe_video(video)
    took = time.monotonic() - demo.started
    result.update(video_info=info, seconds=round(took, 1))
    print()
    print(f"MP4: {video}")
    print(
        f"     {info['duration_s']:.2f} s, {info['width']}x{info['height']}, {info['frames']} frames, "
        f"{info['codec']}, {info['bytes']:,} bytes, sha256 {info['sha256'][:16]}..."
    )
    if result["manifest"]:
        manifest = json.loads(Path(result["manifest"]).read_text())
        print(f"Published: {manifest['video'].removeprefix('file://')}")
        print(f"Manifest:  {result['manifest']}")
    stats = result["emulator_stats"]
    jobs = sum(stats.get("submissions", {}).values())
    print(f"Emulator: {jobs} video job(s) submitted, {stats.get('status_polls')} status polls")
    print(f"Logs:     {demo.logs}")
    print(f"Done in {took:.1f} s. Same DAG on the real API: set the connection to your key (see README).")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
