# Quick start: `make demo` trains LeNet-5 on Fashion-MNIST and draws its graph;
# `make test` runs the whole suite. Both set up everything they need themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] && echo "" || (command -v sudo >/dev/null && echo "sudo -n"))

.PHONY: test demo lint bench system-deps clean

# The demo needs the package and matplotlib; the tests add pytest, ruff, hypothesis,
# the PyTorch reference (torch==2.13.0, CPU build) and numba (the compiled depthwise
# kernels, whose tests then run; the depthwise tests run a second time without them).
$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

$(VENV)/.installed-demo: pyproject.toml $(VENV)/.created
	$(PY) -m pip install -q -e '.[plot]'
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(PY) -m pip install -q -e '.[dev,reference,plot,fast]'
	touch $@ $(VENV)/.installed-demo

# Graphviz's `dot` renders graphs; Debian's dataset-fashion-mnist holds the demo's data.
system-deps:
	@if ! command -v dot >/dev/null 2>&1 || [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if command -v apt-get >/dev/null 2>&1 && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz dataset-fashion-mnist \
	      || echo "warning: apt-get could not install graphviz / dataset-fashion-mnist"; \
	  else \
	    echo "note: install Graphviz (apt install graphviz, brew install graphviz or conda install graphviz)"; \
	    echo "      and Fashion-MNIST (apt install dataset-fashion-mnist) or let tinygrad-np download it"; \
	  fi; \
	fi

test: $(VENV)/.installed system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n auto -q
	TINYGRAD_NP_COMPILED=0 $(PY) -m pytest -n auto -q -k depthwise

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

demo: $(VENV)/.installed-demo system-deps
	$(PY) -m tinygrad_np demo

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
