# The README's two commands: `make demo` (install + main job) and `make test` (install + test suite).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned to a release pip finds on this machine's disk (CUDA build; runs on CPU too) and that
# torchaudio 2.11 loads with; the CPU wheel of torch 2.13 cannot load torchaudio.
TORCH ?= torch==2.14.1
export WANDB_MODE ?= offline

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(PY) setup.cfg setup.py pyproject.toml
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH)" "torchaudio==2.11.*"
	$(PY) -m pip install -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/l2i demo

# pytest exits 5 when it collected no test: a failure here, not a pass
test: $(STAMP)
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf runs .pytest_cache
