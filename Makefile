# Two entry points on a fresh machine (see README):
#   make serve   set up .venv, `writ init` (idempotent) and `writ serve` on embedded defaults
#   make test    set up .venv with the test tools and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: serve test demo lint schemas bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Runtime install: Writ and its dependencies only.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Test install: the test extras, real OPA as a library for the parity suite, and the npm
# MCP servers (locked in .mcp-servers/package-lock.json) run by the venv's own Node.
# opa-golib-python-bindings declares Python >= 3.14 but loads on 3.11 (see FIELD-NOTES).
$(VENV)/.test: pyproject.toml .mcp-servers/package-lock.json | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --ignore-requires-python 'opa-golib-python-bindings==0.4.4'
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/npm ci --prefix .mcp-servers --no-audit --no-fund --loglevel=error
	touch $(VENV)/.runtime $@

serve: $(VENV)/.runtime
	$(BIN)/writ init
	$(BIN)/writ serve

test: $(VENV)/.test
	$(BIN)/writ policy check
	$(BIN)/writ policy test
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

# The end-to-end story with real upstream servers (needs the npm servers: the test install).
demo: $(VENV)/.test
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/writ demo

lint: $(VENV)/.test
	$(BIN)/ruff check engine attestations plans workflows
	rm -rf build/typecheck && mkdir -p build/typecheck/writ
	for d in engine plans attestations policies workflows; do ln -s ../../../$$d build/typecheck/writ/$$d; done
	$(BIN)/mypy

schemas: $(VENV)/.runtime
	$(BIN)/python -m writ.engine.policy.schema schemas/

bench: $(VENV)/.test
	$(BIN)/python benchmarks/policy_decisions.py
	$(BIN)/python benchmarks/plans.py
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/gateway_overhead.py
	$(BIN)/python benchmarks/approvals.py
	$(BIN)/python benchmarks/attestations.py
	$(BIN)/python benchmarks/attest_bundles.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
