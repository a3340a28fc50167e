"""Scenario "retry after the parameters changed" (tests/realairflow/test_failures_and_secrets.py).

A task re-attaches to its previous Segmind request only when it is the same task, in the same run,
at the same map index, sending the same request body. The body comes from the DAG-run conf
(``image_url``, ``seed``) and from a Variable (``quality``), so a test can clear a finished task
and re-run it with the same body (re-attach, nothing new billed) or after changing the Variable
(a different body: a new submission). Two tasks send the same body on purpose, and the mapped task
sends the same body at map indexes 1 and 2: each must still get its own request.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_muscle_surge.operators.segmind import MuscleSurgeOperator

COMMON = {
    "image_url": "{{ dag_run.conf['image_url'] }}",
    "quality": "{{ var.value.get('surge_policy_quality', '360p') }}",
}

with DAG(
    dag_id="surge_policy_params",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["realairflow", "surge_policy"],
    default_args={"retries": 0, "retry_delay": timedelta(seconds=1)},
):
    MuscleSurgeOperator(task_id="render", seed="{{ dag_run.conf['seed'] }}", **COMMON)
    MuscleSurgeOperator(task_id="render_twin", seed="{{ dag_run.conf['seed'] }}", **COMMON)
    MuscleSurgeOperator.partial(task_id="render_mapped", **COMMON).expand(seed=[11, 22, 22])
