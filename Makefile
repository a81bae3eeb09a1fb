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

# The main job on the embedded data: the image study (digits; LS and non-LS teachers, KD students
# at T in {1,2,3,64}, diffusion analysis, study_out/report.md), then the translation demo
# (synthetic corpus; LS teacher, word-level KD student, sacreBLEU; demo_out/). Both resume.
demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} lskd study --out study_out
	PATH="$(abspath $(VENV))/bin:$$PATH" bash recipes/demo.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/kd_step.py

clean-venv:
	rm -rf $(VENV)
