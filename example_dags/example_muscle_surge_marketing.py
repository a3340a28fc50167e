"""Marketing run on demand: one image in, one Muscle Surge video out, published only once a person approves it.

Trigger it from the UI with "Trigger DAG w/ config": every parameter below is a form field
(dropdowns for quality, duration, motion mode and style). From the CLI::

    airflow dags trigger example_muscle_surge_marketing \\
        --conf '{"image_url": "https://example.com/athlete.png", "quality": "720p", "duration": 5}'

1. ``validate``: each field is checked by its ``Param`` schema when the run is created; the
   combinations the API refuses (8 s at 1080p, "fast" motion with 8 s or at 1080p) are checked
   here, before anything is sent: a bad combination fails without an HTTP call, retries or cost.
   Leaving ``image_url`` empty uses the emulator's sample portrait when the connection points at
   the local emulator.
2. ``render``: ``MuscleSurgeOperator`` (deferrable) saves the MP4 to storage as soon as the job
   completes: the Variable ``muscle_surge_output``, else ``MUSCLE_SURGE_OUTPUT``, else
   ``/tmp/muscle-surge``, then ``marketing/<day>/``.
3. ``report``: the stored video's location, size and sha256, the request id and the parameters.
4. ``review``: a human-in-the-loop task (``HITLOperator``, options Approve / Reject). It waits in
   ``awaiting_input`` (no worker slot, no trigger) and shows the reviewer the *stored* copy: Segmind's
   own URL expires one hour after the render, long before a review may end. Answer it in the UI
   (the task's "Required Actions") or through the REST API
   (``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails`` with
   ``{"chosen_options": ["Approve"]}``). No answer within ``review_minutes`` (24 hours by default)
   counts as Reject.
5. ``publish``: on Approve, records the video on the Asset ``muscle_surge_video``, which
   ``example_muscle_surge_publish`` is scheduled on (it copies the video, sha256-checked, to the
   publish folder and writes a manifest). On Reject or on timeout it is *skipped*, and its log
   says why: who rejected it and when, or that nobody answered in time.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_muscle_surge.contract import DEFAULT_CONN_ID
from airflow_provider_muscle_surge.models import muscle_surge
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.uris import join_url

CONN_ID = DEFAULT_CONN_ID
OUTPUT_BASE = os.environ.get("MUSCLE_SURGE_OUTPUT", "/tmp/muscle-surge")
#: The run's day. Runs triggered without a logical date (the Airflow 3 default for API and UI
#: triggers) have no ``ds``: their ``run_after`` day is used instead.
RUN_DAY = "{{ ds if ds is defined else dag_run.run_after | ds }}"
OUTPUT_FOLDER = "{{ var.value.get('muscle_surge_output', " + json.dumps(OUTPUT_BASE) + ") }}/marketing/" + RUN_DAY + "/"
EMULATOR_SAMPLE = "/_emulator/samples/athlete-1.png"
#: What ``example_muscle_surge_publish`` is scheduled on: an event on it means "publish this video".
VIDEO_ASSET = Asset("muscle_surge_video")
APPROVE, REJECT = "Approve", "Reject"
#: A day to review by default; no answer by then is a Reject (never publish what nobody saw).
REVIEW_MINUTES = 24 * 60


class ReviewOperator(HITLOperator):
    """``HITLOperator`` whose answer deadline is the run's ``review_minutes`` Param.

    ``response_timeout`` is fixed when the DAG file is parsed, and a Param's value exists only in
    the run, so the deadline is set at the start of ``execute``, before the task parks in
    ``awaiting_input``. The scheduler enforces it and then applies ``defaults`` (Reject).
    """

    def execute(self, context: Any) -> Any:
        self.response_timeout = timedelta(minutes=float(context["params"]["review_minutes"]))
        return super().execute(context)


@dag(
    dag_id="example_muscle_surge_marketing",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["example", "segmind", "muscle-surge"],
    doc_md=__doc__,
    params={
        "image_url": Param(
            "",
            type="string",
            title="Input image URL",
            description="http(s) URL of a photo of one person. Empty: the emulator's sample (local emulator only).",
        ),
        "quality": Param("720p", type="string", enum=list(muscle_surge.QUALITIES), title="Quality"),
        "duration": Param(
            5,
            type="integer",
            enum=list(muscle_surge.DURATIONS),
            title="Duration (s)",
            description="8 s is not available at 1080p or with fast motion.",
        ),
        "motion_mode": Param("normal", type="string", enum=list(muscle_surge.MOTION_MODES), title="Motion mode"),
        "style": Param(
            None,
            type=["null", "string"],
            enum=[None, *muscle_surge.STYLES],
            title="Style",
            description="Optional look; empty for none.",
        ),
        "seed": Param(
            None,
            type=["null", "integer"],
            minimum=muscle_surge.SEED_RANGE[0],
            maximum=muscle_surge.SEED_RANGE[1],
            title="Seed",
            description="Optional, for a reproducible video.",
        ),
        "review_minutes": Param(
            REVIEW_MINUTES,
            type="number",
            exclusiveMinimum=0,
            title="Review time (minutes)",
            description="How long the reviewer has. No answer by then counts as Reject: nothing is published.",
        ),
    },
)
def example_muscle_surge_marketing():
    @task(multiple_outputs=True, retries=0)
    def validate(params: dict) -> dict:
        """Every API rule, checked before any HTTP call; a refusal fails the run at once."""
        from airflow_provider_muscle_surge.exceptions import InvalidParameter
        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

        wanted = {k: params.get(k) for k in muscle_surge.PARAMETERS}
        if not wanted["image_url"]:
            settings = SegmindHook(CONN_ID).settings
            if not settings.origin.is_loopback:
                raise InvalidParameter("image_url", "", "required: an http(s) URL of the input image")
            wanted["image_url"] = join_url(settings.base_url, EMULATOR_SAMPLE)
        body = muscle_surge.validate_muscle_surge({k: v for k, v in wanted.items() if v is not None and v != ""})
        # One XCom per field (multiple_outputs); absent optional fields are None, which the operator omits.
        return {"seed": None, "style": None, **body}

    request = validate()
    render = MuscleSurgeOperator(
        task_id="render",
        segmind_conn_id=CONN_ID,
        image_url=request["image_url"],
        duration=request["duration"],
        quality=request["quality"],
        motion_mode=request["motion_mode"],
        seed=request["seed"],
        style=request["style"],
        output_path=OUTPUT_FOLDER,
        deferrable=True,
    )

    @task(multiple_outputs=True)
    def report(result: dict, request: dict) -> dict:
        """The stored video and what made it: what the reviewer sees, and what ``publish`` records."""
        saved = result.get("saved") or {}
        parameters = {k: v for k, v in request.items() if k != "image_url" and v is not None}
        link = {
            "request_id": result["request_id"],
            "video_url": result["output"],
            "saved_path": saved.get("path"),
            "bytes": saved.get("bytes"),
            "sha256": saved.get("sha256"),
            "source_image": request["image_url"],
            "parameters": parameters,
        }
        settings = ", ".join(f"{k} {v}" for k, v in parameters.items())
        link["review"] = (
            f"**Stored video:** `{link['saved_path']}`\n\n"
            f"{link['bytes']} bytes, sha256 `{link['sha256']}`\n\n"
            f"**Segmind request id:** `{link['request_id']}`\n\n"
            f"**Input image:** {link['source_image']}\n\n"
            f"**Parameters:** {settings}\n\n"
            "Segmind's own link to this video expires one hour after the render; the stored copy above is"
            " what gets published. **Approve** publishes it; **Reject**, or no answer in time, publishes nothing."
        )
        print(f"Muscle Surge video ready: {link['video_url']} (saved to {link['saved_path']})")
        return link

    link = report(render.output, request)
    review = ReviewOperator(
        task_id="review",
        subject=f"Publish Muscle Surge video {link['request_id']}?",
        body=link["review"],
        options=[APPROVE, REJECT],
        defaults=[REJECT],
    )

    @task(outlets=[VIDEO_ASSET])
    def publish(link: dict, answer: dict, *, params: dict, outlet_events: Any = None) -> dict:
        """Hand an approved video to ``example_muscle_surge_publish``; otherwise skip, saying why."""
        from airflow.sdk.exceptions import AirflowSkipException

        chosen = answer.get("chosen_options") or []
        who = (answer.get("responded_by_user") or {}).get("name")
        when = answer.get("responded_at")
        if chosen != [APPROVE]:
            if who is None:  # the scheduler applied the default: nobody answered in time
                reason = (
                    f"nobody answered within {params['review_minutes']} minutes, so the default"
                    f" ({', '.join(chosen) or REJECT}) applied"
                )
            else:
                reason = f"{', '.join(chosen)} by {who} at {when}"
            message = (
                f"Not published: {reason}. The video stays at {link['saved_path']} (request {link['request_id']})."
            )
            print(message)
            raise AirflowSkipException(message)

        approval = {"by": who, "at": str(when)}
        outlet_events[VIDEO_ASSET].extra = {
            "path": link["saved_path"],
            "bytes": link["bytes"],
            "sha256": link["sha256"],
            "request_id": link["request_id"],
            "output_url": link["video_url"],
            "source_image": link["source_image"],
            "approval": approval,
        }
        print(f"Approved by {who} at {when}: {link['saved_path']} goes to example_muscle_surge_publish")
        return {"path": link["saved_path"], "sha256": link["sha256"], "approval": approval}

    publish(link, review.output)


example_muscle_surge_marketing()
