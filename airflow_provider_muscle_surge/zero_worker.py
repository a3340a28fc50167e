"""Zero-worker mode: whether a task can start in the triggerer, and what its trigger is given.

With ``start_from_trigger=True`` Airflow 3.3 puts the task straight into the triggerer: no worker
process is started for it (see ``triggers/job.py``). Airflow then renders the templated fields in
the triggerer, from a context without a worker behind it, and skips what only a worker does. The
decision is taken here, when the DAG is parsed, because that is when ``start_trigger_args`` is
serialized: a task this module says "no" to runs the classic deferrable way, and the operator's
``execute`` logs why. What does not fit, as found on Airflow 3.3.2:

* a template that calls into Airflow (``ti.xcom_pull`` hangs in the triggerer; ``var``/``conn``
  lookups are blocking calls on its event loop): only the plain values of the run are allowed;
* a DAG that changes how templates render (``render_template_as_native_obj``, user macros or
  filters, a template search path, its own Jinja options): the triggerer renders with a plain
  environment and would produce something else;
* another task's output (``XComArg``) as a value: the triggerer does not resolve it;
* an ``ObjectStoragePath`` object as ``output_path``: trigger kwargs are plain values (write the URL);
* ``outlets``, ``on_execute_callback``, ``pre_execute``/``post_execute``: a task ended in the
  triggerer emits no asset events and runs none of them.

Mapped tasks are Airflow's own fallback (``.partial().expand()`` drops ``start_trigger_args``), as
is ``airflow dags test``/``dag.test()``, which always call ``execute()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

#: Context names a template may use in the triggerer: plain values of the run, no calls into Airflow.
SAFE_CONTEXT_NAMES = frozenset(
    {
        "dag_run",
        "run_id",
        "params",
        "ds",
        "ds_nodash",
        "ts",
        "ts_nodash",
        "ts_nodash_with_tz",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "run_after",
        "task_instance_key_str",
        "macros",
    }
)
#: DAG settings that change rendering; the triggerer renders with a plain strict environment.
_DAG_RENDER_SETTINGS = (
    "render_template_as_native_obj",
    "user_defined_macros",
    "user_defined_filters",
    "template_searchpath",
    "jinja_environment_kwargs",
)


def fallback_reasons(operator: Any) -> list[str]:
    """Why ``operator`` cannot start in the triggerer (empty: it can). One sentence per reason."""
    reasons: list[str] = []
    templated: list[str] = []
    for field in operator.template_fields:
        value = getattr(operator, field, None)
        for item in _leaves(value):
            if hasattr(item, "resolve") and hasattr(item, "iter_references"):
                reasons.append(f"{field} is another task's output, which the triggerer does not resolve")
                break
            if isinstance(item, str) and ("{{" in item or "{%" in item or "{#" in item):
                templated.append(field)
                problem = template_problem(item)
                if problem:
                    reasons.append(f"{field}: {problem}")
                    break
    output_path = getattr(operator, "output_path", None)
    if output_path is not None and not isinstance(output_path, (str, os.PathLike)):
        reasons.append("output_path is an ObjectStoragePath object; trigger arguments are plain values (use its URL)")
    dag = getattr(operator, "dag", None) if templated else None
    if dag is not None:
        for name in _DAG_RENDER_SETTINGS:
            if getattr(dag, name, None):
                reasons.append(f"the DAG sets {name}, which the triggerer's template rendering does not apply")
        undefined = getattr(dag, "template_undefined", None)
        if undefined is not None and getattr(undefined, "__name__", "") != "StrictUndefined":
            reasons.append("the DAG sets template_undefined, which the triggerer's template rendering does not apply")
    if getattr(operator, "outlets", None):
        reasons.append("the task has outlets: a task ended in the triggerer emits no asset events")
    if getattr(operator, "on_execute_callback", None):
        reasons.append("on_execute_callback is set: it runs only in a worker")
    for hook in ("pre_execute", "post_execute"):
        if _overridden(operator, hook):
            reasons.append(f"{hook} is overridden: it runs only in a worker")
    return reasons


def template_problem(text: str) -> str | None:
    """Why the template ``text`` cannot render in the triggerer, or None when it can."""
    import jinja2
    from jinja2 import meta

    try:
        names = meta.find_undeclared_variables(jinja2.Environment().parse(text))
    except jinja2.TemplateSyntaxError as err:
        return f"template syntax error ({err.message})"
    unsafe = sorted(set(names) - SAFE_CONTEXT_NAMES)
    if unsafe:
        return (
            f"the template uses {', '.join(unsafe)}; in the triggerer only plain run values "
            f"({', '.join(sorted(SAFE_CONTEXT_NAMES))}) can be rendered"
        )
    return None


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _overridden(operator: Any, name: str) -> bool:
    from airflow.sdk import BaseOperator

    return getattr(type(operator), name, None) is not getattr(BaseOperator, name, None)
