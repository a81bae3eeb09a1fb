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

# The main job on the embedded data: the study of both modalities (digits and lskd synth-mt; LS and
# non-LS teachers, KD students at T in {1,2,3,64}, 3 seeds, paired comparisons with intervals and
# verdicts, diffusion analysis) in study_out/report.md. Resumes; finished runs are reused by key.
demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} lskd study recipes/study/quickstart.yaml

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/kd_step.py

clean-venv:
	rm -rf $(VENV)
