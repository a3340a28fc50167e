"""One finished muscle-surge task for the browser check of its extra links (tests/realairflow/test_ui.py)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

with DAG(
    dag_id="surge_policy_ui",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["realairflow", "surge_policy"],
):
    MuscleSurgeOperator(
        task_id="render_video",
        image_url="{{ dag_run.conf['image_url'] }}",
        quality="360p",
        seed=42,
        deferrable=True,
    )
