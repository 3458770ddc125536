# The two commands a newcomer needs:
#   make demo   set up and run the CPU demo: both real engines + the web UI on http://127.0.0.1:8080
#   make test   set up everything the tests need, then run them
# Heavy installs are cached outside the clone in $(DUET_CACHE) (default ~/.cache/duet), by version.

# Python 3.12 when the machine has one, else python3 (3.11 works too): services/dev/find-python.sh.
PYTHON ?= $(shell bash services/dev/find-python.sh)
VENV := .venv
BIN := $(VENV)/bin
export DUET_CACHE ?= $(HOME)/.cache/duet

.PHONY: demo test venv engines browser compose lint check compose-images compose-test

$(BIN)/duet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(BIN)/duet

# The engines (vLLM CPU and `transformers serve` each in its own venv, Ollama built from source)
# and the tiny Qwen3 model.
engines: venv
	$(BIN)/duet dev --install-only

browser: venv
	bash services/dev/install-browser.sh
	bash services/dev/install-nginx.sh >/dev/null

compose:
	bash services/dev/install-compose.sh >/dev/null

# The compose test's Docker engine (Debian's docker.io) and the stand-in images it runs under the
# official names (services/compose-test/build-images.sh); images and daemon data are cached in
# $(DUET_CACHE), by version. The daemon runs only while the images build and while the test runs.
compose-images: engines compose
	bash services/dev/install-docker.sh
	$(BIN)/python tests/docker_daemon.py run -- bash services/compose-test/build-images.sh

# Only the compose test: `docker compose up` of the CPU stack on that engine
# (tests/test_compose_stack.py).
compose-test: compose-images browser
	$(BIN)/pytest -ra -m compose

lint: venv
	$(BIN)/ruff check webui tests
	$(BIN)/ruff format --check webui tests

demo: engines
	$(BIN)/duet dev

test: engines browser compose lint
	$(BIN)/pytest -ra --durations=25

# The compose test runs in `make test` too.
test: compose-images
