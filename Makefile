# The two commands: `make demo` and `make test`. Everything else here supports them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0

.PHONY: demo test install install-dev sysdeps lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml Makefile | $(PY)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[rl]"  # the demo's PPO agent runs through stable-baselines3
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	$(MAKE) --no-print-directory sysdeps
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# open3d needs the system library libusb-1.0 to import: apt where we can, else a pip-packaged copy.
sysdeps: | $(PY)
	@$(PY) -c "import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library('usb-1.0') else 1)" \
	 || ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq libusb-1.0-0 ) \
	 || $(PY) -m pip install -q libusb-package \
	 || echo "warning: libusb-1.0 missing; open3d will not import (apt-get install libusb-1.0-0)"

demo: $(VENV)/.installed
	$(PY) -m sana_world.cli demo --out outputs

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -n 2 --durations=15

clean:
	rm -rf outputs .pytest_cache
