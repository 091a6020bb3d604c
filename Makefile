# sitewatch: `make demo` runs the whole stack on loopback with simulated sites, `make test` runs every test.
# Both create .venv and install what they need (Python packages, and the Debian packages the tests use).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench venv debs clean bundle-windows

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

debs:
	scripts/install-debs.sh

demo: venv debs
	$(PY) -m demo

# Most long tests wait on timers (scrape and evaluation intervals, Telegram's pacing), so two workers
# halve the wall time on two cores; a test file stays on one worker (the demo's tests share its ports).
TEST_WORKERS ?= 2

test: venv debs
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# dist/sitewatch-windows-<version>.zip: the site agent's wheels for 32- and 64-bit Windows Pythons, the
# install script and the example configs, for sites that cannot reach PyPI (docs/windows-build.md).
bundle-windows: venv
	$(PY) scripts/build_windows_bundle.py

bench: venv debs
	$(PY) bench/ping_fleet.py $(BENCH_ARGS)
	$(PY) bench/kodeks_fleet.py
	$(PY) bench/mitsu_read.py
	$(PY) bench/atol_read.py
	$(PY) bench/shtrih_read.py
	$(PY) bench/kkt_speeds.py
	$(PY) bench/pushgateway_fleet.py
	$(PY) bench/receiver_storm.py
	$(PY) bench/bot_commands.py
	$(PY) bench/ingress_push.py
	$(PY) bench/hours_fleet.py
	$(PY) bench/exporter_scrape.py
	$(PY) bench/ingest_uploads.py
	$(PY) bench/web_auth.py
	$(PY) bench/worklist_fleet.py

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
