"""Marketing run on demand: one image in, one Muscle Surge video out, link reported at the end.

Trigger it from the UI with "Trigger DAG w/ config": every parameter below is a form field
(dropdowns for quality, duration, motion mode and style). From the CLI::

    airflow dags trigger example_muscle_surge_marketing \\
        --conf '{"image_url": "https://example.com/athlete.png", "quality": "720p", "duration": 5}'

Each field is checked by its ``Param`` schema when the run is created. The combinations the API
refuses (8 s at 1080p, "fast" motion with 8 s or at 1080p) are checked by the ``validate``
task before anything is sent: a bad combination fails there, without an HTTP call, without
retries and without cost. Leaving ``image_url`` empty uses the emulator's sample portrait when
the connection points at the local emulator.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

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

    @task
    def report(result: dict) -> dict:
        """The link to share and the file that was kept (Segmind's URL expires after 1 hour)."""
        saved = result.get("saved") or {}
        link = {
            "request_id": result["request_id"],
            "video_url": result["output"],
            "saved_path": saved.get("path"),
            "bytes": saved.get("bytes"),
            "sha256": saved.get("sha256"),
        }
        print(f"Muscle Surge video ready: {link['video_url']} (saved to {link['saved_path']})")
        return link

    report(render.output)


example_muscle_surge_marketing()
