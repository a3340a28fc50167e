"""Chain: generate a portrait with a Segmind image model, turn it into a Muscle Surge video, publish.

1. ``produce_image``: a Segmind text-to-image model through the sync v1 path
   (``SegmindHook.run_sync``), then ``SegmindHook.upload`` to get a URL the video model accepts.
2. ``render_video``: ``MuscleSurgeOperator`` in deferrable mode: the worker slot is freed while
   the triggerer polls. The MP4 is saved to object storage (``ObjectStoragePath``; a ``file://``
   folder by default, ``s3://...`` etc. with the matching provider) as soon as the job completes,
   and the Asset ``muscle_surge_video`` is updated with the path, sha256 and request id in the
   asset event's extra.
3. ``example_muscle_surge_publish`` (its own file) is scheduled on that Asset: it copies the video
   to a publish folder and writes a manifest.

Storage: the Variable ``muscle_surge_storage``, else the environment variable
``MUSCLE_SURGE_STORAGE``, else ``file://<MUSCLE_SURGE_OUTPUT or /tmp/muscle-surge>/videos``.
This is the DAG ``make demo`` runs against the local emulator.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import Asset, Param, dag, task

from airflow_provider_muscle_surge.contract import DEFAULT_CONN_ID
from airflow_provider_muscle_surge.models import muscle_surge
from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator
from airflow_provider_muscle_surge.uris import file_url

CONN_ID = DEFAULT_CONN_ID
#: Updated by ``render_video``; ``example_muscle_surge_publish`` is scheduled on it.
VIDEO_ASSET = Asset("muscle_surge_video")
_LOCAL_BASE = os.environ.get("MUSCLE_SURGE_OUTPUT", "/tmp/muscle-surge")
STORAGE = os.environ.get("MUSCLE_SURGE_STORAGE") or file_url(Path(_LOCAL_BASE) / "videos")
#: The run's day. Runs triggered without a logical date (the Airflow 3 default for API and UI
#: triggers) have no ``ds``: their ``run_after`` day is used instead.
RUN_DAY = "{{ ds if ds is defined else dag_run.run_after | ds }}"
STORAGE_FOLDER = "{{ var.value.get('muscle_surge_storage', " + json.dumps(STORAGE.rstrip("/")) + ") }}/" + RUN_DAY + "/"


def record_video(context, result):
    """``post_execute`` of ``render_video``: describe the new video in the Asset event."""
    saved = result.get("saved") or {}
    context["outlet_events"][VIDEO_ASSET].extra = {
        "path": saved.get("path"),
        "bytes": saved.get("bytes"),
        "sha256": saved.get("sha256"),
        "request_id": result.get("request_id"),
        "output_url": result.get("output"),
        "source_image": context["task"].image_url,
    }


@dag(
    dag_id="example_muscle_surge_chain",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["example", "segmind", "muscle-surge"],
    doc_md=__doc__,
    params={
        "prompt": Param(
            "studio portrait of a smiling athlete, upper body, plain background, soft light",
            type="string",
            minLength=1,
            title="Image prompt",
        ),
        "image_model": Param(
            "seedream-4.5",
            type="string",
            title="Segmind image model",
            description="Any Segmind text-to-image slug that takes a 'prompt'.",
        ),
        "quality": Param("540p", type="string", enum=list(muscle_surge.QUALITIES), title="Video quality"),
    },
)
def example_muscle_surge_chain():
    @task
    def produce_image(params: dict) -> str:
        """Text-to-image (sync v1: the answer is the image itself), then upload it for a URL.

        A retry of this task generates (and pays for) a new image: image models are cheap and
        v1 calls have no request id to re-attach to.
        """
        from airflow_provider_muscle_surge.hooks.segmind import SegmindHook

        hook = SegmindHook(CONN_ID)
        image = hook.run_sync(params["image_model"], {"prompt": params["prompt"]})
        content_type = "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"
        url = hook.upload(image, content_type=content_type)
        print(f"{params['image_model']} made a {len(image)}-byte {content_type} image, uploaded to {url}")
        return url

    MuscleSurgeOperator(
        task_id="render_video",
        segmind_conn_id=CONN_ID,
        image_url=produce_image(),
        quality="{{ params.quality }}",
        duration=5,
        output_path=STORAGE_FOLDER,
        deferrable=True,
        retries=3,  # a retry re-attaches to the submitted request: never a second charge
        outlets=[VIDEO_ASSET],
        post_execute=record_video,
    )


example_muscle_surge_chain()
