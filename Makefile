# Set-up and everyday commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv compare demo test lint clean

venv: $(STAMP)

# torch is pinned and installed first, so that resolving the extras never pulls another torch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[test,demo,dev,plot]" torch==2.13.0
	touch $(STAMP)

# The main job: 10 optimizers x 3 seeds on the digits task; report in unstuck-compare/ (re-running
# resumes: finished runs are read back, not redone).
compare: venv
	$(BIN)/unstuck compare

demo: venv
	$(BIN)/unstuck demo

test: venv
	$(BIN)/python -m pytest -n 2

lint: venv
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
