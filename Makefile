# The two commands of the quick start: `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs into it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
WAPITI := $(BIN)/wapiti
SEMGREP := $(BIN)/semgrep
UV := $(VENV)/tools/uv/bin/uv
# Wheels of the sample service's image dependencies, so the demo builds images offline.
WHEELHOUSE := $(VENV)/wheelhouse/.filled
SHOP := examples/shop
# The shop's locks (requirements.txt, compiled from requirements.in with every file hashed).
SHOP_LOCKS := $(SHOP)/requirements.txt \
  $(SHOP)/demo-changes/3-vulnerable-dependency/requirements.txt \
  $(SHOP)/demo-changes/4-dependency-fix/requirements.txt

.PHONY: demo test lint typecheck unit bench clean system-packages lock

$(STAMP): pyproject.toml packages/conveyor-openfeature/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Conveyor needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 2; }
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "python venv is missing: sudo apt-get install python3-venv"; exit 2; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e packages/conveyor-openfeature \
	  -e '.[dev,shop,scanners,verify,contracts,workers]'
	@touch $(STAMP)

# wapiti (the DAST step's scanner) pins its dependencies exactly: its own venv, linked in.
$(WAPITI): $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/wapiti
	$(VENV)/tools/wapiti/bin/python -m pip install --quiet 'wapiti3>=3.2,<3.3'
	ln -sf ../tools/wapiti/bin/wapiti $(WAPITI)

# semgrep (the sast step's second scanner) pins wcmatch, click, jsonschema and
# opentelemetry: its own venv too, so Conveyor's dependencies can move. `ln -sfn` replaces
# the console scripts (semgrep, pysemgrep) an older `pip install '.[scanners]'` put there.
$(SEMGREP): $(STAMP)
	$(PYTHON) -m venv $(VENV)/tools/semgrep
	$(VENV)/tools/semgrep/bin/python -m pip install --quiet 'semgrep>=1.80,<2'
	ln -sfn ../tools/semgrep/bin/pysemgrep $(BIN)/pysemgrep
	ln -sfn ../tools/semgrep/bin/semgrep $(SEMGREP)

# uv compiles the shop's locks; only `make lock` needs it.
$(UV):
	$(PYTHON) -m venv $(VENV)/tools/uv
	$(VENV)/tools/uv/bin/python -m pip install --quiet 'uv>=0.4'

# Each requirements.in to its requirements.txt: every version pinned, every file hashed.
lock: $(UV)
	@for lock in $(SHOP_LOCKS); do \
	  dir=$$(dirname $$lock); \
	  echo "locking $$dir/requirements.in"; \
	  (cd $$dir && $(abspath $(UV)) pip compile --quiet --generate-hashes \
	    --python-version 3.11 --custom-compile-command 'make lock' \
	    requirements.in -o requirements.txt) || exit 1; \
	done

# Wheels only (a wheel installs the same files every time; an sdist runs a build), checked
# against the locks' hashes as they download.
$(WHEELHOUSE): $(STAMP) $(SHOP_LOCKS)
	@for lock in $(SHOP_LOCKS); do \
	  $(BIN)/python -m pip download --quiet --only-binary :all: --require-hashes \
	    -d $(VENV)/wheelhouse -r $$lock || exit 1; \
	done
	@touch $(WHEELHOUSE)

demo: $(STAMP) $(WAPITI) $(SEMGREP) $(WHEELHOUSE)
	@scripts/system-packages git chromium libatomic1 bubblewrap
	$(BIN)/conveyor demo

test: system-packages lint typecheck unit

# The real components the tests start (registry, skopeo, podman): apt, when missing.
system-packages:
	@scripts/system-packages

lint: $(STAMP)
	$(BIN)/ruff check src packages tests bench examples
	$(BIN)/ruff format --check src packages tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers (2 cores); tests sharing a module- or session-wide fixture stay on one
# worker, real tests start first (tests/real_components.py). WORKERS=0 runs serially.
WORKERS ?= 2
unit: $(STAMP) $(WAPITI) $(SEMGREP) $(WHEELHOUSE)
	$(BIN)/pytest -q -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .conveyor
