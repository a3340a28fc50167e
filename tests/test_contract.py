"""The API contract: parameter rules of muscle-surge, the HTTP-answer → exception map, and
the small parsers every client shares. Pure functions, no network.

The rules checked here come from the parameter table in ``/work/shared/segmind-api.md``.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_muscle_surge import contract
from airflow_provider_muscle_surge.contract import (
    RequestStatus,
    Submission,
    check_answer,
    completed_result,
    error_for_status,
    validate_payload,
)
from airflow_provider_muscle_surge.exceptions import (
    AuthenticationError,
    BadRequest,
    InferenceFailed,
    InferenceTimeout,
    InsufficientCredits,
    InvalidParameter,
    MalformedResponse,
    ModelNotFound,
    RateLimited,
    RequestExpired,
    SegmindError,
    ServerError,
    TransportError,
)
from airflow_provider_muscle_surge.models.muscle_surge import validate_muscle_surge

IMAGE = "https://storage.example.com/people/athlete.png"
PNG_DATA_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()


def params(**overrides: Any) -> dict[str, Any]:
    return {"image_url": IMAGE, **overrides}


def assert_refused(raw: dict[str, Any], field: str, value: Any, rule_words: str) -> InvalidParameter:
    """The exception names the field, shows the value and states the rule."""
    with pytest.raises(InvalidParameter) as excinfo:
        validate_muscle_surge(raw)
    err = excinfo.value
    assert err.field == field
    assert err.value == value
    message = str(err)
    assert field in message
    assert repr(value) in message
    assert rule_words in message
    return err


# --- muscle-surge parameters: defaults -------------------------------------------------------------
def test_defaults_are_filled_in_when_only_the_image_is_given():
    assert validate_muscle_surge({"image_url": IMAGE}) == {
        "image_url": IMAGE,
        "duration": 5,
        "quality": "540p",
        "motion_mode": "normal",
    }


def test_optional_seed_and_style_are_left_out_when_not_given():
    body = validate_muscle_surge(params())
    assert "seed" not in body
    assert "style" not in body


def test_a_fully_specified_valid_request_is_returned_unchanged():
    raw = params(duration=8, quality="720p", motion_mode="normal", seed=42, style="clay")
    assert validate_muscle_surge(raw) == raw


def test_validation_does_not_mutate_the_callers_dict():
    raw = params()
    validate_muscle_surge(raw)
    assert raw == {"image_url": IMAGE}


# --- duration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("duration", [5, 8])
def test_duration_5_and_8_are_accepted(duration):
    assert validate_muscle_surge(params(duration=duration))["duration"] == duration


@pytest.mark.parametrize("duration", [0, 4, 6, 10, -5])
def test_other_durations_are_refused(duration):
    assert_refused(params(duration=duration), "duration", duration, "one of 5 or 8")


def test_duration_given_as_a_digit_string_from_a_template_is_normalised_to_int():
    assert validate_muscle_surge(params(duration="8"))["duration"] == 8


@pytest.mark.parametrize("duration", [True, 5.0, "five", None])
def test_duration_that_is_not_an_integer_is_refused(duration):
    assert_refused(params(duration=duration), "duration", duration, "one of 5 or 8")


def test_duration_8_is_refused_at_1080p():
    assert_refused(params(duration=8, quality="1080p"), "duration", 8, "not available at quality=1080p")


# --- quality ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("quality", ["360p", "540p", "720p", "1080p"])
def test_documented_qualities_are_accepted(quality):
    assert validate_muscle_surge(params(quality=quality))["quality"] == quality


@pytest.mark.parametrize("quality", ["480p", "1080P", "4k", 720, ""])
def test_other_qualities_are_refused(quality):
    assert_refused(params(quality=quality), "quality", quality, "360p, 540p, 720p, 1080p")


# --- motion_mode -----------------------------------------------------------------------------------
@pytest.mark.parametrize("motion_mode", ["normal", "fast"])
def test_documented_motion_modes_are_accepted(motion_mode):
    assert validate_muscle_surge(params(motion_mode=motion_mode))["motion_mode"] == motion_mode


@pytest.mark.parametrize("motion_mode", ["slow", "Fast", "", 1])
def test_other_motion_modes_are_refused(motion_mode):
    assert_refused(params(motion_mode=motion_mode), "motion_mode", motion_mode, "one of normal, fast")


def test_fast_motion_is_refused_with_duration_8():
    assert_refused(params(motion_mode="fast", duration=8), "motion_mode", "fast", "only allowed with duration=5")


def test_fast_motion_is_refused_at_1080p():
    assert_refused(params(motion_mode="fast", quality="1080p"), "motion_mode", "fast", "not supported at quality=1080p")


def test_fast_motion_at_duration_5_below_1080p_is_accepted():
    body = validate_muscle_surge(params(motion_mode="fast", duration=5, quality="720p"))
    assert (body["motion_mode"], body["duration"], body["quality"]) == ("fast", 5, "720p")


def test_1080p_at_duration_5_with_normal_motion_is_accepted():
    assert validate_muscle_surge(params(quality="1080p"))["quality"] == "1080p"


# --- seed ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 42, 999_999])
def test_seed_within_1_to_999999_is_accepted(seed):
    assert validate_muscle_surge(params(seed=seed))["seed"] == seed


@pytest.mark.parametrize("seed", [0, -1, 1_000_000])
def test_seed_outside_1_to_999999_is_refused(seed):
    assert_refused(params(seed=seed), "seed", seed, "an integer from 1 to 999999")


def test_seed_given_as_a_digit_string_is_normalised_to_int():
    assert validate_muscle_surge(params(seed="1234"))["seed"] == 1234


@pytest.mark.parametrize("seed", [True, False, 7.0, 7.5, "7.5", "-3", "abc", "²"])
def test_seed_that_is_not_an_integer_is_refused(seed):
    # bool is an int subclass in Python and "²".isdigit() is True: neither may slip through.
    assert_refused(params(seed=seed), "seed", seed, "an integer from 1 to 999999")


def test_seed_none_means_no_seed():
    assert "seed" not in validate_muscle_surge(params(seed=None))


# --- style -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["anime", "3d_animation", "clay", "comic", "cyberpunk"])
def test_documented_styles_are_accepted(style):
    assert validate_muscle_surge(params(style=style))["style"] == style


@pytest.mark.parametrize("style", ["none", "Anime", "watercolor", ""])
def test_other_styles_are_refused_and_the_message_lists_the_allowed_ones(style):
    assert_refused(params(style=style), "style", style, "anime, 3d_animation, clay, comic, cyberpunk")


# --- image_url -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://storage.example.com/a.png",
        "http://127.0.0.1:8080/files/a.jpg",
        PNG_DATA_URI,
        "data:image/jpeg;base64,/9j/4AAQ",
    ],
)
def test_http_urls_and_base64_image_data_uris_are_accepted(url):
    assert validate_muscle_surge({"image_url": url})["image_url"] == url


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///tmp/a.png", "example.com/a.png", "https://"])
def test_image_url_that_is_not_http_or_a_data_uri_is_refused(url):
    assert_refused({"image_url": url}, "image_url", url, "an http(s) URL or a data:image/...;base64 URI")


def test_missing_image_url_is_refused():
    assert_refused({}, "image_url", None, "an http(s) URL")


def test_data_uri_with_invalid_base64_is_refused_with_a_truncated_value():
    uri = "data:image/png;base64,not*valid*base64!" + "A" * 200
    with pytest.raises(InvalidParameter, match="not valid base64") as excinfo:
        validate_muscle_surge({"image_url": uri})
    assert excinfo.value.field == "image_url"
    # A multi-MB data URI must not end up whole in a task log.
    assert len(str(excinfo.value)) < 150


def test_data_uri_of_a_non_image_type_is_refused():
    uri = "data:text/plain;base64," + base64.b64encode(b"hello").decode()
    assert_refused({"image_url": uri}, "image_url", uri, "data:image/...;base64 URI")


# --- unknown parameters ----------------------------------------------------------------------------
def test_unknown_parameter_is_refused_by_name():
    err = assert_refused(params(prompt="bigger arms"), "prompt", "bigger arms", "not a muscle-surge parameter")
    assert "image_url, duration, quality, motion_mode, seed, style" in err.rule


def test_invalid_parameter_is_a_permanent_failure_and_a_value_error():
    with pytest.raises(InvalidParameter) as excinfo:
        validate_muscle_surge(params(duration=6))
    assert isinstance(excinfo.value, AirflowFailException)
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.retryable is False


# --- property: the validator accepts exactly what the documented table allows -----------------------
_MISSING = object()
_VALID_URLS = [IMAGE, "http://localhost:9000/a.jpg", PNG_DATA_URI]
_INVALID_URLS = ["ftp://x/a.png", "not a url", "", "data:image/png;base64,%%%", None, 42]


def documented_oracle(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Written from the table in segmind-api.md, not from models/muscle_surge.py: the body, or None if refused.

    Integers may arrive as digit strings (templated fields); booleans and floats are not integers.
    """
    allowed = {"image_url", "duration", "quality", "motion_mode", "seed", "style"}
    if not set(raw) <= allowed:
        return None

    def as_int(value: Any) -> int | None:
        if type(value) is int:
            return value
        if isinstance(value, str) and value.strip() and all(c in "0123456789" for c in value.strip()):
            return int(value)
        return None

    if raw.get("image_url") not in _VALID_URLS:
        return None
    duration = as_int(raw.get("duration", 5))
    quality = raw.get("quality", "540p")
    motion = raw.get("motion_mode", "normal")
    if duration not in (5, 8) or quality not in ("360p", "540p", "720p", "1080p") or motion not in ("normal", "fast"):
        return None
    # "only 5 is allowed with motion_mode=fast or quality=1080p"; "1080p does not support fast"
    if (motion == "fast" or quality == "1080p") and duration != 5:
        return None
    if motion == "fast" and quality == "1080p":
        return None
    body = {"image_url": raw["image_url"], "duration": duration, "quality": quality, "motion_mode": motion}
    if raw.get("seed") is not None:
        seed = as_int(raw["seed"])
        if seed is None or not 1 <= seed <= 999_999:
            return None
        body["seed"] = seed
    if raw.get("style") is not None:
        if raw["style"] not in ("anime", "3d_animation", "clay", "comic", "cyberpunk"):
            return None
        body["style"] = raw["style"]
    return body


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_MISSING), values)


def _mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values (or the key left out) most of the time, so both outcomes are well explored."""
    return st.sampled_from([_MISSING, *valid, *valid, *valid, *invalid])


request_params = st.fixed_dictionaries(
    {
        "image_url": st.sampled_from([*_VALID_URLS * 6, *_INVALID_URLS, _MISSING]),
        "duration": _mostly([5, 8, "5", "8", " 8 "], [0, 6, -5, 5.0, True, None, "five"]),
        "quality": _mostly(["360p", "540p", "720p", "1080p"], ["480p", "1080P", 1080, None]),
        "motion_mode": _mostly(["normal", "fast"], ["slow", "FAST", None]),
        "seed": _maybe(
            st.one_of(
                st.integers(min_value=-10, max_value=1_000_010),
                st.integers(min_value=1, max_value=999_999),
                st.sampled_from([True, False, 3.0, "77", "0", "1000000", "x", "²", "\uff15", "", None]),
            )
        ),
        "style": _mostly(["anime", "3d_animation", "clay", "comic", "cyberpunk", None], ["oil", ""]),
        "extra": st.sampled_from([_MISSING] * 8 + ["prompt", "model"]),
    }
).map(
    lambda d: {
        **{k: v for k, v in d.items() if k != "extra" and v is not _MISSING},
        **({d["extra"]: "x"} if d["extra"] is not _MISSING else {}),
    }
)


@settings(max_examples=1000, deadline=None, database=None)  # no .hypothesis/ dir in the repo
@given(request_params)
def test_validator_accepts_exactly_the_documented_combinations(raw):
    expected = documented_oracle(raw)
    if expected is None:
        with pytest.raises(InvalidParameter):
            validate_muscle_surge(raw)
    else:
        assert validate_muscle_surge(raw) == expected


# --- validate_payload for any model -----------------------------------------------------------------
def test_validate_payload_applies_muscle_surge_rules_to_muscle_surge():
    with pytest.raises(InvalidParameter, match="duration"):
        validate_payload("muscle-surge", params(duration=7))


def test_validate_payload_passes_other_models_through_as_a_dict():
    assert validate_payload("flux-schnell", {"prompt": "a cat"}) == {"prompt": "a cat"}


def test_validate_payload_refuses_a_body_that_is_not_an_object():
    with pytest.raises(InvalidParameter, match="payload"):
        validate_payload("muscle-surge", ["image_url", IMAGE])


@pytest.mark.parametrize("model", ["../v1/other", "Muscle Surge", "", "muscle-surge?x=1"])
def test_model_slugs_that_could_change_the_url_are_refused(model):
    with pytest.raises(InvalidParameter) as excinfo:
        validate_payload(model, {})
    assert excinfo.value.field == "model"


@pytest.mark.parametrize("request_id", ["../../v1/muscle-surge", "a b", "", "id?x=1"])
def test_request_ids_that_could_change_the_url_are_refused(request_id):
    with pytest.raises(InvalidParameter) as excinfo:
        contract.status_path(request_id)
    assert excinfo.value.field == "request_id"


def test_paths_follow_the_v2_layout():
    assert contract.v1_path("muscle-surge") == "/v1/muscle-surge"
    assert contract.v2_submit_path("muscle-surge") == "/v2/muscle-surge"
    assert contract.status_path("abc-123") == "/v2/requests/abc-123/status"
    assert contract.result_path("abc-123") == "/v2/requests/abc-123"


def test_uploads_go_to_segmind_storage_for_the_real_api_and_to_the_same_host_otherwise():
    assert contract.upload_url_for("https://api.segmind.com") == "https://workflows-api.segmind.com/upload-asset"
    assert contract.upload_url_for("http://127.0.0.1:8123/") == "http://127.0.0.1:8123/upload-asset"


# --- error_for_status: one class per documented code -------------------------------------------------
PERMANENT = [
    (400, None, BadRequest),
    (401, None, AuthenticationError),
    (403, None, AuthenticationError),
    (404, None, ModelNotFound),
    (404, "req-1", RequestExpired),
    (406, None, InsufficientCredits),
    (422, "req-1", InferenceFailed),
]
TRANSIENT = [(429, RateLimited), (500, ServerError), (502, ServerError), (503, ServerError), (504, ServerError)]


@pytest.mark.parametrize(("status", "request_id", "cls"), PERMANENT)
def test_permanent_codes_map_to_a_non_retryable_airflow_fail_exception(status, request_id, cls):
    err = error_for_status(status, {"error": "the server's own words"}, request_id=request_id)
    assert type(err) is cls
    assert err.retryable is False
    assert isinstance(err, AirflowFailException)
    assert (err.status_code, err.detail, err.request_id) == (status, "the server's own words", request_id)
    assert "the server's own words" in str(err)
    assert f"HTTP {status}" in str(err) or status == 422


@pytest.mark.parametrize(("status", "cls"), TRANSIENT)
def test_transient_codes_map_to_a_retryable_exception_airflow_may_retry(status, cls):
    err = error_for_status(status, {"error": "try later"})
    assert type(err) is cls
    assert err.retryable is True
    assert isinstance(err, AirflowException)
    assert not isinstance(err, AirflowFailException)
    assert "try later" in str(err)
    assert f"HTTP {status}" in str(err)


def test_404_on_a_request_id_says_it_expired_after_1_hour():
    err = error_for_status(404, {"error": "Request abc not found"}, request_id="abc")
    assert isinstance(err, RequestExpired)
    assert "abc" in str(err)
    assert "1 hour" in str(err)


def test_404_without_a_request_id_is_a_missing_model_not_an_expiry():
    err = error_for_status(404, {"error": "Not found"})
    assert isinstance(err, ModelNotFound)
    assert "1 hour" not in str(err)
    assert "model" in str(err)


def test_406_shows_the_servers_message_because_it_covers_more_than_credits():
    err = error_for_status(406, {"error": "Team spend limit reached"})
    assert "Team spend limit reached" in str(err)
    assert "credits" in str(err)


def test_422_names_the_request_and_the_failure_detail():
    err = error_for_status(422, {"status": "FAILED", "error": "content blocked by safety filter"}, request_id="r9")
    assert isinstance(err, InferenceFailed)
    assert "r9" in str(err)
    assert "content blocked by safety filter" in str(err)


def test_429_carries_the_servers_wait_hint():
    err = error_for_status(429, {"error": "slow down"}, retry_after=2.0)
    assert isinstance(err, RateLimited)
    assert err.retry_after == 2.0
    assert "2.0s" in str(err)


def test_429_without_a_hint_has_no_retry_after():
    assert error_for_status(429, {"error": "slow down"}).retry_after is None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"detail": "from detail"}, "from detail"),
        ({"message": "from message"}, "from message"),
        ("<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        ({}, "no detail given"),
    ],
)
def test_the_detail_is_read_from_wherever_the_server_put_it(body, detail):
    assert error_for_status(502, body).detail == detail


def test_an_undocumented_status_is_a_bad_request_with_its_code():
    err = error_for_status(418, {"error": "teapot"})
    assert isinstance(err, BadRequest)
    assert "HTTP 418" in str(err)


# --- check_answer --------------------------------------------------------------------------------------
def test_check_answer_returns_the_body_of_a_2xx():
    assert check_answer(200, {"status": "QUEUED"}, {}) == {"status": "QUEUED"}


def test_check_answer_treats_a_failed_422_as_an_answer_on_status_endpoints():
    body = {"status": "FAILED", "error": "blocked"}
    assert check_answer(422, body, {}, request_id="r1", failed_is_answer=True) is body


def test_check_answer_raises_inference_failed_for_422_elsewhere():
    with pytest.raises(InferenceFailed, match="blocked"):
        check_answer(422, {"status": "FAILED", "error": "blocked"}, {}, request_id="r1")


def test_check_answer_does_not_treat_a_422_without_failed_status_as_an_answer():
    with pytest.raises(InferenceFailed):
        check_answer(422, {"error": "unprocessable"}, {}, request_id="r1", failed_is_answer=True)


def test_check_answer_reads_the_wait_hint_of_a_429_from_the_headers():
    with pytest.raises(RateLimited) as excinfo:
        check_answer(429, {"error": "slow down"}, {"Retry-After": "3"})
    assert excinfo.value.retry_after == 3.0


def test_decode_body_falls_back_to_text_for_non_json():
    assert contract.decode_body(b'{"a": 1}') == {"a": 1}
    assert contract.decode_body(b"<html>502</html>") == "<html>502</html>"


# --- answers that break the contract ---------------------------------------------------------------------
def test_submission_parse_reads_the_three_fields():
    body = {"request_id": "r1", "status_url": "https://s/1", "response_url": "https://r/1", "extra": 1}
    assert Submission.parse(body) == Submission("r1", "https://s/1", "https://r/1")


@pytest.mark.parametrize("missing", ["request_id", "status_url", "response_url"])
def test_submission_without_one_of_its_fields_is_malformed(missing):
    body = {"request_id": "r1", "status_url": "https://s/1", "response_url": "https://r/1"}
    del body[missing]
    with pytest.raises(MalformedResponse, match="request_id/status_url/response_url"):
        Submission.parse(body)


@pytest.mark.parametrize("body", [{"request_id": "", "status_url": "s", "response_url": "r"}, "accepted", None, []])
def test_submission_with_empty_or_non_object_answer_is_malformed(body):
    with pytest.raises(MalformedResponse, match="billed"):
        Submission.parse(body)


@pytest.mark.parametrize("state", ["QUEUED", "PROCESSING", "COMPLETED", "FAILED"])
def test_request_status_parses_the_four_documented_states(state):
    assert RequestStatus.parse({"status": state}) is RequestStatus(state)


def test_only_completed_and_failed_are_terminal():
    assert {s for s in RequestStatus if s.is_terminal} == {RequestStatus.COMPLETED, RequestStatus.FAILED}


@pytest.mark.parametrize("body", [{"status": "DONE"}, {"status": "completed"}, {}, {"status": None}, "QUEUED", None])
def test_request_status_refuses_an_unknown_state_instead_of_treating_it_as_pending(body):
    with pytest.raises(MalformedResponse) as excinfo:
        RequestStatus.parse(body, request_id="r42")
    assert "r42" in str(excinfo.value)
    assert excinfo.value.request_id == "r42"
    assert "COMPLETED" in str(excinfo.value)


def test_completed_result_returns_a_completed_body():
    body = {"status": "COMPLETED", "output": "https://cdn/x.mp4", "metrics": {}}
    assert completed_result(body, "r1") is body


def test_completed_result_raises_inference_failed_for_a_failed_body():
    with pytest.raises(InferenceFailed, match="face not detected"):
        completed_result({"status": "FAILED", "error": "face not detected"}, "r1")


def test_completed_result_read_before_completion_is_malformed():
    with pytest.raises(MalformedResponse, match="PROCESSING"):
        completed_result({"status": "PROCESSING"}, "r1")


# --- exceptions cross process boundaries intact ----------------------------------------------------------------
@pytest.mark.parametrize(
    "err",
    [
        error_for_status(404, {"error": "gone"}, request_id="req-7"),
        error_for_status(422, {"status": "FAILED", "error": "blocked"}, request_id="req-8"),
        error_for_status(503, {"error": "down"}),
        error_for_status(429, {"error": "slow"}, retry_after=4.5),
        TransportError("no answer from Segmind", request_id="req-9"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_exceptions_survive_pickling_with_their_fields(err):
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert (copy.status_code, copy.detail, copy.request_id) == (err.status_code, err.detail, err.request_id)
    assert copy.retryable == err.retryable
    if isinstance(err, RateLimited):
        assert copy.retry_after == 4.5


def test_invalid_parameter_and_timeout_survive_pickling_with_their_own_fields():
    invalid = pickle.loads(pickle.dumps(InvalidParameter("seed", 0, "an integer from 1 to 999999")))
    assert (invalid.field, invalid.value, invalid.rule) == ("seed", 0, "an integer from 1 to 999999")
    timeout = pickle.loads(pickle.dumps(InferenceTimeout("req-5", 61.2, "PROCESSING")))
    assert (timeout.request_id, timeout.elapsed_s) == ("req-5", 61.2)
    assert "req-5" in str(timeout)
    assert isinstance(timeout, SegmindError)
