# recsys developer commands. `make demo` and `make test` work on a fresh machine with Python 3.11:
# each creates .venv if missing and installs the project pinned by constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_DB := $(CURDIR)/.demo/recsys.db
DEMO_ENV := RECSYS_DATABASE_URL=sqlite:///$(DEMO_DB) LITELLM_LOCAL_MODEL_COST_MAP=True
DEMO_TASKS := chat coding math creative_writing long_context retrieval sts classification clustering

.PHONY: install dev demo test test-sqlite test-postgres lint bench clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

# The main job end to end on embedded SQLite, in a demo store of its own, from the sample mirror
# shipped in sample_mirror/ (no upstream source is contacted).
demo: install
	rm -rf .demo && mkdir -p .demo
	$(DEMO_ENV) $(BIN)/recsys db upgrade
	$(DEMO_ENV) $(BIN)/recsys ingest lmsys --source sample_mirror/lmsys
	$(DEMO_ENV) $(BIN)/recsys ingest mteb --source sample_mirror/mteb
	$(DEMO_ENV) $(BIN)/python -m recommender_core.telemetry.demo
	$(DEMO_ENV) $(BIN)/recsys policy check
	$(DEMO_ENV) $(BIN)/recsys score
	@# One decision per default task with the V2 recommender on; where no candidate qualifies yet
	@# (no evidence ingested), the NoCandidateError line is shown and then the static order.
	@for task in $(DEMO_TASKS); do \
	  echo "+ recsys route $$task"; \
	  $(DEMO_ENV) ENABLE_MODEL_RECOMMENDER_V2=true $(BIN)/recsys route $$task || \
	  $(DEMO_ENV) ENABLE_MODEL_RECOMMENDER_V2=false $(BIN)/recsys route $$task || exit 1; \
	done
	$(DEMO_ENV) $(BIN)/recsys snapshot
	@echo
	@echo "Explore the demo store:"
	@echo "  export RECSYS_DATABASE_URL=sqlite:///$(DEMO_DB)"
	@echo "  $(BIN)/recsys snapshot --json"
	@echo "Against the real sources (unset RECSYS_DATABASE_URL to use your own store):"
	@echo "  recsys db upgrade && recsys ingest lmsys && recsys ingest mteb && recsys score && recsys snapshot"

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy recommender_core cli

# The whole suite: lint, then every test on SQLite and, when RECSYS_TEST_DATABASE_URL points at
# a Postgres server, the same tests again on Postgres (the store fixture is parametrized); then the
# routing and integration tests (marker `routing`) again with ENABLE_MODEL_RECOMMENDER_V2=true.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	ENABLE_MODEL_RECOMMENDER_V2=true $(BIN)/python -m pytest -m routing $(PYTEST_ARGS)

bench: dev
	$(BIN)/python -m bench

# Re-pin every dependency after a deliberate upgrade: review the diff before committing it.
constraints: $(BIN)/python
	$(PIP) install --quiet --upgrade -e '.[dev]'
	# --all keeps setuptools (the build backend the Dockerfile and the wheel test pin); pip itself is not pinned.
	$(PIP) freeze --all --exclude-editable | grep -v -e '^recsys' -e '^pip==' > constraints.txt

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
