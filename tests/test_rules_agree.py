"""The provider's parameter rules and the emulator's, run against each other.

Both were written from the same page (``/work/shared/segmind-api.md``) and share no code: the
provider's in :mod:`airflow_provider_muscle_surge.models.muscle_surge`, the emulator's in
:mod:`segmind_emulator.api_facts`. If they disagree about an input, one of them misread the page --
and tests against the emulator would no longer say anything about the real API.

What "agree" means: the provider refuses exactly the bodies the API refuses. For a body the provider
accepts, what it *sends* is its normalised body (``"5"`` from a template becomes ``5``), so that is
what the emulator must accept, unchanged by its own defaults; for a body the provider refuses, the
emulator must refuse the body as written (a client without the provider's checks would send it).
And when both take a body as written, they fill in the same defaults.

Three layers: every combination of the cross-field values (duration x quality x motion_mode), every
listed near miss of each field on its own, and hypothesis mixing generated values of all fields.
"""

from __future__ import annotations

import base64
import itertools
import string
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from segmind_emulator import api_facts

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.exceptions import InvalidParameter

MISSING: Any = object()
URL = "https://example.com/a.png"


def provider(body: Any) -> tuple[bool, Any]:
    try:
        return True, contract.validate_payload(contract.MUSCLE_SURGE, body)
    except InvalidParameter as exc:
        return False, str(exc)


def emulator(body: Any) -> tuple[bool, Any]:
    try:
        return True, api_facts.check_body(api_facts.MUSCLE_SURGE, body)
    except api_facts.ParameterError as exc:
        return False, str(exc)


def assert_agree(body: Any) -> None:
    accepted, sent = provider(body)
    on_the_wire = sent if accepted else body
    emu_accepted, emu_body = emulator(on_the_wire)
    assert accepted == emu_accepted, (
        f"provider {'accepts' if accepted else 'refuses'} {body!r} ({sent}), "
        f"emulator {'accepts' if emu_accepted else 'refuses'} {on_the_wire!r} ({emu_body})"
    )
    if accepted:
        assert emu_body == sent, f"provider sends {sent!r}, emulator reads it as {emu_body!r}"
        # The same defaults: a body sent as written (no provider in between) means the same job.
        as_written_ok, as_written = emulator(body)
        assert not as_written_ok or as_written == sent, f"defaults differ: {as_written!r} != {sent!r}"


def body_of(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not MISSING}


# --- 1. the cross-field rules, exhaustively ----------------------------------------------------------
DURATIONS = [MISSING, 5, 8, "5", " 8 ", 6, None]
QUALITIES = [MISSING, "360p", "540p", "720p", "1080p", "1080P", None]
MOTIONS = [MISSING, "normal", "fast", "Fast", None]
EXTRAS: list[dict[str, Any]] = [{}, {"seed": 42}, {"style": "clay"}, {"seed": "7", "style": None}]


def test_every_combination_of_duration_quality_and_motion_mode_agrees() -> None:
    combos = list(itertools.product(DURATIONS, QUALITIES, MOTIONS))
    for index, (duration, quality, motion) in enumerate(combos):
        extra = EXTRAS[index % len(EXTRAS)]
        assert_agree(body_of(image_url=URL, duration=duration, quality=quality, motion_mode=motion, **extra))
    verdicts = {provider(body_of(image_url=URL, duration=d, quality=q, motion_mode=m))[0] for d, q, m in combos}
    assert verdicts == {True, False}


# --- 2. each field's near misses, one at a time -------------------------------------------------------
ODD_VALUES: dict[str, list[Any]] = {
    "image_url": [
        MISSING,
        None,
        "",
        5,
        ["https://example.com/a.png"],
        {"url": URL},
        "http://example.com/a.png",
        "HTTP://EXAMPLE.COM/A.PNG",
        "https://exämple.com/a.png",
        "http://[::1]:8765/a.png",
        "http://user:pw@example.com/a.png",
        "http://%41/a.png",
        "http://example.com:0/a.png",
        "http://example.com:/a",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//example.com/a.png",
        "example.com/a.png",
        "https://",
        "http:///a.png",
        "http://example.com:65535/a",
        "http://example.com:65536/a",
        "http://example.com:-1/a",
        "http://example.com:x/a",
        "http://[oops/x.png",
        "https://example.com/a b.png",
        " https://example.com/a.png",
        "https://example.com/a.png\n",
        "https://example.com/\x00.png",
        "https://example.com/\x7f.png",
        "https://example.com/a%20b.png",
        "https://example.com/a\\b.png",
        "https://example.com/ä.png",
        "data:image/png;base64," + base64.b64encode(b"\x89PNG....").decode(),
        "DATA:IMAGE/JPEG;BASE64,AAAA",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "data:image/png;base64,",
        "data:image/png;base64,!!!!",
        "data:image/png;base64,AAA",
        "data:image/png;base64,AA AA",
        "data:text/plain;base64,AAAA",
        "data:image/png,AAAA",
        "data:;base64,AAAA",
    ],
    "duration": [
        5.0,
        8.0,
        True,
        False,
        0,
        4,
        6,
        7,
        10,
        -5,
        "5",
        "8",
        " 5 ",
        "05",
        "5.0",
        "+5",
        "\u0665",
        "\uff15",
        "",
        "five",
        [5],
        {"s": 5},
    ],
    "quality": [360, "360", "4k", "540P", " 540p", "540p ", "1080", "", True, ["540p"], {"q": 1}],
    "motion_mode": ["Normal", "FAST", " fast", "slow", "", 1, True, ["fast"]],
    "seed": [
        1,
        999_999,
        0,
        -1,
        1_000_000,
        42.0,
        True,
        False,
        "42",
        " 42 ",
        "042",
        "0",
        "1000000",
        "4.2",
        "-1",
        "\u0665",
        [42],
        {"s": 1},
    ],
    "style": ["Anime", "3D_animation", "3d animation", "none", "", 1, True, ["anime"]],
    "unknown key": [
        {"prompt": "x"},
        {"model": "v3.5"},
        {"Duration": 5},
        {"seed ": 1},
        {"": 1},
        {"negative_prompt": ""},
    ],
}
ODD_CASES = [(name, value) for name, values in ODD_VALUES.items() for value in values]


@pytest.mark.parametrize(("field", "value"), ODD_CASES, ids=[f"{n}={v!r}"[:60] for n, v in ODD_CASES])
def test_each_near_miss_agrees(field: str, value: Any) -> None:
    body = {"image_url": URL, "duration": 5, "quality": "720p", "motion_mode": "normal", "seed": 9, "style": "comic"}
    if field == "unknown key":
        body.update(value)
    elif value is MISSING:
        del body[field]
    else:
        body[field] = value
    assert_agree(body)


# --- 3. hypothesis: generated values, mixed ------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
hosts = st.sampled_from(["example.com", "127.0.0.1", "[::1]", "exämple.com", "a", "%41", "user:pw@h.io", ""])
ports = st.sampled_from(["", ":", ":80", ":0", ":65535", ":65536", ":99999", ":-1", ":x"]) | st.integers().map(
    lambda n: f":{n}"
)
paths = st.text(alphabet=string.printable + "\x00\x7fäé", max_size=8).map(lambda p: "/" + p)
schemes = st.sampled_from(["http", "https", "HTTP", "Https", "ftp", "file", "data", "", "http:"])
urls = st.builds(lambda s, h, p, q: f"{s}://{h}{p}{q}", schemes, hosts, ports, paths)
data_uris = st.builds(
    lambda prefix, payload: prefix + payload,
    st.sampled_from(
        ["data:image/png;base64,", "Data:Image/WebP;Base64,", "data:text/plain;base64,", "data:image/png,"]
    ),
    st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
    | st.text(alphabet=string.ascii_letters + "=+/ \n!", max_size=12),
)


def texts_near(valid: list[str]) -> st.SearchStrategy[str]:
    """Case, whitespace and suffix variants of the valid words."""
    return st.sampled_from(valid).flatmap(
        lambda v: st.sampled_from([v, v.upper(), v.capitalize(), f" {v}", f"{v} ", v + "x", v[:-1]])
    )


def int_like(values: list[int]) -> st.SearchStrategy[Any]:
    """Integers near the valid ones, their float and string forms (what a template or a form sends)."""
    ints = st.sampled_from(values) | st.integers(min(values) - 3, max(values) + 3)
    return ints | ints.map(float) | ints.map(str) | ints.map(lambda n: f" {n} ") | ints.map(lambda n: f"0{n}")


GENERATED: dict[str, st.SearchStrategy[Any]] = {
    "image_url": urls | data_uris | json_values,
    "duration": int_like([5, 8]) | st.booleans() | json_values,
    "quality": texts_near(["360p", "540p", "720p", "1080p"]) | json_values,
    "motion_mode": texts_near(["normal", "fast"]) | json_values,
    "seed": int_like([1, 999_999]) | st.integers() | json_values,
    "style": texts_near(["anime", "3d_animation", "clay", "comic", "cyberpunk"]) | json_values,
}
VALID: dict[str, list[Any]] = {
    "image_url": [URL, "http://127.0.0.1:8765/_emulator/samples/athlete-1.png"],
    "duration": [5, 8],
    "quality": ["360p", "540p", "720p", "1080p"],
    "motion_mode": ["normal", "fast"],
    "seed": [1, 42, 999_999, None],
    "style": ["anime", "3d_animation", "clay", "comic", "cyberpunk", None],
}


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Each field valid, generated, or absent; now and then an unknown key."""
    body: dict[str, Any] = {}
    for name, valid in VALID.items():
        how = draw(st.sampled_from(["valid", "valid", "generated", "absent"]))
        if how == "valid" or (name == "image_url" and how == "absent"):
            body[name] = draw(st.sampled_from(valid))
        elif how == "generated":
            body[name] = draw(GENERATED[name])
    if draw(st.integers(0, 7)) == 0:
        body.setdefault(draw(st.text(max_size=8)), draw(json_values))
    return body


@settings(max_examples=2000)
@given(bodies())
@example({"image_url": URL, "seed": "42"})
@example({"image_url": URL, "duration": "8", "quality": "1080p"})
def test_any_body_gets_the_same_verdict(body: dict[str, Any]) -> None:
    assert_agree(body)


@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_a_body_that_is_not_an_object_is_refused_by_both(body: Any) -> None:
    assert not provider(body)[0] and not emulator(body)[0]


def test_the_generated_bodies_reach_both_verdicts() -> None:
    """Guards the hypothesis test itself: it must see accepted and refused bodies, with and without a seed."""
    seen: set[tuple[bool, bool]] = set()

    @settings(max_examples=300)
    @given(bodies())
    def collect(body: dict[str, Any]) -> None:
        seen.add((provider(body)[0], "seed" in body))

    collect()
    assert {(True, True), (True, False), (False, True), (False, False)} <= seen
