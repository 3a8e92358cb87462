# CareLine: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# Python 3.10 for Rasa 3.6 (its last open-source release supports nothing newer).
# The first candidate that really runs 3.10 (a pyenv shim may exist and refuse to run).
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /root/.pyenv/versions/3.10*/bin/python3.10 \
  /usr/local/bin/python3.10 /usr/bin/python3.10 /opt/homebrew/bin/python3.10; do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)
PYTHON311 ?= $(shell for p in python3.11 python3 $$HOME/.pyenv/versions/3.11*/bin/python3.11 /usr/bin/python3.11; do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

VENV := .venv
VENV_RASA := .venv-rasa
RASA := $(VENV_RASA)/bin/rasa
BOT_FILES := bot/config.yml $(shell find bot/domain bot/data -type f -name '*.yml' 2>/dev/null)
MODEL := models/careline.tar.gz

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install train kb run lint format validate test test-fast bench eval-nlu test-tools clean

install: $(VENV_RASA)/.installed $(VENV)/.installed

$(VENV_RASA)/.installed: requirements/rasa.lock
	@if [ -z "$(PYTHON310)" ] || ! "$(PYTHON310)" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  echo "Python 3.10 is required for Rasa 3.6 and was not found."; \
	  echo "Install it (e.g. 'pyenv install 3.10.13', 'apt install python3.10' or 'brew install python@3.10')"; \
	  echo "and put python3.10 on PATH, or run: make PYTHON310=/path/to/python3.10"; exit 1; fi
	rm -rf $(VENV_RASA)
	"$(PYTHON310)" -m venv $(VENV_RASA)
	$(VENV_RASA)/bin/pip install -q "pip==24.0"
	$(VENV_RASA)/bin/pip install -q -c requirements/rasa.lock "rasa==3.6.21"
	touch $@

$(VENV)/.installed: pyproject.toml requirements/venv.lock
	@"$(PYTHON311)" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || { \
	  echo "Python 3.11 is required for the CareLine services; set PYTHON311=/path/to/python3.11"; exit 1; }
	[ -x $(VENV)/bin/python ] || "$(PYTHON311)" -m venv $(VENV)
	$(VENV)/bin/pip install -q -c requirements/venv.lock -e ".[test]"
	touch $@

# Retrains only when a file under bot/ changed (Rasa also skips unchanged fingerprints).
train: $(MODEL)
$(MODEL): $(BOT_FILES) $(VENV_RASA)/.installed
	mkdir -p models
	cd . && RASA_TELEMETRY_ENABLED=false $(RASA) train -c bot/config.yml -d bot/domain --data bot/data \
	  --out models --fixed-model-name careline --quiet
	touch $@

# Indexes the knowledge base when it is missing or stale (a no-op in seconds when unchanged).
kb: install
	$(VENV)/bin/careline kb ingest

run: install train kb
	$(VENV)/bin/careline run

# Test tools from Debian's packages: Chromium for the browser tests (Playwright cannot download
# browsers here) and docker-compose to validate docker-compose.yml when `docker compose` is absent.
test-tools:
	@need=""; \
	  { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || need="$$need chromium"; \
	  { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } || need="$$need docker-compose"; \
	  if [ -n "$$need" ]; then \
	    if [ "$$(id -u)" = 0 ]; then echo "Installing$$need (apt)"; \
	      apt-get install -y -q $$need >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $$need >/dev/null; }; \
	    else echo "Please install:$$need (e.g. sudo apt-get install$$need)"; exit 1; fi; fi

# ruff: lint and format check (configured in pyproject.toml). `make format` applies both.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Rasa's own consistency check of the domain, stories, rules and NLU data (the same files `train` reads).
validate: $(VENV_RASA)/.installed
	RASA_TELEMETRY_ENABLED=false $(RASA) data validate -c bot/config.yml -d bot/domain --data bot/data

# The steps before the tests are independent: run side by side, training Rasa and embedding the
# knowledge base share the two cores (each alone leaves about half of one idle).
test: install
	$(MAKE) --no-print-directory -j3 --output-sync=target lint validate train test-tools kb
	$(VENV)/bin/python -m pytest -q

# The offline unit tier: no Redis, PostgreSQL, Rasa or browser (tests/unit/conftest.py enforces it).
test-fast: install
	$(VENV)/bin/python -m pytest -q tests/unit

eval-nlu: install train
	@for f in ../shared/eval/nlu_*.jsonl; do echo "== $$f"; \
	  $(VENV)/bin/careline eval nlu --cases $$f | $(VENV)/bin/python -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"accuracy": r["accuracy"], "fallback_rate": r["fallback_rate"], "recall": {k: v["recall"] for k, v in r["intents"].items() if v["support"]}}))'; done

bench: install train kb
	$(VENV)/bin/python -m careline.bench
	$(VENV)/bin/python -m careline.bench_kb
	$(VENV)/bin/python -m careline.bench_sms
	$(VENV)/bin/python -m careline.bench_screen
	$(VENV)/bin/python -m careline.bench_staff
	$(VENV)/bin/python -m careline.bench_schedule
	$(VENV)/bin/python -m careline.bench_reminders

clean:
	rm -rf models var .pytest_cache
