# cymongoose: `make serve` runs the dashboard, `make test` runs everything (CI runs it).
# Both set up what they need on a fresh Debian/Ubuntu machine.

PYTHON ?= python3
PYPY ?= pypy3
CPY_VENV := .venv-cpython
PYPY_VENV := .venv-pypy
PORT ?= 8000
# 1884: Debian's mosquitto package starts a broker on 1883.
MQTT_PORT ?= 1884
PYTEST_ARGS ?=
# python3-venv, python3-dev and gcc: a fresh Debian has none of them, and the
# CPython venv and our C extension need all three.
# `make serve` needs only the first line; the tests need the rest too
# (chromium and chromium-driver: the dashboard's browser tests).
SERVE_APT_PACKAGES := python3-venv python3-dev gcc libssl-dev zlib1g-dev
APT_PACKAGES := $(SERVE_APT_PACKAGES) pypy3 pypy3-dev pypy3-venv mosquitto wrk curl \
  chromium chromium-driver

.PHONY: serve test test-cpython test-pypy test-asan test-builtin-tls system-deps serve-deps apt-install install-cpython install-pypy install-serve clean sdist

# Debian packages the build and the tests need (a compiler, venvs, PyPy, the
# mosquitto broker, wrk, curl, chromium); serve-deps: what `make serve` needs.
system-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"
serve-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(SERVE_APT_PACKAGES)"
apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== apt-get install$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(CPY_VENV)/bin/python: | serve-deps
	@echo "== making $(CPY_VENV)"
	$(PYTHON) -m venv $(CPY_VENV)
	$(CPY_VENV)/bin/pip install -q --upgrade pip

$(PYPY_VENV)/bin/python: | system-deps
	@echo "== making $(PYPY_VENV)"
	$(PYPY) -m venv $(PYPY_VENV)
	$(PYPY_VENV)/bin/pip install -q --upgrade pip

# The pinned Mongoose sources (also fetched by the build itself when missing).
# The venv's python: it has pip, which a fresh Debian's python3 lacks.
vendor/mongoose.c:
	$(MAKE) $(CPY_VENV)/bin/python
	@echo "== fetching the pinned Mongoose sources"
	$(CPY_VENV)/bin/python vendor/fetch.py

# Install the package (not editable: tests run against what users get).
install-cpython: $(CPY_VENV)/bin/python vendor/mongoose.c
	@echo "== building and installing cymongoose with the test tools (CPython)"
	$(CPY_VENV)/bin/pip install -q ".[test,frameworks]"

install-pypy: $(PYPY_VENV)/bin/python vendor/mongoose.c
	@echo "== building and installing cymongoose with the test tools (PyPy)"
	$(PYPY_VENV)/bin/pip install -q ".[test,frameworks-pypy]"

# The package alone: the dashboard needs nothing else.
install-serve: $(CPY_VENV)/bin/python vendor/mongoose.c
	@echo "== building and installing cymongoose (CPython)"
	$(CPY_VENV)/bin/pip install -q .

test-cpython: system-deps install-cpython
	@echo "== CPython: $$($(CPY_VENV)/bin/python -VV | head -1)"
	$(CPY_VENV)/bin/python -m mypy --strict cymongoose
	cd tests && ../$(CPY_VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# --assert=plain: Debian's PyPy 7.3.11 has a garbage-collector bug (fixed in
# later PyPy releases) that now and then segfaults it while pytest rewrites a
# test module's asserts, before any test runs; it did so once in our CI
# (pytest-dev/pytest#11168, pypy/pypy#3959).  Plain asserts skip that step;
# the CPython run still reports failed asserts in detail.
test-pypy: system-deps install-pypy
	@echo "== PyPy: $$($(PYPY_VENV)/bin/python -VV | tr '\n' ' ')"
	cd tests && ../$(PYPY_VENV)/bin/python -m pytest -p no:cacheprovider --assert=plain $(PYTEST_ARGS)

# The whole suite on CPython, then on PyPy (both with the OpenSSL TLS backend),
# the TLS tests on CPython with Mongoose's built-in TLS stack, then the whole
# suite on CPython under ASan/UBSan.
test: test-cpython test-pypy test-builtin-tls test-asan

# tests/tls and the CLI tests against a copy of the package built with
# CYM_TLS=builtin in build/builtin-tls, found first through PYTHONPATH
# (CYM_TLS in the tests' environment makes them check which backend they got).
BUILTIN_TLS_DIR := build/builtin-tls
test-builtin-tls: install-cpython
	@echo "== CPython with Mongoose's built-in TLS stack (CYM_TLS=builtin)"
	rm -rf $(BUILTIN_TLS_DIR) && mkdir -p $(BUILTIN_TLS_DIR)
	cp -r cymongoose $(BUILTIN_TLS_DIR)/cymongoose && rm -f $(BUILTIN_TLS_DIR)/cymongoose/_mg_cffi*.so
	cd $(BUILTIN_TLS_DIR) && CYM_TLS=builtin $(CURDIR)/$(CPY_VENV)/bin/python -c 'import sys; sys.path.insert(0, "$(CURDIR)"); \
	  import build_ffi; build_ffi.ffibuilder.compile(tmpdir=".")' >/dev/null
	cd tests && CYM_TLS=builtin PYTHONPATH=$(CURDIR)/$(BUILTIN_TLS_DIR) \
	  ../$(CPY_VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) tls cli

# The device dashboard (examples/dashboard); settings and uploads go to build/dashboard.
serve: install-serve
	@echo "== starting the dashboard"
	$(CPY_VENV)/bin/python examples/dashboard --listen http://127.0.0.1:$(PORT) \
	  --mqtt mqtt://127.0.0.1:$(MQTT_PORT)

sdist:
	$(PYTHON) vendor/fetch.py >/dev/null
	$(CPY_VENV)/bin/pip install -q build 2>/dev/null || $(PYTHON) -m pip install -q build
	$(PYTHON) -m build --sdist

clean:
	rm -rf build dist *.egg-info cymongoose/_mg_cffi*.so $(CPY_VENV) $(PYPY_VENV)

# Autobahn WebSocket server cases against bench/autobahn/echo_server.py, then
# the client cases (kosoku's fuzzing server) against bench/autobahn/echo_client.py.
# kosoku (the Python 3 runner) needs CPython 3.10+; our side runs on CPython,
# then on PyPy.  Then the server cases against the ASGI server (run.py --asgi).
# Reports: build/autobahn-{,client-,asgi-}{cpython,pypy}/index.html.
.PHONY: autobahn
autobahn: install-cpython install-pypy
	$(CPY_VENV)/bin/pip install -q kosoku
	$(CPY_VENV)/bin/python bench/autobahn/run.py --server-python $(CPY_VENV)/bin/python --out build/autobahn-cpython
	$(CPY_VENV)/bin/python bench/autobahn/run.py --server-python $(PYPY_VENV)/bin/python --out build/autobahn-pypy
	$(CPY_VENV)/bin/python bench/autobahn/run.py --client --server-python $(CPY_VENV)/bin/python --out build/autobahn-client-cpython
	$(CPY_VENV)/bin/python bench/autobahn/run.py --client --server-python $(PYPY_VENV)/bin/python --out build/autobahn-client-pypy
	$(CPY_VENV)/bin/python bench/autobahn/run.py --asgi --server-python $(CPY_VENV)/bin/python --out build/autobahn-asgi-cpython
	$(CPY_VENV)/bin/python bench/autobahn/run.py --asgi --server-python $(PYPY_VENV)/bin/python --out build/autobahn-asgi-pypy

# Pure C vs the Cython package 0.2.5 vs ours on CPython and PyPy, then our WSGI/ASGI/WS
# servers vs uvicorn, granian, gunicorn, waitress, picows, websockets (bench/README.md);
# about 25 minutes. BENCH_ARGS=--quick for a short run.
BENCH_ARGS ?=
bench: system-deps
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# The whole suite on CPython against a copy of the package built with
# CYM_SANITIZE=1 (-fsanitize=address,undefined) in build/asan; any report fails.
# libasan must come first in the process, hence LD_PRELOAD; CPython's own
# allocations look like leaks to LeakSanitizer, so leak detection is off.
# --capture=sys leaves file descriptor 2 alone, so a report from a process
# the sanitizer stops reaches the terminal instead of pytest's capture file.
# Other programs the tests run (curl deadlocks with libasan preloaded) get
# wrappers in build/asan/bin that drop LD_PRELOAD.
ASAN_DIR := build/asan
ASAN_TOOLS := curl wrk mosquitto openssl chromium chromedriver
ASAN_ENV := LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:suppressions=$(CURDIR)/tests/ubsan.supp
test-asan: install-cpython
	@echo "== ASan: CPython with -fsanitize=address,undefined"
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)/bin
	for t in $(ASAN_TOOLS); do p=$$(PATH=$$PATH:/usr/sbin command -v $$t) || continue; \
	  printf '#!/bin/sh\nunset LD_PRELOAD\nexec %s "$$@"\n' "$$p" > $(ASAN_DIR)/bin/$$t; \
	  chmod +x $(ASAN_DIR)/bin/$$t; done
	cp -r cymongoose $(ASAN_DIR)/cymongoose && rm -f $(ASAN_DIR)/cymongoose/_mg_cffi*.so
	cd $(ASAN_DIR) && CYM_SANITIZE=1 $(CURDIR)/$(CPY_VENV)/bin/python -c 'import sys; sys.path.insert(0, "$(CURDIR)"); \
	  import build_ffi; build_ffi.ffibuilder.compile(tmpdir=".")' >/dev/null
	cd tests && $(ASAN_ENV) PATH=$(CURDIR)/$(ASAN_DIR)/bin:$$PATH PYTHONPATH=$(CURDIR)/$(ASAN_DIR) \
	  ../$(CPY_VENV)/bin/python -m pytest -p no:cacheprovider --capture=sys $(PYTEST_ARGS)
