# ablab: `make run` runs the lab's main job, `make test` runs every test.
# Both start from nothing: make setup creates .venv, installs the project, makes sure a
# Docker engine answers (starting dockerd as root on Debian) and builds the images.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
LAB := $(VENV)/bin/lab
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup browser run test check unit integration images engine clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv, install the lab, start a Docker engine if none answers, build model and images
	$(LAB) engine ensure
	$(LAB) model build
	$(LAB) images build

browser: ## Debian's chromium (headless), which the report.html browser test uses
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null || \
	    { apt-get update -q >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }; }; } || \
	{ echo "make: the report browser test needs chromium: apt-get install chromium" >&2; exit 2; }

# Exit 1 from `lab run` means the lab worked and the answer is "no" (a target missed or a
# regression; see each run's report.md): the job itself succeeded, so `make run` does too.
run: setup ## run the lab's main job: the shipped suite of A/B experiments, quick mode
	$(LAB) run --quick --progress plain experiments/suite.toml; status=$$?; \
	if [ $$status -eq 1 ]; then echo "make run: done; some targets were missed or metrics regressed (exit 1 from lab run: see the reports)"; \
	elif [ $$status -ne 0 ]; then exit $$status; fi

test: setup browser ## run every test: unit and integration (real containers)
	$(VENV)/bin/pytest tests

unit: $(STAMP) ## run the unit tests only (no Docker, seconds)
	$(VENV)/bin/pytest tests/unit

integration: setup browser ## run the integration tests only (real containers)
	$(VENV)/bin/pytest tests/integration

check: $(STAMP) ## lint (ruff), type-check (mypy) and unit tests
	$(VENV)/bin/ruff check lab tests benchmarks
	$(VENV)/bin/ruff format --check lab tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest tests/unit

images: $(STAMP) ## build the lab's images whose sources changed
	$(LAB) images build

clean: ## remove lab containers, the venv, built models and caches (keeps results/)
	-[ -x $(LAB) ] && $(LAB) gc --all
	rm -rf $(VENV) .cache models .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
