"""What this process has learned about how long jobs take, per model and render class.

Why: a fixed expectation (45.5 s for every muscle-surge job) polls densely in the wrong place
when a class of jobs takes 20 s or 2 minutes: the dense window passes before the job ends, the
waits grow towards the ceiling, and the answer is noticed seconds late. Render time depends on
the parameters (quality, duration, motion mode for muscle-surge; ``models/`` declares which) and
on the service's load, so it is learned from the completions this process itself observes.

One :data:`RENDER_TIMES` store per process, shared by every waiter in it: all triggers of one
triggerer, all waits of one worker process. It is fed and read by
:class:`~airflow_provider_muscle_surge.polling.Watch` (the one polling loop), never by the hooks'
own code. Every operation is a few dozen arithmetic steps on in-memory numbers under a lock,
so it is safe from the sync hook's threads and never blocks the triggerer's event loop.

Bounded: at most :data:`MAX_CLASSES` classes (least recently used forgotten first) and
:data:`MAX_SAMPLES` recent samples per class. A shift in a class's render time (a slower
service) is noticed when :data:`SHIFT_SAMPLES` completions in a row fall outside the window on
the same side: the older samples are dropped and the estimate starts from the recent ones.

A sample is the total seconds from submit to completion, taken at the middle of the last
interval (the job ended between the last two looks), minus the extra queueing this job had
beyond the class's typical queue; the queue time itself (submit to first PROCESSING) is
recorded separately when a QUEUED answer was seen before the PROCESSING one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

#: Classes remembered per process; the least recently used is forgotten beyond this.
MAX_CLASSES = 256
#: Recent samples kept per class (totals and queue times each).
MAX_SAMPLES = 64
#: Completions in a row outside the window, on the same side, that mean the distribution moved.
SHIFT_SAMPLES = 3
#: Samples needed before the window width is taken from their spread (fewer: +-10 % of the centre).
MIN_SAMPLES_FOR_SPREAD = 3
#: The window opens this many standard deviations before the median (about the 5th percentile) ...
WINDOW_Z_EARLY = 1.2
#: ... and closes this many after it (about the 99th percentile).
WINDOW_Z_LATE = 2.33
#: The narrowest window half-width, as a fraction of the centre (samples are only as exact as the looks).
MIN_SPREAD_FRACTION = 0.03
#: The widest window half-width, as a fraction of the centre (beyond it the back-off is cheaper).
MAX_SPREAD_FRACTION = 0.5
#: A class key is cut to this many characters (an unknown model's slug is user input).
MAX_CLASS_KEY = 200


@dataclass(frozen=True)
class Estimate:
    """Where a class's jobs end, as the schedule's window: ``centre +- spread`` seconds after submit."""

    centre: float
    spread: float
    samples: int
    #: Median seconds from submit to PROCESSING of the jobs seen QUEUED (None: none was). Only jobs
    #: queued past a look are seen so, so this is the typical *long* queue: reported, not used to place.
    queue: float | None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def estimate_of(totals: list[float], queues: list[float] | None = None) -> Estimate | None:
    """The window for these samples, from their median and robust standard deviation (MAD).

    It opens :data:`WINDOW_Z_EARLY` deviations before the median and closes :data:`WINDOW_Z_LATE`
    after it: a job that ends before the window costs one look's delay at most (it is seen at the
    window's start), one that ends after it is seen by the back-off, seconds late.
    """
    if not totals:
        return None
    median = _median(totals)
    if len(totals) < MIN_SAMPLES_FOR_SPREAD:
        early = late = 0.1 * median  # the default schedule's rule, until there is a spread to measure
    else:
        sigma = 1.4826 * _median([abs(x - median) for x in totals])
        early, late = WINDOW_Z_EARLY * sigma, WINDOW_Z_LATE * sigma
    low = MIN_SPREAD_FRACTION * median
    high = MAX_SPREAD_FRACTION * median
    early, late = min(high, max(low, early)), min(high, max(low, late))
    centre = median + (late - early) / 2
    return Estimate(centre, (early + late) / 2, len(totals), _median(queues) if queues else None)


class _Class:
    __slots__ = ("queues", "totals")

    def __init__(self) -> None:
        self.totals: deque[float] = deque(maxlen=MAX_SAMPLES)
        self.queues: deque[float] = deque(maxlen=MAX_SAMPLES)


class RenderTimes:
    """Recent completion times per render class; thread-safe, bounded, cheap enough for the event loop."""

    def __init__(self, max_classes: int = MAX_CLASSES) -> None:
        self.max_classes = max_classes
        self._lock = threading.Lock()
        self._classes: OrderedDict[str, _Class] = OrderedDict()

    def observe(self, render_class: str, total: float, queue: float | None = None) -> None:
        """Record one completion: ``total`` seconds after submit, ``queue`` of them QUEUED (if seen)."""
        if not (total > 0 and total < float("inf")):
            return  # a clock jump or a broken answer teaches nothing
        key = render_class[:MAX_CLASS_KEY]
        with self._lock:
            known = self._classes.get(key)
            if known is None:
                known = self._classes[key] = _Class()
                while len(self._classes) > self.max_classes:
                    self._classes.popitem(last=False)
            else:
                self._classes.move_to_end(key)
            known.totals.append(total)
            if queue is not None and 0 <= queue < float("inf"):
                known.queues.append(queue)
            self._forget_if_shifted(known)

    @staticmethod
    def _forget_if_shifted(known: _Class) -> None:
        """Keep only the latest samples when they all fall outside the older samples' window on one side."""
        if len(known.totals) < SHIFT_SAMPLES + MIN_SAMPLES_FOR_SPREAD:
            return
        samples = list(known.totals)
        older, recent = samples[:-SHIFT_SAMPLES], samples[-SHIFT_SAMPLES:]
        before = estimate_of(older)
        assert before is not None
        low, high = before.centre - before.spread, before.centre + before.spread
        if all(x > high for x in recent) or all(x < low for x in recent):
            known.totals.clear()
            known.totals.extend(recent)

    def estimate(self, render_class: str) -> Estimate | None:
        """The learned window for this class, or None when no job of it has completed here yet."""
        with self._lock:
            known = self._classes.get(render_class[:MAX_CLASS_KEY])
            if known is None:
                return None
            totals, queues = list(known.totals), list(known.queues)
        return estimate_of(totals, queues)

    def classes(self) -> list[str]:
        with self._lock:
            return list(self._classes)

    def samples(self, render_class: str) -> int:
        with self._lock:
            known = self._classes.get(render_class[:MAX_CLASS_KEY])
            return len(known.totals) if known else 0

    def clear(self) -> None:
        with self._lock:
            self._classes.clear()


#: The one store of this process (see the module docstring).
RENDER_TIMES = RenderTimes()
