# studybot: `make run` installs, ingests the corpus if needed and starts the app; `make test` installs and tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export RAGAS_DO_NOT_TRACK := true

.PHONY: install run test lint bench clean-index browsers

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the Playwright browser tests (skipped quietly where apt is not usable).
browsers:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: /usr/bin/chromium missing; browser tests will be skipped"; }

run: install
	$(BIN)/studybot doctor --fix >/dev/null || $(BIN)/studybot doctor
	$(BIN)/studybot ingest
	$(BIN)/studybot serve

test: install browsers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/ingest.py

clean-index:
	rm -rf "$${STUDYBOT_HOME:-$$HOME/.local/share/studybot}/index"
