# voxface: `make demo` and `make test` set everything up on a fresh machine.

# The one place the torch requirement lives. 2.13.0 is the CPU build on this machine's disk;
# on a CUDA machine set e.g. TORCH="torch" (pip then picks the CUDA build).
TORCH ?= torch==2.13.0

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.voxface-installed

# ICT-FaceKit: the public FaceXModel/ folder, unpacked from the shared archive when it is present.
ICT_ARCHIVE := ../shared/data/ict-facekit/FaceXModel.tar.xz
ICT_DIR     := .data/ict-facekit
export VOXFACE_ICT_ROOT ?= $(abspath $(ICT_DIR))

.PHONY: all setup sysdeps ict-data test test-fast demo bench fuzz-long weights docs-images clean

all: test

sysdeps:
	@# open3d's wheel links libusb-1.0 (Debian: libusb-1.0-0).
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  echo "installing libusb-1.0-0 (needed by open3d)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null; \
	fi

$(STAMP): pyproject.toml Makefile
	$(MAKE) sysdeps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]" "$(TORCH)"
	touch $(STAMP)

setup: $(STAMP)

ict-data:
	@if [ -f "$(ICT_ARCHIVE)" ] && [ ! -f "$(ICT_DIR)/FaceXModel/vertex_indices.json" ]; then \
	  echo "unpacking ICT-FaceKit into $(ICT_DIR)"; mkdir -p $(ICT_DIR); \
	  tar xJf "$(ICT_ARCHIVE)" -C $(ICT_DIR); \
	fi

test: setup ict-data
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/voxface demo -o out/demo

bench: setup ict-data
	$(VENV)/bin/voxface bench --repeat 5  # 5 interleaved rounds of the pipeline comparison: the machine is shared

# The shipped weights, end to end (resumable: rerun after an interruption). Stage 1 trains encoder
# and decoder together; stages 2 and 3 train the encoder alone against the frozen decoder, on the
# latent targets and then on occupancy (their configs say why); the refinement head (128^3/256^3
# output) is trained last, on the frozen decoder fed the true coefficients, then on half true
# coefficients, half the encoder's codes (configs/voxface-64-refine.yaml says why).
RUN  := runs/voxface-64
RUN2 := runs/voxface-64-encoder
RUN3 := runs/voxface-64-finetune
resume = $$( [ -f $(1)/last.pth.tar ] && echo --resume $(1)/last.pth.tar )
weights: setup ict-data
	$(VENV)/bin/voxface data cache -o .data/cache-64 -n 81920 --num-val 512
	$(VENV)/bin/voxface train --config configs/voxface-64.yaml --out $(RUN) $(call resume,$(RUN))
	$(VENV)/bin/voxface train --config configs/voxface-64-encoder.yaml --out $(RUN2) $(call resume,$(RUN2))
	$(VENV)/bin/voxface train --config configs/voxface-64-finetune.yaml --out $(RUN3) $(call resume,$(RUN3))
	[ -f $(RUN3)/refined-true.pth.tar ] || $(VENV)/bin/voxface refine-train -c $(RUN3)/best.pth.tar \
	  -o $(RUN3)/refined-true.pth.tar --latents true --fresh --steps 1000 --num-val 16
	[ -f $(RUN3)/refined.pth.tar ] || $(VENV)/bin/voxface refine-train -c $(RUN3)/refined-true.pth.tar \
	  -o $(RUN3)/refined.pth.tar --config configs/voxface-64-refine.yaml --latents both --steps 600 --lr 0.001 --num-val 16
	$(VENV)/bin/voxface evaluate -c $(RUN3)/refined.pth.tar --num 200 --report $(RUN3)/eval.json --plots docs/eval
	$(VENV)/bin/voxface evaluate -c $(RUN3)/refined.pth.tar --num 200 --resolution 128 --report $(RUN3)/eval-128.json
	$(VENV)/bin/voxface release $(RUN3)/refined.pth.tar -o voxface/weights/vox-cpk.pth.tar --report $(RUN3)/eval.json --annotate 256

# The pictures in README, from the shipped weights.
docs-images: setup ict-data
	$(VENV)/bin/voxface demo -o out/demo
	$(VENV)/bin/voxface data export -n 2 --seed 2000003 -o out/pair
	$(VENV)/bin/voxface interpolate out/demo/astronaut_mesh.npz out/pair/000001.png --no-detect \
	  --steps 8 --space both -o out/interpolation
	cp out/demo/astronaut_mesh_preview.png docs/demo.png
	cp out/interpolation/strip.png docs/interpolation.png
	cp out/interpolation/interpolation.gif docs/interpolation.gif
	$(PY) benchmarks/highres_views.py -o docs/highres.png
	$(VENV)/bin/voxface data preview -n 16 -o docs/data_preview.png

fuzz-long: setup
	VOXFACE_FUZZ_EXAMPLES=5000 $(PY) -m pytest -q tests/test_fuzz.py

clean:
	rm -rf $(VENV) .data out .pytest_cache
