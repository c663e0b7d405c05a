# depth-workbook: `make pipeline` runs the notebooks on the embedded sample; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= sample
PYTEST_ARGS ?=
# pytest-xdist workers (tests/conftest.py: the shared sample pipeline runs once, under a lock)
TEST_JOBS ?= 2

.PHONY: pipeline test test-fast test-kernels venv browser-deps bench clean-runs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# The message filter quiets setuptools' box about folders named like the package in the working directory:
	@# here that folder is the package being installed (depthlib/ at the root, imported from it either way).
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q --no-compile -e '.[dev]'
	@# pip compiles the ~13,000 installed .py files one by one (~40 s); both cores do it in ~25 s. Not left to the
	@# first imports: with PYTHONDONTWRITEBYTECODE set they would compile torch anew in every process. A file that
	@# does not compile on this Python (torch's py312 test helpers) is left as source, as pip leaves it.
	@$(PY) -m compileall -q -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') > /dev/null || true
	@touch $(STAMP)

venv: $(STAMP)

## Headless Chromium for the browser test (Debian's package; root only). Skipped quietly when not root.
browser-deps:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no /usr/bin/chromium and not root: the browser test will be skipped"; fi

## The whole notebook pipeline on the embedded real NYU sample (CPU, minutes).
pipeline: $(STAMP)
	$(PY) -m depthlib pipeline --profile $(PROFILE)

## The whole test suite (slow and browser tests included, as CI runs it) and, beside it at the lowest priority, the
## fast suite under the kernels other CPUs get (test-kernels): torch picks AVX2, AVX-512 or AMX kernels by CPU, and
## float32 sums differ between them. The second run takes only the cores the first leaves idle (a worker waiting on
## the shared sample pipeline, or out of tests); its log is test-artifacts/kernels.log, its verdict printed last.
test: $(STAMP) browser-deps
	@mkdir -p test-artifacts
	@echo "[make test] the fast suite under an AVX2-only CPU's and torch's portable kernels runs beside this one (nice 19): test-artifacts/kernels.log"
	@nice -n 19 $(PY) -m pytest -q -p no:cacheprovider $(KERNEL_NODES) -m "not slow" $(PYTEST_ARGS) \
	    > test-artifacts/kernels.log 2>&1 & kernels=$$!; \
	$(PY) -m pytest -q -n $(TEST_JOBS) --maxschedchunk 2 --durations=15 $(PYTEST_ARGS); main=$$?; \
	wait $$kernels; other=$$?; \
	echo "[make test] the fast suite under an AVX2-only CPU's kernels and under torch's portable kernels (test-artifacts/kernels.log):"; \
	if [ $$other = 0 ]; then tail -n 1 test-artifacts/kernels.log; else cat test-artifacts/kernels.log; fi; \
	exit $$(( main || other ))

## The fast suite under an AVX2-only CPU's kernels and under torch's portable (no SIMD dispatch) kernels, at once:
## one pytest node per kernel set, each running every fast test (conftest checks that torch took the kernels asked
## for, and a failure names them).
KERNEL_NODES := --dist each --tx 'popen//env:ATEN_CPU_CAPABILITY=avx2//env:ONEDNN_MAX_CPU_ISA=AVX2' \
	--tx 'popen//env:ATEN_CPU_CAPABILITY=default'
test-kernels: $(STAMP)
	$(PY) -m pytest -q $(KERNEL_NODES) -m "not slow" $(PYTEST_ARGS)

## Only the fast part.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_loader.py

clean-runs:
	rm -rf runs/
