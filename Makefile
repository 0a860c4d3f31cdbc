VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install fonts test demo bench bench-quick gpu-check study study-quick clean

$(PY):
	python3 -m venv $(VENV)

# torch/torchvision are pinned only here: the pair this machine serves from local disk. Pillow and timm too: the
# parity tests' numbers were recorded with these builds (docs/timm-parity.md). The package itself depends on
# ranges (pyproject.toml), so users bring their own.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1 pillow==13.0.0 timm==1.0.31
	$(PY) -m pip install -q -e '.[test,demo]'
	touch $(STAMP)

install: $(STAMP)

# The study's glyphs come from Debian's font packages (apt needs root); without them it falls back to the fonts
# matplotlib ships, which give fewer classes, and says so.
FONT_PACKAGES := fonts-dejavu-core fonts-dejavu-extra fonts-noto-core fonts-texgyre fonts-urw-base35 \
	fonts-liberation2 fonts-freefont-ttf fonts-crosextra-carlito fonts-lato fonts-open-sans fonts-roboto-unhinted \
	fonts-cantarell

fonts:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(FONT_PACKAGES) >/dev/null; }; \
	else echo "fonts: not root or no apt-get: skipping the Debian font packages ($(FONT_PACKAGES))"; fi

# Two xdist workers, one per core (each test trains on one thread). Tests that share a built fixture or a cached run
# share a worker (xdist_group; tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest tests -n 2 --dist loadgroup

demo: $(STAMP)
	$(PY) -m timm_synermix.experiments.demo

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

# On a machine with a CUDA GPU: the step, memory, compile and sync rows plus a short glyph training
# (bench/gpu_check.py; --dry-run checks the plan on CPU).
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py --out bench/results_gpu.txt

study: $(STAMP) fonts
	$(PY) -m timm_synermix.experiments.study --out results/study

study-quick: $(STAMP)
	$(PY) -m timm_synermix.experiments.study --quick --out study_output/quick

clean:
	rm -rf $(VENV) output demo_output bench_output study_output
