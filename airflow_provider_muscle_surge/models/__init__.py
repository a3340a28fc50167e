"""The Segmind models the provider knows by name: slug -> parameter rules and typical render time.

A model listed in :data:`MODELS` gets its request body checked before anything is paid for, and
its status polls centred on its typical render time, learned per render class (the parameters
that change how long a job takes, declared by the model's module). Any other slug still works
(``SegmindSubmitOperator`` takes any model): its body is sent as given, and polling starts from
:data:`DEFAULT_TYPICAL_RENDER_SECONDS`. To add a model, write ``models/<model>.py`` after the
example of :mod:`.muscle_surge` and add one line to :data:`MODELS`.

What every model shares (paths, request states, retention, the error map) is not here but in
:mod:`airflow_provider_muscle_surge.contract`, which looks models up here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_muscle_surge.models import muscle_surge

#: Checks a request body for one model: returns the body to send, or raises ``InvalidParameter``.
Validator = Callable[[Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Model:
    """What the provider knows about one model."""

    validate: Validator
    #: Seconds a job usually takes: where the polling schedule polls densely.
    typical_render_seconds: float
    #: Parameters that plausibly change the render time: jobs alike in these are one render class,
    #: whose render time the polling schedule learns (``airflow_provider_muscle_surge.learning``).
    render_class_parameters: tuple[str, ...] = ()


MODELS: Mapping[str, Model] = {
    muscle_surge.MUSCLE_SURGE: Model(
        muscle_surge.validate_muscle_surge,
        muscle_surge.TYPICAL_RENDER_SECONDS,
        muscle_surge.RENDER_CLASS_PARAMETERS,
    ),
}
#: A guess for a model not in :data:`MODELS`: image models take seconds, video models a minute or so.
DEFAULT_TYPICAL_RENDER_SECONDS = 20.0


def typical_render_seconds(model: str) -> float:
    """How long a job of ``model`` usually takes (:data:`DEFAULT_TYPICAL_RENDER_SECONDS` if unknown)."""
    known = MODELS.get(model)
    return known.typical_render_seconds if known else DEFAULT_TYPICAL_RENDER_SECONDS


def render_class(model: str, body: Mapping[str, Any] | None = None) -> str:
    """The key under which jobs like this one learn their render time: the model, and the values of
    its render-class parameters in ``body`` (the validated body, defaults filled in), e.g.
    ``"muscle-surge duration=5 motion_mode=normal quality=720p"``. A model the provider does not know
    is one class per model; without a body (the sensor) it is the model alone."""
    known = MODELS.get(model)
    if known is None or body is None:
        return model
    parts = [f"{name}={body.get(name)}" for name in sorted(known.render_class_parameters)]
    return " ".join([model, *parts])
