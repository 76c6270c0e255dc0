# Set-up and main entry points. On a fresh Debian machine `make run` and `make test` do everything:
# create .venv, install fmnist (CPU torch from the wheel on disk), make sure the dataset is
# reachable, then run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MPLBACKEND := Agg
# apt-get below (dataset, chromium, postgresql) must never stop at a question (tzdata's, on a fresh machine)
export DEBIAN_FRONTEND := noninteractive

.PHONY: run test test-fast bench fuzz mutation install data browser services clean

# The main job: look at the data, train write-up 000's baseline with its recipe (training ends with the
# test-set evaluation, its figures and report.html in the run folder), export it to ONNX and predict a
# new image file with it, as write-up 000 ends (test image 1, a Pullover, saved as a PNG). Each step
# runs once. 60 s on an idle 2-core AVX512-BF16 AMD EPYC, 4 min 51 s on an AVX2-only one (README).
run: data
	$(BIN)/fmnist info
	$(BIN)/fmnist explore --out $(RUN_DIR)/explore
	rm -rf $(RUN_DIR)/baseline
	$(BIN)/fmnist train --config configs/writeup000-baseline.yaml --out $(RUN_DIR)/baseline
	$(BIN)/fmnist export $(RUN_DIR)/baseline/model.safetensors
	$(BIN)/python -c "import fmnist, PIL.Image as I; I.fromarray(fmnist.load_dataset().test.images[1]).save('$(RUN_DIR)/sample_image.png')"
	$(BIN)/fmnist predict $(RUN_DIR)/baseline/model.onnx $(RUN_DIR)/sample_image.png --show-input $(RUN_DIR)/predict

# The whole suite, one pytest worker per core (pytest-xdist; a test file stays on one worker, so its
# module fixtures are built once). Each worker's torch gets one thread: two workers with two threads
# each would fight over two cores. `make test-fast` leaves out the tests marked slow.
TEST_WORKERS ?= auto
test: data browser services
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: data
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

# The browser test of `fmnist serve`'s page drives the system's Chromium (never a downloaded one). As root
# (CI), install Debian's package when it is missing; otherwise the test skips and says why (CI=true: fails).
browser:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || { \
	  echo "fmnist: installing Debian's chromium for the browser test"; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	}

# The speed benchmarks (benchmarks/README.md): the fast recipe and its ablation table, then fmnist
# against the write-ups' own Keras/TensorFlow scripts (installs the `bench` extra: tensorflow-cpu and
# keras). About 90 minutes on a 2-core CPU; results in benchmarks/results/.
bench: data
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/fast_recipe.py --seeds 3 --ablation-seeds 2
	$(BIN)/python benchmarks/vs_keras.py --recipe baseline --epochs 10 --seeds 3 --target 0.90
	$(BIN)/python benchmarks/vs_keras.py --recipe minivgg --epochs 3 --seeds 3 --target 0.90

# Fuzzing (not in CI, about 12 minutes): the hypothesis properties (tests marked `fuzz`; 1 min 49 s) with
# 2,000 fresh random examples each, then a coverage-guided atheris campaign on the image path
# (fuzz/images.py) for FUZZ_SECONDS. An input that raised anything but an FmnistError is saved in
# fuzz/findings/ (replay it: .venv/bin/python fuzz/images.py fuzz/findings/crash-...).
FUZZ_SECONDS ?= 600
fuzz: data
	$(BIN)/pip install -q atheris
	FMNIST_FUZZ_EXAMPLES=2000 FMNIST_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m fuzz tests/hostile
	$(BIN)/python fuzz/images.py --seed-corpus fuzz/corpus
	mkdir -p fuzz/findings
	$(BIN)/python fuzz/images.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -artifact_prefix=fuzz/findings/ fuzz/corpus

# Mutation testing (issue 11): mutmut changes data/formats.py, kaggle_csv.py, images.py, image_spec.py,
# modelfile.py, model_metadata.py, export.py, runfolder.py, engine/resume.py and trainer.py's Best and
# Checkpointer one small mistake at a time, and runs each module's fast test subset against every mutant
# (groups and subsets in mutation/run.py). Not in CI: on a 2-core CPU beside other work the first passes
# took 39 minutes (formats, 803 mutants), 12 (images), 9 (export), 4 (modelfile), 2 (runfolder) and 3
# (trainer): about 70 minutes in all. Scores in .mutation/summary.md; each surviving mutant is explained
# in mutation/SURVIVORS.md.
mutation: data
	$(BIN)/pip install -q 'mutmut==3.8.1'
	nice -n 19 $(BIN)/python mutation/run.py

install: $(STAMP)

# Torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build, while
# 2.13.0 is the CPU wheel on this machine's disk. pyproject.toml keeps a loose range (torch>=2.4).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# fmnist looks in --data, $FMNIST_DATA, the cache, system copies, then downloads. When all of that
# fails (no network), install Debian's copy of the official files.
data: install
	@$(BIN)/fmnist data --quiet >/dev/null 2>&1 || { \
	  echo "fmnist: no dataset reachable; installing Debian's dataset-fashion-mnist"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	}
	$(BIN)/fmnist data

# `fmnist tune`'s tests start a real PostgreSQL server of their own (tests/postgres.py). In CI
# (CI=true) a missing PostgreSQL is installed (Debian's `postgresql`), and its tests never skip;
# elsewhere they are skipped with a note when it is missing.
services: install
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$CI" = true ]; then \
	    echo "fmnist: installing Debian's postgresql for the tune tests"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get install -y -q postgresql >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q postgresql >/dev/null; }; \
	  else echo "fmnist: note: PostgreSQL is not installed; the tune tests that need it will be skipped"; fi; \
	}

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache .mutation src/*.egg-info
