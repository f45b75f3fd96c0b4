# Referral Exchange — developer entry points. `make run` and `make test` need no prior set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help venv infra run stop test test-cluster test-unit chaos chaos-cluster bench lint format contracts messages screenshots demo up down constraints clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies

infra: venv ## start local Kafka + PostgreSQL and create the topics (no services)
	deploy/local/up.sh

run: infra ## start Kafka, PostgreSQL and the three services in the foreground (Ctrl-C stops all)
	$(BIN)/python $(CURDIR)/deploy/local/run.py

stop: ## stop what `make run` left running (services, Kafka, PostgreSQL)
	-pkill -TERM -f "$(CURDIR)/deploy/local/run.py" && sleep 5
	deploy/local/down.sh

test: venv ## set up private Kafka + PostgreSQL, run lint and every test, tear it all down
	deploy/local/test.sh

test-cluster: venv ## the replication tests, the walking skeleton and the short chaos run on three brokers (RF 3, min.insync 2)
	REFEX_TEST_KAFKA_BROKERS=3 REFEX_TEST_LOCAL_DIR="$${REFEX_TEST_LOCAL_DIR:-$(CURDIR)/.local/test-cluster}" \
		deploy/local/test.sh $(or $(ARGS),tests/integration/test_cluster.py tests/e2e/test_walking_skeleton.py tests/e2e/test_chaos.py)

chaos: venv ## fault injection: kills, broker/database restarts, rebalance; checks nothing is lost or doubled
	deploy/local/chaos.sh $(ARGS)

chaos-cluster: venv ## make chaos on three brokers, each in its own network namespace (root): leaders SIGKILLed, a node stopped 60 s, the controller restarted, a node partitioned 30 s
	REFEX_CHAOS_KAFKA_BROKERS=3 REFEX_KAFKA_NETNS=1 deploy/local/chaos.sh \
		$(or $(ARGS),--submissions 3000 --leader-bounces 3 --broker-stops 1 --controller-restarts 1 --network-partitions 1)

bench: venv ## benchmark: the pipeline vs a raw Kafka baseline, latency, CPU, memory, matching
	deploy/local/bench.sh $(ARGS)

test-unit: venv ## unit tests only (no infrastructure)
	$(BIN)/pytest -q tests/unit

lint: venv ## ruff, mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .

contracts: venv ## regenerate docs/schemas, docs/asyncapi and docs/openapi (commit them)
	$(BIN)/refex platform export-contracts

demo: venv ## publish a small scenario to a running `make run` and show each agency's inbox
	set -a; source .local/operator.env; set +a; $(BIN)/refex demo run

up: ## docker compose: build and start the whole system (needs a Docker engine and .env)
	docker compose up -d --build

down: ## docker compose: stop it
	docker compose down

constraints: venv ## rewrite constraints.txt (the image's exact Python packages) from the venv; commit it
	@{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^referral-exchange=='; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean: stop ## remove local data (keeps the cached Kafka jars)
	rm -rf .local/kafka .local/postgres .local/test .local/test-cluster .local/env .local/operator.env .local/mail

messages: venv ## extract the dashboard's and the shared refex (e-mails, console) messages and merge them into their catalogues (then translate the new ones)
	cd services/evidence/web && ../../../$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location \
		--sort-output --project "Referral Exchange dashboard" -o locale/dashboard.pot . && \
		../../../$(BIN)/pybabel update -i locale/dashboard.pot -d locale -D dashboard \
		-w 100 --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel extract -F shared/i18n/babel.cfg -k N_ --no-location --sort-output -w 100 \
		--project "Referral Exchange" -o shared/i18n/locale/refex.pot \
		$$(ls -d services/notification services/gateway 2>/dev/null) && \
		$(BIN)/pybabel update -i shared/i18n/locale/refex.pot -d shared/i18n/locale -D refex \
		-w 100 --no-fuzzy-matching --ignore-obsolete

screenshots: venv ## the dashboard and the console in chromium on a private system: writes docs/evidence/*.png and docs/console/*.png (commit them)
	REFEX_WRITE_SCREENSHOTS=1 deploy/local/test.sh tests/e2e/test_dashboard_browser.py tests/e2e/test_console_browser.py
