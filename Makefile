VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench bench-quick clean

$(PY):
	python3 -m venv $(VENV)

# torch/torchvision are pinned only here: the pair this machine serves from local disk.
# The package itself depends on ranges (setup.cfg), so users bring their own torch.
$(STAMP): $(PY) setup.cfg
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,demo]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

demo: $(STAMP)
	$(PY) -m timm_synermix.experiments.demo

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) output demo_output bench_output
