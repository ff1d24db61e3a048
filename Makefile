# Sealgate: `make run` serves on the embedded defaults, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
# Installed apart with --ignore-requires-python: docs/architecture.md says why.
OPA_BINDINGS := opa-golib-python-bindings==0.4.4
NODE_TOOLS := tests/sigstore_local

.PHONY: install run test bench lint typecheck registry-binary node-tools clean schema

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Sealgate needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --ignore-requires-python $(OPA_BINDINGS)
	touch $(STAMP)

run: install
	$(BIN)/sealgate db upgrade
	$(BIN)/sealgate serve

registry-binary:
	@command -v docker-registry >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry; \
		else \
			echo "The tests need Debian's registry: run 'sudo apt-get install docker-registry'"; exit 1; \
		fi; }

node-tools:
	@if [ -f $(NODE_TOOLS)/package.json ]; then \
		command -v npm >/dev/null 2>&1 || { echo "The tests need Node.js and npm: run 'sudo apt-get install nodejs npm'"; exit 1; }; \
		[ $(NODE_TOOLS)/node_modules/.package-lock.json -nt $(NODE_TOOLS)/package-lock.json ] || \
			(cd $(NODE_TOOLS) && npm ci --no-audit --no-fund --silent); \
	fi

test: install registry-binary node-tools
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: install registry-binary node-tools
	$(BIN)/python -m benchmarks.run

lint: install
	$(BIN)/ruff check app tests benchmarks alembic
	$(BIN)/ruff format --check app tests benchmarks alembic

typecheck: install
	$(BIN)/mypy app

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Before the first release the schema is one migration: regenerate it from the models
# after changing app/db/models.py (tests check models and migrations agree).
schema: install
	rm -f alembic/versions/*_0001_initial_schema.py /tmp/sealgate-schema.db
	$(BIN)/python -c "from alembic import command; from app.db.migrate import alembic_config; command.revision(alembic_config('sqlite:////tmp/sealgate-schema.db'), message='initial schema', autogenerate=True, rev_id='0001')"
	$(BIN)/ruff format alembic/versions
