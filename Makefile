# The two commands of the README: `make run` (set up + main job) and `make test` (set up + tests).
PY ?= python3
RUN_DIR ?= runs/$(shell date +%Y%m%d-%H%M%S)

.PHONY: setup run test lint bench fuzz

setup:
	@bash scripts/setup.sh

run: setup
	imac reproduce --out $(RUN_DIR)

test: setup
	$(PY) -m pytest -q

lint:
	ruff check src tests benchmarks
	mypy src/imac

bench: setup
	imac bench xbar --rows 64 --cols 64 --batch 100 --spice-batch 2 --json
	$(PY) benchmarks/xbar_scaling.py

# The fuzz tier's long run (tests/fuzz; `make test` runs a small derandomized set of the same tests).
FUZZ_EXAMPLES ?= 2000
fuzz: setup
	IMAC_FUZZ_RANDOM=1 IMAC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/fuzz
