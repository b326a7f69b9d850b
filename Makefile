# Vigil: the commands. `make run` and `make test` need only Python 3.11+, make and git.
#
#   make run     install, migrate, load demo data, start web + worker + beat (Ctrl-C stops all)
#   make serve   the same on one machine in production mode: DEBUG off, no demo data (README)
#   make test    install and run the whole test suite   (make test PYTEST_ARGS='-k sla')
#   make lint    ruff check, ruff format --check, import-linter contracts
#   make check   Django system checks, migrations up to date, check --deploy in production mode
#   make bench   admin list vs index benchmark on PostgreSQL (see bench/README.md)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
BIND ?= 127.0.0.1
PORT ?= 8000
VAR_DIR := $(or $(VIGIL_VAR_DIR),var)
STATIC_ROOT := $(or $(DJANGO_STATIC_ROOT),staticfiles)
# The address others reach BIND:PORT at, for the links Vigil writes (as config/settings.py does).
URL_HOST := $(if $(filter 0.0.0.0 ::,$(BIND)),localhost,$(if $(findstring :,$(BIND)),[$(BIND)],$(BIND)))

.DEFAULT_GOAL := help
.PHONY: help install run serve demo reset test lint format check bench clean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

# The virtualenv and the install are separate steps: the install is redone whenever
# pyproject.toml changes (its stamp is older), the virtualenv only when it is missing.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "Vigil needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
		  "Run: make PYTHON=python3.12 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)

# --no-compile: modules are byte-compiled when first imported instead of all at install time,
# which makes the first `make run` on a fresh clone about a third faster.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --quiet --no-compile -e '.[dev]'
	@touch $@

install: $(INSTALLED)

# Development mode: DEBUG on, the embedded SQLite database and filesystem broker under var/.
# var/development records it, with the address, for every process and for the manage.py
# commands typed later in this checkout (config/settings.py: DEBUG's default, VIGIL_BASE_URL).
run: export DJANGO_DEBUG ?= 1
run: export PATH := $(abspath $(BIN)):$(PATH)
run: $(INSTALLED)
	@mkdir -p $(VAR_DIR)
	@printf '# Written by make run: a development checkout (DEBUG on unless DJANGO_DEBUG or DATABASE_URL is set),\n# served at this address (VIGIL_BASE_URL unless set). make reset removes it.\nBIND=%s\nPORT=%s\n' \
		'$(BIND)' '$(PORT)' > $(VAR_DIR)/development
	$(MANAGE) migrate --noinput
	$(MANAGE) demo_data --keep-existing $(DEMO_ARGS)
	$(MANAGE) reviews_demo --keep-existing $(DEMO_ARGS)
	$(MANAGE) status_demo --keep-existing $(DEMO_ARGS)
	$(MANAGE) kpis_demo --keep-existing $(DEMO_ARGS)
	@echo ""
	@echo "  Vigil is starting (web, Celery workers, beat). Ctrl-C stops them all."
	@echo "    Admin:     http://$(BIND):$(PORT)/admin/"
	@echo "    API docs:  http://$(BIND):$(PORT)/api/docs/"
	@echo "    Status page: http://$(BIND):$(PORT)/status/"
	@echo "    Login:     admin / vigil-demo  (staff logins are listed above)"
	@echo ""
	VIGIL_BIND=$(BIND) exec $(BIN)/python -m config.devrun --port $(PORT)

# Production mode on one machine (README, "One machine: make serve"): the embedded SQLite database,
# filesystem broker and file cache under var/, DEBUG off (a var/development left by `make run` is
# removed, and ignored under VIGIL_EMBEDDED_PRODUCTION), the secret key generated once into
# var/secret_key (mode 0600; DJANGO_SECRET_KEY wins), no demo data. The same Procfile processes.
serve: export DJANGO_DEBUG := 0
serve: export VIGIL_EMBEDDED_PRODUCTION := 1
serve: export VIGIL_BASE_URL ?= http://$(URL_HOST):$(PORT)
serve: export PATH := $(abspath $(BIN)):$(PATH)
serve: $(INSTALLED)
	@mkdir -p $(VAR_DIR)
	@if [ -e $(VAR_DIR)/development ]; then rm -f $(VAR_DIR)/development; \
		echo "This checkout was a development one (make run): production mode from now on." \
		     "Its demo data and demo logins are still in the database; make reset starts afresh."; fi
	$(MANAGE) migrate --noinput
	@# Collecting compresses every file (gzip and Brotli: minutes on a busy small machine); a
	@# restart skips it while the manifest is newer than the install and every static file here.
	@if [ -f $(STATIC_ROOT)/staticfiles.json ] && [ $(STATIC_ROOT)/staticfiles.json -nt $(INSTALLED) ] && \
		[ -z "$$(find . -path ./.venv -prune -o -path ./$(STATIC_ROOT) -prune -o -path ./var -prune \
			-o -path '*/static/*' -type f -newer $(STATIC_ROOT)/staticfiles.json -print | head -1)" ]; \
	then echo "Static files up to date in $(STATIC_ROOT)/."; \
	else echo "$(MANAGE) collectstatic --noinput --verbosity 0"; \
		$(MANAGE) collectstatic --noinput --verbosity 0; fi
	$(MANAGE) check --deploy
	@echo ""
	@echo "  Vigil is starting in production mode (web, Celery workers, beat). Ctrl-C stops all."
	@echo "    Listening: http://$(URL_HOST):$(PORT)/  (HTTP; HTTPS is your reverse proxy's job: README, One machine)"
	@echo "    Admin:     $$VIGIL_BASE_URL/admin/"
	@echo "    First login: $(BIN)/python manage.py createsuperuser"
	@echo ""
	VIGIL_BIND=$(BIND) exec $(BIN)/python -m config.devrun --port $(PORT)

# Load the demo data without starting anything. demo_data refuses a database that is not a
# throwaway one (DJANGO_DEBUG alone does not make it one); DEMO_ARGS=--force overrides that.
demo: export DJANGO_DEBUG ?= 1
demo: $(INSTALLED)
	$(MANAGE) migrate --noinput
	$(MANAGE) demo_data $(DEMO_ARGS)
	$(MANAGE) reviews_demo $(DEMO_ARGS)
	$(MANAGE) status_demo $(DEMO_ARGS)
	$(MANAGE) kpis_demo $(DEMO_ARGS)

# Forget the embedded database, broker and cache (var/): the next `make run` starts afresh with
# demo incidents dated from then.
reset:
	rm -rf var

test: $(INSTALLED)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# `check --deploy` runs with production settings: DEBUG off, a throwaway random secret key.
check: $(INSTALLED)
	DJANGO_DEBUG=1 $(MANAGE) check
	DJANGO_DEBUG=1 $(MANAGE) makemigrations --check --dry-run
	@# The configuration, not this checkout's data: against a throwaway VIGIL_VAR_DIR, so the
	@# demo logins of `make run` (warning vigil.W001) do not fail it. In production, run
	@# `manage.py check --deploy` against the real database (README, Production setup).
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	VIGIL_VAR_DIR="$$tmp" DJANGO_DEBUG=0 DJANGO_ALLOWED_HOSTS=vigil.example.com \
		DJANGO_SECRET_KEY="$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
		$(MANAGE) check --deploy --fail-level WARNING

bench: $(INSTALLED)
	$(BIN)/python bench/admin_list.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
