# The two commands of the README, and what they stand on. Every target re-uses what is
# already built: `make setup` skips each step whose inputs did not change.
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=
# TEST_WORKERS: pytest-xdist workers for the tests not marked realtime (auto: one per core, at
# most 4); the realtime tests then run alone. 0: one serial session (see scripts/run_tests.sh)
TEST_WORKERS ?= auto
# demo sizes: make demo EPISODES=10 EVAL_EPISODES=5 EPOCHS=2 (defaults: 40, 10, 8)
EPISODES ?=
EVAL_EPISODES ?=
EPOCHS ?=
DEMO_ARGS = $(if $(EPISODES),--episodes $(EPISODES)) $(if $(EVAL_EPISODES),--eval-episodes $(EVAL_EPISODES)) \
            $(if $(EPOCHS),--epochs $(EPOCHS))

.PHONY: all setup demo test lint format constraints clean
all: test

setup:
	@bash scripts/setup.sh

## demo: set up what is missing, then run the main job on the embedded default
demo: setup
	@$(BIN)/reward-model demo $(DEMO_ARGS)

## test: set up what is missing, then lint and run the whole test suite
test: setup lint
	@TEST_WORKERS=$(TEST_WORKERS) PYTHON=$(BIN)/python bash scripts/run_tests.sh $(PYTEST_ARGS)

lint:
	@echo "[test] ruff check + ruff format --check"
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .

format:
	@$(BIN)/ruff check --fix . && $(BIN)/ruff format .

## constraints: re-pin the whole venv after a change to requirements.txt
constraints:
	@{ head -n 3 constraints.txt; $(BIN)/pip freeze --exclude-editable | sort; } > constraints.txt.new \
	  && mv constraints.txt.new constraints.txt && echo "constraints.txt updated"

clean:
	rm -rf build install log
