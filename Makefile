# studybot: `make run` installs, ingests the corpus if needed and starts the app; `make test` installs and tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export RAGAS_DO_NOT_TRACK := true

.PHONY: install run test lint bench clean-index browsers rebuild-llama

$(STAMP): pyproject.toml tools/llama_build.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install "torch==2.13.0"
	# llama-cpp-python next, compiled without -march=native and never with AMX (it crashed one of our CPUs),
	# one wheel per flag set in ~/.cache/studybot/llama-wheels: see tools/llama_build.py
	$(BIN)/python -m tools.llama_build install
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# The llama step again on every install: a no-op unless the build flags changed (another CPU, or
# STUDYBOT_LLAMA_CPU / STUDYBOT_LLAMA_CMAKE_EXTRA set), in which case it builds and installs the new wheel.
install: $(STAMP)
	@$(BIN)/python -m tools.llama_build install

rebuild-llama: $(STAMP)
	$(BIN)/python -m tools.llama_build install --force

# Debian's Chromium for the Playwright browser tests (skipped quietly where apt is not usable).
browsers:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: /usr/bin/chromium missing; browser tests will be skipped"; }

# serve --prepare: assemble + verify the model, bring the index in line with the library (corpus + uploads),
# check the llama.cpp runtime once per build (cached), then start the web UI.
run: install
	$(BIN)/studybot serve --prepare

test: install browsers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.ingest

clean-index:
	rm -rf "$${STUDYBOT_HOME:-$$HOME/.local/share/studybot}/index"
