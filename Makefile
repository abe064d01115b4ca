# mpcluster — the distributed-processes lesson on real separate hosts.  `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

WORKERS ?= 3
TASKS ?= 20
KIND ?= square
TASK_SECONDS ?= 1.0
ARGS ?=
JOB ?=
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
STACK ?= mpcluster
REGISTRY ?=
NODES ?=
SSH ?= ssh
export WORKERS STACK REGISTRY NODES SSH

COMPOSE := docker compose
# A terminal gets one (the live progress line of `make job`); CI and pipes get plain lines.
EXEC := $(COMPOSE) exec $(shell [ -t 0 ] && [ -t 1 ] || echo -T)
# The key file Compose and the stack read (MPC_AUTHKEY_HOST_FILE, as in compose.yaml).
KEY := $(or $(MPC_AUTHKEY_HOST_FILE),.secrets/authkey)

.PHONY: help up down lesson bench scale job results cancel status logs ps test test-unit test-integration test-swarm test-py313 base key \
        check-docker check-python check-workers lint clean stack-images stack-up stack-scale stack-down stack-ps \
        stack-status stack-job

help:  ## List the targets
	@grep -E '^[0-9a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "\033[36m%-18s\033[0m %s\n", $$1, $$2}'
	@printf '\nVariables: WORKERS=%s TASKS=%s KIND=%s TASK_SECONDS=%s (e.g. make up WORKERS=5)\n' "$(WORKERS)" "$(TASKS)" "$(KIND)" "$(TASK_SECONDS)"

check-workers:
	@case "$(WORKERS)" in ''|*[!0-9]*) echo "make: WORKERS='$(WORKERS)' is not valid: expected a whole number of workers, e.g. WORKERS=5"; exit 2;; esac

check-docker:
	@command -v docker >/dev/null 2>&1 || { echo "make: docker is not installed (https://docs.docker.com/engine/install/)"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make: the Docker Engine is not reachable (is dockerd running? are you in the docker group?)"; exit 1; }
	@docker compose version >/dev/null 2>&1 || { echo "make: the Docker Compose v2 plugin ('docker compose') is missing"; exit 1; }

check-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) is not installed (Python >= 3.11 is needed for the tests)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PYTHON) is $$($(PYTHON) -V 2>&1 | cut -d' ' -f2); Python >= 3.11 is needed"; exit 1; }

key: $(KEY)  ## Create the authkey (.secrets/authkey, random 256 bits) if there is none

$(KEY):
	@mkdir -p $(dir $(KEY)) && if [ "$(dir $(KEY))" = .secrets/ ]; then chmod 700 .secrets; fi
	@$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $(KEY).tmp 2>/dev/null || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > $(KEY).tmp
	@chmod 644 $(KEY).tmp && mv $(KEY).tmp $(KEY)  # 0644 inside a 0700 folder: readable by the containers' user only
	@echo "created $(KEY) (keep it secret: it lets its holder run code on every node)"

base: check-docker  ## Make sure the base image exists (pull, or build Debian offline); records BASE_IMAGE in .env
	@scripts/ensure-base

up: check-workers check-docker key base  ## Build what is missing, start a master and WORKERS workers, wait until they are connected
	$(COMPOSE) up -d --build --scale worker=$(WORKERS)  # no --wait: the first health probe comes 5 s in; status waits
# One status call waits for the workers and the demo (each `exec` costs a few tenths of a second)
	@if [ "$${MPC_DEMO_TASKS:-10}" != 0 ]; then wait="--wait-job demo- --timeout 180"; else wait="--timeout 60"; fi; \
	  $(COMPOSE) exec -T master python3 -m mpcluster status --wait-workers $(WORKERS) $$wait >/dev/null \
	    || { echo "make: the cluster did not come up (the line above says what is missing); see 'make logs'"; exit 1; }
	@if [ "$${MPC_DEMO_TASKS:-10}" != 0 ]; then \
	  echo "--- the demo job (master log) ---"; \
	  $(COMPOSE) logs --no-log-prefix master | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | grep -E 'Put task|Try get|Result:|joined|Demo job'; fi
	@echo "--- $(WORKERS) workers connected; try: make job TASKS=40, make status, make logs, make down ---"

LESSON_PROJECT ?= mpcluster-lesson
LESSON := $(COMPOSE) -p $(LESSON_PROJECT) -f compose.lesson.yaml
lesson: check-workers check-docker key base  ## The lesson's own two scripts as the cluster: a master and WORKERS workers, their lines, then gone
	@$(LESSON) down -v --remove-orphans -t 1 >/dev/null 2>&1 || true
	@$(LESSON) up -d --build --scale worker=$(WORKERS) >/dev/null 2>&1 || { $(LESSON) logs; $(LESSON) down -v -t 1 >/dev/null 2>&1; echo "make: the lesson's containers did not start"; exit 1; }
	@for c in $$($(LESSON) ps -aq); do docker inspect -f '{{.Name}} is host {{.Config.Hostname}} at {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' $$c | sed 's|^/||'; done
	@master=$$($(LESSON) ps -aq master); code=$$(timeout 180 docker wait $$master || echo 124); \
	  $(LESSON) logs --no-color --timestamps | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | $(PYTHON) scripts/lesson-log; \
	  echo "--- the lesson's master exited ($$code); its workers are stopped and everything is removed ---"; \
	  $(LESSON) down -v --remove-orphans -t 1 >/dev/null 2>&1; exit $$code

scale: check-workers check-docker  ## Change the number of workers of the running cluster (WORKERS=N)
	$(COMPOSE) up -d --no-recreate --wait --scale worker=$(WORKERS)
	@$(COMPOSE) exec -T master python3 -m mpcluster status --wait-workers $(WORKERS) --timeout 60 | head -3

job: check-docker  ## Submit a job to the running master (TASKS=, KIND=square|sleep|primes|yours, TASK_SECONDS=, ARGS='{"json": 1}')
	$(EXEC) master python3 -m mpcluster submit --tasks $(TASKS) --kind $(KIND) --seconds $(TASK_SECONDS) \
	  $(if $(ARGS),--args '$(ARGS)')

results: check-docker  ## Follow a job submitted earlier, from its first result (JOB=id)
	@[ -n "$(JOB)" ] || { echo "make: say which job: make results JOB=job-... (make status lists them)"; exit 2; }
	$(EXEC) master python3 -m mpcluster results $(JOB)

cancel: check-docker  ## Cancel a job: drop what has not run, stop what runs (JOB=id)
	@[ -n "$(JOB)" ] || { echo "make: say which job: make cancel JOB=job-... (make status lists them)"; exit 2; }
	$(COMPOSE) exec -T master python3 -m mpcluster cancel $(JOB)

status: check-docker  ## Show the cluster as the master sees it
	@$(COMPOSE) exec -T master python3 -m mpcluster status

.PHONY: page
page: check-docker  ## Print the address of the live status page (127.0.0.1, port MPC_WEB_PORT, default 8080)
	@addr=$$($(COMPOSE) port master 8080 2>/dev/null) && [ -n "$$addr" ] \
	  && echo "http://$${addr/0.0.0.0/127.0.0.1}/" || { echo "make: the master is not running (make up)"; exit 1; }

logs: check-docker  ## Follow the logs of every node
	$(COMPOSE) logs -f

ps: check-docker  ## List the cluster's containers
	$(COMPOSE) ps

down: check-docker  ## Stop and remove the containers, the network and the job journal volume
	$(COMPOSE) down -v --remove-orphans

stack-images: check-docker  ## Swarm: build the images here; REGISTRY=host:port pushes them, NODES="n1 n2" copies them over ssh
	@scripts/stack images

stack-up: check-workers check-docker key  ## Swarm: deploy the stack (master + WORKERS workers) from this manager and wait for it
	@scripts/stack up

stack-scale: check-workers check-docker  ## Swarm: change the number of workers (WORKERS=N) and wait for it
	@scripts/stack scale $(WORKERS)

stack-down: check-docker  ## Swarm: remove the stack and its journal volume
	@scripts/stack down

stack-ps: check-docker  ## Swarm: the stack's tasks and the nodes they run on
	@scripts/stack ps

stack-status: check-docker  ## Swarm: the cluster as the master sees it (on the master's node)
	@scripts/stack status

stack-job: check-docker  ## Swarm: submit a job (TASKS=, KIND=, TASK_SECONDS=; on the master's node)
	@scripts/stack job --tasks $(TASKS) --kind $(KIND) --seconds $(TASK_SECONDS)

$(VENV)/.installed: pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

test: $(VENV)/.installed lint  ## Run every suite: lint, unit, process, browser, integration, swarm (3.11), then unit + process on 3.13
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory base; fi
	TESTCONTAINERS_RYUK_DISABLED=true $(VENV)/bin/pytest $(PYTEST_ARGS)
	@if docker info >/dev/null 2>&1 || [ -n "$$CI" ]; then $(MAKE) --no-print-directory test-py313; \
	  else echo "make: no Docker Engine: the Python 3.13 run (make test-py313) was skipped"; fi

PY313_IMAGE ?= mpcluster-test:py313
PY313_WHEELS := build/py313-wheels
test-py313: $(VENV)/.installed check-docker  ## Run the unit and process suites on Python 3.13 (a Debian trixie container, built offline)
	@scripts/ensure-base trixie
	@reqs=$$($(PYTHON) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["unit"]))'); \
	  rm -rf $(PY313_WHEELS) && mkdir -p $(PY313_WHEELS) && \
	  $(VENV)/bin/pip download -q -d $(PY313_WHEELS) --only-binary=:all: --python-version 3.13 --implementation cp \
	    --platform manylinux_2_28_$$(uname -m) --platform manylinux_2_17_$$(uname -m) --platform manylinux2014_$$(uname -m) \
	    --platform any $$reqs && \
	  docker build -q -t $(PY313_IMAGE) -f tests/py313/Dockerfile --build-arg BASE_IMAGE=mpcluster-base:trixie \
	    --build-arg REQUIREMENTS="$$reqs" $(PY313_WHEELS) >/dev/null
	docker run --rm -v "$(CURDIR)":/src:ro $(PY313_IMAGE) python3 -m pytest -p no:cacheprovider -m 'not docker' \
	  tests/unit tests/process $(PYTEST_ARGS)

test-unit: $(VENV)/.installed  ## Run the fast suite alone (no Docker)
	$(VENV)/bin/pytest -m 'not docker' $(PYTEST_ARGS)

test-integration: $(VENV)/.installed base  ## Run the Docker suite alone
	TESTCONTAINERS_RYUK_DISABLED=true $(VENV)/bin/pytest -m 'docker and not swarm' $(PYTEST_ARGS)

test-swarm: $(VENV)/.installed base  ## Run the swarm tests alone (a single-node swarm here, three Docker-in-Docker nodes)
	TESTCONTAINERS_RYUK_DISABLED=true $(VENV)/bin/pytest tests/swarm $(PYTEST_ARGS)

QUICK ?=
bench: $(VENV)/.installed check-docker key base  ## Measure on real clusters: throughput vs the lesson, scaling, threads vs processes, start-up, 1M tasks, idle CPU (QUICK=1: a smoke run)
	$(VENV)/bin/python bench/run.py $(if $(QUICK),--quick) $(BENCH_ARGS)

lint: $(VENV)/.installed  ## ruff, and the package's boundaries (lint-imports: the master never imports the worker, ...)
	$(VENV)/bin/ruff check mpcluster tests bench
	$(VENV)/bin/lint-imports --no-cache

clean: check-docker  ## Remove containers, network, journal volume, images and the generated base images (keeps the key)
	-$(COMPOSE) down -v --remove-orphans --rmi local
	-docker image rm mpcluster-master:dev mpcluster-worker:dev mpcluster-base:bookworm mpcluster-base:trixie 2>/dev/null
	-docker image rm $$(docker image ls -q mpcluster-swarm-node) $$(docker image ls -q mpcluster-test-registry) 2>/dev/null  # the swarm tests' cached images
	-docker image rm $(PY313_IMAGE) 2>/dev/null
	rm -f .env
	@echo "kept $(KEY); remove it yourself (rm -r .secrets) if you want a new key"
