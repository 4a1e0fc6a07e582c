# Quick start: `make demo` (set up + run the loop on synthetic data), `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install ui screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/feedback-loop demo

test: install
	$(BIN)/pytest -n 2 --dist loadfile

ui: install
	$(BIN)/feedback-loop dev

# After `make demo`: the UI in headless Chromium (Debian's `chromium`); checks what the lineage, the
# partitions page and the checks page show and saves them as docs/screenshots/*.png.
screenshots: install
	$(BIN)/python -m feedback_loop_tests.ui_proof

clean:
	-$(BIN)/feedback-loop db remove --yes
	rm -rf $(VENV) .feedback_loop
