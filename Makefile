VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install fonts icons test demo bench bench-quick gpu-check study study-icons study-families study-gpu study-quick clean

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

# The icon data set in data/icons (timm_synermix/experiments/icons.py, docs/icons.md): Debian's icon theme packages,
# SVG rendered by librsvg's rsvg-convert (apt needs root); without them the build says what to install and exits 2.
ICON_PACKAGES := librsvg2-bin papirus-icon-theme breeze-icon-theme adwaita-icon-theme numix-icon-theme \
	numix-icon-theme-circle faba-icon-theme moka-icon-theme faenza-icon-theme obsidian-icon-theme oxygen-icon-theme \
	tango-icon-theme elementary-icon-theme elementary-xfce-icon-theme paper-icon-theme suru-icon-theme \
	yaru-theme-icon mate-icon-theme deepin-icon-theme gnome-colors gnome-icon-theme gnome-icon-theme-gartoon \
	gnome-icon-theme-nuovo gnome-icon-theme-suede gnome-icon-theme-yasis lxde-icon-theme mint-y-icons \
	sugar-icon-theme

icons: $(STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		dpkg -s $(ICON_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(ICON_PACKAGES) >/dev/null; }; \
	else echo "icons: not root or no apt-get: skipping the Debian icon theme packages ($(ICON_PACKAGES))"; fi
	$(PY) -m timm_synermix.experiments.icons data/icons

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

study-icons: $(STAMP) fonts icons
	$(PY) -m timm_synermix.experiments.study --study icons --out results/icons

study-families: $(STAMP) fonts
	$(PY) -m timm_synermix.experiments.study --study families --out results/families

# On a machine with one CUDA GPU; --dry-run checks the plan and prints its time estimate anywhere.
study-gpu: $(STAMP) fonts icons
	$(PY) -m timm_synermix.experiments.study --study gpu --out results/gpu

study-quick: $(STAMP)
	$(PY) -m timm_synermix.experiments.study --quick --out study_output/quick

clean:
	rm -rf $(VENV) output demo_output bench_output study_output
