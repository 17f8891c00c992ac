# The two commands of the quick start: `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs into it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
WAPITI := $(BIN)/wapiti
# Wheels of the sample service's image dependencies, so the demo builds images offline.
WHEELHOUSE := $(VENV)/wheelhouse/.filled
SHOP := examples/shop

.PHONY: demo test lint typecheck unit bench clean system-packages

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Conveyor needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 2; }
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "python venv is missing: sudo apt-get install python3-venv"; exit 2; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,shop,scanners,verify]'
	@touch $(STAMP)

# wapiti (the DAST step's scanner) pins its dependencies exactly: its own venv, linked in.
$(WAPITI): $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/wapiti
	$(VENV)/tools/wapiti/bin/python -m pip install --quiet 'wapiti3>=3.2,<3.3'
	ln -sf ../tools/wapiti/bin/wapiti $(WAPITI)

$(WHEELHOUSE): $(STAMP) $(SHOP)/requirements.txt
	$(BIN)/python -m pip download --quiet -d $(VENV)/wheelhouse -r $(SHOP)/requirements.txt
	$(BIN)/python -m pip download --quiet -d $(VENV)/wheelhouse \
	  -r $(SHOP)/demo-changes/3-vulnerable-dependency/requirements.txt
	$(BIN)/python -m pip download --quiet -d $(VENV)/wheelhouse \
	  -r $(SHOP)/demo-changes/4-dependency-fix/requirements.txt
	@touch $(WHEELHOUSE)

demo: $(STAMP) $(WAPITI) $(WHEELHOUSE)
	@scripts/system-packages git chromium libatomic1
	$(BIN)/conveyor demo

test: system-packages lint typecheck unit

# The real components the tests start (registry, skopeo, podman): apt, when missing.
system-packages:
	@scripts/system-packages

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers (2 cores); tests sharing a module- or session-wide fixture stay on one
# worker, real tests start first (tests/real_components.py). WORKERS=0 runs serially.
WORKERS ?= 2
unit: $(STAMP) $(WAPITI) $(WHEELHOUSE)
	$(BIN)/pytest -q -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .conveyor
