# The two commands that matter: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit venv debian clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# xds-protos ships an old copy of opentelemetry/proto that breaks the OTLP modules when
	# it is installed after opentelemetry-proto: put opentelemetry-proto's files back on top.
	$(BIN)/pip install -q --force-reinstall --no-deps \
		"opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $(STAMP)

venv: $(STAMP)

debian:
	./scripts/install-debian-packages

# The import contract (DESIGN.md §2): the layers and the pure cores, in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) debian lint
	GOSSAMER_REQUIRE_POSTGRES=1 $(BIN)/pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The multi-zone demo in network namespaces (root): `make demo KEEP=1` leaves it running.
demo: $(STAMP) debian
	$(BIN)/gossamer demo $(if $(KEEP),--keep,)

clean:
	rm -rf $(VENV) .gossamer .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
