"""bench/polling_bound.py's lower bound, on distributions whose best schedule is known by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))

import polling_bound


def test_jobs_that_all_end_at_one_instant_need_one_look():
    figures = polling_bound.bound(np.full(1000, 10.0), median=0.5, step=0.02)
    assert figures["calls_without_early_look"] == pytest.approx(1.0, abs=0.01)
    assert figures["calls_with_early_look"] == pytest.approx(2.0, abs=0.01)


def test_two_instants_further_apart_than_the_median_need_a_look_each():
    # Half end at 10 s, half at 20 s: looking once at 20 s sees only half on time, which meets the
    # median; the bound is one call. Asking more than half on time is not what the median asks.
    renders = np.array([10.0] * 500 + [20.0] * 500)
    figures = polling_bound.bound(renders, median=0.5, step=0.02)
    assert figures["calls_without_early_look"] == pytest.approx(1.0, abs=0.02)


def test_a_spread_wider_than_the_median_costs_more_than_one_look():
    renders = polling_bound.draw(10.0, 50_000, np.random.default_rng(1))
    figures = polling_bound.bound(renders, median=0.5, step=0.02)
    assert 1.1 < figures["calls_without_early_look"] < 2.0
