# fmlab's set-up: `make app` and `make test` each install what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: app test lint data browser native bench clean

app: $(STAMP) data native
	$(BIN)/fmlab

test: $(STAMP) browser native
	$(BIN)/ruff check trainer tui tests bench fmlab
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check trainer tui tests bench fmlab
	$(BIN)/ruff format --check trainer tui tests bench fmlab
	$(BIN)/lint-imports --no-cache

# Fashion-MNIST from Debian's package where apt is there and we may use it;
# elsewhere fmlab downloads it with torchvision on first use.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q dataset-fashion-mnist || \
	   (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null \
	  || echo "dataset-fashion-mnist not installed; fmlab will try to download the data"; \
	else echo "no dataset package here; fmlab will try to download the data"; fi

# Chromium for the browser test (tests/browser: fmlab serve in a real
# browser), from Debian's package where apt is there and we may use it;
# elsewhere that test is skipped.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
	   (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)) >/dev/null \
	  || echo "chromium not installed; the browser test will be skipped"; \
	else echo "no chromium here (apt-get install chromium as root); the browser test will be skipped"; fi

# fmlab's C++ step (the Python step's numbers, faster), built once per torch;
# without a compiler fmlab trains with its Python step. On Debian as root,
# g++ comes from its package.
native: $(STAMP)
	@if ! command -v c++ >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q g++ || (apt-get update -q && apt-get install -y -q g++)) >/dev/null \
	  || echo "g++ not installed"; fi
	@$(BIN)/python -m fmlab.trainer.training.native

bench: $(STAMP) data native
	$(BIN)/python -m bench.epoch_speed --epochs 2

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
