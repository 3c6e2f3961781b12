# Two commands for a fresh clone: `make run` (the daemon on the synthetic camera) and `make test`.
# Both create or reuse .venv and install everything from this repo's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch: the CPU build, pinned (never a CUDA build in CI or make test).
TORCH := torch==2.13.0

.PHONY: run test venv demo default-model bench-quality bench-latency clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,cpu,dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/sparsecam serve

demo: $(STAMP)
	$(BIN)/sparsecam train synthetic:frames=300 --out runs/demo --steps 150

# The bundled model: trained on the built-in synthetic camera, 160x120 (what `make run` serves).
DEFAULT_MODEL_TRAIN := synthetic:frames=600,size=160x120 --steps 300
default-model: $(STAMP)
	rm -rf runs/default-model
	$(BIN)/sparsecam train $(DEFAULT_MODEL_TRAIN) --out runs/default-model
	$(BIN)/sparsecam export runs/default-model/model.pt --out stream/models/default.onnx

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench-quality: $(STAMP)
	$(BIN)/python bench/quality.py --json runs/quality.json

bench-latency: $(STAMP)
	$(BIN)/python bench/latency.py --json runs/latency.json

clean:
	rm -rf $(VENV) runs .pytest_cache
