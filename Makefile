# Everyday commands. Each creates .venv on first use (PyPI only; no key, no other network).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv test test-celery test-fast lint demo bench clean

# Two editable distributions side by side: the provider (with its test tools) and the Segmind emulator
# (segmind-emulator/: aiohttp, PyAV, Pillow, numpy). The emulator goes last: reinstalling an older
# provider that still declared the `segmind-emulator` script would otherwise delete that script.
$(VENV)/.installed: setup.cfg pyproject.toml segmind-emulator/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q -e ./segmind-emulator
	touch $@

venv: $(VENV)/.installed

## The whole suite: lint, unit and emulator tests, example DAGs, and the real-Airflow deployment tests
## (all but the CeleryExecutor scenario, which has its own target below).
test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not celery" $(PYTEST_ARGS)

## The CeleryExecutor scenario (Redis, two Celery workers, two triggerers, S3 on moto): 5-7 minutes.
## Needs redis-server (.ci/install-redis.sh) besides PostgreSQL. REALAIRFLOW_CELERY_JOBS=200 for the full size.
test-celery: venv
	$(VENV)/bin/pytest -m celery -s $(PYTEST_ARGS)

## Everything but the real-Airflow deployment tests (about a minute).
test-fast: venv
	$(VENV)/bin/pytest -m "not realairflow" $(PYTEST_ARGS)

## The chain example DAG on the local emulator: `airflow dags test` in deferrable mode, prints the MP4.
## No key, no network; about 30 s once the venv exists. DEMO_ARGS="--job-seconds 8 --keep-airflow-home" etc.
DEMO_ARGS ?=
demo: venv
	$(PY) scripts/demo.py $(DEMO_ARGS)

## The four benchmarks at sizes that fit about 10 minutes; figures and full-size commands in bench/RESULTS.md.
## The worker-slot benchmark starts a real Airflow deployment (PostgreSQL from .ci/install-postgres.sh).
bench: venv
	$(PY) bench/polling.py
	$(PY) bench/parse_cost.py --quick
	$(PY) bench/triggerer_capacity.py --quick
	$(PY) bench/worker_slot.py --quick

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) demo-output artifacts .pytest_cache
