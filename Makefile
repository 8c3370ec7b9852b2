# GLV — the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
BIN := .venv/bin
STACK := deploy/local/stack.sh
# Every package's pyproject.toml: schemas, runtime, tools and each services/<name>/.
PACKAGES := $(wildcard */pyproject.toml services/*/pyproject.toml)

.PHONY: setup stack-up stack-down demo test lint typecheck pytest schemas deploy-files bench fuzz pipeline-bench archive-bench rounds-bench

.venv/.installed: constraints.txt requirements-dev.txt $(PACKAGES) scripts/bootstrap.sh
	bash scripts/bootstrap.sh

setup: .venv/.installed

## Everything the tests use: the plain broker, the secure broker (SASL_SSL) and PostgreSQL.
stack-up:
	bash $(STACK) start --secure

stack-down:
	bash $(STACK) stop

## The main job: stack up, ticketing service, a portal simulator filing ~300 tickets, a summary, all stopped.
demo: setup
	bash $(STACK) start
	$(BIN)/python -m glv_devtools.demo; status=$$?; bash $(STACK) stop; exit $$status

## Lint, type-check, contracts and deploy files up to date, then every test against the real Kafka and PostgreSQL.
test: setup lint typecheck
	$(BIN)/python -m glv_schemas.generate --check
	$(BIN)/python -m glv_devtools.deploy_files --check
	bash $(STACK) start --secure
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## Regenerate the JSON Schemas and the AsyncAPI document from the models.
schemas: setup
	$(BIN)/python -m glv_schemas.generate

## Regenerate the compose file and the Kubernetes manifests from the service registry.
deploy-files: setup
	$(BIN)/python -m glv_devtools.deploy_files

## Scheduler benchmark: assignment quality against the exact optimum, and speed with 10k-1M booked slots.
bench: setup
	bash $(STACK) start
	$(BIN)/python benchmarks/scheduler_bench.py

## Pipeline benchmark: echo ceiling, tickets/s per hop and end to end, latency under load, peak RSS (about 5 minutes).
## Options go in ARGS, e.g. make pipeline-bench ARGS="--quick" or ARGS="--label after --profile".
pipeline-bench: setup
	bash $(STACK) start
	$(BIN)/python benchmarks/pipeline_bench.py $(ARGS)

## Archive benchmark: an artifact's transfer into the archive (MB/s) beside a plain file copy and an HTTP-only GET,
## the decrypting read-back, and the peak RSS of the streaming process (1-2 minutes; no Kafka or PostgreSQL).
## Options go in ARGS, e.g. make archive-bench ARGS="--size-mb 1000 --repeat 5".
archive-bench: setup
	$(BIN)/python benchmarks/archive_bench.py $(ARGS)

## Rounds benchmark: immediate assignment, rounds of 15 and 60 minutes and of a day, and the offline optimum on the
## same demand (windows honoured, working-hours lead, time to answer); a round of 300 at one office (2-3 minutes;
## in memory, no Kafka or PostgreSQL). Options go in ARGS, e.g. make rounds-bench ARGS="--quick" or ARGS="--days 3".
rounds-bench: setup
	$(BIN)/python benchmarks/rounds_bench.py $(ARGS)

## Long fuzz run: 10,000 generated records per consuming service against the running services; prints the table.
fuzz: setup
	bash $(STACK) start
	GLV_FUZZ_RECORDS=$${GLV_FUZZ_RECORDS:-10000} $(BIN)/python -m pytest tests/integration/test_fuzz.py -p no:cacheprovider -q -s -o log_cli=false --timeout 3600 | grep -v '^{'
