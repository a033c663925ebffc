# Two entry points: `make demo` and `make test`. Each creates .venv in the checkout when it
# is missing and installs what it needs (CPU or CUDA torch as pinned below).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: test demo install clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 test

demo: $(STAMP)
	$(VENV)/bin/latent-seg demo

clean:
	rm -rf $(VENV) build *.egg-info demo_output
