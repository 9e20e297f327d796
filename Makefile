# The two commands of the README:
#   make quickstart   build everything from nothing and run the quickstart on SQLite
#   make test         build everything from nothing, lint (ruff, mypy, import-linter) and run
#                     the whole test suite
# Everything else here is what those two need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= data
export ROBUSTLAB_DATA_DIR ?= $(DATA_DIR)

.PHONY: quickstart test env system-packages services lint lock clean

quickstart: env
	$(BIN)/robustlab db upgrade
	$(BIN)/robustlab data fetch mnist
	$(BIN)/robustlab run specs/quickstart.yaml

test: env system-packages services lint
	$(BIN)/python -m pytest -q

env: $(STAMP)

# A virtual environment with the locked versions (requirements.lock), the project in editable mode.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@# Test-only yardstick for the attack tests and benchmarks/autoattack.py. --no-deps: its
	@# metadata pins requests~=2.25.1 (used only by a bundled robustbench downloader), which
	@# conflicts with the lock; everything it imports (torch, scipy, tqdm, numpy) is locked.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c requirements.lock torchattacks
	@# Test-only yardstick for the field's architectures (tests/science/test_field_architectures.py
	@# loads its architecture files by path). --no-deps: it pins timm, gdown, requests ... and the
	@# architecture modules import only torch.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c requirements.lock robustbench
	touch $(STAMP)

# Debian packages the tests use: headless Chromium (dashboard tests), the real Fashion-MNIST.
system-packages:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -d /usr/share/datasets/fashion-mnist || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# PostgreSQL and Redis for the tests that talk to the real services.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 1; done; \
	  echo "PostgreSQL or Redis did not come up"; exit 1

# ruff, mypy and import-linter's layer contracts (pyproject.toml); `make test` runs them first.
lint: env
	$(BIN)/ruff check .
	$(BIN)/mypy contract service workers dashboard
	$(BIN)/lint-imports

# Re-lock after changing dependencies in pyproject.toml.
lock: env
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^robustlab' > requirements.lock

clean:
	rm -rf $(VENV) robustlab.db robustlab.db-* artifacts runs .pytest_cache
