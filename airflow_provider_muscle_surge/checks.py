"""Checks for numbers users type into settings: one wording and one set of rules for every setting.

Operators, the sensor, the polling schedule and the connection's extra all take seconds and
counts from people (and from JSON or text extras); refusing them the same way everywhere keeps the
messages consistent and the rules in one place. No I/O, no heavy imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from airflow_provider_muscle_surge.exceptions import InvalidParameter

#: A field check: takes the field's name (for the message) and the value, returns the value to use.
Check = Callable[[str, Any], Any]


def finite_number(field: str, value: Any, rule: str) -> float:
    """``value`` as a finite float: ints, floats and numeric strings (connection extras are text).

    A bool is refused although Python counts it as an int: ``True`` for a number of seconds is a
    slip, not a request for one second.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidParameter(field, value, rule)
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise InvalidParameter(field, value, rule) from None
    if not math.isfinite(number):
        raise InvalidParameter(field, value, rule)
    return number


def at_least(minimum: float, what: str) -> Check:
    def check(field: str, value: Any) -> float:
        rule = f"a finite number {what}"
        number = finite_number(field, value, rule)
        if number < minimum:
            raise InvalidParameter(field, value, rule)
        return number

    return check


def positive_seconds(field: str, value: Any) -> float:
    rule = "a positive, finite number of seconds"
    number = finite_number(field, value, rule)
    if number <= 0:
        raise InvalidParameter(field, value, rule)
    return number
