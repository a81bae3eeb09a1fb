# Every target installs what it needs itself (a venv in .venv, ignored by git).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test test-slow demo lint bench clean-venv

install:
	@bash tools/install.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Opt-in slow tests on real data in ../shared/data (skip cleanly without it).
test-slow: install
	$(PY) -m pytest -m slow --run-slow $(PYTEST_ARGS)

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash recipes/demo.sh

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/kd_step.py

clean-venv:
	rm -rf $(VENV)
