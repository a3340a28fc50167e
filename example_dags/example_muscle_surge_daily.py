"""Daily batch: turn every input image into a Muscle Surge video, one mapped task per image.

What it shows:

* ``@daily`` schedule, one run per day, outputs under a dated folder
  ``<output base>/daily/<ds>/<request id>.mp4`` plus an ``index.json`` for the day.
* Dynamic task mapping: ``MuscleSurgeOperator.partial(...).expand(image_url=...)``.
* The inputs come from the Airflow Variable ``muscle_surge_inputs`` (a JSON list of image URLs)::

      airflow variables set muscle_surge_inputs '["https://example.com/a.png", "https://example.com/b.jpg"]'

  Without it, a connection that points at the local emulator uses the emulator's four sample
  portraits; a connection to the real API fails fast asking for the Variable (no credits spent).
* An Airflow pool bounds how many renders talk to Segmind at once. Create it with
  ``include_deferred`` so deferred (waiting) renders keep their slot too::

      airflow pools set segmind_api 4 "Segmind concurrency" --include-deferred

* Airflow retries: a retried render re-attaches to the request it already submitted (same run,
  map index and parameters), so a retry never pays twice.

The output base is the Variable ``muscle_surge_output`` when set, else the environment
variable ``MUSCLE_SURGE_OUTPUT``, else ``/tmp/muscle-surge``; a local path or any
``ObjectStoragePath`` URL (``file://``, ``s3://`` ...).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from airflow_provider_muscle_surge.contract import DEFAULT_CONN_ID
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.uris import join_url

CONN_ID = DEFAULT_CONN_ID
POOL = "segmind_api"
INPUTS_VARIABLE = "muscle_surge_inputs"
OUTPUT_BASE = os.environ.get("MUSCLE_SURGE_OUTPUT", "/tmp/muscle-surge")
#: Rendered at run time, so a change of the Variable needs no DAG change.
#: The run's day. Runs triggered without a logical date (the Airflow 3 default for API and UI
#: triggers) have no ``ds``: their ``run_after`` day is used instead.
RUN_DAY = "{{ ds if ds is defined else dag_run.run_after | ds }}"
OUTPUT_FOLDER = "{{ var.value.get('muscle_surge_output', " + json.dumps(OUTPUT_BASE) + ") }}/daily/" + RUN_DAY + "/"
EMULATOR_SAMPLES = [f"/_emulator/samples/athlete-{n}.png" for n in range(1, 5)]


@dag(
    dag_id="example_muscle_surge_daily",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["example", "segmind", "muscle-surge"],
    doc_md=__doc__,
)
def example_muscle_surge_daily():
    @task
    def resolve_inputs() -> list[str]:
        """The day's input images: the Variable, or the emulator's samples when running locally."""
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

        images = Variable.get(INPUTS_VARIABLE, default=None, deserialize_json=True)
        if images is None:
            settings = SegmindHook(CONN_ID).settings
            if not settings.origin.is_loopback:
                raise AirflowFailException(
                    f"Set the Variable {INPUTS_VARIABLE!r} to a JSON list of image URLs, e.g. "
                    f"airflow variables set {INPUTS_VARIABLE} '[\"https://example.com/athlete.png\"]'"
                )
            images = [join_url(settings.base_url, path) for path in EMULATOR_SAMPLES]
        if not (isinstance(images, list) and images and all(isinstance(i, str) and i for i in images)):
            raise AirflowFailException(f"Variable {INPUTS_VARIABLE!r} must be a non-empty JSON list of URLs")
        # Same image twice in one day is the same video twice: render it once.
        return list(dict.fromkeys(images))

    inputs = resolve_inputs()
    render = MuscleSurgeOperator.partial(
        task_id="render",
        segmind_conn_id=CONN_ID,
        quality="540p",
        duration=5,
        output_path=OUTPUT_FOLDER,
        deferrable=True,
        pool=POOL,
        map_index_template="{{ task.image_url.rsplit('/', 1)[-1][:60] }}",
    ).expand(image_url=inputs)

    @task
    def write_index(images: list[str], results: list[dict]) -> dict:
        """One ``index.json`` per day next to the videos: what was rendered from what."""
        from airflow.sdk import ObjectStoragePath

        # Mapped results come back in map-index order, the order of the inputs.
        videos = [
            {"image_url": image, "request_id": r["request_id"], "output": r["output"], **(r.get("saved") or {})}
            for image, r in zip(images, results, strict=True)
        ]
        first = ObjectStoragePath(videos[0]["path"])
        index = first.parent / "index.json"
        index.write_text(json.dumps({"ds": first.parent.name, "videos": videos}, indent=2))
        return {"index": str(index), "videos": len(videos)}

    write_index(inputs, render.output)


example_muscle_surge_daily()
