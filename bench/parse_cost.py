"""Benchmark 4: what importing the provider adds to DAG parsing.

A DAG file that uses ``MuscleSurgeOperator`` imports ``airflow_provider_muscle_surge.operators.segmind``
(and maybe the sensor) every time the dag-processor parses it. This measures, in fresh interpreter
processes (best of ``--runs``):

* the import time our modules add on top of ``import airflow.sdk`` (and on top of
  ``from airflow.sdk import DAG, BaseOperator``, which every DAG file pays anyway);
* the modules our import pulls in that the baseline did not, checked against the ones that must
  stay out of the parse path (aiohttp, av, numpy, PIL, requests, our hooks, triggers and emulator);
* ``python -X importtime``'s self time of each of those modules (one run, for the breakdown);
* the DagBag parse time of each file in ``example_dags/``: cold (fresh process, nothing of ours
  imported yet: what the first parse pays) and warm (same file again in the same process: what
  every later parse in a long-lived parser pays).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

OPERATORS = "airflow_provider_muscle_surge.operators.segmind"
SENSORS = "airflow_provider_muscle_surge.sensors.segmind"
BASELINES = {
    "import airflow.sdk": "import airflow.sdk",
    "from airflow.sdk import DAG, BaseOperator": "from airflow.sdk import DAG, BaseOperator",
}
TARGETS = {
    "operators": f"import {OPERATORS}",
    "sensors": f"import {SENSORS}",
    "operators + sensors": f"import {OPERATORS}, {SENSORS}",
}
#: Must never be imported while a DAG file is parsed.
FORBIDDEN = (
    "aiohttp",
    "av",
    "numpy",
    "PIL",
    "requests",
    "yarl",
    "airflow_provider_muscle_surge.hooks",
    "airflow_provider_muscle_surge.triggers",
    "segmind_emulator",
)

_IMPORT_PROBE = """
import json, sys, time
t0 = time.perf_counter()
{base}
t1 = time.perf_counter()
before = set(sys.modules)
{target}
t2 = time.perf_counter()
print("PROBE " + json.dumps({{"base": t1 - t0, "added": t2 - t1, "new": sorted(set(sys.modules) - before)}}))
"""

_DAGBAG_PROBE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk
t0 = time.perf_counter()
bag = DagBag(dag_folder={path!r})
t1 = time.perf_counter()
warm = []
for _ in range(3):
    s = time.perf_counter()
    DagBag(dag_folder={path!r})
    warm.append(time.perf_counter() - s)
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in {top!r} or m.startswith({ours!r}))
print("PROBE " + json.dumps({{"cold": t1 - t0, "warm": min(warm), "dags": len(bag.dags),
      "errors": {{str(k): str(v)[-300:] for k, v in bag.import_errors.items()}}, "forbidden": forbidden}}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-parse-home-"))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def _probe(code: str, env: dict[str, str], extra: list[str] | None = None) -> tuple[dict[str, Any], str]:
    proc = common.run_quiet([sys.executable, *(extra or []), "-c", code], env=env, cwd=tempfile.gettempdir())
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:]), proc.stderr
    raise RuntimeError(f"probe failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def _importtime_breakdown(base: str, target: str, env: dict[str, str], top: int) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us) of the modules imported by ``target`` after ``base``."""
    code = f"{base}\nimport sys\nsys.stderr.write('---MARK---\\n')\n{target}\n"
    proc = common.run_quiet([sys.executable, "-X", "importtime", "-c", code], env=env, cwd=tempfile.gettempdir())
    after = proc.stderr.split("---MARK---", 1)[-1]
    rows = []
    for line in after.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        rows.append((parts[2].strip(), int(parts[0]), int(parts[1])))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Import time our operator/sensor modules add to a DAG parse, what they pull in, and the "
        "DagBag parse time of each example DAG (fresh processes, best of several runs).",
    )
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per measurement (default %(default)s)")
    parser.add_argument("--dags", default=str(common.REPO_ROOT / "example_dags"), help="folder of example DAGs")
    parser.add_argument("--quick", action="store_true", help="3 runs per measurement, operators + sensors only")
    parser.add_argument("--budget-ms", type=float, default=30.0, help="the goal for the added import time (ms)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 3)

    common.print_header("bench/parse_cost.py: import and DAG-parse cost of the provider")
    env = _env()
    results: dict[str, Any] = {"imports": {}, "dags": {}}
    rows = []
    leaked: set[str] = set()
    new_modules: dict[str, list[str]] = {}
    targets = {"operators + sensors": TARGETS["operators + sensors"]} if args.quick else TARGETS
    for base_name, base in BASELINES.items():
        for target_name, target in targets.items():
            samples = [_probe(_IMPORT_PROBE.format(base=base, target=target), env)[0] for _ in range(args.runs)]
            best = min(samples, key=lambda s: s["added"])
            added = sorted(s["added"] * 1000 for s in samples)
            new = best["new"]
            leaked.update(_forbidden(new))
            new_modules[f"{base_name} -> {target_name}"] = new
            results["imports"][f"{base_name} | {target_name}"] = {
                "baseline_ms_best": min(s["base"] for s in samples) * 1000,
                "added_ms_best": added[0],
                "added_ms_median": added[len(added) // 2],
                "new_modules": new,
            }
            rows.append(
                [
                    base_name,
                    target_name,
                    min(s["base"] for s in samples) * 1000,
                    added[0],
                    added[len(added) // 2],
                    len(new),
                    ", ".join(_forbidden(new)) or "none",
                ]
            )
    print(
        common.table(
            [
                "baseline",
                "our import",
                "baseline ms (best)",
                "added ms (best)",
                "added ms (median)",
                "new modules",
                "forbidden among them",
            ],
            rows,
            digits=1,
        )
    )
    key = f"import airflow.sdk -> {'operators + sensors'}"
    print(f"\nModules `import {OPERATORS}, {SENSORS}` adds over `import airflow.sdk`:")
    for module in new_modules[key]:
        print(f"  {module}")
    print("\n-X importtime self time of those (one run, us):")
    breakdown = _importtime_breakdown(BASELINES["import airflow.sdk"], TARGETS["operators + sensors"], env, 12)
    print(common.table(["module", "self us", "cumulative us"], breakdown))
    results["importtime"] = breakdown

    # --- DagBag parse of each example DAG ---------------------------------------------------------------
    dag_dir = Path(args.dags)
    files = sorted(p for p in dag_dir.glob("*.py") if not p.name.startswith("_")) if dag_dir.is_dir() else []
    print(f"\nDagBag parse of {dag_dir} ({len(files)} files; cold = first parse in a fresh process):")
    if not files:
        print("  no example DAGs found: skipped")
    dag_rows = []
    tops = sorted({f.split(".")[0] for f in FORBIDDEN if not f.startswith("airflow_provider")})
    ours = tuple(f for f in FORBIDDEN if f.startswith("airflow_provider"))
    for path in files:
        try:
            samples = [
                _probe(_DAGBAG_PROBE.format(path=str(path), top=tops, ours=ours), env)[0] for _ in range(args.runs)
            ]
        except RuntimeError as err:
            dag_rows.append([path.name, "error", "", "", str(err).splitlines()[-1][:80], ""])
            continue
        cold = min(s["cold"] for s in samples) * 1000
        warm = min(s["warm"] for s in samples) * 1000
        errors = samples[0]["errors"]
        forbidden = samples[0]["forbidden"]
        leaked.update(forbidden)
        results["dags"][path.name] = {"cold_ms": cold, "warm_ms": warm, **samples[0]}
        dag_rows.append(
            [
                path.name,
                samples[0]["dags"],
                cold,
                warm,
                "; ".join(f"{k}: {v.splitlines()[-1]}" for k, v in errors.items()) or "none",
                ", ".join(forbidden) or "none",
            ]
        )
    if dag_rows:
        print(
            common.table(
                ["file", "DAGs", "cold parse ms (best)", "warm parse ms (best)", "import errors", "forbidden imported"],
                dag_rows,
                digits=1,
            )
        )

    added = results["imports"][f"import airflow.sdk | {'operators + sensors'}"]["added_ms_best"]
    ok_time = added <= args.budget_ms
    print(
        f"\nGoal: <= {args.budget_ms:g} ms added over `import airflow.sdk`: {added:.1f} ms: "
        + ("MET" if ok_time else "MISSED")
    )
    print(
        "Goal: no heavy import on the DAG-parse path: "
        + ("MET (none of " + ", ".join(FORBIDDEN) + ")" if not leaked else f"MISSED: {sorted(leaked)}")
    )
    results["goals"] = {"added_ms": added, "time_met": ok_time, "leaked": sorted(leaked)}
    common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
