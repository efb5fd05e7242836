# recsys developer commands. `make demo` and `make test` work on a fresh machine with Python 3.11:
# each creates .venv if missing and installs the project pinned by constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_DB := $(CURDIR)/.demo/recsys.db
DEMO_ENV := RECSYS_DATABASE_URL=sqlite:///$(DEMO_DB) LITELLM_LOCAL_MODEL_COST_MAP=True

.PHONY: install dev demo test test-sqlite test-postgres lint bench clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# setuptools prints one note on every editable install of a package whose import name differs from
# its folder (recsys_cli lives in cli/): "Editable installation... folders with the same name may take
# precedence". It is informational and says nothing about this project, so the install stays quiet.
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(QUIET_EDITABLE) $(PIP) install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml constraints.txt
	$(QUIET_EDITABLE) $(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

# The main job end to end on embedded SQLite, in a demo store of its own, from the sample mirror
# shipped in sample_mirror/ (no upstream source is contacted). Each step prints a line or two; the
# full snapshot goes to .demo/snapshot.txt, and the demo ends with the top pick per task and the one
# component that decided it (route() with the V2 recommender on, as the router would call).
DEMO := @$(DEMO_ENV) $(BIN)/recsys
demo: install
	@rm -rf .demo && mkdir -p .demo
	@echo "+ recsys db upgrade"
	$(DEMO) db upgrade
	@echo "+ recsys ingest lmsys --source sample_mirror/lmsys"
	$(DEMO) ingest lmsys --source sample_mirror/lmsys
	@echo "+ recsys ingest mteb --source sample_mirror/mteb"
	$(DEMO) ingest mteb --source sample_mirror/mteb
	@echo "+ recsys ingest outcomes --source sample_mirror/outcomes/evals.csv"
	$(DEMO) ingest outcomes --source sample_mirror/outcomes/evals.csv
	@echo "+ telemetry from a few LiteLLM mock_response calls"
	@$(DEMO_ENV) $(BIN)/python -m recommender_core.telemetry.demo
	@echo "+ recsys policy check"
	$(DEMO) policy check > .demo/policy-check.txt && echo "policy: valid (details in .demo/policy-check.txt)"
	@echo "+ recsys score"
	$(DEMO) score > .demo/score.txt && head -n 1 .demo/score.txt
	@echo "+ recsys snapshot > .demo/snapshot.txt"
	$(DEMO) snapshot > .demo/snapshot.txt
	@# Decision quality: recsys's choices replayed on held-out halves of the sample evals (docs/decision-quality.md).
	@echo "+ recsys eval replay sample_mirror/outcomes/evals.csv"
	$(DEMO) eval replay sample_mirror/outcomes/evals.csv --repeats 100
	@echo
	@echo "Explore the demo store (sample data, not real rankings):"
	@echo "  export RECSYS_DATABASE_URL=sqlite:///$(DEMO_DB)"
	@echo "  $(BIN)/recsys snapshot    # or: cat .demo/snapshot.txt"
	@echo "Against the real sources (unset RECSYS_DATABASE_URL to use your own store):"
	@echo "  recsys db upgrade && recsys ingest lmsys && recsys ingest mteb && recsys score && recsys snapshot"
	@echo
	@$(DEMO_ENV) ENABLE_MODEL_RECOMMENDER_V2=true $(BIN)/recsys snapshot --summary

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
