"""The fewest status calls *any* polling schedule can make, given a median detection to meet.

Why this exists: issue 11 asks the learning schedule for two things at once on every stream, after a
warm-up: at most a quarter of the SDK's status calls, and a median detection no later than the SDK's
(about half a second: it looks once a second) -- while keeping the early look that catches fast
failures. On short jobs these pull against each other. This script computes, for the render times
the other benchmarks draw (the emulator's normal spread and slow tail), a lower bound on the
expected calls per job of *every* schedule that knows the distribution exactly and meets the median,
with and without the early look, so a "missed" in ``RESULTS.md`` can say whether anything could meet it.

How: a schedule is the sequence of look times x1 < x2 < ...; a look at x_k costs one call for every
job not yet seen, P(T > x_{k-1}), and sees "on time" the jobs that ended in (x_k - m, x_k]. The
constrained minimum (calls, subject to P(on time) >= 1/2) is bounded from below by its Lagrangian
dual, max over lambda >= 0 of [min over schedules of (calls - lambda * P(on time))] + lambda / 2, and
the inner minimum is a shortest path over a time grid (exact on the grid). The early look (before
any job can end) adds one call to every job. Figures depend only on the distribution, not on this
machine::

    python bench/polling_bound.py                      # centres 10, 20 and 45.5 s
    python bench/polling_bound.py --centres 10 --median 0.47 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from segmind_emulator.config import EmulatorConfig
from segmind_emulator.state import MIN_RENDER_SECONDS, TAIL_FACTOR, TAIL_PROBABILITY

#: The emulator's default render-time spread (sd / mean), as in ``bench/polling.py --job-spread``.
SPREAD = EmulatorConfig().job_spread


def draw(centre: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` render times as ``segmind_emulator.state.draw_render_seconds`` draws them, vectorised."""
    seconds = rng.normal(centre, SPREAD * centre, n)
    tail = rng.random(n) < TAIL_PROBABILITY
    seconds[tail] *= rng.uniform(*TAIL_FACTOR, int(tail.sum()))
    return np.maximum(seconds, MIN_RENDER_SECONDS)


def inner_minimum(survival: np.ndarray, cumulative: np.ndarray, m_steps: int, lam: float) -> tuple[float, float]:
    """min over look sequences on the grid of E[calls] - lam * P(on time); returns (calls, on time).

    ``survival[i]`` = P(T > t_i), ``cumulative[i]`` = P(T <= t_i). best[j]: cheapest path whose last look
    is at t_j (the first look starts from t_0 = 0, where every job is still running).
    """
    n = len(survival)
    best = np.full(n, np.inf)
    calls = np.zeros(n)
    on_time = np.zeros(n)
    best[0], calls[0], on_time[0] = 0.0, 0.0, 0.0
    idx = np.arange(n)
    for j in range(1, n):
        prev = idx[:j]
        low = np.maximum(prev, j - m_steps)
        gain = cumulative[j] - cumulative[low]
        cost = survival[prev]
        total = best[:j] + cost - lam * gain
        k = int(np.argmin(total))
        best[j], calls[j], on_time[j] = total[k], calls[k] + cost[k], on_time[k] + gain[k]
    # A schedule must end with every job seen: its last look lies at or after the last render.
    end = int(np.argmax(survival <= 0.0))
    k = end + int(np.argmin(best[end:]))
    return float(calls[k]), float(on_time[k])


def bound(renders: np.ndarray, median: float, step: float) -> dict[str, float]:
    top = float(renders.max()) + step
    grid = np.arange(0.0, top + step, step)
    cumulative = np.searchsorted(np.sort(renders), grid, side="right") / len(renders)
    survival = 1.0 - cumulative
    m_steps = max(1, round(median / step))
    lo, hi = 0.0, 1000.0
    best_bound, at = 0.0, (0.0, 0.0)
    for _ in range(40):  # the dual is concave in lambda: bisect on the constraint's sign
        lam = (lo + hi) / 2
        calls, on_time = inner_minimum(survival, cumulative, m_steps, lam)
        dual = calls - lam * on_time + lam * 0.5
        if dual > best_bound:
            best_bound, at = dual, (calls, on_time)
        if on_time >= 0.5:
            hi = lam
        else:
            lo = lam
    return {
        "calls_without_early_look": best_bound,
        "calls_with_early_look": best_bound + 1.0,
        "primal_calls": at[0],
        "primal_on_time": at[1],
    }


def sdk(renders: np.ndarray) -> tuple[float, float]:
    """The SDK's calls per job and median detection: a look every second after the submit, as in the grid."""
    looks = np.ceil(renders)
    return float(np.mean(looks)), float(np.median(looks - renders))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--centres", default="10,20,45.5", help="render-time centres in seconds")
    parser.add_argument(
        "--median", type=float, help="median detection to meet, s (default: the SDK's on the same draws)"
    )
    parser.add_argument("--step", type=float, default=0.02, help="time grid, s")
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(20251124)
    rows = []
    print(f"# lower bound on status calls per job at the SDK's median detection, grid {args.step} s")
    columns = ["centre s", "SDK calls/job", "1/4 of it", "median to meet s", "bound, no early look"]
    print("| " + " | ".join([*columns, "bound, with early look", "verdict"]) + " |")
    print("|---" * 7 + "|")
    for centre in (float(c) for c in args.centres.split(",")):
        renders = draw(centre, args.samples, rng)
        sdk_calls, sdk_median = sdk(renders)
        median = args.median if args.median is not None else sdk_median
        figures = bound(renders, median, args.step)
        quarter = sdk_calls / 4
        verdict = "reachable" if figures["calls_with_early_look"] <= quarter else "no schedule can meet both"
        rows.append(
            {
                "centre": centre,
                "sdk_calls": sdk_calls,
                "quarter": quarter,
                "median": median,
                **figures,
                "verdict": verdict,
            }
        )
        cells = [f"{centre:g}", f"{sdk_calls:.2f}", f"{quarter:.2f}", f"{median:.3f}"]
        cells += [f"{figures['calls_without_early_look']:.2f}", f"{figures['calls_with_early_look']:.2f}", verdict]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
